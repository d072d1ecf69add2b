"""The materialised findings in force (store.current) give exactly the walk's statuses.

Every comparison computes ``control_statuses`` twice at the same instant — once from
``findings_in_force`` (asserted to be the path taken) and once by walking the history —
over histories that exercise each input: a failure that passes later, a resource that
disappears (tombstone), ``not_applicable`` findings, exceptions before and after their
expiry, stale windows, and documents recorded after the last run. Runs go through the
real engine (``run_connector``) and the real writer; nothing is stubbed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from collector.runner import run_connector
from core.records import Coverage, Evidence, Finding
from mappings.loader import MappingIndex
from store.current import rebuild, trusted
from store.exceptions import ExceptionRule
from store.manual import add_manual_evidence
from store.status import control_statuses
from store.writer import RunWriter
from tests.fakes import FakeConnector, estate, fake_settings, index

__all__ = ["index"]  # a fixture, imported for the tests below

pytestmark = pytest.mark.clock


def _collect(engine: Engine, index: MappingIndex, disks: dict, users: dict) -> None:
    FakeConnector.script = estate(disks, users)
    settings = fake_settings("x")
    run_connector(settings, settings.connectors[0], engine, index)


def _direct(engine: Engine, index: MappingIndex, status: str) -> None:
    """A run of another source, written by the writer: a finding of any status."""
    w = RunWriter(engine, source="direct", connector_type="t", config_digest="c" * 64,
                  mapping_digest=index.digest, agent_version="test")
    w.start()
    eh = w.add_evidence(Evidence("acct", "eu-1", "fake.disk.volume", "na1", {"id": "na1"}))
    w.add_finding(Finding("fake.disk.encrypted", "acct", "eu-1", "fake.disk.volume", "na1",
                          status, "high", f"na1 {status}", evidence_hash=eh,
                          controls=("A.8.24",)))
    w.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
    w.finish("succeeded")


def _same(engine: Engine, index: MappingIndex, at: datetime, **kw) -> list[dict]:
    """Both paths at ``at``; asserts the materialised one was taken and agrees."""
    with engine.connect() as conn:
        assert trusted(conn, at), "the materialised table should answer here"
    fast = [c.as_dict() for c in control_statuses(engine, index, at, **kw)]
    slow = [c.as_dict() for c in control_statuses(engine, index, at, materialised=False, **kw)]
    assert fast == slow
    return fast


def _by_id(statuses: list[dict], cid: str) -> dict:
    return next(c for c in statuses if c["control"] == cid)


def test_materialised_statuses_equal_the_walk_over_a_varied_history(
    engine: Engine, index: MappingIndex, tmp_path: Path
) -> None:
    _collect(engine, index, {"d1": False, "d2": True}, {"alice": True})
    now = datetime.now(UTC)
    assert _by_id(_same(engine, index, now), "A.8.24")["status"] == "fail"
    # fail -> pass, and d2 disappears from a clean read (a tombstone in force).
    _collect(engine, index, {"d1": True}, {"alice": True, "bob": False})
    now = datetime.now(UTC)
    st = _same(engine, index, now)
    assert _by_id(st, "A.8.24")["status"] == "undocumented"
    assert _by_id(st, "A.8.5")["status"] == "fail"
    # not_applicable alone does not hide a pass; a failing one of another source counts.
    _direct(engine, index, "not_applicable")
    _same(engine, index, datetime.now(UTC))
    _direct(engine, index, "fail")
    now = datetime.now(UTC)
    assert _by_id(_same(engine, index, now), "A.8.24")["status"] == "fail"
    # An exception covering that failure: excepted while active, failing after expiry.
    rule = ExceptionRule(id="x1", check="fake.disk.encrypted", resource="na1",
                         reason="accepted", approved_by="ciso", expires=now + timedelta(days=3))
    st = _same(engine, index, now, exceptions=[rule])
    assert _by_id(st, "A.8.24")["status"] == "excepted" or _by_id(st, "A.8.24")["counts"].get(
        "excepted")
    later = now + timedelta(days=5)
    st = _same(engine, index, later, exceptions=[rule])
    assert _by_id(st, "A.8.24")["status"] == "fail"
    # A document recorded after the last run, then the freshness window passing.
    _direct(engine, index, "pass")
    doc = tmp_path / "policy.pdf"
    doc.write_bytes(b"%PDF-1.4 cryptography policy\n")
    now = datetime.now(UTC)
    add_manual_evidence(engine, control="A.8.24", file=doc, mapping_digest=index.digest,
                        config_digest="c" * 64, agent_version="t", added_by="alice",
                        valid_from=now - timedelta(seconds=1), valid_until=now + timedelta(days=30))
    st = _same(engine, index, datetime.now(UTC))
    assert _by_id(st, "A.8.24")["document"] == "valid"
    stale = _same(engine, index, datetime.now(UTC) + timedelta(days=10))
    assert _by_id(stale, "A.8.24")["status"] == "stale"
    expired = _same(engine, index, datetime.now(UTC) + timedelta(days=40),
                    freshness=timedelta(days=365))
    assert _by_id(expired, "A.8.24")["document"] == "expired"


def test_a_table_behind_the_runs_is_not_used_and_the_next_seal_rebuilds_it(
    engine: Engine, index: MappingIndex
) -> None:
    _collect(engine, index, {"d1": False}, {"alice": True})
    # What a run sealed by a version without the table leaves: one run not applied.
    with engine.begin() as conn:
        conn.execute(text("UPDATE findings_in_force_state SET runs_applied = runs_applied - 1"))
        conn.execute(text("DELETE FROM findings_in_force"))
    now = datetime.now(UTC)
    with engine.connect() as conn:
        assert not trusted(conn, now)
    walked = [c.as_dict() for c in control_statuses(engine, index, now)]
    assert _by_id(walked, "A.8.24")["status"] == "fail"  # from the walk, not the empty table
    _collect(engine, index, {"d1": True}, {"alice": True})
    now = datetime.now(UTC)
    assert _by_id(_same(engine, index, now), "A.8.24")["status"] == "undocumented"


def test_a_past_instant_uses_the_walk_and_rebuild_reproduces_the_seal_maintained_table(
    engine: Engine, index: MappingIndex
) -> None:
    _collect(engine, index, {"d1": False, "d2": True}, {"alice": True})
    first = datetime.now(UTC)
    _collect(engine, index, {"d1": True}, {"alice": False})
    with engine.connect() as conn:
        assert not trusted(conn, first - timedelta(days=1))
        kept = sorted(tuple(r) for r in conn.execute(text("SELECT * FROM findings_in_force")))
    assert _by_id([c.as_dict() for c in control_statuses(engine, index, first)],
                  "A.8.24")["status"] == "fail"
    with engine.begin() as conn:
        rebuild(conn)
    with engine.connect() as conn:
        again = sorted(tuple(r) for r in conn.execute(text("SELECT * FROM findings_in_force")))
    assert again == kept and len(kept) == 3  # d1, d2 (tombstone), alice


def test_findings_at_now_from_the_table_equals_the_walk(
    engine: Engine, index: MappingIndex
) -> None:
    from store import current, queries

    assert current._FI_COLS == queries.FINDING_COLUMNS
    _collect(engine, index, {"d1": False, "d2": True}, {"alice": True})
    _collect(engine, index, {"d1": True}, {"alice": False, "bob": True})
    _direct(engine, index, "not_applicable")
    now = datetime.now(UTC)
    filters = [
        {}, {"check_ids": {"fake.disk.encrypted"}}, {"check_ids": set()},
        {"check_ids": {"fake.user.mfa", "nope"}}, {"check_id": "fake.user.mfa"},
        {"source": "direct"}, {"status": "fail"}, {"status": "pass", "source": "fake-1"},
    ]
    with engine.connect() as conn:
        assert trusted(conn, now)
        for kw in filters:
            fast = list(queries.findings_at(conn, now, **kw))
            slow = list(queries._findings_walk(
                conn, now, kw.get("check_id"), kw.get("source"), kw.get("status"),
                kw.get("check_ids")))
            assert fast == slow, kw
        assert len(list(queries.findings_at(conn, now))) == 4  # d1, alice, bob, na1


def test_long_failure_lists_and_exceptions_merge_as_the_walk_lists_them(
    engine: Engine, index: MappingIndex
) -> None:
    """More failures than a control lists, under two control lists of one control, some
    excepted: the first MAX_LISTED per control come out in the walk's order."""
    between = None
    for source in ("s-b", "s-a"):
        if source == "s-a":
            between = datetime.now(UTC)
        w = RunWriter(engine, source=source, connector_type="t", config_digest="c" * 64,
                      mapping_digest=index.digest, agent_version="test")
        w.start()
        for i in range(70):
            name = f"r{(i * 37) % 70:03d}"
            eh = w.add_evidence(Evidence("acct", "eu-1", "fake.disk.volume", name, {"i": i}))
            for check, controls in (("fake.disk.encrypted", ("A.8.24",)),
                                    ("fake.user.mfa", ("A.8.5", "A.8.24"))):
                status = ("fail", "pass", "error", "not_applicable")[i % 4] if i % 3 else "fail"
                w.add_finding(Finding(check, "acct", "eu-1", "fake.disk.volume", name, status,
                                      "high", f"{name} {status}", evidence_hash=eh,
                                      controls=controls))
        w.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
        w.finish("succeeded")
    now = datetime.now(UTC)
    rule = ExceptionRule(id="x2", check="fake.user.mfa", resource="r0[0-3]*",
                         reason="accepted", approved_by="ciso", expires=now + timedelta(days=3))
    for rules in ([], [rule]):
        st = _by_id(_same(engine, index, now, exceptions=rules), "A.8.24")
        assert len(st["failing_resources"]) == 50 and st["counts"]["fail"] > 50
    assert st["excepted_resources"] and st["error_scopes"]
    # The same at a past instant, from a snapshot and the history since it.
    from store import snapshots

    with engine.begin() as conn:
        snapshots.rebuild(conn, 1)
    later = datetime.now(UTC)
    _direct(engine, index, "pass")
    assert between is not None
    for at in (between, later):
        for rules in ([], [rule]):
            st = _by_id(_same_past(engine, index, at, exceptions=rules), "A.8.24")
            assert len(st["failing_resources"]) == 50



