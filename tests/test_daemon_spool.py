"""The spool: records produced while the database is unreachable are written later,
with their original timestamps, and the digest chain still verifies."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.daemon import spool
from collector.daemon.execute import collect
from core.connector import CollectContext, Connector, ConnectorOptions
from core.records import Coverage, Evidence, Record
from mappings.loader import MappingIndex
from store.engine import make_engine
from store.integrity import verify
from store.leases import seal_aborted
from store.migrate import upgrade
from store.queries import evidence_at
from store.schema import evidence, run_units, runs
from store.writer import RunWriter
from tests import daemon_fixtures as fx
from tests.daemon_fixtures import TcpProxy
from tests.fakes import FAKE_REGISTRY, index, plain_writer

__all__ = ["index"]  # a fixture, imported for the tests below

pg_proxy = fx.pg_proxy  # fixture

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def disk(i: int) -> Evidence:
    return Evidence(
        "acct",
        "eu-1",
        "fake.disk.volume",
        f"d{i}",
        {"id": f"d{i}", "encrypted": True},
        collected_at=T0 + timedelta(seconds=i),
    )


def _interrupted_run(engine: Engine, spool_dir: Path, *, outage: bool) -> tuple[str, Path]:
    """A run that committed d0-d2, then journalled d3-d5 and died (no final status)."""
    w = plain_writer(engine, batch_size=spool.NEVER_FLUSH)
    run_id = w.start()
    j = spool.Journal(
        spool_dir,
        {
            "run_id": run_id,
            "source": "src",
            "connector_type": "fake",
            "config_digest": "c" * 64,
            "mapping_digest": "m" * 64,
            "agent_version": "t",
            "started_at": w.started_at.isoformat(),
        },
    )
    for i in range(3):
        ev = disk(i)
        j.evidence(ev, ev.body())
        w.add_evidence(ev)
    cov = Coverage("acct", "eu-1", "disk", ok=True)
    j.coverage(cov, T0)
    w.add_coverage(cov)
    w.flush()
    j.committed(w.counts.as_dict())
    if outage:
        j.mark_outage()
    for i in range(3, 6):
        ev = disk(i)
        j.evidence(ev, ev.body())
    j.close()
    w.close()
    return run_id, j.path


def _evidence_times(engine: Engine) -> dict[str, datetime]:
    with engine.connect() as conn:
        return {e["resource_id"]: e["collected_at"] for e in evidence_at(conn, with_payload=False)}


def test_replay_resumes_the_original_run_under_its_own_id(engine: Engine, tmp_path: Path) -> None:
    run_id, path = _interrupted_run(engine, tmp_path / "spool", outage=True)
    result = spool.replay(engine, path)
    assert result.mode == "resumed" and result.summary is not None
    assert result.summary.run_id == run_id and result.summary.status == "aborted"
    assert _evidence_times(engine) == {f"d{i}": T0 + timedelta(seconds=i) for i in range(6)}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(evidence)).scalar_one() == 6
    assert result.summary.counts["evidence_written"] == 6
    assert result.summary.counts["units_ok"] == 1
    assert not path.exists()
    assert verify(engine).ok


def test_replay_after_the_run_was_reaped_writes_a_new_run(engine: Engine, tmp_path: Path) -> None:
    run_id, path = _interrupted_run(engine, tmp_path / "spool", outage=True)
    assert seal_aborted(engine, run_id, "aborted by the reaper test")
    result = spool.replay(engine, path)
    assert result.mode == "new-run" and result.summary is not None
    assert result.summary.run_id != run_id
    assert any(run_id in e for e in result.summary.errors)
    assert _evidence_times(engine) == {f"d{i}": T0 + timedelta(seconds=i) for i in range(6)}
    assert verify(engine).ok


def test_a_crash_journal_without_outage_is_dropped_once_reaped(
    engine: Engine, tmp_path: Path
) -> None:
    run_id, path = _interrupted_run(engine, tmp_path / "spool", outage=False)
    assert seal_aborted(engine, run_id, "aborted by the reaper test")
    assert spool.replay(engine, path).mode == "discarded"
    assert not path.exists()
    assert verify(engine).ok


class GatedOptions(ConnectorOptions):
    pass


class GatedConnector(Connector):
    """Yields 20 disks; after the 8th it waits until the test has cut the database."""

    type = "gated"
    prefix = "fake"
    Options = GatedOptions
    reached = threading.Event()
    gate = threading.Event()

    @classmethod
    def checks(cls) -> list:
        return list(FAKE_REGISTRY)

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        for i in range(20):
            if i == 8:
                self.reached.set()
                assert self.gate.wait(10)
            yield Evidence(
                "acct",
                "eu-1",
                "fake.disk.volume",
                f"d{i}",
                {"id": f"d{i}", "encrypted": i % 2 == 0},
            )
        yield Coverage("acct", "eu-1", "disk", ok=True)


def test_database_cut_mid_run_loses_nothing(
    postgres_url: str,
    pg_proxy: Callable[[int], TcpProxy],
    index: MappingIndex,
    tmp_path: Path,
) -> None:
    direct = make_engine(postgres_url)
    upgrade(direct)
    proxy = pg_proxy(make_url(postgres_url).port or 5432)
    via_proxy = make_engine(make_url(postgres_url).set(port=proxy.port))
    cfg = ConnectorConfig(type="gated", name="g1")
    settings = Settings(AnnexaConfig(connectors=[cfg]), None)
    lc = LoadedConnector(cfg, GatedConnector, GatedOptions())
    run_id = str(uuid.uuid4())
    out: list = []
    th = threading.Thread(
        target=lambda: out.append(
            collect(
                settings,
                lc,
                via_proxy,
                index,
                run_id=run_id,
                cancel_event=threading.Event(),
                spool_dir=tmp_path / "spool",
                batch_size=5,
            )
        )
    )
    th.start()
    try:
        assert GatedConnector.reached.wait(10)
        with direct.connect() as conn:
            committed = conn.execute(select(func.count()).select_from(evidence)).scalar_one()
        assert committed >= 2  # batches of 5 records (evidence + findings) were committed
        proxy.close()
    finally:
        GatedConnector.gate.set()
    th.join(20)
    outcome = out[0]
    assert outcome.summary is None and outcome.journal is not None and outcome.journal.exists()
    with direct.connect() as conn:
        assert conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar() == "running"
    with pytest.raises(Exception):  # noqa: B017 - still down: the replay waits
        spool.replay(via_proxy, outcome.journal)
    proxy.open()
    result = spool.replay(via_proxy, outcome.journal, batch_size=5)
    assert result.mode == "resumed" and result.summary.status == "succeeded"
    assert result.summary.run_id == run_id
    with direct.connect() as conn:
        rows = list(evidence_at(conn))
        stored_runs = conn.execute(select(runs.c.id, runs.c.status)).all()
    assert sorted(r["resource_id"] for r in rows) == sorted(f"d{i}" for i in range(20))
    assert stored_runs == [(run_id, "succeeded")]
    assert verify(direct).ok
    via_proxy.dispose()
    direct.dispose()


def test_replay_keeps_the_inventory_snapshot_time(engine: Engine, tmp_path: Path) -> None:
    """Evidence journalled with ``source_updated_at`` (a bulk inventory's snapshot) is
    stored with it when the journal is replayed, and the run still verifies."""
    as_of = T0 - timedelta(days=3)
    w = RunWriter(engine, source="src", connector_type="fake", config_digest="c" * 64,
                  mapping_digest="m" * 64, agent_version="t", batch_size=spool.NEVER_FLUSH)
    run_id = w.start()
    j = spool.Journal(tmp_path / "spool", {
        "run_id": run_id, "source": "src", "connector_type": "fake",
        "config_digest": "c" * 64, "mapping_digest": "m" * 64, "agent_version": "t",
        "started_at": w.started_at.isoformat()})
    j.mark_outage()
    for i in range(2):
        ev = Evidence("acct", "eu-1", "fake.disk.volume", f"d{i}",
                      {"id": f"d{i}", "encrypted": True},
                      collected_at=T0 + timedelta(seconds=i),
                      source_updated_at=as_of if i == 0 else None)
        j.evidence(ev, ev.body())
    j.coverage(Coverage("acct", "eu-1", "disk", ok=True), T0 + timedelta(seconds=5))
    j.close()
    w.close()
    result = spool.replay(engine, j.path)
    assert result.mode == "resumed"
    with engine.connect() as conn:
        rows = select(evidence.c.resource_id, evidence.c.source_updated_at)
        stored = dict(conn.execute(rows).all())
        units = conn.execute(select(run_units.c.source_as_of)).scalars().all()
    assert stored == {"d0": as_of, "d1": None}
    assert units == [as_of]
    assert verify(engine).ok
