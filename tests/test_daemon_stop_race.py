"""The shutdown race of issue 12, made deterministic: stop is requested while a claim
is in flight (after the "accepting" check, before the claim commits). The claim must be
handed back unstarted — no run row, nothing unsealed — and the due time retaken later.

The stop is triggered from a SQLAlchemy ``before_cursor_execute`` hook on the real
engine when the claim's ``UPDATE schedules`` is sent: no product function is replaced.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, event, select

from collector.daemon import Daemon
from store.integrity import verify
from store.schema import runs
from store.schema_daemon import schedule_claims, schedules
from tests.daemon_fixtures import paced_settings, wait_for
from tests.fakes import fake_index


def test_stop_requested_during_a_claim_hands_the_claim_back_unstarted(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    index = fake_index(tmp_path / "maps")
    settings = paced_settings(db_url, tmp_path / "spool", schedule="every 1h")
    daemon = Daemon(settings, index, engine, replica_id="replica-1")
    stopped = threading.Event()
    stopper: list[threading.Thread] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE SCHEDULES") and not stopper:
            if "claimed_due" in statement and threading.current_thread().name.startswith(
                "annexa-run"
            ):
                # Stop now, while this claim is in flight; wait until no new claim may
                # start (shutdown has taken the lock and cleared "accepting").
                t = threading.Thread(target=daemon.shutdown)
                stopper.append(t)
                t.start()
                wait_for(lambda: not daemon._accepting, 10, "stop to be requested")
                stopped.set()

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        daemon.start()  # the first collection is overdue: claimed at once
        wait_for(lambda: stopped.is_set(), 30, "a claim in flight during stop")
        stopper[0].join(30)
        assert not stopper[0].is_alive()
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    with engine.connect() as conn:
        claims = conn.execute(select(schedule_claims)).all()
        all_runs = conn.execute(select(runs)).all()
        row = conn.execute(select(schedules)).one()
    # The claim was won, then handed back: no run started, the due time stays claimable.
    assert [(c.claimed_by, c.status) for c in claims] == [("replica-1", "not_started")]
    assert all_runs == []
    # Released for a retake: the claim is kept, its lease already ended.
    assert row.claimed_by == "replica-1" and row.lease_until <= claims[0].finished_at
    result = verify(engine)
    assert result.ok and result.unsealed == []
