"""Tests run anywhere (issue 18): without a configured or local PostgreSQL the suite
starts its own (pgserver); a configured server that is down is one error at the start.

Each case runs pytest on two PostgreSQL tests of tests/test_store.py in a subprocess,
with "the machine's server" pointed at a closed loopback port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG_TESTS = [
    "tests/test_store.py::test_unchanged_estate_adds_no_history_rows[postgresql]",
    "tests/test_store.py::test_one_change_adds_only_its_rows[postgresql]",
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


def _pytest(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("ANNEXA_TEST_POSTGRES_URL", "ANNEXA_TEST_SKIP_POSTGRES")}
    base["ANNEXA_TEST_MACHINE_POSTGRES_URL"] = (
        f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *PG_TESTS],
        cwd=REPO, env=base | env, capture_output=True, text=True, timeout=900,
    )


def test_without_any_server_the_suite_starts_its_own_postgresql():
    proc = _pytest()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.count("throwaway PostgreSQL (pgserver)") == 1, proc.stdout[-2000:]
    assert "2 passed" in proc.stdout


def test_an_unreachable_configured_server_is_one_error_at_the_start():
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    proc = _pytest(ANNEXA_TEST_POSTGRES_URL=url)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert out.count("is unreachable") == 1, out[-3000:]
    assert "ANNEXA_TEST_POSTGRES_URL=" in out
    assert "passed" not in out and "pgserver" not in out