def _snapshot(engine: Engine, index: MappingIndex, disks: dict, users: dict,
              as_of: datetime | None, *, direct: tuple[str, ...] = ()) -> None:
    """A run of ``estate`` read from an inventory snapshot taken at ``as_of`` (None: read
    directly); the resources named in ``direct`` are read directly whatever ``as_of``."""
    FakeConnector.script = [
        replace(r, source_updated_at=as_of)
        if isinstance(r, Evidence) and r.resource_id not in direct else r
        for r in estate(disks, users)
    ]
    settings = fake_settings("x")
    run_connector(settings, settings.connectors[0], engine, index)


def test_inventory_snapshots_cap_confirmation_as_the_walk_does(
    engine: Engine, index: MappingIndex
) -> None:
    """Evidence from an inventory snapshot (``source_updated_at``, ``run_units.source_as_of``):
    a finding's own observation is capped by its evidence's as-of, its unit's clean read
    by the unit's as-of; the materialised path caps exactly as the walk — passes counted
    in groups, failures listed, failures an exception names — before and after the
    window, and after a fresher snapshot that writes no new version (unchanged items)."""
    old = datetime.now(UTC) - timedelta(days=10)
    _snapshot(engine, index, {"d1": True, "d2": False}, {"alice": True, "bob": False}, old,
              direct=("bob",))
    now = datetime.now(UTC)
    rule = ExceptionRule(id="x3", check="fake.disk.encrypted", resource="d2",
                         reason="accepted", approved_by="ciso", expires=now + timedelta(days=30))
    for rules in ([], [rule]):
        st = _same(engine, index, now, exceptions=rules)
        assert _by_id(st, "A.8.5")["status"] == "fail"  # bob, read directly
    # d2 fixed and bob fixed directly; d1 and alice only from the 10-day-old snapshot:
    # stale, never pass (both paths).
    _snapshot(engine, index, {"d1": True, "d2": True}, {"alice": True, "bob": True}, old,
              direct=("bob",))
    now = datetime.now(UTC)
    st = _same(engine, index, now)
    assert _by_id(st, "A.8.5")["status"] == "stale"
    assert _by_id(st, "A.8.24")["status"] == "stale"
    # A fresher snapshot of the same content writes no new version; the unit's as-of
    # confirms it — until the window passes that as-of.
    recent = datetime.now(UTC) - timedelta(days=2)
    _snapshot(engine, index, {"d1": True, "d2": True}, {"alice": True, "bob": True}, recent,
              direct=("bob",))
    now = datetime.now(UTC)
    assert _by_id(_same(engine, index, now), "A.8.5")["status"] != "stale"
    assert _by_id(_same(engine, index, now + timedelta(days=6)), "A.8.5")["status"] == "stale"


