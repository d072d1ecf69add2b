"""``annexa daemon`` as real processes against a real PostgreSQL (and SQLite).

Each test runs the installed ``annexa`` entry point in subprocesses, with a test
connector registered through an entry point on PYTHONPATH, second-level schedules
and short leases/heartbeats (see ``tests/daemon_fixtures.py``).
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from store.engine import make_engine
from store.integrity import verify
from store.leases import REAPED_PREFIX
from store.schema import runs
from store.schema_daemon import schedule_claims
from tests import daemon_fixtures as fx
from tests.daemon_fixtures import (
    ANNEXA,
    REPO,
    DaemonProcess,
    TcpProxy,
    free_port,
    paced,
    wait_for,
    write_config,
)

# Fixtures used here (pytest finds them as module attributes).
daemons = fx.daemons
pg_proxy = fx.pg_proxy
plugin_path = fx.plugin_path


def _runs(engine: Engine, source: str = "p1") -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(runs).where(runs.c.source == source).order_by(runs.c.started_at)
        ).all()


def _claims(engine: Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(schedule_claims).order_by(schedule_claims.c.id)).all()


def _running_on(engine: Engine, d: DaemonProcess) -> str | None:
    for r in _runs(engine):
        if r.status == "running" and r.host and r.host.endswith(f":{d.proc.pid}"):
            return r.id
    return None


def test_two_replicas_run_each_due_collection_once_and_one_takes_over_from_a_killed_one(
    postgres_url: str, plugin_path: Path, daemons: list, tmp_path: Path
) -> None:
    period = 3

    def config(d: str) -> Path:  # one config per replica: each has its own spool dir
        return write_config(
            tmp_path / d / "annexa.toml",
            postgres_url,
            connectors=[
                paced(f"every {period}s", records=6, delay=0.25),
            ],
            daemon={"jitter": 0.2},
        )

    engine = make_engine(postgres_url)
    a = DaemonProcess(config("a"), plugin_path, name="a")
    daemons.append(a)
    a.wait_ready()
    b = DaemonProcess(config("b"), plugin_path, name="b")
    daemons.append(b)
    b.wait_ready()
    time.sleep(2 * period)

    def running() -> tuple[DaemonProcess, DaemonProcess, str] | None:
        for victim, survivor in ((a, b), (b, a)):
            if run_id := _running_on(engine, victim):
                return victim, survivor, run_id
        return None

    def mid_run() -> tuple[DaemonProcess, DaemonProcess, str] | None:
        found = running()
        if found is None:
            return None
        time.sleep(0.2)  # let some of it be committed, but not all
        return found if _running_on(engine, found[0]) == found[2] else None

    # Kill whichever replica is collecting right now (usually both have had turns).
    victim, survivor, orphan = wait_for(mid_run, 5 * period, "a replica in a run")
    victim.proc.kill()
    killed_at = datetime.now().astimezone()
    victim.wait(5)
    # The survivor takes over once the lease (2 s) has expired, reaps the orphan and
    # carries on alone.
    wait_for(
        lambda: len([c for c in _claims(engine) if c.claimed_at > killed_at]) >= 3,
        5 * period,
        "three claims by the surviving replica",
    )
    survivor.signal(signal.SIGTERM)
    assert survivor.wait(10) == 0

    claims = _claims(engine)
    by_run = {r.id: r for r in _runs(engine)}
    after = [c for c in claims if c.claimed_at > killed_at]
    assert {c.claimed_by.split(":")[1] for c in after} == {str(survivor.proc.pid)}
    # The first claim after the kill takes the killed run's due time over (found dead
    # through its run lock, or at the latest when its 2 s lease ran out).
    orphan_claim = next(c for c in claims if c.run_id == orphan)
    first = min(after, key=lambda c: c.claimed_at)
    assert first.takeover and first.due_at == orphan_claim.due_at
    # Exactly once: every grid slot from the first to the last has exactly one claim
    # that is not a takeover (the first claim is the "overdue at start-up" one).
    grid = [c.due_at for c in claims[1:] if not c.takeover]
    assert len(grid) == len(set(grid)), Counter(grid)
    ts = sorted(int(g.timestamp()) for g in grid)
    assert all(t % period == 0 for t in ts)
    assert ts == list(range(ts[0], ts[-1] + period, period)), "a due collection was missed"
    assert len(ts) >= 5
    # At most one run at a time: no two runs of p1 overlap.
    spans = sorted((r.started_at, r.finished_at) for r in by_run.values())
    for (_, f1), (s2, _) in itertools.pairwise(spans):
        assert f1 is not None and f1 <= s2, "two runs of one connector overlapped"
    # The run killed with its replica was reaped, sealed, and nothing is left running.
    assert by_run[orphan].status == "aborted"
    assert REAPED_PREFIX in json.loads(by_run[orphan].errors)[0]
    assert all(r.status != "running" for r in by_run.values())
    assert all(r.status in ("succeeded", "aborted") for r in by_run.values())
    result = verify(engine)
    assert result.ok, result.problems
    engine.dispose()


def test_sigterm_ends_within_the_grace_period_and_a_restart_reaps_a_sigkilled_run(
    postgres_url: str, plugin_path: Path, daemons: list, tmp_path: Path
) -> None:
    grace = 2
    cfg = write_config(
        tmp_path / "annexa.toml",
        postgres_url,
        connectors=[
            paced("every 1h", records=60, delay=0.2),
        ],
        daemon={"grace_period": grace},
    )
    engine = make_engine(postgres_url)
    d1 = DaemonProcess(cfg, plugin_path, name="d1")
    daemons.append(d1)
    d1.wait_ready()  # the first collection is overdue at start-up: it starts at once
    run1 = wait_for(lambda: _running_on(engine, d1), 10, "the overdue run")
    time.sleep(0.5)
    t0 = time.monotonic()
    d1.signal(signal.SIGTERM)
    # A generous deadline, no upper bound asserted (a loaded machine is slow); the
    # grace period was waited for (a lower bound cannot flake), then the run aborted.
    assert d1.wait(60) == 0
    assert time.monotonic() - t0 > grace - 0.5
    r1 = {r.id: r for r in _runs(engine)}[run1]
    assert r1.status == "aborted" and r1.digest
    assert "grace period" in r1.errors

    # A new replica takes the interrupted collection over at once; kill it mid-run.
    d2 = DaemonProcess(cfg, plugin_path, name="d2")
    daemons.append(d2)
    d2.wait_ready()
    run2 = wait_for(lambda: _running_on(engine, d2), 10, "the retaken run")
    time.sleep(0.3)
    d2.proc.kill()
    d2.wait(5)
    assert {r.id: r for r in _runs(engine)}[run2].status == "running"  # orphaned

    d3 = DaemonProcess(cfg, plugin_path, name="d3")
    daemons.append(d3)
    d3.wait_ready()
    wait_for(
        lambda: {r.id: r for r in _runs(engine)}[run2].status != "running",
        10,
        "the orphan to be reaped",
    )
    orphan = {r.id: r for r in _runs(engine)}[run2]
    assert orphan.status == "aborted" and orphan.digest
    # Sealed by the reaper, or (same spool directory) from d2's journal by d3 at start.
    assert REAPED_PREFIX in orphan.errors or "from its local spool" in orphan.errors
    d3.signal(signal.SIGTERM)
    assert d3.wait(60) == 0
    assert all(r.status != "running" for r in _runs(engine))
    result = verify(engine)
    assert result.ok, result.problems
    assert result.unsealed == []
    engine.dispose()


def test_a_run_deaf_to_cancellation_does_not_hold_the_process_and_is_reaped_later(
    plugin_path: Path, daemons: list, tmp_path: Path
) -> None:
    grace = 2
    db = f"sqlite:///{tmp_path / 'annexa.db'}"
    cfg = write_config(
        tmp_path / "annexa.toml",
        db,
        connectors=[
            paced("every 1h", stall=300),
        ],
        daemon={"grace_period": grace},
    )
    engine = make_engine(db)
    d1 = DaemonProcess(cfg, plugin_path, name="d1")
    daemons.append(d1)
    d1.wait_ready()
    stuck = wait_for(lambda: _running_on(engine, d1), 10, "the stalled run")
    d1.signal(signal.SIGTERM)
    assert d1.wait(60) == 0  # the stalled thread (300 s) does not hold the process
    assert "sealed as aborted" in d1.logs()
    # Sealed by d1 before it exited (the writer's guard refuses rows after a seal).
    r = {r.id: r for r in _runs(engine)}[stuck]
    assert r.status == "aborted" and r.digest and "aborted at shutdown" in r.errors
    result = verify(engine)
    assert result.ok, result.problems
    engine.dispose()


TOKEN = "tok-9f8e7d6c5b4a-PLANTED-SECRET"


def test_database_outage_is_spooled_and_replayed_and_endpoints_tell_the_truth(
    postgres_url: str, plugin_path: Path, daemons: list, pg_proxy, tmp_path: Path
) -> None:
    url = make_url(postgres_url)
    proxy: TcpProxy = pg_proxy(url.port or 5432)
    # The token is planted three ways: the database password (trust auth ignores it),
    # a webhook URL written in the config, and a credential the connector reads.
    via_proxy = url.set(port=proxy.port, password=TOKEN).render_as_string(hide_password=False)
    hook_port = free_port()
    cfg = write_config(
        tmp_path / "annexa.toml",
        "sqlite:///unused.db",
        connectors=[
            paced("every 1h", records=30, delay=0.1, token={"env": "PACED_TOKEN"}),
        ],
        notifications=(
            "[[daemon.notifications.webhooks]]\n"
            f'url = "http://127.0.0.1:{hook_port}/hook/{TOKEN}"\n'
        ),
    )
    direct = make_engine(postgres_url)
    d = DaemonProcess(
        cfg,
        plugin_path,
        env={"ANNEXA_DATABASE_URL": via_proxy, "PACED_TOKEN": TOKEN},
    )
    daemons.append(d)
    d.wait_ready()
    assert d.get("/healthz") == (200, "ok\n")
    code, body = d.get("/readyz")
    assert code == 200 and json.loads(body)["database"] == "ok"

    def committed() -> int:
        with direct.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM evidence")).scalar_one()

    wait_for(lambda: committed() >= 5, 15, "the first batches of the run")
    proxy.close()
    cut_at = datetime.now().astimezone()
    wait_for(lambda: d.get("/readyz")[0] == 503, 5, "/readyz to turn unready")
    assert "unreachable" in json.loads(d.get("/readyz")[1])["database"]
    assert d.get("/healthz")[0] == 200  # alive, just not ready
    wait_for(lambda: "run spooled" in d.logs(), 10, "the run to finish into the spool")
    # Not reported succeeded while its records are only in the spool.
    [run] = _runs(direct)
    assert run.status == "running"
    metrics = d.get("/metrics")[1]
    assert 'annexa_runs_total{connector="p1",status="succeeded"} 0.0' in metrics
    assert "annexa_spooled_runs 1.0" in metrics
    spooled = list((tmp_path / "spool").glob("*.jsonl"))
    assert [p.stem for p in spooled] == [run.id]
    time.sleep(1)
    proxy.open()
    reopened_at = datetime.now().astimezone()
    wait_for(lambda: _runs(direct)[0].status != "running", 15, "the spooled run to be written")
    wait_for(lambda: d.get("/readyz")[0] == 200, 5, "/readyz to turn ready again")
    [run] = _runs(direct)
    assert run.status == "succeeded"
    assert run.finished_at > reopened_at
    with direct.connect() as conn:
        ev = conn.execute(
            text(
                "SELECT e.resource_id, e.collected_at, b.body FROM evidence e "
                "JOIN blobs b ON b.hash = e.content_hash WHERE e.resource_type = 'fake.disk.volume'"
            )
        ).all()
    assert sorted(r.resource_id for r in ev) == sorted(f"d{i}" for i in range(30))
    during = 0
    for r in ev:
        original = datetime.fromisoformat(json.loads(r.body)["seen"])
        assert r.collected_at == original, r.resource_id  # the original timestamp
        during += cut_at < r.collected_at < reopened_at
    assert during >= 5, "records collected during the outage"
    assert verify(direct).ok

    def controls_in_metrics() -> str | None:
        m = d.get("/metrics")[1]
        return m if re.search(r'annexa_controls\{status="pass"\} [1-9]', m) else None

    # Control statuses are evaluated just after the run is reported.
    metrics = wait_for(controls_in_metrics, 5, "control statuses in /metrics")
    assert 'annexa_runs_total{connector="p1",status="succeeded"} 1.0' in metrics
    assert "annexa_spooled_runs 0.0" in metrics
    assert 'annexa_findings{connector="p1",status="pass"} 32.0' in metrics
    assert re.search(
        r'annexa_last_success_timestamp_seconds\{connector="p1"\} 1\.\d+e\+09', metrics
    )
    assert "annexa_run_duration_seconds_bucket" in metrics
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    assert list((tmp_path / "spool").glob("*.jsonl")) == []

    # The planted token is in no log line, no evidence and no metric.
    logs = d.logs()
    assert "authenticating" in logs and "[REDACTED]" in logs
    assert TOKEN not in logs
    assert TOKEN not in metrics
    with direct.connect() as conn:
        stored = [
            str(v)
            for q in (
                "SELECT body FROM blobs",
                "SELECT message FROM findings",
                "SELECT errors FROM runs",
                "SELECT host FROM runs",
                "SELECT coalesce(error, '') FROM run_units",
                "SELECT config_digest FROM runs",
            )
            for (v,) in conn.execute(text(q))
        ]
    assert stored and not [s for s in stored if TOKEN in s]
    direct.dispose()


def test_a_second_daemon_on_one_sqlite_file_is_refused(
    plugin_path: Path, daemons: list, tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path / "annexa.toml",
        f"sqlite:///{tmp_path / 'annexa.db'}",
        connectors=[{"type": "paced", "name": "p1", "schedule": "every 1h"}],
    )
    first = DaemonProcess(cfg, plugin_path, name="first")
    daemons.append(first)
    first.wait_ready()
    second = subprocess.run(
        [str(ANNEXA), "daemon", "--config", str(cfg), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={**first_env(plugin_path)},
    )
    assert second.returncode == 2
    assert "another annexa daemon" in second.stderr and "already running" in second.stderr
    assert str(first.proc.pid) in second.stderr
    assert first.proc.poll() is None  # the first one is unaffected
    assert first.get("/readyz")[0] == 200


def first_env(plugin: Path) -> dict[str, str]:
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(REPO)])}
    env.pop("ANNEXA_CONFIG", None)
    env.pop("ANNEXA_DATABASE_URL", None)
    return env


@pytest.fixture(autouse=True)
def _no_leftover_pg_connections() -> None:
    """Sanity: the admin connection used by fixtures still works after each test."""
    yield
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=5):
        pass
