"""Inventory freshness in the store (migration 0007): ``evidence.source_updated_at`` and
``run_units.source_as_of`` are written, sealed, shown, and counted toward ``stale``.

A bulk inventory vouches for its records only up to its snapshot time. A control whose
only evidence comes from an inventory snapshot older than the freshness window is
``stale``, never ``pass``; the same evidence read directly (no as-of) passes. Unchanged
items write no new row, so a later, fresh snapshot confirms them through its unit's
``source_as_of``. Both columns enter a run's manifest only when not NULL: a forged value
is named by ``verify``, and runs sealed before the migration still verify.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text

from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.runner import run_connector
from core.connector import load_connector
from core.records import Coverage, Evidence, utcnow
from mappings.loader import MappingIndex, load_mappings
from store.engine import make_engine
from store.integrity import verify
from store.migrate import _config, current_revision, head_revision, upgrade
from store.queries import evidence_at
from store.schema import evidence, findings, run_units, runs
from store.status import control_statuses
from store.timelines import control_timelines
from tests import gcp_fixtures as fx
from tests.fakes import FakeConnector, fake_settings, index
from tests.gcp_fixtures import GcpFake, ServiceAccountKey, build_estate, fake_options
from tests.tamper import tamper

__all__ = ["index"]  # a fixture, imported for the tests below

pytestmark = pytest.mark.clock
sa_key_material = fx.sa_key_material

BULK_TYPES = {"gcp.storage.bucket", "gcp.network.firewall", "gcp.network.vpc",
              "gcp.network.subnet"}
#: A database sealed by the code before migration 0007 (revision 0006, commit 88788c6):
#: two runs of the fake connector, made by tests/data/README.md's recipe.
SEALED_0006 = Path(__file__).parent / "data" / "sealed_0006.sqlite"


def _user(mfa: bool, as_of: datetime | None) -> list[Any]:
    """One user read in a clean global unit; ``as_of``: from an inventory snapshot."""
    return [
        Evidence("acct-1", "global", "fake.user.account", "alice", {"name": "alice", "mfa": mfa},
                 source_updated_at=as_of),
        Coverage("acct-1", "global", "user", ok=True),
    ]


def _collect(engine: Engine, index: MappingIndex, records: list[Any]) -> Any:
    FakeConnector.script = records
    settings = fake_settings("x")
    return run_connector(settings, settings.connectors[0], engine, index)


def _status(engine: Engine, index: MappingIndex, control: str) -> str:
    return next(c.status for c in control_statuses(engine, index) if c.id == control)


def _timeline_now(engine: Engine, index: MappingIndex, control: str) -> str:
    end = utcnow()
    tl = control_timelines(engine, index, end - timedelta(days=30), end, controls=[control])
    return tl[control].status_at(end)


# -- stale ------------------------------------------------------------------------------


def test_an_old_inventory_snapshot_is_stale_and_the_same_read_directly_passes(
    engine: Engine, index: MappingIndex
) -> None:
    """A.8.5 rests only on fake.user.mfa (automated part sufficient): its one evidence,
    from a snapshot 10 days old, is stale although collected now."""
    assert index.documented("A.8.5").automated_sufficient
    old = utcnow() - timedelta(days=10)
    s = _collect(engine, index, _user(True, old))
    assert s.status == "succeeded"
    assert _status(engine, index, "A.8.5") == "stale"
    assert _timeline_now(engine, index, "A.8.5") == "stale"

    # A fresh snapshot of the same (unchanged) item: no new evidence row, and the unit's
    # as-of confirms it — pass again, not stale forever.
    with engine.connect() as conn:
        rows_before = conn.execute(select(func.count()).select_from(evidence)).scalar_one()
    s = _collect(engine, index, _user(True, utcnow() - timedelta(minutes=5)))
    assert s.counts["evidence_written"] == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(evidence)).scalar_one() == (
            rows_before
        )
    assert _status(engine, index, "A.8.5") == "pass"
    assert _timeline_now(engine, index, "A.8.5") == "pass"


def test_a_timeline_starting_after_the_old_snapshot_agrees_with_control_statuses(
    engine: Engine, index: MappingIndex
) -> None:
    """The finding in force at the timeline's start was judged on an old snapshot: the
    replay's initial state is stale too, as control_statuses says."""
    _collect(engine, index, _user(True, utcnow() - timedelta(days=10)))
    start = utcnow()
    end = start + timedelta(microseconds=1)
    tl = control_timelines(engine, index, start, end, controls=["A.8.5"])["A.8.5"]
    assert tl.status_at(start) == "stale" == _status(engine, index, "A.8.5")


