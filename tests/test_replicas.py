"""``[daemon] distribute = true``: one run's units spread over daemon replicas.

Real ``annexa daemon`` subprocesses against a real PostgreSQL (a database per test),
a connector plugin registered through an entry point, reading a fake HTTP source on
127.0.0.1 with httpx. Every wait is on a condition (the database, the fake source),
with generous timeouts; no verdict depends on elapsed time.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from store.engine import make_engine
from store.integrity import verify
from store.schema import evidence, findings, runs
from store.schema_daemon import dispatch_units
from tests import daemon_fixtures as fx
from tests import replica_fixtures as rfx
from tests.daemon_fixtures import ANNEXA, DaemonProcess, free_port, wait_for, write_config
from tests.replica_fixtures import GateServer

daemons = fx.daemons
unitized_plugin = rfx.unitized_plugin

SCOPES = ["acct-1", "acct-2", "acct-3"]
REGIONS = ["eu-1", "us-1"]
RECORDS = 4
UNITS = len(SCOPES) * len(REGIONS) * 2  # two services


def _config(tmp_path: Path, db_url: str, replica: str, source_url: str) -> Path:
    return write_config(
        tmp_path / replica / "annexa.toml",
        db_url,
        connectors=[
            {
                "type": "unitized",
                "name": "org",
                "schedule": "every 1h",
                "options": {
                    "url": source_url,
                    "scopes": SCOPES,
                    "regions": REGIONS,
                    "records": RECORDS,
                },
            }
        ],
        # Every replica must hold a unit at the gate at once, whatever scope the queue
        # hands it: the per-scope lock (default) is procrastinate's and is pinned in
        # test_replicas_ledger; here it would only make the gate wait.
        daemon={"distribute": True, "unit_workers": 1, "unit_attempts": 3, "unit_lock": "none"},
    )


def _units(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(dispatch_units).order_by(dispatch_units.c.id)).all()


def _runs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(runs).where(runs.c.source == "org")).all()


@pytest.mark.skipif(
    not fx.ANNEXA.exists(), reason="the annexa entry point is not installed in this venv"
)
def test_three_replicas_share_a_run_and_a_killed_ones_unit_completes_elsewhere(
    postgres_url: str, unitized_plugin: Path, daemons: list, tmp_path: Path
) -> None:
    engine = make_engine(postgres_url)
    # The replicas are started before the gate knows their pids; the victim is the
    # first one started, whose pid is known before the gate opens.
    replicas: list[DaemonProcess] = []
    gate: GateServer | None = None
    try:
        gate = GateServer(expect=3, victim=-1).start()
        for name in ("a", "b", "c"):
            d = DaemonProcess(_config(tmp_path, postgres_url, name, gate.url),
                              unitized_plugin, name=name)
            daemons.append(d)
            replicas.append(d)
            if gate.victim == -1:
                gate.victim = d.proc.pid
        for d in replicas:
            d.wait_ready(120)
        victim, survivors = replicas[0], replicas[1:]

        # Each replica holds a unit at the gate at once, then all three are answered:
        # every replica commits at least one unit. The victim's next unit is held.
        assert gate.victim_blocked.wait(180), "the victim never asked for a second unit"
        victim.proc.kill()
        assert victim.wait(30) == -signal.SIGKILL
        gate.victim_gone.set()

        def sealed() -> Any:
            rs = _runs(engine)
            return rs if rs and all(r.status != "running" for r in rs) else None

        wait_for(sealed, 240, "the distributed run to be sealed", interval=0.2)
        for d in survivors:
            d.signal(signal.SIGTERM)
            assert d.wait(60) == 0, d.logs()
    finally:
        if gate is not None:
            gate.stop()

    rs = _runs(engine)
    assert len(rs) == 1, "one claim, one run"
    run = rs[0]
    assert run.status == "succeeded", (run.status, run.errors)
    units = _units(engine)
    assert len(units) == UNITS
    assert {u.run_id for u in units} == {run.id}
    assert all(u.state == "done" and u.status == "succeeded" for u in units)
    # Each of the three replicas finished at least one unit (ids end with the pid).
    by_pid = Counter(u.replica.split(":")[1] for u in units)
    assert set(by_pid) == {str(d.proc.pid) for d in replicas}, by_pid
    # The unit the victim held was retried and finished by a survivor.
    retried = [u for u in units if u.attempts > 1]
    assert retried, "no unit was retried after the kill"
    assert all(u.replica.split(":")[1] != str(victim.proc.pid) for u in retried)
    # Nothing twice: every resource once, every check of it once, all in this run.
    with engine.connect() as conn:
        ev = conn.execute(
            select(evidence.c.key, func.count()).where(evidence.c.run_id == run.id)
            .group_by(evidence.c.key)
        ).all()
        fi = conn.execute(
            select(findings.c.key, func.count()).where(findings.c.run_id == run.id)
            .group_by(findings.c.key)
        ).all()
        total_ev = conn.execute(select(func.count()).select_from(evidence)).scalar_one()
    assert len(ev) == UNITS * RECORDS == total_ev
    assert all(n == 1 for _, n in ev)
    assert len(fi) == UNITS * RECORDS and all(n == 1 for _, n in fi)
    counts = json.loads(run.counts)
    assert counts["evidence_written"] == UNITS * RECORDS
    assert counts["units"] == UNITS and len(counts["replicas"]) == 3
    sealed_by = [
        e for d in replicas for e in d.log_events() if e.get("event") == "distributed run sealed"
    ]
    assert len(sealed_by) == 1, sealed_by
    assert verify(engine).ok
    cli = subprocess.run(
        [str(ANNEXA), "verify", "--config", str(tmp_path / "b" / "annexa.toml")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path / "b",
        env=fx_env(unitized_plugin),
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    engine.dispose()


def fx_env(plugin: Path) -> dict[str, str]:
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(fx.REPO)])}
    env.pop("ANNEXA_CONFIG", None)
    env.pop("ANNEXA_DATABASE_URL", None)
    return env


def test_distribute_on_sqlite_is_refused_with_a_clear_message(
    unitized_plugin: Path, tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path / "annexa.toml",
        f"sqlite:///{tmp_path / 'annexa.db'}",
        connectors=[{"type": "unitized", "name": "org", "schedule": "every 1h",
                     "options": {"url": "http://127.0.0.1:9"}}],
        daemon={"distribute": True},
    )
    done = subprocess.run(
        [str(ANNEXA), "daemon", "--config", str(cfg), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=fx_env(unitized_plugin),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "daemon.distribute = true needs PostgreSQL" in done.stderr
    assert "distribute = false" in done.stderr