# -- snapshots (store.snapshots): the findings in force at a past instant -----------------


def _same_past(engine: Engine, index: MappingIndex, at: datetime, **kw) -> list[dict]:
    """At a past ``at``: the snapshot path (asserted taken) agrees with the walk, for the
    statuses, the findings in force and a control's pages."""
    from store import queries
    from store.snapshots import in_force

    with engine.connect() as conn:
        assert not trusted(conn, at)
        assert in_force(conn, at) is not None, "a snapshot should answer here"
        assert list(queries.findings_at(conn, at)) == list(
            queries._findings_walk(conn, at, None, None, None, None))
        checks = set(index.checks_for("A.8.24"))
        after, fast_pages = None, []
        while True:
            page, after = queries.control_findings_page(conn, at, checks, "A.8.24", after, 1)
            fast_pages += page
            if after is None:
                break
        walked = sorted((f for f in queries._findings_walk(conn, at, None, None, None, checks)
                         if "A.8.24" in f["controls"]), key=current_page_key)
        assert fast_pages == walked
    fast = [c.as_dict() for c in control_statuses(engine, index, at, **kw)]
    slow = [c.as_dict() for c in control_statuses(engine, index, at, materialised=False, **kw)]
    assert fast == slow
    # Again, now that the status holds what it read (store.snapshots.held_page).
    from store import snapshots

    assert snapshots.held_rows(engine) > 0
    with engine.connect() as conn:
        for size in (1, 2, 200):
            after, held_pages = None, []
            while True:
                page, after = queries.control_findings_page(conn, at, checks, "A.8.24",
                                                            after, size)
                held_pages += page
                if after is None:
                    break
            assert held_pages == walked
    return fast


def current_page_key(row: dict) -> tuple:
    from store.current import page_key

    return page_key(row)