def test_the_same_evidence_read_directly_passes(engine: Engine, index: MappingIndex) -> None:
    _collect(engine, index, _user(True, None))
    assert _status(engine, index, "A.8.5") == "pass"
    assert _timeline_now(engine, index, "A.8.5") == "pass"
    with engine.connect() as conn:
        assert conn.execute(select(run_units.c.source_as_of)).scalars().all() == [None, None]


def test_a_fresh_direct_read_after_an_old_snapshot_passes(
    engine: Engine, index: MappingIndex
) -> None:
    """Switching the same item back to a direct read confirms it as of that read."""
    _collect(engine, index, _user(True, utcnow() - timedelta(days=10)))
    assert _status(engine, index, "A.8.5") == "stale"
    _collect(engine, index, _user(True, None))
    assert _status(engine, index, "A.8.5") == "pass"


def test_a_failure_from_an_old_snapshot_is_still_a_failure(
    engine: Engine, index: MappingIndex
) -> None:
    """Staleness never hides a failure (fail ranks above stale)."""
    _collect(engine, index, _user(False, utcnow() - timedelta(days=10)))
    assert _status(engine, index, "A.8.5") == "fail"


# -- stored, shown, sealed ---------------------------------------------------------------


def test_the_column_is_shown_by_queries_and_views(engine: Engine, index: MappingIndex) -> None:
    old = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)
    _collect(engine, index, _user(True, old))
    with engine.connect() as conn:
        (row,) = list(evidence_at(conn, resource="alice"))
        assert row["source_updated_at"] == old
        for view in ("evidence_current", "evidence_history"):
            got = conn.execute(text(f"SELECT source_updated_at FROM {view}")).scalar_one()
            # PostgreSQL gives a datetime; SQLite the stored text.
            assert str(got).startswith("2026-11-01") and "12:00:00.123456" in str(got)
        units = dict(conn.execute(select(run_units.c.service, run_units.c.source_as_of)).all())
        assert units == {"user": old, "*": None}  # "*": the engine's whole-scope unit


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE evidence SET source_updated_at = collected_at",
        "UPDATE evidence SET source_updated_at = NULL",
        "UPDATE run_units SET source_as_of = NULL",
    ],
    ids=["forged-fresh", "erased", "unit-erased"],
)
def test_a_forged_freshness_is_named_by_verify(
    engine: Engine, index: MappingIndex, db_url: str, statement: str
) -> None:
    first = _collect(engine, index, _user(True, utcnow() - timedelta(days=10)))
    assert verify(engine).ok
    tamper(db_url, statement)
    result = verify(engine)
    assert not result.ok
    assert result.first_broken_run == first.run_id


def test_an_erased_unit_as_of_cannot_hide_in_its_error_text(
    engine: Engine, index: MappingIndex, db_url: str
) -> None:
    """Moving the as-of into the unit's free-text error (and erasing it) would make the
    same text under a suffix encoding; the ``V`` line tells them apart."""
    from store.integrity import ts

    old = datetime(2026, 11, 1, tzinfo=UTC)
    first = _collect(engine, index, _user(True, old))
    assert verify(engine).ok
    tamper(db_url, f"UPDATE run_units SET error = '{ts(old)}|', source_as_of = NULL "
                            "WHERE source_as_of IS NOT NULL")
    result = verify(engine)
    assert not result.ok and result.first_broken_run == first.run_id


