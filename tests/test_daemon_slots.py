"""Missed due times, the catch-up policy and run locks, on SQLite and PostgreSQL.

Due times are built relative to the database's own ``now`` (the clock claims are judged
by): a schedule made due hours ago has exactly the slots of the grid since then overdue,
whatever the time of day.
"""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from collector.daemon.schedule import ScheduleSpec
from store.leases import (
    MAX_MISSED_ROWS,
    claim,
    claims_held_elsewhere,
    ensure_schedule,
    expire_lease,
    release,
)
from store.runlocks import RunLocks
from store.schema_daemon import schedule_claims, schedule_missed, schedules
from tests.conftest import SKIP_PG

HOURLY = ScheduleSpec.parse("every 1h")


def _due_hours_ago(hours: float):
    return lambda now, _last: now - timedelta(hours=hours)


def _missed(engine: Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(schedule_missed).order_by(schedule_missed.c.due_at)).all()


def _claims(engine: Engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(schedule_claims)).all()


def test_catch_up_latest_runs_the_latest_slot_and_records_each_earlier_one(
    engine: Engine,
) -> None:
    first = ensure_schedule(engine, "job", HOURLY.text, _due_hours_ago(5))
    c = claim(engine, "job", "A", "run-a", lease=30, next_due=HOURLY.next_after)
    assert c is not None and c.run and not c.takeover
    # Due 5 h ago: that due time and the 4 grid slots after it were missed, the 5th
    # (the latest at or before now) runs.
    assert len(c.missed) == 5 and c.missed[0] == first
    assert c.due_at == HOURLY.previous_due(c.claimed_at)
    assert c.due_at > c.missed[-1] and c.next_due == HOURLY.next_after(c.claimed_at)
    rows = _missed(engine)
    assert [r.due_at for r in rows] == list(c.missed)
    assert {r.recorded_by for r in rows} == {"A"}
    assert all("superseded by the later due time" in r.reason for r in rows)
    claims = _claims(engine)
    assert [(k.due_at, k.run_id) for k in claims] == [(c.due_at, "run-a")]
    # Every due time since is either claimed or missed, once.
    assert not set(r.due_at for r in rows) & {k.due_at for k in claims}
    assert release(engine, "job", "A", "run-a", "succeeded")
    assert claim(engine, "job", "B", "run-b", lease=30, next_due=HOURLY.next_after) is None
    assert len(_missed(engine)) == 5


def test_a_claim_one_slot_late_misses_nothing(engine: Engine) -> None:
    ensure_schedule(engine, "job", HOURLY.text, lambda now, _l: now - timedelta(seconds=1))
    c = claim(engine, "job", "A", "run-a", lease=30, next_due=HOURLY.next_after)
    assert c is not None and c.run and c.missed == ()
    assert _missed(engine) == []


def test_catch_up_none_records_every_overdue_slot_and_runs_nothing(engine: Engine) -> None:
    ensure_schedule(engine, "job", HOURLY.text, _due_hours_ago(3))
    c = claim(engine, "job", "A", "run-a", lease=30, next_due=HOURLY.next_after, catch_up="none")
    assert c is not None and not c.run
    assert len(c.missed) == 4  # the one due 3 h ago and the 3 grid slots since
    assert all("catch_up = none" in r.reason for r in _missed(engine))
    assert _claims(engine) == []
    with engine.connect() as conn:
        row = conn.execute(select(schedules)).one()
    assert row.claimed_by is None and row.lease_until is None
    assert row.next_due == HOURLY.next_after(c.claimed_at)
    # Not due again before the next slot, and nothing recorded twice.
    assert claim(engine, "job", "B", "run-b", lease=30, next_due=HOURLY.next_after) is None
    assert len(_missed(engine)) == 4


def test_a_bad_catch_up_policy_is_refused(engine: Engine) -> None:
    ensure_schedule(engine, "job", HOURLY.text, _due_hours_ago(1))
    with pytest.raises(ValueError, match="catch_up"):
        claim(engine, "job", "A", "r", lease=30, next_due=HOURLY.next_after, catch_up="all")


