"""Claims, leases, the reaper and control-state de-duplication, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from collector.daemon.schedule import ScheduleSpec
from core.records import Evidence
from store.integrity import verify
from store.leases import (
    REAPED_PREFIX,
    claim,
    control_changes,
    due_names,
    ensure_schedule,
    reap_stale,
    release,
    renew,
    touch_run,
)
from store.schema import runs
from store.schema_daemon import schedule_claims, schedules
from tests.fakes import plain_writer

SPEC = ScheduleSpec.parse("every 1h")


def due_now(now: datetime, _last: datetime | None) -> datetime:
    return now


def _claim(engine: Engine, me: str, run_id: str, lease: float = 30.0):
    return claim(engine, "job", me, run_id, lease=lease, next_due=SPEC.next_after)


def test_of_many_racing_replicas_exactly_one_wins_the_claim(engine: Engine) -> None:
    ensure_schedule(engine, "job", SPEC.text, due_now)
    barrier = threading.Barrier(8)
    won: list[str] = []

    def racer(i: int) -> None:
        barrier.wait()
        if _claim(engine, f"replica-{i}", f"run-{i}") is not None:
            won.append(f"replica-{i}")

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(won) == 1
    with engine.connect() as conn:
        row = conn.execute(select(schedules)).mappings().one()
        claims = conn.execute(select(schedule_claims)).mappings().all()
    assert row["claimed_by"] == won[0]
    assert row["next_due"] > row["claimed_at"]
    assert [(c["claimed_by"], c["takeover"]) for c in claims] == [(won[0], False)]
    # Not due any more: nobody else gets it, even once released.
    assert release(engine, "job", won[0], row["run_id"], "succeeded")
    assert _claim(engine, "late", "run-late") is None
    assert due_names(engine, ["job"]) == []


def test_an_expired_lease_is_taken_over_for_the_same_due_time(engine: Engine) -> None:
    ensure_schedule(engine, "job", SPEC.text, due_now)
    a = _claim(engine, "A", "run-a", lease=0.3)
    assert a is not None and not a.takeover
    assert _claim(engine, "B", "run-b1") is None  # lease live, not due
    assert renew(engine, "job", "A", "run-a", lease=0.3)
    time.sleep(0.45)  # A "died": no more renewals
    assert due_names(engine, ["job"]) == ["job"]
    b = _claim(engine, "B", "run-b2", lease=30)
    assert b is not None and b.takeover and b.due_at == a.due_at
    assert b.next_due == a.next_due  # the grid is not moved by a takeover
    assert not renew(engine, "job", "A", "run-a", lease=0.3)  # A's lease is gone
    assert release(engine, "job", "B", "run-b2", "succeeded")
    assert _claim(engine, "C", "run-c") is None


def test_a_run_cancelled_at_shutdown_is_retaken_at_once(engine: Engine) -> None:
    ensure_schedule(engine, "job", SPEC.text, due_now)
    assert _claim(engine, "A", "run-a") is not None
    assert release(engine, "job", "A", "run-a", "aborted", retake=True)
    b = _claim(engine, "B", "run-b")
    assert b is not None and b.takeover
    with engine.connect() as conn:
        q = select(schedule_claims.c.run_id, schedule_claims.c.status)
        statuses = {r.run_id: r.status for r in conn.execute(q)}
    assert statuses == {"run-a": "aborted", "run-b": None}


def test_takeovers_stop_after_the_limit(engine: Engine) -> None:
    ensure_schedule(engine, "job", SPEC.text, due_now)
    assert _claim(engine, "A", "r0", lease=0.01) is not None
    for i in range(3):
        time.sleep(0.03)
        c = claim(engine, "job", f"R{i}", f"r{i + 1}", lease=0.01, next_due=SPEC.next_after)
        assert c is not None and c.takeover, i
    time.sleep(0.03)
    assert claim(engine, "job", "R9", "r9", lease=0.01, next_due=SPEC.next_after) is None


def test_a_changed_spec_is_followed_and_an_old_collection_is_overdue(engine: Engine) -> None:
    every_5s = ScheduleSpec.parse("every 5s")
    due = ensure_schedule(engine, "job", SPEC.text, lambda now, last: SPEC.next_after(now))
    changed = ensure_schedule(
        engine, "job", every_5s.text, lambda now, last: every_5s.next_after(now)
    )
    assert changed <= due and changed - datetime.now(changed.tzinfo) <= timedelta(seconds=5)


def _orphan(engine: Engine, source: str = "src") -> str:
    """A run whose agent died after committing one batch (never finished)."""
    w = plain_writer(engine, source)
    run_id = w.start()
    w.add_evidence(Evidence("acct", "eu-1", "fake.disk.volume", "d1", {"id": "d1"}))
    w.flush()
    w.close()
    return run_id


def _finished(engine: Engine, source: str = "src") -> str:
    w = plain_writer(engine, source)
    w.start()
    w.add_evidence(Evidence("acct", "eu-1", "fake.disk.volume", "d2", {"id": "d2"}))
    return w.finish("succeeded").run_id


def test_the_reaper_seals_stale_runs_as_aborted_and_verify_still_passes(engine: Engine) -> None:
    _finished(engine)
    orphan = _orphan(engine)
    fresh = _orphan(engine, source="other")
    time.sleep(0.35)
    with engine.begin() as conn:  # the "other" run's agent is alive: it heartbeats
        touch_run(conn, fresh)
    # Not started by a daemon (like `annexa collect`): only heartbeats when it flushes,
    # so the reaper gives it far longer than a daemon's run.
    assert reap_stale(engine, stale_after=0.3, me="reaper") == []
    sealed = reap_stale(engine, stale_after=0.3, me="reaper", unscheduled_stale_after=0.3)
    assert [r.id for r in sealed] == [orphan]
    again = reap_stale(engine, stale_after=0.3, me="reaper-2", unscheduled_stale_after=0.3)
    assert again == []  # exactly once
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(runs))}
    assert rows[orphan].status == "aborted" and rows[orphan].digest
    assert REAPED_PREFIX in json.loads(rows[orphan].errors)[0]
    assert json.loads(rows[orphan].counts)["evidence_written"] == 1
    assert rows[fresh].status == "running"
    # The chain continues after a reaped run.
    _finished(engine)
    result = verify(engine, allow_running=timedelta(minutes=5))
    assert result.ok, result.problems
    assert result.unsealed == [fresh] and result.in_progress == [fresh]
    # Strict (the default): rows no digest covers yet are named, even of a live run.
    strict = verify(engine)
    assert [p.run_id for p in strict.problems] == [fresh]


def test_a_run_under_another_replicas_live_lease_is_not_reaped(engine: Engine) -> None:
    ensure_schedule(engine, "src", SPEC.text, due_now)
    orphan = _orphan(engine)
    assert claim(engine, "src", "A", orphan, lease=30, next_due=SPEC.next_after)
    time.sleep(0.25)
    assert reap_stale(engine, stale_after=0.2, me="B") == []
    assert [r.id for r in reap_stale(engine, stale_after=0.2, me="A")] == [orphan]


def test_each_control_change_is_won_by_exactly_one_evaluator(engine: Engine) -> None:
    assert control_changes(engine, {"A.8.5": "no_evidence", "A.8.24": "pass"}) == []  # baseline
    assert control_changes(engine, {"A.8.5": "no_evidence", "A.8.24": "pass"}) == []
    results: list[list] = []
    barrier = threading.Barrier(4)

    def evaluate() -> None:
        barrier.wait()
        results.append(control_changes(engine, {"A.8.5": "fail", "A.8.24": "pass"}))

    threads = [threading.Thread(target=evaluate) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    won = [c for r in results for c in r]
    assert [(c.control, c.old, c.new) for c in won] == [("A.8.5", "no_evidence", "fail")]
    back = control_changes(engine, {"A.8.5": "pass", "A.8.24": "stale"})
    assert {(c.control, c.old, c.new) for c in back} == {
        ("A.8.5", "fail", "pass"),
        ("A.8.24", "pass", "stale"),
    }