def test_freshness_is_outside_the_content_hash(engine: Engine, index: MappingIndex) -> None:
    """The same payload with and without an as-of has one content hash (one blob)."""
    _collect(engine, index, _user(True, None))
    _collect(engine, index, _user(True, utcnow()))
    with engine.connect() as conn:
        hashes = conn.execute(select(evidence.c.content_hash)).scalars().all()
    assert len(hashes) == 1  # unchanged content: no new version at all


# -- GCP bulk inventory into the store ---------------------------------------------------


@pytest.fixture
def gcp(sa_key_material: ServiceAccountKey, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ANNEXA_TEST_GCP_KEY", sa_key_material.json)
    with GcpFake(public_key_pem=sa_key_material.public_pem, page_size=1000) as f:
        yield f


def _gcp_run(engine: Engine, fake: GcpFake, db_url: str, **extra: Any) -> Any:
    opts = fake_options(fake, key=True, max_workers=4, **extra)
    cfg = ConnectorConfig(type="gcp", name="gcp-org", options=opts)
    cls = load_connector("gcp")
    loaded = LoadedConnector(cfg, cls, cls.Options.model_validate(opts))
    settings = Settings(AnnexaConfig(database={"url": db_url}, connectors=[cfg]), None)
    settings.connectors = [loaded]
    return run_connector(settings, loaded, engine, load_mappings([]))


def conn_scopes(engine: Engine, run_id: str) -> set[tuple[str, str]]:
    """(scope, service) of the inventory evidence a run wrote."""
    with engine.connect() as conn:
        return {(scope, svc) for scope, svc in conn.execute(
            select(evidence.c.scope, evidence.c.service).where(
                evidence.c.run_id == run_id, evidence.c.source_updated_at.is_not(None)))}


def test_a_gcp_bulk_run_persists_the_snapshot_time(
    engine: Engine, gcp: GcpFake, db_url: str
) -> None:
    build_estate(gcp, denied=False)
    gcp.asset_read_time = "2026-11-30T08:00:00.250000Z"
    stamp = datetime(2026, 11, 30, 8, 0, 0, 250000, tzinfo=UTC)
    s = _gcp_run(engine, gcp, db_url, inventory="asset_inventory")
    assert s.status == "succeeded", s.errors
    with engine.connect() as conn:
        rows = conn.execute(
            select(evidence.c.resource_type, evidence.c.source_updated_at)
            .where(evidence.c.run_id == s.run_id)
        ).all()
        units = conn.execute(
            select(run_units.c.scope, run_units.c.service, run_units.c.source_as_of,
                   run_units.c.ok)
            .where(run_units.c.run_id == s.run_id)
        ).all()
        shown = {e["resource_type"]: e["source_updated_at"] for e in evidence_at(conn)}
    bulk = [at for rtype, at in rows if rtype in BULK_TYPES]
    assert len(bulk) == 21 and set(bulk) == {stamp}
    assert all(at is None for rtype, at in rows if rtype not in BULK_TYPES)
    # The storage/network units holding inventory evidence carry its snapshot time (a
    # unit with no item has nothing to date: NULL); the units read directly, none.
    with_items = {(scope, svc) for scope, svc in conn_scopes(engine, s.run_id)}
    for scope, svc, at, ok in units:
        assert ok
        if (scope, svc) in with_items:
            assert at == stamp, (scope, svc)
        else:
            assert at is None, (scope, svc)
    assert {svc for scope, svc in with_items} == {"storage", "network"}
    assert {shown[t] for t in BULK_TYPES} == {stamp}
    assert verify(engine).ok

    # The same estate read directly: same content, so no new evidence version; the units'
    # as-of is NULL (the direct read confirms as of itself).
    d = _gcp_run(engine, gcp, db_url)
    assert d.status == "succeeded" and d.counts["evidence_written"] == 0
    with engine.connect() as conn:
        assert conn.execute(
            select(func.count()).select_from(run_units)
            .where(run_units.c.run_id == d.run_id, run_units.c.source_as_of.is_not(None))
        ).scalar_one() == 0
    assert verify(engine).ok


# -- migration ---------------------------------------------------------------------------


def _counts(eng: Engine) -> dict[str, int]:
    with eng.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (evidence, findings, run_units, runs)}


