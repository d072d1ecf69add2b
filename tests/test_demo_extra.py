"""``annexa demo`` without the ``[demo]`` extra: a clear error, and nothing written.

moto is made unimportable for one ``annexa`` subprocess by a ``moto`` package first on
its path that raises ImportError, as an environment without the extra behaves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_without_moto_says_to_install_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "site" / "moto"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        'raise ImportError("No module named \'moto\' (blocked by the test)")\n', encoding="utf-8"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]))
    db = tmp_path / "demo.db"
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "demo", "--db", str(db)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "pip install 'annexa[demo]'" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not db.exists()