def findings_snapshots_at() -> Any:
    """A select of the snapshot instants, oldest first."""
    from sqlalchemy import select

    from store.snapshots import findings_snapshots

    return select(findings_snapshots.c.at).order_by(findings_snapshots.c.at)


def varied_history(engine: Engine, index: MappingIndex) -> list[datetime]:
    """A history exercising every input of a control's status: failures that pass later,
    a tombstone, ``not_applicable``, ``fail``, ``pass`` and ``error`` findings of another
    source, evidence read from a 10-day-old inventory snapshot (its as-of caps the
    confirmation) and one direct read after it. Returns the instants between its runs
    (none after the last)."""
    instants = []
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
    instants.append(datetime.now(UTC))
    _direct(engine, index, "error")
    return instants


def test_past_instants_from_snapshots_equal_the_walk_over_a_varied_history(
    engine: Engine, index: MappingIndex
) -> None:
    from store import snapshots

    instants = varied_history(engine, index)
    rule = ExceptionRule(id="x4", check="fake.disk.encrypted", resource="d*",
                         reason="accepted", approved_by="ciso",
                         expires=datetime.now(UTC) + timedelta(days=3))
    for spacing in (None, 1, 3):  # seal-maintained, then rebuilt (migration 0010) twice
        if spacing:
            with engine.begin() as conn:
                snapshots.rebuild(conn, spacing)
        taken = [v for (v,) in engine.connect().execute(findings_snapshots_at())]
        for at in [*instants, *taken]:
            if taken and taken[0] <= at:
                for rules in ([], [rule]):
                    _same_past(engine, index, at, exceptions=rules)
        assert taken, "some snapshot should exist"


def _one_failure(engine: Engine, index: MappingIndex, source: str, disk: str,
                 controls: tuple[str, ...]) -> RunWriter:
    """A run of ``source`` started now and left unsealed, with one failing
    ``fake.disk.encrypted`` finding on ``disk`` stored under ``controls``."""
    w = RunWriter(engine, source=source, connector_type="t", config_digest="c" * 64,
                  mapping_digest=index.digest, agent_version="test")
    w.start()
    eh = w.add_evidence(Evidence("acct", "eu-1", "fake.disk.volume", disk, {"id": disk}))
    w.add_finding(Finding("fake.disk.encrypted", "acct", "eu-1", "fake.disk.volume", disk,
                          "fail", "high", f"{disk} fail", evidence_hash=eh, controls=controls))
    return w


def _late_failure(engine: Engine, index: MappingIndex) -> RunWriter:
    """A run started now and left unsealed, with a failing A.8.24 finding (l1): sealed
    later, it is a late run with a version observed before the runs sealed meanwhile."""
    return _one_failure(engine, index, "late", "l1", ("A.8.24",))


def _past_before_a_late_run(engine: Engine, index: MappingIndex) -> tuple[datetime, RunWriter]:
    """A past instant with a snapshot by it, and a run started before it and left
    unsealed (:func:`_late_failure`): sealed later, it changes what was in force then."""
    from store import snapshots

    _collect(engine, index, {"d1": True, "d2": True}, {"alice": True})
    with engine.begin() as conn:
        snapshots.rebuild(conn, 1)
    late = _late_failure(engine, index)
    at = datetime.now(UTC)
    _direct(engine, index, "pass")  # sealed after the instant: it is past
    return at, late


def test_a_run_sealed_late_drops_the_snapshots_it_changes(
    engine: Engine, index: MappingIndex
) -> None:
    from sqlalchemy import select

    from store import snapshots

    _collect(engine, index, {"d1": True, "d2": True}, {"alice": True})
    late = _late_failure(engine, index)
    _direct(engine, index, "pass")
    between = datetime.now(UTC)
    _collect(engine, index, {"d1": True}, {"alice": True})
    with engine.begin() as conn:
        snapshots.rebuild(conn, 1)
    ids = select(snapshots.findings_snapshots.c.id)
    with engine.connect() as conn:
        before = set(conn.execute(ids).scalars())
    assert _by_id(_same_past(engine, index, between), "A.8.24")["status"] != "fail"
    late.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
    late.finish("succeeded")  # observed before the snapshots taken since: they go
    with engine.connect() as conn:
        assert before - set(conn.execute(ids).scalars()), "a snapshot it changes was kept"
    assert _by_id(_same_past(engine, index, between), "A.8.24")["status"] == "fail"


def _snapshot_for(engine: Engine, at: datetime) -> tuple[Any, ...]:
    from sqlalchemy import select

    from store.snapshots import findings_snapshots as s

    with engine.connect() as conn:
        return tuple(conn.execute(
            select(s.c.id, s.c.at, s.c.rows).where(s.c.at <= at)
            .order_by(s.c.at.desc(), s.c.id.desc()).limit(1)).one())


