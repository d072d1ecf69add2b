"""The timeline replay gives the statuses of ``control_statuses`` by the history walk at
every instant, on SQLite and PostgreSQL, by both of its paths: from the counts of
findings per instant (store.status_changes), and from the finding versions (the starting
state from the findings in force, store.current and store.snapshots, and the period's
versions aggregated in SQL).

Two histories: ``varied_history`` (every input of a status: failures that pass later, a
tombstone, ``not_applicable`` and ``error`` findings of another source, a 10-day-old
inventory snapshot then one direct read), with an exception before and after its expiry
and the freshness window passing after the last run; and one where a fresher inventory
snapshot writes no new version (only the unit's as-of moves), then a staler one. Before
the sweep, the replay confirmed a whole unit by one finding's observation, so both gave
a wrong ``stale``/``pass`` here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from mappings.loader import MappingIndex
from store import status_changes
from store.exceptions import ExceptionRule
from store.queries import findings_at
from store.snapshots import in_force
from store.status import control_statuses
from store.timelines import _as_of_by_id, _starting_findings, control_timelines
from tests.fakes import index
from tests.test_status_current import _snapshot, varied_history

__all__ = ["index"]  # a fixture, imported for the tests below

pytestmark = pytest.mark.clock


def _history(engine: Engine, index: MappingIndex) -> list[datetime]:
    return [datetime.now(UTC), *varied_history(engine, index), datetime.now(UTC)]


def _inventory_history(engine: Engine, index: MappingIndex) -> list[datetime]:
    """Evidence from inventory snapshots: 10 days old (stale), then a fresher one of the
    same content (no new version: the unit's as-of confirms it), then an older one again
    (the latest read confirms only its snapshot)."""
    instants = [datetime.now(UTC)]
    old = datetime.now(UTC) - timedelta(days=10)
    disks, users = {"d1": True, "d2": True}, {"alice": True, "bob": True}
    _snapshot(engine, index, disks, {"alice": True, "bob": False}, old, direct=("bob",))
    instants.append(datetime.now(UTC))
    _snapshot(engine, index, disks, users, old, direct=("bob",))
    instants.append(datetime.now(UTC))
    _snapshot(engine, index, disks, users, datetime.now(UTC) - timedelta(days=2),
              direct=("bob",))
    instants.append(datetime.now(UTC))
    _snapshot(engine, index, disks, users, datetime.now(UTC) - timedelta(days=5),
              direct=("bob",))
    instants.append(datetime.now(UTC))
    return instants


def _previous_start(conn, at: datetime) -> dict:
    """The starting state as the replay read it before: the full rows of
    ``findings_at`` and the as-of of their evidence probed by id."""
    rows = list(findings_at(conn, at))
    as_of = _as_of_by_id(conn, [f["id"] for f in rows])
    out = {}
    for f in rows:
        seen, cap = f["observed_at"], as_of.get(f["id"])
        out[(f["source"], f["key"])] = (
            f["check_id"], f["scope"], f["region"], f["service"], f["resource_id"],
            f["status"], tuple(f["controls"]), cap if cap is not None and cap < seen else seen,
        )
    return out


def test_starting_state_from_the_findings_in_force_equals_the_previous_read(
    engine: Engine, index: MappingIndex
) -> None:
    instants = _history(engine, index)
    answered = 0
    with engine.connect() as conn:
        for at in [*instants, datetime.now(UTC) + timedelta(days=3)]:
            answered += in_force(conn, at) is not None
            new = {
                (f["source"], f["key"]): (
                    f["check_id"], f["scope"], f["region"], f["service"], f["resource_id"],
                    f["status"], tuple(f["controls"]), f["observed_at"],
                )
                for f in _starting_findings(conn, at, None, ())
            }
            assert new == _previous_start(conn, at), at
    assert answered >= 2, "the findings in force should answer some instants"


@contextmanager
def _versions_only(engine: Engine) -> Iterator[None]:
    """The counts per instant (store.status_changes) made untrusted for a while."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE finding_status_changes_state SET runs_applied = -1"))
        assert not status_changes.trusted(conn)
    try:
        yield
    finally:
        with engine.begin() as conn:
            status_changes.rebuild(conn)


def _assert_equal_to_the_walk(engine: Engine, index: MappingIndex, instants: list[datetime],
                              rules: list[ExceptionRule]) -> int:
    """Every control's timeline, and two controls' alone, from several starts to 12 days
    after the last run (the freshness window passes), equal the walk at every change,
    just after it and at every instant; returns how many instants were compared."""
    end = instants[-1] + timedelta(days=12)
    compared = 0
    for start in (instants[0], instants[2], instants[-2], instants[-1]):
        every = control_timelines(engine, index, start, end, exceptions=rules)
        one = control_timelines(engine, index, start, end, exceptions=rules,
                                controls=["A.8.24", "A.8.5"])
        with _versions_only(engine):  # the path without the counts gives the same
            assert control_timelines(engine, index, start, end, exceptions=rules) == every
            assert control_timelines(engine, index, start, end, exceptions=rules,
                                     controls=["A.8.24", "A.8.5"]) == one
        changes = {t for tl in every.values() for t, _ in tl.changes}
        probes = sorted({start, end, *changes,
                         *(t + timedelta(microseconds=1) for t in changes if t < end),
                         *(t - timedelta(microseconds=1) for t in changes if t > start),
                         *(t for t in instants if start <= t <= end),
                         *(start + timedelta(days=d) for d in range(13)
                           if start + timedelta(days=d) <= end)})
        for t in probes:
            walked = {c.id: c.status for c in control_statuses(
                engine, index, t, exceptions=rules, materialised=False)}
            assert {cid: tl.status_at(t) for cid, tl in every.items()} == walked, t
            assert {cid: tl.status_at(t) for cid, tl in one.items()} == {
                cid: walked[cid] for cid in one}, t
            compared += 1
    return compared


def test_timelines_equal_the_walk_at_every_instant(engine: Engine, index: MappingIndex) -> None:
    instants = _history(engine, index)
    rule = ExceptionRule(id="x5", check="fake.disk.encrypted", resource="d*",
                         reason="accepted", approved_by="ciso",
                         expires=instants[3] + (instants[4] - instants[3]) / 2)
    for rules in ([], [rule]):
        assert _assert_equal_to_the_walk(engine, index, instants, rules) > 40


def test_timelines_equal_the_walk_over_fresher_and_staler_inventory_snapshots(
    engine: Engine, index: MappingIndex
) -> None:
    instants = _inventory_history(engine, index)
    assert _assert_equal_to_the_walk(engine, index, instants, []) > 40
    # The case the replay got wrong: days after the fresher snapshot, A.8.5's passes
    # are confirmed by the unit's as-of, then stale once it leaves the window.
    tl = control_timelines(engine, index, instants[0], instants[-1] + timedelta(days=12),
                           controls=["A.8.5"])["A.8.5"]
    assert "stale" in [s for _, s in tl.changes]
