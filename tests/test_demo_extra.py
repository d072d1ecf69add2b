"""``annexa demo`` without the demo estates installed: a clear error, and nothing written.

The demo estates are a distribution of their own (demo/, ``annexa-demo``: the package
``annexa_demo`` and the moto it depends on), so a plain ``pip install annexa`` has
neither. Each is made unimportable for one ``annexa`` subprocess by a package of that
name first on its path that raises ImportError, as an environment without it behaves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("missing", ["moto", "annexa_demo"])
def test_demo_without_the_estates_says_how_to_install_them(tmp_path: Path, missing: str) -> None:
    blocker = tmp_path / "site" / missing
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        f'raise ImportError("No module named {missing!r} (blocked by the test)")\n',
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]))
    db = tmp_path / "demo.db"
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "demo", "--db", str(db)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "pip install -e ./demo" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not db.exists()