def test_a_past_instant_held_in_memory_is_read_again_when_a_late_run_changes_it(
    engine: Engine, index: MappingIndex
) -> None:
    """The findings in force at a past instant are held in memory once read
    (``store.snapshots.light_rows_at``). A run sealed since with a version observed by
    then changes them though the instant's snapshot stays the same one: the answer must
    change with it, not come from memory."""
    from store import snapshots

    at, late = _past_before_a_late_run(engine, index)
    snap = _snapshot_for(engine, at)
    assert _by_id(_same_past(engine, index, at), "A.8.24")["status"] != "fail"
    held = snapshots.held_rows(engine)
    assert held > 0, "the instant read should be held in memory"
    assert _by_id(_same_past(engine, index, at), "A.8.24")["status"] != "fail"
    assert snapshots.held_rows(engine) == held, "read again from memory, not added twice"
    late.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
    late.finish("succeeded")
    assert _snapshot_for(engine, at) == snap, "the late run should leave this snapshot"
    assert _by_id(_same_past(engine, index, at), "A.8.24")["status"] == "fail"


def test_past_instants_held_in_memory_are_bounded_and_equal_a_fresh_read(
    engine: Engine, index: MappingIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held instants never exceed ``CACHED_ROWS`` findings (the least recently read go
    first), and every answer from memory equals the walk's."""
    from store import snapshots

    instants = varied_history(engine, index)
    with engine.begin() as conn:
        snapshots.rebuild(conn, 1)
    first, last = instants[1], instants[-1]
    with engine.connect() as conn:
        one = snapshots.light_rows_at(conn, first)
        other = snapshots.light_rows_at(conn, last)
    assert one and other
    bound = max(len(one), len(other))
    assert len(one) + len(other) > bound
    monkeypatch.setattr(snapshots, "CACHED_ROWS", bound)
    snapshots.forget()
    for at in (first, last, first):
        _same_past(engine, index, at)  # the second read of ``first`` from memory
        assert 0 < snapshots.held_rows(engine) <= bound
    assert snapshots.held_rows(engine) == len(one), "the latest read should be the one held"
    with engine.connect() as conn:
        assert snapshots.light_rows_at(conn, first) == one
    assert len(one) < len(other)
    monkeypatch.setattr(snapshots, "CACHED_ROWS", len(one))
    snapshots.forget()
    _same_past(engine, index, first)
    _same_past(engine, index, last)
    assert snapshots.held_rows(engine) == len(one), (
        "an instant over the bound should not be held, nor push out those held")


def test_reading_a_past_instant_leaves_collection_as_found_and_holds_untracked_rows(
    engine: Engine, index: MappingIndex
) -> None:
    """Reading an instant leaves garbage collection as it found it (it is paused while
    the rows are built), and the rows it holds are tuples of untracked values: once
    collected, the collector never visits them again (a list in a held row would keep
    every one tracked)."""
    import gc

    from store import snapshots

    instants = varied_history(engine, index)
    with engine.begin() as conn:
        snapshots.rebuild(conn, 1)
    assert gc.isenabled()
    snapshots.forget()
    with engine.connect() as conn:
        rows = snapshots.light_rows_at(conn, instants[2])
    assert rows and gc.isenabled()
    # The first collection stops tracking the control tuples inside, the second the rows.
    gc.collect()
    gc.collect()
    assert not [r for r in rows if gc.is_tracked(r)], "held rows should stop being tracked"
    gc.disable()
    try:
        snapshots.forget()
        with engine.connect() as conn:
            assert snapshots.light_rows_at(conn, instants[2]) == rows
        assert not gc.isenabled(), "a caller's disabled collector should stay disabled"
    finally:
        gc.enable()


def test_a_past_instant_is_read_in_two_parts_at_once_on_postgresql(
    engine: Engine, index: MappingIndex
) -> None:
    """On PostgreSQL a past instant's two parts (the snapshot's rows kept, the latest
    versions since) are read at once on two connections sharing one database snapshot,
    and give what one statement gives; on SQLite they are not (nothing gained). Once a
    run was sealed since the caller chose the snapshot, nothing is read: the snapshot
    may be gone, and the walk answers that request."""
    from store import snapshots
    from store.current import applied_runs

    instants = varied_history(engine, index)
    pg = engine.dialect.name == "postgresql"
    since = 0
    for spacing in (1, 3):  # a snapshot at every instant, then versions after some
        with engine.begin() as conn:
            snapshots.rebuild(conn, spacing)
        for at in instants:
            with engine.connect() as conn:
                snap = snapshots._snapshot_by(conn, at)
                if snap is None:
                    continue
                applied = applied_runs(conn, snapshots.findings_snapshot_state)
                for checks in (None, set(index.checks_for("A.8.24"))):
                    parts = snapshots._in_force_parts(conn, snap, at, checks)
                    one = snapshots._read_held(conn, parts)
                    both = snapshots._read_in_parallel(engine, parts, applied)
                    assert both == (one if pg else None)
                    since += bool(conn.execute(parts[1]).first())
    assert since, "some instant should have versions since its snapshot (the second part)"
    at = instants[-1]
    with engine.connect() as conn:
        snap = snapshots._snapshot_by(conn, at)
        applied = applied_runs(conn, snapshots.findings_snapshot_state)
        parts = snapshots._in_force_parts(conn, snap, at, None)
    late = _late_failure(engine, index)
    late.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
    late.finish("succeeded")  # sealed after the snapshot was chosen
    assert snapshots._read_in_parallel(engine, parts, applied) is (
        snapshots.MOVED if pg else None)
    if pg:
        with engine.connect() as conn:
            now = applied_runs(conn, snapshots.findings_snapshot_state)
        assert now != applied
        assert snapshots._read_in_parallel(engine, parts, now) is not None


def test_a_run_sealed_while_a_past_instant_is_read_is_not_held_under_the_older_state(
    engine: Engine, index: MappingIndex
) -> None:
    """A run sealed after a past read chose its snapshot and before it reads (here: as
    its two-part read opens its transaction) changes what is in force at that instant
    (it may drop that snapshot). The read sees it, holds nothing, and the walk answers:
    the late failure, as the walk says."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the two-part read, which checks the state in its snapshot, is PostgreSQL's")
    from sqlalchemy import event

    from store import snapshots

    at, late = _past_before_a_late_run(engine, index)
    sealed_late: list[bool] = []

    def seal_first(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "set_config('work_mem'" in statement and not sealed_late:
            sealed_late.append(True)
            late.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
            late.finish("succeeded")

    snapshots.forget()
    event.listen(engine, "before_cursor_execute", seal_first)
    try:
        statuses = [c.as_dict() for c in control_statuses(engine, index, at)]
    finally:
        event.remove(engine, "before_cursor_execute", seal_first)
    assert sealed_late, "the late run should have been sealed during the read"
    assert snapshots.held_rows(engine) == 0, "nothing read across the seal may be held"
    walked = [c.as_dict() for c in control_statuses(engine, index, at, materialised=False)]
    assert statuses == walked
    assert _by_id(statuses, "A.8.24")["status"] == "fail"


def test_past_instants_read_by_many_requests_at_once_equal_the_walk(
    engine: Engine, index: MappingIndex
) -> None:
    """More concurrent first reads than may run in two parts (``PARALLEL_READS``): every
    answer equals the walk's, and none waits on a connection another holds."""
    from concurrent.futures import ThreadPoolExecutor

    from store import snapshots

    instants = varied_history(engine, index)
    with engine.begin() as conn:
        snapshots.rebuild(conn, 3)  # some instants with versions since their snapshot
    with engine.connect() as conn:
        past = [at for at in instants if snapshots._snapshot_by(conn, at) is not None]
    assert len(past) >= 2
    walked = {at: [c.as_dict() for c in control_statuses(engine, index, at, materialised=False)]
              for at in past}
    asked = [past[i % len(past)] for i in range(4 * snapshots.PARALLEL_READS + 2)]
    snapshots.forget()
    with ThreadPoolExecutor(len(asked)) as pool:
        answers = list(pool.map(
            lambda at: [c.as_dict() for c in control_statuses(engine, index, at)], asked))
    assert answers == [walked[at] for at in asked]


def test_one_control_at_a_past_instant_is_read_from_what_is_held(
    engine: Engine, index: MappingIndex
) -> None:
    """A control page reads only its checks' findings and holds them; once every
    finding at that instant is held (the overview), the control is answered from it."""
    from store import snapshots

    instants = varied_history(engine, index)
    with engine.begin() as conn:
        snapshots.rebuild(conn, 1)
    at = instants[2]
    snapshots.forget()

    def one() -> list[dict]:
        return [c.as_dict() for c in control_statuses(engine, index, at, controls=["A.8.24"])]

    alone = one()
    narrowed = snapshots.held_rows(engine)
    assert narrowed > 0
    every = [c.as_dict() for c in control_statuses(engine, index, at)]
    whole = snapshots.held_rows(engine) - narrowed
    assert whole > narrowed, "the overview's read should hold more than one control's"
    assert one() == alone == [c for c in every if c["control"] == "A.8.24"]
    assert snapshots.held_rows(engine) == narrowed + whole
    walked = control_statuses(engine, index, at, materialised=False, controls=["A.8.24"])
    assert alone == [c.as_dict() for c in walked]


def test_a_finding_stored_under_another_mapping_is_not_on_a_past_control_page(
    engine: Engine, index: MappingIndex
) -> None:
    """A control page lists the findings that count for its control: one of its checks
    stored under a mapping that did not name it is left out, from the snapshots and
    from what the status held alike (compared with the walk in ``_same_past``)."""
    from store import queries, snapshots

    _collect(engine, index, {"d1": False}, {"alice": True})
    w = _one_failure(engine, index, "old-mapping", "om1", ("A.5.1",))
    w.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
    w.finish("succeeded")
    at = datetime.now(UTC)
    _direct(engine, index, "pass")
    with engine.begin() as conn:
        snapshots.rebuild(conn, 1)
    _same_past(engine, index, at)
    checks = set(index.checks_for("A.8.24"))
    with engine.connect() as conn:
        page, _ = queries.control_findings_page(conn, at, checks, "A.8.24", None, 200)
    assert page and "om1" not in {f["resource_id"] for f in page}


def test_migration_0011_keeps_the_findings_in_force_and_indexes_their_observation(
    engine: Engine, index: MappingIndex
) -> None:
    """Upgrading to 0011 over a table with rows (on PostgreSQL it rewrites the table):
    the same rows, the same statuses from it, and the newest observation indexed."""
    from alembic import command
    from sqlalchemy import inspect

    from store.migrate import _config, upgrade

    _collect(engine, index, {"d1": False, "d2": True}, {"alice": True})
    _direct(engine, index, "pass")
    _collect(engine, index, {"d1": True, "d2": True}, {"alice": False})
    rows_sql = text("SELECT * FROM findings_in_force ORDER BY source, key")
    with engine.connect() as conn:
        before = [tuple(r) for r in conn.execute(rows_sql)]
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")
    assert "ix_findings_in_force_observed" not in {
        i["name"] for i in inspect(engine).get_indexes("findings_in_force")}
    upgrade(engine)
    assert "ix_findings_in_force_observed" in {
        i["name"] for i in inspect(engine).get_indexes("findings_in_force")}
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(rows_sql)] == before and len(before) > 3
    _same(engine, index, datetime.now(UTC))


