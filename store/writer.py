"""The batched, change-only run writer.

One ``RunWriter`` per run of one connector instance. Records are buffered and flushed
in batches, one transaction per batch: bodies are content-addressed in ``blobs``, and a
version row is written only when an item's content differs from its latest stored
version. Keys the run saw unchanged are noted in a temporary table on the writer's own
connection (a changed item's latest version is the run's own), so that, at the end,
items of units read without error that were *not* seen get a tombstone — memory stays
flat however large the estate.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    column,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import table as sa_table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import StatementError

from core.records import Coverage, Evidence, Finding, canonical_body, utcnow
from core.signing import Signer
from store.integrity import finding_hash
from store.schema import EVIDENCE_FIELDS, FINDING_FIELDS, blobs, evidence, findings, run_units, runs
from store.sealing import seal_run

RUN_STATUSES = ("running", "succeeded", "partial", "failed", "aborted")
# Temporary tables (one per writer connection): ids of the stored versions this run saw
# unchanged. Integer keys: no text index to maintain, one rowid probe when closing.
_SEEN = {"E": "annexa_seen_evidence", "F": "annexa_seen_findings"}
# Temporary: the ids of the versions closing will tombstone, read back a batch at a time.
_CLOSE = "annexa_closing"

# Buffered rows are tuples in these column orders; the timestamp is always last (an
# evidence row's last two columns are timestamps: the source's as-of, then collected_at).
_EV_COLS = ("run_id", *EVIDENCE_FIELDS, "source_updated_at", "collected_at")
_FI_COLS = ("run_id", *FINDING_FIELDS, "finding_hash", "observed_at")
_EV_HASH = _EV_COLS.index("content_hash")
_ABSENT: tuple[None, int] = (None, 0)
# What one flush writes: evidence rows by key, their bodies by hash, finding rows by key,
# unit outcomes.
_Batch = tuple[
    dict[str, tuple[Any, ...]], dict[str, bytes], dict[str, tuple[Any, ...]], list[dict[str, Any]]
]
# A run's heartbeat_at is refreshed at least this often while it writes: a daemon's
# reaper seals a run silent for a few heartbeats (15 s each by default).
_HEARTBEAT_EVERY_S = 5.0
_FI_HASH = _FI_COLS.index("finding_hash")


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
    key_id: str | None = None


class _Statements:
    """The hot path's SQL for one dialect, rendered once per run.

    Rows are buffered as tuples and handed to the driver with as little per-row work
    as possible: SQLAlchemy's per-row parameter processing would cost more than the
    inserts themselves. Timestamps go through the column type's own bind processor, so
    stored values are exactly what ``insert(table)`` stores.

    SQLite: ``executemany`` of prepared statements (one ``sqlite3_step`` per row, no
    round trip). PostgreSQL: one statement per batch and table, the batch passed as
    column arrays through ``unnest`` (a round trip per row otherwise dominates), and
    the latest version of each key found by one index probe per key (``LATERAL``):
    an ``IN`` list over a table the planner has no statistics for yet (a first run)
    is planned as a sequential scan, which made a first write quadratic.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.postgresql = dialect.name == "postgresql"
        self.ev_ts = self._processor(dialect, evidence.c.collected_at)
        self.fi_ts = self._processor(dialect, findings.c.observed_at)
        blob_cols = ("hash", "body", "size")
        if self.postgresql:
            self.blob = self._unnest_insert(dialect, blobs, blob_cols) + " ON CONFLICT DO NOTHING"
            self.evidence = self._unnest_insert(dialect, evidence, _EV_COLS)
            self.findings = self._findings_insert(dialect, postgresql=True)
            # Change detection in one round trip: the server compares each key's latest
            # version (one index probe per key: LATERAL) with the batch's hash, notes the
            # unchanged ids itself, and sends back only the keys to write (none, for an
            # unchanged estate). A tombstoned finding is "absent": written again.
            self.compare_ev = self._compare(
                "SELECT e.content_hash AS stored, e.id FROM evidence e "
                "WHERE e.source = %s AND e.key = b.key ORDER BY e.id DESC LIMIT 1",
                _SEEN["E"],
            )
            self.compare_fi = self._compare(
                "SELECT CASE WHEN f.status IS NULL THEN NULL ELSE f.finding_hash END AS stored, "
                "f.id FROM findings f "
                "WHERE f.source = %s AND f.key = b.key ORDER BY f.id DESC LIMIT 1",
                _SEEN["F"],
            )
        else:
            self.blob = self._insert(dialect, blobs, blob_cols) + " ON CONFLICT DO NOTHING"
            self.evidence = self._insert(dialect, evidence, _EV_COLS)
            self.findings = self._findings_insert(dialect, postgresql=False)
            self.seen = {
                kind: f"INSERT OR IGNORE INTO {name} (id) VALUES (?)"
                for kind, name in _SEEN.items()
            }
            self.current_ev = (
                "SELECT key, content_hash, max(id) FROM evidence "
                "WHERE source = ? AND key IN ({}) GROUP BY key"
            )
            self.current_fi = (
                "SELECT key, finding_hash, max(id), status FROM findings "
                "WHERE source = ? AND key IN ({}) GROUP BY key"
            )

    @staticmethod
    def _compare(latest: str, seen: str) -> str:
        return (
            "WITH b AS (SELECT * FROM unnest(%b::text[], %b::text[]) AS b(key, hash)), "
            f"cur AS (SELECT b.key, b.hash, t.stored, t.id FROM b LEFT JOIN LATERAL ({latest}) "
            "AS t ON true), "
            f"noted AS (INSERT INTO {seen} (id) SELECT id FROM cur WHERE stored = hash) "
            "SELECT key FROM cur WHERE stored IS DISTINCT FROM hash"
        )

    @staticmethod
    def _findings_insert(dialect: Dialect, *, postgresql: bool) -> str:
        """Insert finding rows, each with ``evidence_id``: the evidence version it was
        judged on, found by the database as the row is written.

        A verdict is judged on its own resource's evidence (``core.checks.evaluate``),
        so the version is the latest row of that resource's key with the finding's
        ``evidence_hash``: written in this batch (evidence goes first, in the same
        transaction) or earlier, when unchanged. One index probe of
        ``(source, key, id)`` per row. No such row (no evidence, or evidence of another
        item): NULL, never a guess.
        """
        prep = dialect.identifier_preparer
        names = [prep.format_column(findings.c[c]) for c in _FI_COLS]
        target = ", ".join([*names, prep.format_column(findings.c.evidence_id)])
        if postgresql:
            col = {c: f"u.{n}" for c, n in zip(_FI_COLS, names, strict=True)}
            arrays = ", ".join(f"%b::{findings.c[c].type.compile(dialect)}[]" for c in _FI_COLS)
            values = ", ".join(col[c] for c in _FI_COLS)
            source = f"unnest({arrays}) AS u({', '.join(names)})"
        else:
            col = {c: f"?{i}" for i, c in enumerate(_FI_COLS, start=1)}
            values = ", ".join(col[c] for c in _FI_COLS)
            source = None
        ev_key = " || '|' || ".join(
            col[c] for c in ("resource_type", "scope", "region", "resource_id")
        )
        judged = (
            "(SELECT max(e.id) FROM evidence e WHERE e.source = "
            f"{col['source']} AND e.key = {ev_key} AND e.content_hash = {col['evidence_hash']})"
        )
        table = prep.format_table(findings)
        if source is not None:
            return f"INSERT INTO {table} ({target}) SELECT {values}, {judged} FROM {source}"
        return f"INSERT INTO {table} ({target}) VALUES ({values}, {judged})"

    @staticmethod
    def _processor(dialect: Dialect, column: Any) -> Callable[[Any], Any]:
        proc = column.type.dialect_impl(dialect).bind_processor(dialect)
        return proc if proc is not None else (lambda v: v)

    @staticmethod
    def _insert(dialect: Dialect, table: Table, cols: Sequence[str]) -> str:
        prep = dialect.identifier_preparer
        names = ", ".join(prep.format_column(table.c[c]) for c in cols)
        values = ", ".join(["?"] * len(cols))
        return f"INSERT INTO {prep.format_table(table)} ({names}) VALUES ({values})"

    @staticmethod
    def _unnest_insert(dialect: Dialect, table: Table, cols: Sequence[str]) -> str:
        prep = dialect.identifier_preparer
        names = ", ".join(prep.format_column(table.c[c]) for c in cols)
        arrays = ", ".join(f"%b::{table.c[c].type.compile(dialect)}[]" for c in cols)
        return f"INSERT INTO {prep.format_table(table)} ({names}) SELECT * FROM unnest({arrays})"

    @staticmethod
    def bind_ts(
        sql: str, ts: Callable[[Any], Any], rows: list[tuple[Any, ...]], stamps: int = 1
    ) -> list[tuple[Any, ...]]:
        """``rows`` with their last ``stamps`` columns (timestamps) converted for the driver."""
        try:
            if stamps == 2:
                return [(*r[:-2], ts(r[-2]), ts(r[-1])) for r in rows]
            return [(*r[:-1], ts(r[-1])) for r in rows]
        except ValueError as exc:
            # What SQLAlchemy raises when a bind processor fails (e.g. a naive datetime).
            raise StatementError(str(exc), sql, None, exc) from exc

    def insert(self, conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.postgresql:
            conn.exec_driver_sql(sql, tuple(list(col) for col in zip(*rows, strict=True)))
        else:
            conn.exec_driver_sql(sql, rows)

    def add_seen(self, conn: Connection, kind: str, ids: list[int]) -> None:
        conn.exec_driver_sql(self.seen[kind], [(i,) for i in ids])

    def current(
        self, conn: Connection, table: Table, source: str, keys: list[str]
    ) -> dict[str, tuple[str | None, int]]:
        """The content hash and id of the latest live version of each of ``keys`` (SQLite)."""
        # SQLite returns the other columns of the row that holds max(): one index range
        # per key, no self-join (https://sqlite.org/lang_select.html#bareagg). Rows are
        # fetched in one call: iterating a result fetches them one by one.
        marks = ",".join("?" * len(keys))
        if table is evidence:
            sql = self.current_ev.format(marks)
            rows = conn.exec_driver_sql(sql, (source, *keys)).fetchall()
            return {k: (h, i) for k, h, i in rows}
        # A tombstoned finding is "absent", so a reappearing one is written again.
        rows = conn.exec_driver_sql(self.current_fi.format(marks), (source, *keys)).fetchall()
        return {k: (h, i) for k, h, i, status in rows if status is not None}


class RunSealedError(RuntimeError):
    """The run was sealed by someone else while this writer still held it."""


class _Superseded(Exception):
    """``commit_unit``: the unit was finished by another attempt; roll back."""


class RunWriter:
    """Writes one run. Use as a context manager or call ``start``/``finish``.

    ``heartbeat=False``: the caller keeps the run's ``heartbeat_at`` itself (the daemon
    renews it with its schedule lease); the writer then only checks, before writing
    rows, that the run was not sealed meanwhile.
    """

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
        heartbeat: bool = True,
        signer: Signer | None = None,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.heartbeat_runs = heartbeat
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
        self._sql: _Statements | None = None
        self._ev: dict[str, tuple[Any, ...]] = {}
        self._bodies: dict[str, bytes] = {}
        self._fi: dict[str, tuple[Any, ...]] = {}
        self._controls_json: dict[tuple[str, ...], str] = {}
        self._units: list[dict[str, Any]] = []
        # (scope, service) → region → oldest source as-of of the evidence buffered for a
        # unit whose coverage has not come yet (see ``_unit_row``).
        self._as_of: dict[tuple[str, str], dict[str, datetime]] = {}
        self._floor: dict[str, int] = {"E": 0, "F": 0}
        self._touched_at = time.monotonic()
        self._behind: ThreadPoolExecutor | None = None
        self._in_flight: tuple[Future[None], _Batch] | None = None
        self._attached: str | None = None
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
        self._prepare_connection(conn)
        return self.run_id

    def _prepare_connection(self, conn: Connection) -> None:
        """Statements, the temporary id tables and the id floors; commits."""
        self._sql = _Statements(conn.dialect)
        postgresql = conn.dialect.name == "postgresql"
        temp, rowid = ("TEMPORARY", "BIGINT") if postgresql else ("TEMP", "INTEGER")
        # Seen ids. SQLite: the rowid itself, probed per candidate. PostgreSQL hashes the
        # whole table for one anti-join: an index would only slow the inserts.
        # The closing ids are paged through by id: a primary key on both.
        seen_id = f"id {rowid} NOT NULL" if postgresql else f"id {rowid} PRIMARY KEY"
        tables = {**dict.fromkeys(_SEEN.values(), seen_id), _CLOSE: f"id {rowid} PRIMARY KEY"}
        for name, columns in tables.items():
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
            conn.execute(text(f"CREATE {temp} TABLE {name} ({columns})"))
        # Closing considers only versions stored before this run began: a version written
        # since, by this run or by another run of the source, is not this run's to close.
        self._floor = {
            kind: conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
            for kind, table in (("E", evidence), ("F", findings))
        }
        conn.commit()

    def attach(self, *, seal: bool = False) -> str:
        """Write into the existing running run ``run_id`` instead of starting one.

        For a unit of a distributed run: no ``runs`` row is inserted; every write
        checks, under a shared lock on the run's row, that it is still running. Use
        :meth:`commit_unit` (not :meth:`finish`). ``seal``: this writer seals the run
        in its commit; it locks the run's row exclusively (two sealers then queue up
        instead of deadlocking on the upgrade of two shared locks).
        """
        self._attached = "seal" if seal else "unit"
        self._conn = self.engine.connect()
        self._prepare_connection(self._conn)
        return self.run_id

    def commit_unit(self, then: Callable[[Connection], bool]) -> bool:
        """Commit a unit of a distributed run in ONE transaction: every buffered
        record, the closing of items its own clean units did not see again, and
        ``then(conn)`` (the caller marks the unit done there).

        When ``then`` answers False (the unit was finished meanwhile by another
        attempt) the whole transaction is rolled back and False returned: a unit's
        records are written once or not at all. Raises :class:`RunSealedError` when the
        run was sealed meanwhile (nothing is written).
        """
        self._wait_behind()
        batch = self._take_batch()
        conn = self._require_conn()
        if conn.in_transaction():
            conn.commit()
        try:
            with conn.begin():
                ev_rows, fi_rows = self._write_rows(conn, batch, touch=True)
                # Counted before ``then`` so that it can store them; this writer is
                # done either way (a rolled-back unit's writer is discarded).
                self.counts.evidence_written += len(ev_rows)
                self.counts.findings_written += len(fi_rows)
                self._close_unseen(conn, utcnow(), only=batch[3])
                if not then(conn):
                    raise _Superseded
        except _Superseded:
            return False
        return True

    def __enter__(self) -> RunWriter:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._conn is not None:
            self.finish("failed" if exc_type else "succeeded")

    # -- adding records ------------------------------------------------------------

    def add_evidence(self, ev: Evidence, body: bytes | None = None) -> str:
        """Buffer ``ev``; return its content hash (what findings on it refer to).

        ``body`` is ``canonical_body(ev.payload)`` when the caller already has it (the
        daemon journals it first); it is computed here otherwise.
        """
        if body is None:
            body = canonical_body(ev.payload)
        chash = hashlib.sha256(body).hexdigest()
        self._bodies[chash] = body
        key = ev.key
        self._ev[key] = (
            self.run_id,
            self.source,
            key,
            ev.scope,
            ev.region,
            ev.service,
            ev.resource_type,
            ev.resource_id,
            chash,
            ev.source_updated_at,
            ev.collected_at,
        )
        if ev.source_updated_at is not None:
            regions = self._as_of.setdefault((ev.scope, ev.service), {})
            known = regions.get(ev.region)
            if known is None or ev.source_updated_at < known:
                regions[ev.region] = ev.source_updated_at
        self.counts.evidence_seen += 1
        if len(self._ev) >= self.batch_size:
            self._auto_flush()
        return chash

    def add_finding(self, f: Finding) -> None:
        key = f.key
        # A run uses a handful of control sets: serialise each once.
        cacheable = type(f.controls) is tuple
        controls = self._controls_json.get(f.controls) if cacheable else None
        if controls is None:
            controls = json.dumps(sorted(f.controls))
            if cacheable and len(self._controls_json) < 1024:
                self._controls_json[f.controls] = controls
        fhash = finding_hash(
            {
                "check_id": f.check_id,
                "key": key,
                "status": f.status,
                "severity": f.severity,
                "message": f.message,
                "evidence_hash": f.evidence_hash,
                "controls": controls,
                "resource_type": f.resource_type,
                "resource_id": f.resource_id,
            }
        )
        self._fi[key] = (
            self.run_id,
            self.source,
            key,
            f.check_id,
            f.scope,
            f.region,
            f.service,
            f.resource_type,
            f.resource_id,
            f.status,
            f.severity,
            f.message,
            f.evidence_hash,
            controls,
            self.mapping_digest,
            fhash,
            f.observed_at,
        )
        self.counts.findings_seen += 1
        self.counts.by_status[f.status] = self.counts.by_status.get(f.status, 0) + 1
        if len(self._fi) >= self.batch_size:
            self._auto_flush()

    def add_coverage(self, c: Coverage) -> None:
        self._units.append(self._unit_row(c, utcnow()))
        if c.ok:
            self.counts.units_ok += 1
        else:
            self.counts.units_error += 1
            self.errors.append(f"{c.unit}: {c.error}")

    def _unit_row(self, c: Coverage, at: datetime) -> dict[str, Any]:
        """The ``run_units`` row of ``c``, with its ``source_as_of``: the oldest
        ``source_updated_at`` of the evidence this run read in the unit (yielded before
        its coverage, as connectors do). A unit in region ``global`` covers the
        evidence of every region of its service (an S3 or GCS listing)."""
        regions = self._as_of.get((c.scope, c.service))
        as_of = None
        if regions:
            if c.region == "global":
                taken = list(regions.values())
                regions.clear()
            else:
                one = regions.pop(c.region, None)
                taken = [one] if one is not None else []
            as_of = min(taken) if taken else None
        return {
            "run_id": self.run_id,
            "scope": c.scope,
            "region": c.region,
            "service": c.service,
            "ok": c.ok,
            "error": c.error,
            "recorded_at": at,
            "source_as_of": as_of,
        }

    def add_error(self, message: str) -> None:
        """A run-level error (not tied to a unit), kept in the run's record."""
        self.errors.append(message)

    # -- flushing ------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything buffered; return once it is committed."""
        self._wait_behind()
        batch = self._take_batch()
        try:
            self._write_batch(batch)
        except BaseException:
            self._put_back(batch)
            raise

    def _auto_flush(self) -> None:
        """A buffer is full: write behind on PostgreSQL, in line on SQLite."""
        if self._statements().postgresql:
            self._flush_behind()
        else:
            # sqlite3 releases the GIL around every row it steps and must take it back
            # for the next: with a second busy thread each row waits for a GIL switch.
            # Measured at 100,000 items: the first write 9.8 -> 11.7 s, a rewrite
            # 2.7 -> 3.7 s. psycopg waits for PostgreSQL once per statement instead.
            self.flush()

    def _flush_behind(self) -> None:
        """Hand the full buffers to the writer thread and return at once.

        The thread writes one batch while the caller builds the next: PostgreSQL's work
        (in its own process) overlaps with hashing and with the connector. One batch at
        most is in flight, on the writer's one connection, so batches commit in order;
        a failed batch is put back and its error raised by the next call that writes.
        """
        self._wait_behind()
        batch = self._take_batch()
        if self._behind is None:
            self._behind = ThreadPoolExecutor(1, thread_name_prefix=f"annexa-writer-{self.source}")
        self._in_flight = (self._behind.submit(self._write_batch, batch), batch)

    def _wait_behind(self) -> None:
        """Wait for the batch in flight; if it failed, put it back and raise its error."""
        if self._in_flight is None:
            return
        future, batch = self._in_flight
        self._in_flight = None
        try:
            future.result()
        except BaseException:
            self._put_back(batch)
            raise

    def _put_back(self, batch: _Batch) -> None:
        """Nothing of a failed batch was committed: it goes first in the next attempt."""
        ev, bodies, fi, units = batch
        self._ev, self._bodies = {**ev, **self._ev}, {**bodies, **self._bodies}
        self._fi, self._units = {**fi, **self._fi}, units + self._units

    def _take_batch(self) -> _Batch:
        batch = (self._ev, self._bodies, self._fi, self._units)
        self._ev, self._bodies, self._fi, self._units = {}, {}, {}, []
        return batch

    def _write_batch(self, batch: _Batch) -> None:
        conn = self._require_conn()
        if conn.in_transaction():
            conn.commit()
        with conn.begin():
            ev_rows, fi_rows = self._write_rows(conn, batch)
        # Counted once committed: a batch that failed and is retried counts once.
        self.counts.evidence_written += len(ev_rows)
        self.counts.findings_written += len(fi_rows)

    def _write_rows(
        self, conn: Connection, batch: _Batch, *, touch: bool = False
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Write ``batch`` in the caller's transaction; the evidence and finding rows
        that changed (and so were written)."""
        ev, bodies, fi, units = batch
        ev_rows = self._changed(conn, evidence, "E", ev, _EV_HASH) if ev else []
        fi_rows = self._changed(conn, findings, "F", fi, _FI_HASH) if fi else []
        if (
            touch
            or ev_rows
            or fi_rows
            or units
            or (self.heartbeat_runs and self._heartbeat_due())
        ):
            # Before any row, in the same transaction: a run sealed meanwhile (reaped
            # as stale by a daemon) must not gain rows, or its digest would no longer
            # verify. A batch of unchanged items writes nothing the digest covers: it
            # skips this write (and, on PostgreSQL, its WAL flush) between beats.
            self._touch(conn)
        if ev_rows:
            self._write_evidence(conn, ev_rows, bodies)
        if fi_rows:
            self._write_findings(conn, fi_rows)
        if units:
            conn.execute(insert(run_units), units)
        return ev_rows, fi_rows

    def _heartbeat_due(self) -> bool:
        return time.monotonic() - self._touched_at >= _HEARTBEAT_EVERY_S

    def _touch(self, conn: Connection) -> None:
        """Refresh the heartbeat; raise ``RunSealedError`` if the run is no longer running."""
        if self._attached:
            # A unit of a distributed run: a shared lock on the run's row, so that units
            # commit side by side while a seal (which updates the row) waits for them.
            status = conn.execute(
                select(runs.c.status)
                .where(runs.c.id == self.run_id)
                .with_for_update(read=self._attached != "seal")
            ).scalar()
            self._touched_at = time.monotonic()
            if status != "running":
                raise RunSealedError(
                    f"run {self.run_id} is no longer running (sealed by another process); "
                    "nothing more is written to it"
                )
            return
        # Without heartbeat: a no-op update, which still locks the row against a seal.
        beat = {"heartbeat_at": utcnow()} if self.heartbeat_runs else {"status": runs.c.status}
        done = conn.execute(
            update(runs).where(runs.c.id == self.run_id, runs.c.status == "running").values(beat)
        )
        self._touched_at = time.monotonic()
        if done.rowcount != 1:
            raise RunSealedError(
                f"run {self.run_id} is no longer running (sealed by another process, e.g. "
                "reaped as stale); nothing more is written to it"
            )

    def _write_evidence(
        self, conn: Connection, rows: list[tuple[Any, ...]], bodies: dict[str, bytes]
    ) -> None:
        sql = self._statements()
        # Decoded only now: an unchanged item's body is hashed, never stored.
        texts = {h: bodies[h].decode("utf-8") for h in {r[_EV_HASH] for r in rows}}
        sql.insert(conn, sql.blob, [(h, t, len(t)) for h, t in texts.items()])
        sql.insert(conn, sql.evidence, sql.bind_ts(sql.evidence, sql.ev_ts, rows, stamps=2))

    def _write_findings(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        sql = self._statements()
        sql.insert(conn, sql.findings, sql.bind_ts(sql.findings, sql.fi_ts, rows))

    def _changed(
        self,
        conn: Connection,
        table: Table,
        kind: str,
        buffer: dict[str, tuple[Any, ...]],
        hash_at: int,
    ) -> list[tuple[Any, ...]]:
        """The rows of ``buffer`` whose content differs from the stored one.

        The stored versions seen unchanged are noted for closing. A written item needs
        no note: its latest version is this run's, which closing skips anyway.
        """
        sql = self._statements()
        if sql.postgresql:
            # One statement compares, notes and answers: only changed keys come back.
            keys = list(buffer)
            hashes = [buffer[k][hash_at] for k in keys]
            sql_text = sql.compare_ev if table is evidence else sql.compare_fi
            found = conn.exec_driver_sql(sql_text, (keys, hashes, self.source)).fetchall()
            return [buffer[k] for (k,) in found]
        current = sql.current(conn, table, self.source, list(buffer))
        changed = []
        unchanged = []
        for key, row in buffer.items():
            stored_hash, stored_id = current.get(key, _ABSENT)
            if stored_hash == row[hash_at]:
                unchanged.append(stored_id)
            else:
                changed.append(row)
        if unchanged:
            sql.add_seen(conn, kind, unchanged)
        return changed

    # -- closing -------------------------------------------------------------------

    def _closable_units(
        self, conn: Connection, only: list[dict[str, Any]] | None = None
    ) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
        ok: set[tuple[str, str, str]] = set()
        bad: set[tuple[str, str, str]] = set()
        if only is not None:
            for u in only:
                (ok if u["ok"] else bad).add((u["scope"], u["region"], u["service"]))
            return ok, bad
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

    def _close_unseen(
        self, conn: Connection, finished_at: datetime, only: list[dict[str, Any]] | None = None
    ) -> None:
        """Tombstone what clean units of the run did not see again. ``only``: the units
        of this writer alone (a unit of a distributed run: the other units' unchanged
        items were noted by other writers, in other sessions)."""
        ok, bad = self._closable_units(conn, only)
        if not ok:
            return
        for table, kind in ((evidence, "E"), (findings, "F")):
            mine = [table.c.source == self.source]
            if only is not None:
                # A unit closes only within its own scopes and services (every version
                # of a key shares them: both are part of what the key names), so its
                # closing reads its own part of the source, not all of it per unit.
                mine += [
                    table.c.scope.in_(sorted({u[0] for u in ok})),
                    table.c.service.in_(sorted({u[2] for u in ok})),
                ]
            latest = (
                select(func.max(table.c.id).label("mid"))
                .where(*mine)
                .group_by(table.c.key)
                .subquery()
            )
            alive = (
                table.c.content_hash.is_not(None) if kind == "E" else table.c.status.is_not(None)
            )
            seen = sa_table(_SEEN[kind], column("id"))
            # What this run wrote (a resumed run too) and what other runs of the source
            # wrote since it began is the latest of its key, and not for this run to close.
            # The tests on ``mid`` come first so that rows seen unchanged (a rewrite: all
            # of them) are ruled out from the index alone, before any row is read.
            candidates = (
                select(latest.c.mid)
                .select_from(latest)
                .join(table, table.c.id == latest.c.mid)
                .where(
                    latest.c.mid <= self._floor[kind],
                    ~exists().where(seen.c.id == latest.c.mid),
                    alive,
                    table.c.run_id != self.run_id,
                )
            )
            # The candidates' ids go to a temporary table and are read back a batch at a
            # time, so closing most of a large estate needs no more memory than a batch.
            close = sa_table(_CLOSE, column("id"))
            conn.execute(text(f"DELETE FROM {_CLOSE}"))
            conn.execute(insert(close).from_select(["id"], candidates))
            closed = 0
            last = 0
            while True:
                page = (
                    conn.execute(
                        select(table)
                        .join(close, close.c.id == table.c.id)
                        .where(close.c.id > last)
                        .order_by(close.c.id)
                        .limit(self.batch_size)
                    )
                    .mappings()
                    .all()
                )
                if not page:
                    break
                last = page[-1]["id"]
                batch = [
                    self._tombstone(dict(row), kind, finished_at)
                    for row in page
                    if self._covered(ok, row["scope"], row["region"], row["service"])
                    and not self._covered(bad, row["scope"], row["region"], row["service"])
                ]
                if batch:
                    conn.execute(insert(table), batch)
                closed += len(batch)
            if kind == "E":
                self.counts.evidence_closed += closed
            else:
                self.counts.findings_closed += closed

    def _tombstone(self, row: dict[str, Any], kind: str, at: datetime) -> dict[str, Any]:
        row.pop("id")
        row["run_id"] = self.run_id
        if kind == "E":
            row["content_hash"] = None
            row["collected_at"] = at
            row["source_updated_at"] = None
        else:
            row["status"] = None
            row["message"] = "no longer observed"
            row["observed_at"] = at
            row["mapping_digest"] = self.mapping_digest
            row["finding_hash"] = finding_hash(row)
        return row

    def heartbeat(self) -> None:
        self._wait_behind()
        conn = self._require_conn()
        with conn.begin():
            self._touch(conn)

    def finish(self, status: str) -> RunSummary:
        """Flush, close unseen items of clean units, seal the run (digest, signature)."""
        if status not in RUN_STATUSES or status == "running":
            raise ValueError(f"cannot finish a run as {status!r}")
        conn = self._require_conn()
        try:
            self.flush()
            # The run's own clock, as for started_at: the two bound its records.
            finished_at = utcnow()
            with conn.begin():
                if status != "failed":
                    self._close_unseen(conn, finished_at)
                sealed = seal_run(
                    conn,
                    self.run_id,
                    status=status,
                    counts=self.counts.as_dict(),
                    errors=self.errors,
                    signer=self.signer,
                    finished_at=finished_at,
                )
                if sealed is None:
                    raise RunSealedError(
                        f"run {self.run_id} was sealed by another process before it finished"
                    )
            return RunSummary(
                run_id=self.run_id,
                source=self.source,
                status=status,
                digest=sealed.digest,
                prev_digest=sealed.prev_digest,
                counts=self.counts.as_dict(),
                errors=list(self.errors),
                started_at=sealed.started_at,
                finished_at=sealed.finished_at,
                key_id=sealed.key_id,
            )
        finally:
            self.close()

    def close(self) -> None:
        if self._in_flight is not None:
            try:
                self._wait_behind()
            except BaseException:  # noqa: BLE001,S110 - closing after a failure: already raised
                pass
        if self._behind is not None:
            self._behind.shutdown(wait=True)
            self._behind = None
        if self._conn is not None:
            try:
                if self._conn.in_transaction():
                    self._conn.rollback()
                for name in (*_SEEN.values(), _CLOSE):
                    self._conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
                self._conn.commit()
            except Exception:  # noqa: BLE001,S110 - best effort; the temp table dies with the connection
                pass
            self._conn.close()
            self._conn = None

    def _statements(self) -> _Statements:
        if self._sql is None:
            self._sql = _Statements(self._require_conn().dialect)
        return self._sql

    def _require_conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError(
                "RunWriter not started (call start() or use it as a context manager)"
            )
        return self._conn


def write_records(writer: RunWriter, records: Iterable[Evidence | Finding | Coverage]) -> None:
    """Route each record to the writer's ``add_*`` method of its kind."""
    for rec in records:
        if isinstance(rec, Evidence):
            writer.add_evidence(rec)
        elif isinstance(rec, Finding):
            writer.add_finding(rec)
        else:
            writer.add_coverage(rec)


def record_run(
    engine: Engine,
    records: Iterable[Evidence | Coverage],
    *,
    source: str,
    connector_type: str,
    signer: Signer | None,
    config_digest: str,
    mapping_digest: str,
    agent_version: str,
    seal_failure: bool = False,
) -> RunSummary:
    """Write ``records`` as one signed run of ``source``, sealed ``succeeded``: how
    Annexa records what it is told (manual evidence, samples, decisions) rather than
    what it collects.

    On any exception the writer is closed and the exception raised; the run is left
    unsealed (never evidence), or with ``seal_failure`` sealed ``failed`` so that the
    attempt stays on record.
    """
    writer = RunWriter(
        engine,
        source=source,
        connector_type=connector_type,
        config_digest=config_digest,
        mapping_digest=mapping_digest,
        agent_version=agent_version,
        signer=signer,
    )
    writer.start()
    try:
        write_records(writer, records)
    except BaseException:
        if seal_failure:
            writer.finish("failed")
        else:
            writer.close()
        raise
    return writer.finish("succeeded")  # closes the writer, sealed or not