def test_a_database_sealed_before_0007_upgrades_and_still_verifies(tmp_path: Path) -> None:
    """The database was written and sealed by the code of revision 0006 itself."""
    db = tmp_path / "old.sqlite"
    shutil.copyfile(SEALED_0006, db)
    eng = make_engine(f"sqlite:///{db}")
    try:
        assert current_revision(eng) == "0006"
        before = _counts(eng)
        upgrade(eng)
        assert current_revision(eng) == head_revision()
        assert _counts(eng) == before and before["runs"] == 2
        result = verify(eng)
        assert result.ok, result.problems
        assert result.runs_checked == 2
        with eng.connect() as conn:
            assert conn.execute(
                select(func.count()).select_from(evidence)
                .where(evidence.c.source_updated_at.is_not(None))
            ).scalar_one() == 0
    finally:
        eng.dispose()


def test_upgrade_from_0006_keeps_existing_rows(
    engine: Engine, index: MappingIndex, db_url: str
) -> None:
    """On both engines (PostgreSQL included): rows written at 0006 survive 0007."""
    _collect(engine, index, _user(True, None))
    _collect(engine, index, _user(False, None))
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with engine.connect() as conn:
        cols = {r[0] for r in conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'evidence'"
            if engine.dialect.name == "postgresql" else
            "SELECT name FROM pragma_table_info('evidence')"))}
    assert "source_updated_at" not in cols
    before = _counts(engine)
    upgrade(engine)
    assert _counts(engine) == before and before["evidence"] == 2
    assert verify(engine).ok
    _collect(engine, index, _user(True, utcnow() - timedelta(days=10)))
    assert verify(engine).ok
    assert _status(engine, index, "A.8.5") == "stale"


# -- audit package ----------------------------------------------------------------------


def test_the_audit_package_carries_and_checks_the_snapshot_time(
    engine: Engine, index: MappingIndex, tmp_path: Path
) -> None:
    """evidence.csv shows ``source_updated_at``; the package verifier rebuilds each row's
    manifest line with it (a forged value in the CSV is named) and the runs' digests
    recompute from the lines the package carries."""
    import csv
    import io
    import zipfile

    from exports.package import build_package
    from exports.verify import verify_package
    from mappings.soa import default_scope

    start = utcnow() - timedelta(hours=1)
    as_of = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    _collect(engine, index, _user(True, as_of))
    end = utcnow()
    pkg = tmp_path / "audit.zip"
    build_package(engine, index, start=start, end=end, out=pkg, freshness=timedelta(days=7),
                  exceptions=[], scope=default_scope(index.catalog), agent_version="test")
    check = verify_package(pkg, engine=engine)
    assert check.ok, check.problems
    with zipfile.ZipFile(pkg) as zf:
        text_csv = zf.read("evidence.csv").decode()
        members = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    rows = list(csv.DictReader(io.StringIO(text_csv)))
    (alice,) = [r for r in rows if r["resource_id"] == "alice"]
    assert alice["source_updated_at"] == "2026-11-20T06:30:00.000000Z"

    forged = text_csv.replace("2026-11-20T06:30:00.000000Z", "2026-12-01T06:30:00.000000Z")
    bad = tmp_path / "forged.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, forged.encode() if name == "evidence.csv" else data)
    reasons = [p.reason for p in verify_package(bad).problems]
    assert any("is not in the manifest of run" in r for r in reasons), reasons