def test_one_controls_status_equals_its_entry_among_all(
    engine: Engine, index: MappingIndex
) -> None:
    """``control_statuses(controls=[cid])`` (the control page) reads only the findings that
    can count for it, and gives exactly its entry of the full list: now (the table),
    at past instants (snapshots or the walk), with an exception, on a control whose
    checks another control shares, and with an approved policy read as its document."""
    # A finding stored under an older mapping: its check no longer maps to A.8.5, but
    # it counts for A.8.5 while in force (its stored controls).
    w = RunWriter(engine, source="legacy", connector_type="t", config_digest="c" * 64,
                  mapping_digest="0" * 64, agent_version="test")
    w.start()
    w.add_finding(Finding("legacy.retired.check", "acct", "eu-1", "fake.disk.volume", "r1",
                          "fail", "high", "r1 fail", controls=("A.8.5",)))
    w.finish("succeeded")
    assert "legacy.retired.check" not in index.checks_for("A.8.5")
    instants = [*varied_history(engine, index), datetime.now(UTC)]
    rule = ExceptionRule(id="x6", check="fake.disk.encrypted", resource="d*",
                         reason="accepted", approved_by="ciso",
                         expires=datetime.now(UTC) + timedelta(days=3))
    wanted = ["A.8.24", "A.8.5", "A.5.1", "A.5.15"]
    compared = 0
    for at in instants:
        for rules in ([], [rule]):
            every = {c.id: c.as_dict() for c in control_statuses(engine, index, at,
                                                                 exceptions=rules)}
            for cid in wanted:
                one = control_statuses(engine, index, at, exceptions=rules, controls=[cid])
                assert [c.as_dict() for c in one] == [every[cid]], (at, cid)
                compared += 1
    assert compared == len(instants) * 2 * len(wanted)
    assert {every[c]["status"] for c in wanted} != {"no_evidence"}
    assert every["A.8.5"]["status"] == "fail"
    assert any("r1" in label for label in every["A.8.5"]["failing_resources"])