def test_missed_rows_are_capped_and_the_gap_is_named(engine: Engine) -> None:
    secondly = ScheduleSpec.parse("every 1s")
    ensure_schedule(engine, "job", secondly.text, lambda now, _l: now - timedelta(seconds=3000))
    c = claim(engine, "job", "A", "run-a", lease=30, next_due=secondly.next_after)
    assert c is not None and c.run
    rows = _missed(engine)
    assert len(rows) == MAX_MISSED_ROWS + 1 == len(c.missed)
    assert "not listed one by one" in rows[-1].reason
    assert c.due_at == secondly.previous_due(c.claimed_at)


def test_a_takeover_records_nothing_missed(engine: Engine) -> None:
    ensure_schedule(engine, "job", HOURLY.text, _due_hours_ago(2))
    a = claim(engine, "job", "A", "run-a", lease=30, next_due=HOURLY.next_after)
    assert a is not None and len(a.missed) == 2
    held = claims_held_elsewhere(engine, "B")
    assert [(h.name, h.claimed_by, h.run_id) for h in held] == [("job", "A", "run-a")]
    assert claims_held_elsewhere(engine, "A") == []
    assert expire_lease(engine, held[0])
    assert not expire_lease(engine, held[0])  # already ended
    b = claim(engine, "job", "B", "run-b", lease=30, next_due=HOURLY.next_after)
    assert b is not None and b.takeover and b.due_at == a.due_at and b.missed == ()
    assert len(_missed(engine)) == 2


@pytest.mark.skipif(SKIP_PG, reason="ANNEXA_TEST_SKIP_POSTGRES=1")
def test_a_run_lock_is_free_once_its_holders_session_ends(postgres_url: str) -> None:
    a, b = RunLocks(postgres_url), RunLocks(postgres_url)
    try:
        assert a.enabled and b.enabled
        assert a.acquire("job") and a.acquire("job")  # re-entrant in one replica
        assert not b.acquire("job")
        assert not b.holder_gone("job")
        assert b.holder_gone("other")
        assert not a.holder_gone("job")  # never reported for a lock one holds
        # The holder's session dies (as when its process is SIGKILLed).
        assert a._conn is not None
        pid = a._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with psycopg.connect(_plain(postgres_url), autocommit=True) as admin:
            # With a timeout, PostgreSQL waits until the backend has exited, its locks
            # released (without one it only signals it: a check just after raced the
            # exit and saw the lock still held, once in a full CI run).
            gone = admin.execute("SELECT pg_terminate_backend(%s, 60000)", (pid,)).fetchone()
            assert gone == (True,)
        assert b.holder_gone("job")
        # The survivor of a lost session takes its locks back at the next check.
        a.check()
        a.check()
        assert not b.holder_gone("job")
        a.release("job")
        assert b.acquire("job")
    finally:
        a.close()
        b.close()


def test_run_locks_are_a_no_op_on_sqlite(tmp_path) -> None:
    locks = RunLocks(f"sqlite:///{tmp_path / 'a.db'}")
    assert not locks.enabled
    assert locks.acquire("job") and not locks.holder_gone("job")
    locks.release("job")
    locks.close()


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_a_lost_claim_not_taken_over_before_the_next_due_time_is_recorded_missed(
    engine: Engine,
) -> None:
    secondly = ScheduleSpec.parse("every 1s")
    ensure_schedule(engine, "job", secondly.text, lambda now, _l: now)
    a = claim(engine, "job", "A", "run-a", lease=0.2, next_due=secondly.next_after)
    assert a is not None
    time.sleep(1.3)  # A "died": its lease ran out, and its next due time has come
    b = claim(engine, "job", "B", "run-b", lease=30, next_due=secondly.next_after)
    assert b is not None and not b.takeover and b.due_at > a.due_at
    lost = [m for m in _missed(engine) if m.due_at == a.due_at]
    assert len(lost) == 1 and "run-a on A was lost" in lost[0].reason
