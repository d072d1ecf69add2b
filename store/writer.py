"""The batched, change-only run writer.

One ``RunWriter`` per run of one connector instance. Records are buffered and flushed
in batches, one transaction per batch: bodies are content-addressed in ``blobs``, and a
version row is written only when an item's content differs from its latest stored
version. Keys seen by the run are noted in a temporary table on the writer's own
connection so that, at the end, items of units read without error that were *not*
seen get a tombstone — memory stays flat however large the estate.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from connectors.records import Coverage, Evidence, Finding, sha256_hex, utcnow
from store.integrity import compute_digest, finding_hash, last_digest
from store.schema import blobs, evidence, findings, run_units, runs

RUN_STATUSES = ("running", "succeeded", "partial", "failed", "aborted")
_SEEN = "annexa_seen"


@dataclass
class RunCounts:
    evidence_seen: int = 0
    evidence_written: int = 0
    evidence_closed: int = 0
    findings_seen: int = 0
    findings_written: int = 0
    findings_closed: int = 0
    units_ok: int = 0
    units_error: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "evidence_seen": self.evidence_seen,
            "evidence_written": self.evidence_written,
            "evidence_closed": self.evidence_closed,
            "findings_seen": self.findings_seen,
            "findings_written": self.findings_written,
            "findings_closed": self.findings_closed,
            "units_ok": self.units_ok,
            "units_error": self.units_error,
            "findings_by_status": dict(sorted(self.by_status.items())),
        }


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    source: str
    status: str
    digest: str
    prev_digest: str
    counts: dict[str, Any]
    errors: list[str]
    started_at: datetime
    finished_at: datetime


def _insert_ignore(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


class RunWriter:
    """Writes one run. Use as a context manager or call ``start``/``finish``."""

    def __init__(
        self,
        engine: Engine,
        *,
        source: str,
        connector_type: str,
        config_digest: str,
        mapping_digest: str,
        agent_version: str,
        batch_size: int = 1000,
        run_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.connector_type = connector_type
        self.config_digest = config_digest
        self.mapping_digest = mapping_digest
        self.agent_version = agent_version
        self.batch_size = batch_size
        self.run_id = run_id or str(uuid.uuid4())
        self.counts = RunCounts()
        self.errors: list[str] = []
        self._conn: Connection | None = None
        self._ev: dict[str, dict[str, Any]] = {}
        self._bodies: dict[str, str] = {}
        self._fi: dict[str, dict[str, Any]] = {}
        self._units: list[dict[str, Any]] = []
        self.started_at = utcnow()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> str:
        self._conn = self.engine.connect()
        conn = self._conn
        conn.execute(
            insert(runs).values(
                id=self.run_id,
                source=self.source,
                connector_type=self.connector_type,
                status="running",
                started_at=self.started_at,
                heartbeat_at=self.started_at,
                host=f"{socket.gethostname()}:{os.getpid()}",
                agent_version=self.agent_version,
                config_digest=self.config_digest,
                mapping_digest=self.mapping_digest,
            )
        )
        temp = "TEMPORARY" if conn.dialect.name == "postgresql" else "TEMP"
        conn.execute(text(f"DROP TABLE IF EXISTS {_SEEN}"))
        conn.execute(
            text(f"CREATE {temp} TABLE {_SEEN} (kind CHAR(1) NOT NULL, key TEXT NOT NULL)")
        )
        conn.commit()
        return self.run_id

    def __enter__(self) -> RunWriter:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._conn is not None:
            self.finish("failed" if exc_type else "succeeded")

    # -- adding records ------------------------------------------------------------

    def add_evidence(self, ev: Evidence) -> str:
        """Buffer ``ev``; return its content hash (what findings on it refer to)."""
        body = ev.body()
        chash = sha256_hex(body)
        self._bodies[chash] = body
        self._ev[ev.key] = {
            "run_id": self.run_id,
            "source": self.source,
            "key": ev.key,
            "scope": ev.scope,
            "region": ev.region,
            "service": ev.service,
            "resource_type": ev.resource_type,
            "resource_id": ev.resource_id,
            "content_hash": chash,
            "collected_at": ev.collected_at,
        }
        self.counts.evidence_seen += 1
        if len(self._ev) >= self.batch_size:
            self.flush()
        return chash

    def add_finding(self, f: Finding) -> None:
        row = {
            "run_id": self.run_id,
            "source": self.source,
            "key": f.key,
            "check_id": f.check_id,
            "scope": f.scope,
            "region": f.region,
            "service": f.service,
            "resource_type": f.resource_type,
            "resource_id": f.resource_id,
            "status": f.status,
            "severity": f.severity,
            "message": f.message,
            "evidence_hash": f.evidence_hash,
            "controls": json.dumps(sorted(f.controls)),
            "mapping_digest": self.mapping_digest,
            "observed_at": f.observed_at,
        }
        row["finding_hash"] = finding_hash(row)
        self._fi[f.key] = row
        self.counts.findings_seen += 1
        self.counts.by_status[f.status] = self.counts.by_status.get(f.status, 0) + 1
        if len(self._fi) >= self.batch_size:
            self.flush()

    def add_coverage(self, c: Coverage) -> None:
        self._units.append(
            {
                "run_id": self.run_id,
                "scope": c.scope,
                "region": c.region,
                "service": c.service,
                "ok": c.ok,
                "error": c.error,
                "recorded_at": utcnow(),
            }
        )
        if c.ok:
            self.counts.units_ok += 1
        else:
            self.counts.units_error += 1
            self.errors.append(f"{c.unit}: {c.error}")

    def add_error(self, message: str) -> None:
        """A run-level error (not tied to a unit), kept in the run's record."""
        self.errors.append(message)

    # -- flushing ------------------------------------------------------------------

    def flush(self) -> None:
        conn = self._require_conn()
        if conn.in_transaction():
            conn.commit()
        with conn.begin():
            if self._ev:
                self._flush_changes(conn, evidence, evidence.c.content_hash, "E", self._ev)
            if self._fi:
                self._flush_changes(conn, findings, findings.c.finding_hash, "F", self._fi)
            if self._units:
                conn.execute(insert(run_units), self._units)
                self._units = []
            conn.execute(update(runs).where(runs.c.id == self.run_id).values(heartbeat_at=utcnow()))

    def _flush_changes(
        self,
        conn: Connection,
        table: Any,
        hash_col: Any,
        kind: str,
        buffer: dict[str, dict[str, Any]],
    ) -> None:
        keys = list(buffer)
        current = self._current_hashes(conn, table, hash_col, keys)
        changed = [row for key, row in buffer.items() if current.get(key) != row[hash_col.name]]
        if changed:
            if kind == "E":
                new_bodies = {r["content_hash"] for r in changed}
                conn.execute(
                    _insert_ignore(conn, blobs),
                    [
                        {"hash": h, "body": self._bodies[h], "size": len(self._bodies[h])}
                        for h in new_bodies
                    ],
                )
                self.counts.evidence_written += len(changed)
            else:
                self.counts.findings_written += len(changed)
            conn.execute(insert(table), changed)
        conn.execute(
            text(f"INSERT INTO {_SEEN} (kind, key) VALUES (:kind, :key)"),
            [{"kind": kind, "key": k} for k in keys],
        )
        buffer.clear()
        if kind == "E":
            self._bodies.clear()

    def _current_hashes(
        self, conn: Connection, table: Any, hash_col: Any, keys: Sequence[str]
    ) -> dict[str, str | None]:
        latest = (
            select(func.max(table.c.id))
            .where(
                table.c.source == self.source, table.c.key.in_(bindparam("keys", expanding=True))
            )
            .group_by(table.c.key)
        )
        q = select(table.c.key, hash_col).where(table.c.id.in_(latest.scalar_subquery()))
        if hash_col is findings.c.finding_hash:
            # A tombstoned finding is "absent", so a reappearing one is written again.
            q = q.where(findings.c.status.is_not(None))
        return {k: h for k, h in conn.execute(q, {"keys": list(keys)})}

    # -- closing -------------------------------------------------------------------

    def _closable_units(
        self, conn: Connection
    ) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
        ok: set[tuple[str, str, str]] = set()
        bad: set[tuple[str, str, str]] = set()
        q = select(
            run_units.c.scope, run_units.c.region, run_units.c.service, run_units.c.ok
        ).where(run_units.c.run_id == self.run_id)
        for scope, region, service, is_ok in conn.execute(q):
            (ok if is_ok else bad).add((scope, region, service))
        return ok, bad

    @staticmethod
    def _covered(units: set[tuple[str, str, str]], scope: str, region: str, service: str) -> bool:
        # A unit read in region "global" (IAM, S3 listing) covers every region of its service.
        return (scope, region, service) in units or (scope, "global", service) in units

    def _close_unseen(self, conn: Connection, finished_at: datetime) -> None:
        ok, bad = self._closable_units(conn)
        if not ok:
            return
        for table, kind in ((evidence, "E"), (findings, "F")):
            latest = (
                select(func.max(table.c.id).label("mid"))
                .where(table.c.source == self.source)
                .group_by(table.c.key)
                .subquery()
            )
            alive = (
                table.c.content_hash.is_not(None) if kind == "E" else table.c.status.is_not(None)
            )
            unseen = text(
                f"NOT EXISTS (SELECT 1 FROM {_SEEN} s "
                f"WHERE s.kind = :kind AND s.key = {table.name}.key)"
            )
            q = select(table).join(latest, latest.c.mid == table.c.id).where(alive, unseen)
            batch: list[dict[str, Any]] = []
            # The cursor is read to the end before the inserts below: SQLite cannot write a
            # table while a cursor on it is open on the same connection.
            rows = conn.execute(q, {"kind": kind}).mappings()
            for row in rows:
                if not self._covered(ok, row["scope"], row["region"], row["service"]):
                    continue
                if self._covered(bad, row["scope"], row["region"], row["service"]):
                    continue
                batch.append(self._tombstone(dict(row), kind, finished_at))
            for i in range(0, len(batch), self.batch_size):
                conn.execute(insert(table), batch[i : i + self.batch_size])
            if kind == "E":
                self.counts.evidence_closed += len(batch)
            else:
                self.counts.findings_closed += len(batch)

    def _tombstone(self, row: dict[str, Any], kind: str, at: datetime) -> dict[str, Any]:
        row.pop("id")
        row["run_id"] = self.run_id
        if kind == "E":
            row["content_hash"] = None
            row["collected_at"] = at
        else:
            row["status"] = None
            row["message"] = "no longer observed"
            row["observed_at"] = at
            row["mapping_digest"] = self.mapping_digest
            row["finding_hash"] = finding_hash(row)
        return row

    def heartbeat(self) -> None:
        conn = self._require_conn()
        with conn.begin():
            conn.execute(update(runs).where(runs.c.id == self.run_id).values(heartbeat_at=utcnow()))

    def finish(self, status: str) -> RunSummary:
        """Flush, close unseen items of clean units, seal the run with its digest."""
        if status not in RUN_STATUSES or status == "running":
            raise ValueError(f"cannot finish a run as {status!r}")
        conn = self._require_conn()
        try:
            self.flush()
            finished_at = utcnow()
            with conn.begin():
                if status != "failed":
                    self._close_unseen(conn, finished_at)
                prev = last_digest(conn, self.source, exclude_run=self.run_id)
                run = {
                    "id": self.run_id,
                    "source": self.source,
                    "connector_type": self.connector_type,
                    "status": status,
                    "started_at": self.started_at,
                    "finished_at": finished_at,
                    "agent_version": self.agent_version,
                    "config_digest": self.config_digest,
                    "mapping_digest": self.mapping_digest,
                    "counts": json.dumps(self.counts.as_dict(), sort_keys=True),
                    "errors": json.dumps(self.errors),
                }
                # Round-trip timestamps through the database so the digest uses stored values.
                run["started_at"] = conn.execute(
                    select(runs.c.started_at).where(runs.c.id == self.run_id)
                ).scalar_one()
                digest = compute_digest(conn, run, prev)
                conn.execute(
                    update(runs)
                    .where(runs.c.id == self.run_id, runs.c.status == "running")
                    .values(
                        status=status,
                        finished_at=finished_at,
                        heartbeat_at=finished_at,
                        counts=run["counts"],
                        errors=run["errors"],
                        digest=digest,
                        prev_digest=prev,
                    )
                )
            return RunSummary(
                run_id=self.run_id,
                source=self.source,
                status=status,
                digest=digest,
                prev_digest=prev,
                counts=self.counts.as_dict(),
                errors=list(self.errors),
                started_at=run["started_at"],
                finished_at=finished_at,
            )
        finally:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                if self._conn.in_transaction():
                    self._conn.rollback()
                self._conn.execute(text(f"DROP TABLE IF EXISTS {_SEEN}"))
                self._conn.commit()
            except Exception:  # noqa: BLE001,S110 - best effort; the temp table dies with the connection
                pass
            self._conn.close()
            self._conn = None

    def _require_conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError(
                "RunWriter not started (call start() or use it as a context manager)"
            )
        return self._conn


def write_records(writer: RunWriter, records: Iterable[Evidence | Finding | Coverage]) -> None:
    """Convenience for tests and benchmarks: route each record to the writer."""
    for rec in records:
        if isinstance(rec, Evidence):
            writer.add_evidence(rec)
        elif isinstance(rec, Finding):
            writer.add_finding(rec)
        else:
            writer.add_coverage(rec)
