"""The timeline replay's starting state from the findings in force (store.current,
store.snapshots) and its fast path for re-observations give the statuses of
``control_statuses`` by the history walk at every instant, on SQLite and PostgreSQL.

The history exercises every input of the replay: failures that pass later, a
tombstone, ``not_applicable`` and ``error`` findings of another source, evidence read
from an inventory snapshot (its as-of caps the confirmation), an exception before and
after its expiry, and the freshness window passing after the last run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from mappings.loader import MappingIndex
from store.exceptions import ExceptionRule
from store.queries import findings_at
from store.snapshots import in_force
from store.status import control_statuses
from store.timelines import _as_of_by_id, _starting_findings, control_timelines
from tests.fakes import index
from tests.test_status_current import _collect, _direct, _snapshot

__all__ = ["index"]  # a fixture, imported for the tests below

pytestmark = pytest.mark.clock


def _history(engine: Engine, index: MappingIndex) -> list[datetime]:
    """A varied history; the instants between its runs."""
    instants = [datetime.now(UTC)]
    old = datetime.now(UTC) - timedelta(days=10)
    _collect(engine, index, {"d1": False, "d2": True}, {"alice": True})
    instants.append(datetime.now(UTC))
    _collect(engine, index, {"d1": True}, {"alice": True, "bob": False})  # d2: tombstone
    instants.append(datetime.now(UTC))
    _direct(engine, index, "not_applicable")
    _direct(engine, index, "fail")
    instants.append(datetime.now(UTC))
    _snapshot(engine, index, {"d1": True, "d3": False}, {"alice": False}, old,
              direct=("alice",))
    instants.append(datetime.now(UTC))
    _direct(engine, index, "pass")
    _collect(engine, index, {"d1": False, "d2": True}, {"alice": True, "bob": True})
    _collect(engine, index, {"d1": False, "d2": True}, {"alice": True, "bob": True})
    instants.append(datetime.now(UTC))
    _direct(engine, index, "error")
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


def test_timelines_equal_the_walk_at_every_instant(engine: Engine, index: MappingIndex) -> None:
    instants = _history(engine, index)
    end = datetime.now(UTC) + timedelta(days=12)  # the freshness window passes
    rule = ExceptionRule(id="x5", check="fake.disk.encrypted", resource="d*",
                         reason="accepted", approved_by="ciso",
                         expires=instants[3] + (instants[4] - instants[3]) / 2)
    for rules in ([], [rule]):
        for start in (instants[0], instants[2], instants[4], instants[-1]):
            every = control_timelines(engine, index, start, end, exceptions=rules)
            one = control_timelines(engine, index, start, end, exceptions=rules,
                                    controls=["A.8.24", "A.8.5"])
            changes = {t for tl in every.values() for t, _ in tl.changes}
            probes = sorted({start, end, *changes, *(t + timedelta(microseconds=1)
                                                     for t in changes if t < end),
                             *(t for t in instants if start <= t <= end)})
            for t in probes:
                walked = {c.id: c.status for c in control_statuses(
                    engine, index, t, exceptions=rules, materialised=False)}
                assert {cid: tl.status_at(t) for cid, tl in every.items()} == walked, t
                assert {cid: tl.status_at(t) for cid, tl in one.items()} == {
                    cid: walked[cid] for cid in one}, t
