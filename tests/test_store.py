"""The evidence store on SQLite and PostgreSQL: change-only, append-only, verifiable."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from collector.runner import run_connector
from core.records import utcnow
from mappings.loader import MappingIndex
from store.integrity import verify
from store.queries import evidence_at, findings_at
from store.schema import blobs, evidence, findings, run_units, runs
from store.status import control_statuses
from tests.fakes import FakeConnector, estate, fake_settings, index, plain_writer
from tests.tamper import tamper

__all__ = ["index"]  # a fixture, imported for the tests below

pytestmark = pytest.mark.clock


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (evidence, findings, blobs, run_units, runs)
        }


def collect(engine: Engine, index: MappingIndex, records: list, db_url: str = "x", **kw):
    FakeConnector.script = records
    settings = fake_settings(db_url, **kw)
    return run_connector(settings, settings.connectors[0], engine, index)


def test_unchanged_estate_adds_no_history_rows(engine: Engine, index: MappingIndex) -> None:
    first = collect(engine, index, estate({"d1": True, "d2": False}, {"alice": True, "bob": False}))
    assert first.status == "succeeded"
    after_first = counts(engine)
    assert after_first["evidence"] == 4 and after_first["findings"] == 4

    second = collect(
        engine, index, estate({"d1": True, "d2": False}, {"alice": True, "bob": False})
    )
    after_second = counts(engine)
    assert second.counts["evidence_written"] == 0 and second.counts["findings_written"] == 0
    for table in ("evidence", "findings", "blobs"):
        assert after_second[table] == after_first[table], table
    # Only the run's own bookkeeping grows.
    assert after_second["runs"] == 2
    assert after_second["run_units"] == 2 * after_first["run_units"]


def test_one_change_adds_only_its_rows(engine: Engine, index: MappingIndex) -> None:
    collect(engine, index, estate({"d1": True, "d2": False}, {"alice": True}))
    before = counts(engine)
    summary = collect(engine, index, estate({"d1": True, "d2": True}, {"alice": True}))
    after = counts(engine)
    assert after["evidence"] - before["evidence"] == 1
    assert after["findings"] - before["findings"] == 1
    assert after["blobs"] - before["blobs"] == 1
    assert summary.counts["evidence_written"] == 1


def test_point_in_time_reads_return_the_earlier_state(engine: Engine, index: MappingIndex) -> None:
    collect(engine, index, estate({"d1": False}, {"alice": True}))
    t1 = utcnow()
    collect(engine, index, estate({"d1": True}, {"alice": True}))
    with engine.connect() as conn:
        then = {f["resource_id"]: f["status"] for f in findings_at(conn, t1)}
        now = {f["resource_id"]: f["status"] for f in findings_at(conn)}
        old_ev = [e["payload"] for e in evidence_at(conn, t1, resource="d1")]
    assert then["d1"] == "fail" and now["d1"] == "pass"
    assert old_ev == [{"encrypted": False, "id": "d1"}]
    by_id = {c.id: c.status for c in control_statuses(engine, index, t1)}
    assert by_id["A.8.24"] == "fail"
    # Checks pass; without a recorded cryptography policy, the control is undocumented.
    assert {c.id: c.status for c in control_statuses(engine, index)}["A.8.24"] == "undocumented"


def test_disappeared_resources_close_only_in_clean_units(
    engine: Engine, index: MappingIndex
) -> None:
    collect(engine, index, estate({"d1": True, "d2": True}, {"alice": True, "bob": True}))
    # d2 vanishes from a clean unit: closed. bob vanishes from a clean global unit: closed.
    s = collect(engine, index, estate({"d1": True}, {"alice": True}))
    assert s.counts["evidence_closed"] == 2 and s.counts["findings_closed"] == 2
    with engine.connect() as conn:
        assert {e["resource_id"] for e in evidence_at(conn)} == {"d1", "alice"}
    # Now the disk unit fails: d1 must stay open (not closed by absence), and the
    # disk check becomes an error for that unit — never a pass or a fail.
    s = collect(engine, index, estate({}, {"alice": True}, disk_error="AccessDenied"))
    assert s.status == "partial" and s.counts["evidence_closed"] == 0
    with engine.connect() as conn:
        assert {e["resource_id"] for e in evidence_at(conn)} == {"d1", "alice"}
        errs = [f for f in findings_at(conn, status="error")]
    assert [(f["check_id"], f["resource_id"]) for f in errs] == [
        ("fake.disk.encrypted", "fake:acct-1/eu-1/disk")
    ]
    assert "AccessDenied" in errs[0]["message"]
    statuses = {c.id: c.status for c in control_statuses(engine, index)}
    assert statuses["A.8.24"] == "error"
    # Recovery closes the error finding.
    collect(engine, index, estate({"d1": True}, {"alice": True}))
    with engine.connect() as conn:
        assert list(findings_at(conn, status="error")) == []


def test_control_statuses_never_pass_by_absence(engine: Engine, index: MappingIndex) -> None:
    statuses = {c.id: c for c in control_statuses(engine, index)}
    assert statuses["A.8.24"].status == "no_evidence"
    assert statuses["A.7.1"].status == "manual"
    # Physical controls: manual unless a check exists (device checks evidence A.7.7 and
    # A.7.9), and then no_evidence with nothing collected — never pass.
    physical = {cid: c.status for cid, c in statuses.items() if cid.startswith("A.7.")}
    assert {cid for cid, status in physical.items() if status != "manual"} == {"A.7.7", "A.7.9"}
    assert physical["A.7.7"] == physical["A.7.9"] == "no_evidence"
    collect(engine, index, estate({"d1": True}, {"alice": False}))
    statuses = {c.id: c for c in control_statuses(engine, index)}
    assert statuses["A.8.24"].status == "undocumented"  # passing checks, no document
    assert statuses["A.8.5"].status == "fail"
    assert statuses["A.8.5"].failing == ["alice (fake.user.mfa)"]
    assert statuses["A.7.4"].status == "manual"
    # A week later without a new run, the pass is stale, not pass; the fail stays a fail.
    later = {c.id: c.status for c in control_statuses(engine, index, utcnow() + timedelta(days=8))}
    assert later["A.8.24"] == "stale" and later["A.8.5"] == "fail"


def test_check_parameters_from_config(engine: Engine, index: MappingIndex) -> None:
    records = [
        *estate({}, {}),
    ]
    from core.records import Evidence

    svc = Evidence(
        "acct-1",
        "global",
        "fake.user.account",
        "ci-bot",
        {"name": "ci-bot", "mfa": False, "service": True},
    )
    collect(
        engine, index, [svc, *records], checks={"fake.user.mfa": {"allow_service_accounts": True}}
    )
    with engine.connect() as conn:
        assert [f["status"] for f in findings_at(conn, check_id="fake.user.mfa")] == ["pass"]


def test_connector_crash_keeps_what_was_stored(engine: Engine, index: MappingIndex) -> None:
    records = [*estate({"d1": True}, {})[:2], RuntimeError("boom")]
    s = collect(engine, index, records)
    assert s.status == "partial"
    assert any("boom" in e for e in s.errors)
    assert counts(engine)["evidence"] == 1
    with engine.connect() as conn:
        errors = {f["check_id"] for f in findings_at(conn, status="error")}
    assert errors == {"fake.disk.encrypted", "fake.user.mfa"}  # nothing judged on a crash
    assert verify(engine).ok
    # The next clean run closes the crash errors again.
    collect(engine, index, estate({"d1": True}, {}))
    with engine.connect() as conn:
        assert list(findings_at(conn, status="error")) == []


def test_cancelled_run_is_aborted(engine: Engine, index: MappingIndex) -> None:
    FakeConnector.script = estate({"d1": True}, {"alice": True})
    settings = fake_settings("x")
    ev = threading.Event()
    ev.set()
    s = run_connector(settings, settings.connectors[0], engine, index, cancel_event=ev)
    assert s.status == "aborted"
    with engine.connect() as conn:
        assert conn.execute(select(runs.c.status)).scalar_one() == "aborted"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE evidence SET resource_id = 'x'",
        "DELETE FROM evidence",
        "UPDATE findings SET status = 'pass'",
        "DELETE FROM findings",
        "UPDATE blobs SET body = '{}'",
        "DELETE FROM blobs",
        "DELETE FROM run_units",
        "UPDATE runs SET status = 'succeeded'",
        "DELETE FROM runs",
    ],
)
def test_history_is_append_only_in_the_database(
    engine: Engine, index: MappingIndex, statement: str
) -> None:
    collect(engine, index, estate({"d1": False}, {"alice": True}))
    with pytest.raises(DBAPIError, match=r"append-only|immutable"):
        with engine.begin() as conn:
            conn.execute(text(statement))
    assert counts(engine)["evidence"] == 2


def test_verify_passes_then_names_the_tampered_run(
    engine: Engine, index: MappingIndex, db_url: str
) -> None:
    first = collect(engine, index, estate({"d1": False, "d2": True}, {"alice": True}))
    second = collect(engine, index, estate({"d1": True, "d2": True}, {"alice": True}))
    result = verify(engine)
    assert result.ok and result.runs_checked == 2
    # Rewrite the stored evidence of d1 as first observed: "it was encrypted all along".
    with engine.connect() as conn:
        h = conn.execute(
            select(evidence.c.content_hash).where(
                evidence.c.resource_id == "d1", evidence.c.run_id == first.run_id
            )
        ).scalar_one()
    tamper(db_url,
        f'UPDATE blobs SET body = \'{{"encrypted":true,"id":"d1"}}\' WHERE hash = \'{h}\'',
    )
    result = verify(engine)
    assert not result.ok
    assert result.first_broken_run == first.run_id
    assert second.run_id not in {p.run_id for p in result.problems}


@pytest.mark.parametrize(
    "statement, broken",
    [
        ("UPDATE findings SET status = 'pass' WHERE status = 'fail'", "first"),
        ("UPDATE evidence SET collected_at = collected_at WHERE 1 = 0", None),
        ("DELETE FROM runs WHERE id = '{first}'", "second"),
        ("UPDATE runs SET status = 'succeeded', errors = '[]' WHERE id = '{second}'", "second"),
    ],
)
def test_verify_detects_row_and_chain_tampering(
    engine: Engine, index: MappingIndex, db_url: str, statement: str, broken: str | None
) -> None:
    first = collect(engine, index, estate({"d1": False}, {"alice": True}))
    second = collect(engine, index, estate({"d1": False}, {"alice": True}, disk_error="Throttling"))
    ids = {"first": first.run_id, "second": second.run_id}
    tamper(db_url, statement.format(**ids))
    result = verify(engine)
    if broken is None:
        assert result.ok
    else:
        assert ids[broken] in {p.run_id for p in result.problems}, result.problems
    if statement.startswith("DELETE FROM runs"):
        # The deleted run's rows are now orphans: named, and counted for no control.
        orphans = [p for p in result.problems if p.run_id == first.run_id]
        assert orphans and all("orphans" in p.reason for p in orphans), result.problems


def test_a_run_sealed_by_someone_else_gains_no_rows(engine: Engine, index: MappingIndex) -> None:
    """A daemon may reap a run as stale; its late writer must not break the digest."""
    from core.records import Evidence
    from store.writer import RunSealedError

    w = plain_writer(engine)
    w.start()
    with engine.begin() as conn:  # what the reaper does to a stale run
        conn.execute(
            text("UPDATE runs SET status = 'aborted', digest = 'x' WHERE id = :i"), {"i": w.run_id}
        )
    w.add_evidence(Evidence("a", "global", "fake.disk.volume", "d9", {"id": "d9"}))
    with pytest.raises(RunSealedError):
        w.flush()
    assert counts(engine)["evidence"] == 0
    with pytest.raises(RunSealedError):
        w.finish("succeeded")


def _writer(engine: Engine, source: str = "s"):

    return plain_writer(engine, source)


def _disk(name: str, version: int = 1):
    from core.records import Evidence

    return Evidence("a", "global", "fake.disk.volume", name, {"id": name, "v": version})


def test_closing_leaves_what_another_run_wrote_after_this_one_began(
    engine: Engine, index: MappingIndex
) -> None:
    """Absence is judged against the state this run started from, not a newer one."""
    from core.records import Coverage

    clean = Coverage("a", "global", "disk", ok=True)
    first = _writer(engine)
    first.start()
    for name in ("d1", "d2"):
        first.add_evidence(_disk(name))
    first.add_coverage(clean)
    first.finish("succeeded")

    slow = _writer(engine)
    slow.start()
    # Another run of the source starts later, sees d1 changed and a new d3, and seals first.
    fast = _writer(engine)
    fast.start()
    for ev in (_disk("d1", 2), _disk("d2"), _disk("d3")):
        fast.add_evidence(ev)
    fast.add_coverage(clean)
    assert fast.finish("succeeded").counts["evidence_closed"] == 0

    slow.add_evidence(_disk("d2"))
    slow.add_coverage(clean)
    summary = slow.finish("succeeded")
    # d1's and d3's latest versions are newer than the slow run: not for it to close.
    assert summary.counts["evidence_written"] == 0
    assert summary.counts["evidence_closed"] == 0
    with engine.connect() as conn:
        assert {e["resource_id"] for e in evidence_at(conn)} == {"d1", "d2", "d3"}
    assert verify(engine).ok

    # The next run that does not see d3 closes it: it was stored before that run began.
    last = _writer(engine)
    last.start()
    for ev in (_disk("d1", 2), _disk("d2")):
        last.add_evidence(ev)
    last.add_coverage(clean)
    assert last.finish("succeeded").counts["evidence_closed"] == 1
    with engine.connect() as conn:
        assert {e["resource_id"] for e in evidence_at(conn)} == {"d1", "d2"}


def test_an_item_seen_twice_in_a_run_is_neither_rewritten_nor_closed(
    engine: Engine, index: MappingIndex
) -> None:
    from core.records import Coverage

    clean = Coverage("a", "global", "disk", ok=True)
    w = _writer(engine)
    w.batch_size = 1  # every record flushes: the second copy meets the first in the database
    w.start()
    for ev in (_disk("d1"), _disk("d2"), _disk("d1")):
        w.add_evidence(ev)
    w.add_coverage(clean)
    s = w.finish("succeeded")
    assert s.counts["evidence_written"] == 2 and s.counts["evidence_closed"] == 0

    again = _writer(engine)
    again.batch_size = 1
    again.start()
    for ev in (_disk("d1"), _disk("d1", 2), _disk("d2")):
        again.add_evidence(ev)
    again.add_coverage(clean)
    s = again.finish("succeeded")
    # d1 unchanged, then changed within the run: one new version, nothing closed.
    assert s.counts["evidence_written"] == 1 and s.counts["evidence_closed"] == 0
    with engine.connect() as conn:
        payloads = {e["resource_id"]: e["payload"] for e in evidence_at(conn)}
    assert payloads == {"d1": {"id": "d1", "v": 2}, "d2": {"id": "d2", "v": 1}}


def test_a_batch_that_cannot_be_written_is_kept_and_its_error_raised(
    engine: Engine, index: MappingIndex
) -> None:
    """PostgreSQL writes batches behind the caller: a failure surfaces at the next call
    that writes, and the batch is put back rather than dropped (SQLite raises at once)."""
    from store.writer import RunSealedError

    w = _writer(engine)
    w.batch_size = 1
    w.start()
    with engine.begin() as conn:  # the reaper seals the run while it still writes
        conn.execute(
            text("UPDATE runs SET status = 'aborted', digest = 'x' WHERE id = :i"), {"i": w.run_id}
        )
    with pytest.raises(RunSealedError):
        for name in ("d1", "d2", "d3"):
            w.add_evidence(_disk(name))
        w.flush()
    # Still buffered: flushing again meets the same refusal instead of writing nothing.
    with pytest.raises(RunSealedError):
        w.flush()
    w.close()
    assert counts(engine)["evidence"] == 0


def test_closing_more_items_than_a_batch_closes_every_one(
    engine: Engine, index: MappingIndex
) -> None:
    """Closing pages through its candidates a batch at a time: none is skipped or doubled."""
    from core.records import Coverage

    clean = Coverage("a", "global", "disk", ok=True)
    w = _writer(engine)
    w.batch_size = 7
    w.start()
    for i in range(40):
        w.add_evidence(_disk(f"d{i:02d}"))
    w.add_coverage(clean)
    w.finish("succeeded")

    again = _writer(engine)
    again.batch_size = 7
    again.start()
    for i in range(0, 40, 5):  # 8 stay, 32 disappear
        again.add_evidence(_disk(f"d{i:02d}"))
    again.add_coverage(clean)
    s = again.finish("succeeded")
    assert s.counts["evidence_closed"] == 32
    with engine.connect() as conn:
        assert {e["resource_id"] for e in evidence_at(conn)} == {
            f"d{i:02d}" for i in range(0, 40, 5)
        }
        tombstones = conn.execute(
            select(func.count()).select_from(evidence).where(evidence.c.content_hash.is_(None))
        ).scalar_one()
    assert tombstones == 32
    assert verify(engine).ok


def test_a_writer_told_not_to_heartbeat_still_refuses_a_sealed_run(
    engine: Engine, index: MappingIndex
) -> None:
    """The daemon renews heartbeat_at with its lease; its writer must not move it (a
    killed replica's run would look alive after its lease expired) yet must still see a
    seal before writing rows."""
    from store.writer import RunSealedError

    w = plain_writer(engine, heartbeat=False)
    w.start()

    def beat() -> object:
        with engine.connect() as conn:
            return conn.execute(select(runs.c.heartbeat_at).where(runs.c.id == w.run_id)).scalar()

    started = beat()
    w.add_evidence(_disk("d1"))
    w.flush()
    w.heartbeat()
    assert beat() == started
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE runs SET status = 'aborted', digest = 'x' WHERE id = :i"), {"i": w.run_id}
        )
    w.add_evidence(_disk("d2"))
    with pytest.raises(RunSealedError):
        w.flush()
    w.close()
    assert counts(engine)["evidence"] == 1


def test_a_read_only_sqlite_engine_serves_many_threads_at_once(tmp_path) -> None:
    """``annexa serve`` reads through a read-only engine from uvicorn's worker threads:
    a dozen requests at once must each keep their connection (a pool that kept five
    closed the others' mid-query: "Cannot operate on a closed database")."""
    import sqlite3

    from store.engine import make_engine

    path = tmp_path / "copy.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x INTEGER)")
        db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(20_000)])
    engine = make_engine(f"sqlite:///{path}", readonly=True)
    start = threading.Barrier(12)
    errors: list[BaseException] = []
    counts: list[int] = []

    def read() -> None:
        try:
            start.wait()
            for _ in range(3):
                with engine.connect() as conn:
                    counts.append(len(conn.execute(text("SELECT x FROM t")).all()))
        except BaseException as exc:  # noqa: BLE001 - each thread's failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    assert not errors, errors[:3]
    assert counts == [20_000] * 36