def _table(conn: Any) -> list[tuple]:
    return [tuple(r) for r in conn.execute(
        text("SELECT * FROM findings_in_force ORDER BY source, key"))]


def _equal_to_rebuild(engine: Engine) -> list[tuple]:
    """The seal-maintained table, asserted equal to one rebuilt from the history
    (the rebuild is rolled back)."""
    with engine.connect() as conn:
        kept = _table(conn)
        conn.rollback()
        with conn.begin() as tx:
            rebuild(conn)
            again = _table(conn)
            tx.rollback()
    assert kept == again
    return kept


def test_seals_keep_the_table_equal_to_a_rebuild_run_after_run(
    engine: Engine, index: MappingIndex
) -> None:
    """Each seal's upsert (update in place where the key is in force, insert where it is
    not, nothing where a stored version is newer) leaves the table a rebuild from the
    history would give: changes, a disappearance (tombstone), a reappearance, keys
    added later, and runs sealed late whose versions are older than those in force (they
    must not replace them) or of keys not in force (they must be added)."""
    # Each version is observed when it is made (the records' own clock), so a run's
    # versions are older than those of every run started after it, whoever seals first;
    # the tombstones of a clean read are observed at its seal.
    def run(keys: dict[str, str], *, clean: bool = True, seal: bool = True) -> RunWriter:
        w = RunWriter(engine, source="direct", connector_type="t", config_digest="c" * 64,
                      mapping_digest=index.digest, agent_version="test")
        w.start()
        for k, st in keys.items():
            eh = w.add_evidence(Evidence("acct", "eu-1", "fake.disk.volume", k,
                                         {"id": k, "st": st}))
            w.add_finding(Finding("fake.disk.encrypted", "acct", "eu-1", "fake.disk.volume",
                                  k, st, "high", f"{k} {st}", evidence_hash=eh,
                                  controls=("A.8.24",)))
        if clean:
            w.add_coverage(Coverage("acct", "eu-1", "disk", ok=True))
        if seal:
            w.finish("succeeded")
        return w

    run({"a": "pass", "b": "fail", "c": "pass"})
    first = _equal_to_rebuild(engine)
    # Started before the next runs, its versions observed before theirs, sealed after.
    late_old = run({"a": "fail"}, clean=False, seal=False)
    late_new_key = run({"z": "fail"}, clean=False, seal=False)
    run({"a": "fail", "b": "pass"})  # c is not seen: a tombstone
    after = _equal_to_rebuild(engine)
    assert after != first
    status = {r[1].rsplit("|", 1)[-1]: r[8] for r in after}
    assert status == {"a": "fail", "b": "pass", "c": None}
    run({"a": "pass", "b": "pass", "c": "fail", "d": "pass"})  # c back, d new
    _equal_to_rebuild(engine)
    late_old.finish("succeeded")  # a@1 is older than a@20 in force: it stays
    late_new_key.finish("succeeded")  # z is in force nowhere: added
    rows = _equal_to_rebuild(engine)
    status = {r[1].rsplit("|", 1)[-1]: r[8] for r in rows}
    assert status == {"a": "pass", "b": "pass", "c": "fail", "d": "pass", "z": "fail"}
    # Many changes of the same keys: rows replaced, never duplicated.
    for i in range(5):
        run({"a": "fail" if i % 2 else "pass", "b": "fail", "c": "pass", "d": "fail",
             "z": "pass"}, clean=False)
    assert len(_equal_to_rebuild(engine)) == 5


