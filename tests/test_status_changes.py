"""The findings in force counted as changes per instant (store.status_changes): what the
seal adds equals a rebuild from the history, the sum by any instant equals the findings
in force then (the walk), a run sealed late rebuilds it, and a table behind the runs is
not used. On SQLite and PostgreSQL, through the real writer and run engine.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from core.records import Coverage, Finding
from mappings.loader import MappingIndex
from store import status_changes
from store.queries import findings_at
from store.status import control_statuses
from store.timelines import control_timelines
from store.writer import RunWriter
from tests.fakes import index
from tests.test_status_current import varied_history

__all__ = ["index"]  # a fixture, imported for the tests below

pytestmark = pytest.mark.clock


def _table(engine: Engine) -> Counter:
    """Every change, summed per (instant, group): how the rows are split is free."""
    out: Counter = Counter()
    with engine.connect() as conn:
        for row in conn.execute(text(
            "SELECT at, source, check_id, scope, region, service, controls, status, n"
            " FROM finding_status_changes"
        )):
            out[tuple(row[:8])] += row[8]
    return +out


def _walked(engine: Engine, at: datetime) -> Counter:
    """The findings in force at ``at`` by the history walk, counted per group."""
    out: Counter = Counter()
    with engine.connect() as conn:
        for f in findings_at(conn, at):
            if f["status"] is not None:
                key = (f["source"], f["check_id"], f["scope"], f["region"], f["service"],
                       tuple(f["controls"]), f["status"])
                out[key] += 1
    return out


def _totals(engine: Engine, at: datetime) -> Counter:
    """``totals`` at ``at``; asserts its two ways (the changes by ``at``, and the findings
    in force now less the changes after) agree."""
    from store.schema import ControlsTexts

    parse = ControlsTexts(tuple)
    with engine.connect() as conn:
        ways = [
            status_changes.totals(conn, at),
            status_changes._read(conn, status_changes.finding_status_changes.c.at <= at,
                                 by_instant=False),
            status_changes._from_now(conn, at),
        ]
        counted = [Counter({(*row[:5], parse[row[5]], row[6]): row[7] for row in way})
                   for way in ways]
    assert counted[0] == counted[1] == counted[2], at
    return counted[0]


def test_seal_maintained_changes_equal_a_rebuild_and_sum_to_the_walk(
    engine: Engine, index: MappingIndex
) -> None:
    instants = [datetime.now(UTC), *varied_history(engine, index), datetime.now(UTC)]
    with engine.connect() as conn:
        assert status_changes.trusted(conn)
    maintained = _table(engine)
    assert maintained, "the seals should have written changes"
    for at in instants:
        assert _totals(engine, at) == _walked(engine, at), at
    with engine.begin() as conn:
        status_changes.rebuild(conn)
    assert _table(engine) == maintained


def _finding(status: str, observed: datetime, controls: tuple[str, ...]) -> Finding:
    return Finding("fake.disk.encrypted", "acct", "eu-1", "fake.disk.volume", "k1", status,
                   "high", f"k1 {status}", observed_at=observed, controls=controls)


def _writer(engine: Engine, index: MappingIndex) -> RunWriter:
    w = RunWriter(engine, source="direct", connector_type="t", config_digest="c" * 64,
                  mapping_digest=index.digest, agent_version="test")
    w.start()
    return w


def test_a_run_sealed_after_a_newer_version_of_its_key_rebuilds_the_changes(
    engine: Engine, index: MappingIndex
) -> None:
    """Run A reads k1 failing; run B, started later, reads it passing and seals first;
    then A seals (crash recovery does this). A's failure was replaced by B's pass: the
    changes must say so, not count both."""
    t0 = datetime.now(UTC)
    a = _writer(engine, index)
    a.add_finding(_finding("fail", t0, ("A.8.24",)))
    b = _writer(engine, index)
    b.add_finding(_finding("pass", t0 + timedelta(seconds=1), ("A.8.24",)))
    b.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
    b.finish("succeeded")
    a.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
    a.finish("succeeded")
    with engine.connect() as conn:
        assert status_changes.trusted(conn)
    after = t0 + timedelta(seconds=2)
    assert _totals(engine, after) == _walked(engine, after)
    assert _totals(engine, t0) == _walked(engine, t0)
    tl = control_timelines(engine, index, t0 - timedelta(seconds=1), after,
                           controls=["A.8.24"])["A.8.24"]
    for t in (t0, t0 + timedelta(microseconds=500_000), after):
        walked = {c.id: c.status for c in control_statuses(engine, index, t,
                                                            materialised=False)}
        assert tl.status_at(t) == walked["A.8.24"], t
    assert tl.status_at(t0) == "fail"
    maintained = _table(engine)
    with engine.begin() as conn:
        status_changes.rebuild(conn)
    assert _table(engine) == maintained


def test_changes_behind_the_runs_are_not_used_and_the_next_seal_rebuilds_them(
    engine: Engine, index: MappingIndex
) -> None:
    t0 = datetime.now(UTC)
    w = _writer(engine, index)
    w.add_finding(_finding("fail", t0, ("A.8.24",)))
    w.finish("succeeded")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM finding_status_changes"))
        conn.execute(text(
            "UPDATE finding_status_changes_state SET runs_applied = runs_applied - 1"))
    with engine.connect() as conn:
        assert not status_changes.trusted(conn)
    # The timeline reads the versions: the failure is still there.
    tl = control_timelines(engine, index, t0 - timedelta(seconds=1), t0 + timedelta(seconds=1),
                           controls=["A.8.24"])["A.8.24"]
    assert tl.status_at(t0) == "fail"
    w = _writer(engine, index)
    w.add_finding(_finding("pass", t0 + timedelta(seconds=1), ("A.8.24",)))
    w.finish("succeeded")
    with engine.connect() as conn:
        assert status_changes.trusted(conn)
    at = t0 + timedelta(seconds=2)
    assert _totals(engine, at) == _walked(engine, at) != Counter()
    assert _totals(engine, t0) == _walked(engine, t0) != Counter()
