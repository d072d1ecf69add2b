"""Daemon scenarios on real processes and PostgreSQL, shared by the tests (run once
or twice) and ``benchmarks/daemon_soak.py --stress`` (run 20 times under a CPU hog).

Each scenario starts real ``annexa daemon`` processes on a fresh database, checks the
database state it promises (raising ``AssertionError`` naming what broke) and returns
what it measured. Waits are on conditions with generous deadlines; the only times
asserted are the database's own records (a takeover claimed before the victim's lease
could have ended proves it came from the run lock, not the lease).
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from store.engine import make_engine
from store.integrity import verify
from store.leases import REAPED_PREFIX
from store.schema import runs
from store.schema_daemon import schedule_claims, schedule_missed, schedules
from tests.daemon_fixtures import DaemonProcess, paced, wait_for, write_config

#: The lease in the takeover scenario: far longer than any wait in it, so a takeover
#: seen in time can only have come from the run lock.
LONG_LEASE = 120
#: A daemon's start-up under a CPU hog on a loaded 2-core machine can take 20 s and more.
START_TIMEOUT = 90.0


def _rows(engine: Engine, table: Any, order: Any) -> list:
    with engine.connect() as conn:
        return conn.execute(select(table).order_by(order)).all()


def running_on(engine: Engine, pid: int) -> str | None:
    """The id of the run in progress on the daemon whose process is ``pid``, if any."""
    with engine.connect() as conn:
        q = select(runs.c.id, runs.c.host).where(runs.c.status == "running")
        for r in conn.execute(q):
            if r.host and r.host.endswith(f":{pid}"):
                return r.id
    return None


def check_every_slot_once(engine: Engine, name: str, period: int) -> dict[str, int]:
    """Every grid slot from the first claimed one to the last is claimed exactly once
    (takeovers excepted: they retry a claimed slot) or recorded missed, never both."""
    claims = [
        c
        for c in _rows(engine, schedule_claims, schedule_claims.c.id)
        if c.name == name and not c.takeover
    ]
    missed = [m for m in _rows(engine, schedule_missed, schedule_missed.c.id) if m.name == name]

    def on_grid(t: datetime) -> bool:
        return t.timestamp() % period == 0

    claimed = Counter(int(c.due_at.timestamp()) for c in claims if on_grid(c.due_at))
    skipped = Counter(int(m.due_at.timestamp()) for m in missed if on_grid(m.due_at))
    dup = {t: n for t, n in claimed.items() if n > 1}
    assert not dup, f"due times claimed more than once: {dup}"
    # A claim whose run was lost with its replica, and not taken over, is recorded
    # missed as well: claimed, but not run.
    lost = {int(c.due_at.timestamp()) for c in claims if c.status in ("aborted", "not_started")}
    both = (set(claimed) & set(skipped)) - lost
    assert not both, f"due times both claimed and recorded missed: {sorted(both)}"
    seen = sorted(set(claimed) | set(skipped))
    assert seen, "no due time was claimed"
    gaps = sorted(set(range(seen[0], seen[-1] + period, period)) - set(seen))
    assert not gaps, f"due times neither run nor recorded missed: {gaps}"
    return {"slots": len(seen), "claimed": len(claimed), "missed": len(skipped)}


def check_sealed(engine: Engine) -> None:
    """Nothing left running; the chain verifies."""
    left = [r.id for r in _rows(engine, runs, runs.c.started_at) if r.status == "running"]
    assert not left, f"runs left unsealed: {left}"
    result = verify(engine)
    assert result.ok, result.problems
    assert result.unsealed == []


def takeover_after_sigkill(
    db_url: str, plugin: Path, workdir: Path, *, period: int = 3
) -> dict[str, Any]:
    """Two replicas; SIGKILL the one in a run; the other takes its due time over
    through the run lock, long before the lease could have expired."""
    name = "p1"

    def config(d: str) -> Path:
        return write_config(
            workdir / d / "annexa.toml",
            db_url,
            connectors=[
                paced(f"every {period}s", name=name, records=10, delay=0.2),
            ],
            daemon={"jitter": 0.2, "heartbeat": 1, "lease": LONG_LEASE},
        )

    engine = make_engine(db_url)
    replicas = [DaemonProcess(config(n), plugin, name=n) for n in ("a", "b")]
    try:
        for d in replicas:
            d.wait_ready(START_TIMEOUT)

        def mid_run() -> tuple[DaemonProcess, DaemonProcess, str] | None:
            for victim, survivor in (replicas, replicas[::-1]):
                run_id = running_on(engine, victim.proc.pid)
                if run_id:
                    time.sleep(random.uniform(0.1, 0.6))  # somewhere inside the run
                    if running_on(engine, victim.proc.pid) == run_id:
                        return victim, survivor, run_id
            return None

        victim, survivor, orphan = wait_for(mid_run, 60, "a replica in a run", interval=0.1)
        with engine.connect() as conn:
            lease_until = conn.execute(
                select(schedules.c.lease_until).where(schedules.c.name == name)
            ).scalar()
        victim.proc.kill()
        killed_at = datetime.now(UTC)  # same host as the database: one clock
        victim.wait(10)

        def taken_over() -> Any:
            for c in _rows(engine, schedule_claims, schedule_claims.c.id):
                if c.claimed_at > killed_at and c.claimed_by.split(":")[1] == str(
                    survivor.proc.pid
                ):
                    return c
            return None

        # The victim's lease blocks every claim until it expires (LONG_LEASE): a claim
        # before that came from finding the victim's run lock free.
        take = wait_for(taken_over, 60, "the survivor's first claim after the kill", 0.1)
        assert take.claimed_at < lease_until, "taken over only after the lease expired"
        orphan_claim = next(
            c for c in _rows(engine, schedule_claims, schedule_claims.c.id) if c.run_id == orphan
        )
        if not (take.takeover and take.due_at == orphan_claim.due_at):
            # A later due time had come by then: it ran, and the lost one is on record.
            lost = [
                m
                for m in _rows(engine, schedule_missed, schedule_missed.c.id)
                if m.due_at == orphan_claim.due_at
            ]
            assert lost and orphan in lost[0].reason, "the lost due time is not on record"
        # The survivor carries on alone for two more due times.
        n = len(_rows(engine, schedule_claims, schedule_claims.c.id))
        wait_for(
            lambda: len(_rows(engine, schedule_claims, schedule_claims.c.id)) >= n + 2,
            60,
            "two more claims by the survivor",
            interval=0.2,
        )
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(30) == 0, survivor.logs()[-3000:]
        by_id = {r.id: r for r in _rows(engine, runs, runs.c.started_at)}
        assert by_id[orphan].status == "aborted"
        assert REAPED_PREFIX in json.loads(by_id[orphan].errors)[0]
        slots = check_every_slot_once(engine, name, period)
        check_sealed(engine)
        latency = (take.claimed_at - killed_at).total_seconds()
        return {"takeover_s": round(latency, 3), **slots}
    finally:
        for d in replicas:
            d.stop()
        engine.dispose()


def sigterm_at_claim_time(
    db_url: str, plugin: Path, workdir: Path, *, rounds: int = 2
) -> dict[str, Any]:
    """One replica on a 1-second schedule, SIGTERMed right at a due time (when it is
    claiming) ``rounds`` times over restarts: every run sealed each time."""
    cfg = write_config(
        workdir / "annexa.toml",
        db_url,
        connectors=[
            paced("every 1s", records=3, delay=0.05),
        ],
        daemon={"grace_period": 2},
    )
    engine = make_engine(db_url)
    handed_back = 0
    try:
        for i in range(rounds):
            d = DaemonProcess(cfg, plugin, name=f"t{i}")
            try:
                d.wait_ready(START_TIMEOUT)
                n = len(_rows(engine, schedule_claims, schedule_claims.c.id))
                wait_for(
                    lambda n=n: len(_rows(engine, schedule_claims, schedule_claims.c.id)) > n,
                    30,
                    "a claim",
                )
                # Aim at the next due time (the claim happens right after it).
                now = time.time()
                time.sleep((1 - now % 1) + random.uniform(0.0, 0.06))
                d.signal(signal.SIGTERM)
                assert d.wait(30) == 0, d.logs()[-3000:]
                handed_back += d.logs().count("claim handed back unstarted")
            finally:
                d.stop()
            check_sealed(engine)
        claims = _rows(engine, schedule_claims, schedule_claims.c.id)
        run_ids = {r.id for r in _rows(engine, runs, runs.c.started_at)}
        # A claim either has a sealed run or was handed back before a run existed.
        for c in claims:
            assert c.run_id in run_ids or c.status == "not_started", c
        return {"rounds": rounds, "claims": len(claims), "handed_back": handed_back}
    finally:
        engine.dispose()


Scenario = Callable[[str, Path, Path], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {
    "takeover": takeover_after_sigkill,
    "sigterm": sigterm_at_claim_time,
}