def test_seals_update_the_table_in_place_without_growing_it(
    engine: Engine, index: MappingIndex
) -> None:
    """PostgreSQL, autovacuum off for the table: a seal updates the rows it supersedes
    in place, and their new versions go into the room migration 0012's fillfactor left
    in each page, so a few seals that each change one finding per page (the benchmark's
    estate changes 1 % of its findings an hour) leave the file exactly as large. Deleting
    and re-inserting appended every new version to the end of the file, and without the
    room an updated row moves to a new page. (Page pruning then frees the old versions'
    space for later seals once no older transaction is open on the server; that part
    depends on the server's other sessions, so it is not asserted here.)"""
    if engine.dialect.name != "postgresql":
        pytest.skip("the table's file growth without VACUUM is PostgreSQL's")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE findings_in_force SET (autovacuum_enabled = false)"))
    keys = [f"k{i:03d}" for i in range(400)]

    def pages() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT pg_relation_size('findings_in_force')"
                " / current_setting('block_size')::int")).scalar_one())

    start = 0
    for n in range(7):
        w = RunWriter(engine, source="direct", connector_type="t", config_digest="c" * 64,
                      mapping_digest=index.digest, agent_version="test")
        w.start()
        # Only what changed is given to the writer, as in benchmarks/history.py: after
        # the first run, one key in 25 (a page holds about 25 rows at fillfactor 70).
        for i, k in enumerate(keys):
            if n and i % 25 != n:
                continue
            eh = w.add_evidence(Evidence("acct", "eu-1", "fake.disk.volume", k, {"id": k, "n": n}))
            st = "pass" if (n + i) % 2 else "fail"
            w.add_finding(Finding("fake.disk.encrypted", "acct", "eu-1", "fake.disk.volume", k,
                                  st, "high", f"{k} {st}", evidence_hash=eh,
                                  controls=("A.8.24",)))
        w.finish("succeeded")
        if n == 0:
            start = pages()
    # Appended, the 6 x 16 new versions would need 4 more pages.
    assert pages() == start, (start, pages())
    assert len(_equal_to_rebuild(engine)) == len(keys)


def test_migration_0012_keeps_the_findings_in_force_and_leaves_room_in_their_pages(
    engine: Engine, index: MappingIndex
) -> None:
    """Upgrading to 0012 over a table with rows: the same rows and statuses; on
    PostgreSQL the table's fillfactor is 70 (and reset by the downgrade)."""
    from alembic import command

    from store.migrate import _config, upgrade

    _collect(engine, index, {"d1": False, "d2": True}, {"alice": True})
    _collect(engine, index, {"d1": True}, {"alice": False})
    rows_sql = text("SELECT * FROM findings_in_force ORDER BY source, key")
    pg = engine.dialect.name == "postgresql"
    options = text("SELECT reloptions FROM pg_class WHERE relname = 'findings_in_force'")
    with engine.connect() as conn:
        before = [tuple(r) for r in conn.execute(rows_sql)]
        if pg:
            assert "fillfactor=70" in (conn.execute(options).scalar() or [])
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011")
    if pg:
        with engine.connect() as conn:
            assert "fillfactor=70" not in (conn.execute(options).scalar() or [])
    upgrade(engine)
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(rows_sql)] == before and len(before) >= 3
        if pg:
            assert "fillfactor=70" in (conn.execute(options).scalar() or [])
    _same(engine, index, datetime.now(UTC))
