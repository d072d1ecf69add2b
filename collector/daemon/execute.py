"""One scheduled collection, journalled to the spool so a database outage loses nothing.

This is :func:`collector.runner.run_connector`'s loop (same statuses, same error
findings for unreadable units) with a different sink: every record goes to the run's
journal and — while the database answers — to the :class:`RunWriter`. The daemon
flushes the writer itself every ``batch_size`` records; when a flush (or the final
seal) fails because the database is unreachable, the writer is dropped and the rest of
the run goes to the journal only. :func:`collector.daemon.spool.replay` writes it
once the database is back.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from collector.config import LoadedConnector, Settings
from collector.daemon.spool import NEVER_FLUSH, Journal
from collector.runner import AGENT_VERSION, drive
from connectors.records import Coverage, Evidence, Finding, canonical_body, utcnow
from connectors.redaction import scrub_text
from mappings.loader import MappingIndex
from store.writer import RunSummary, RunWriter

log = structlog.get_logger("annexa.daemon")

_SCOPE_FIELDS = (
    "scope",
    "account",
    "account_id",
    "organization",
    "org",
    "tenant",
    "tenant_id",
    "project",
    "subscription",
    "instance",
    "url",
)


def instance_scope(lc: LoadedConnector) -> str:
    """What a connector instance covers, for log lines: its scope-like option, or "*"."""
    for name in _SCOPE_FIELDS:
        value = getattr(lc.options, name, None)
        if isinstance(value, str) and value:
            return scrub_text(value)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return scrub_text(",".join(value))
    return "*"


def is_outage(exc: BaseException) -> bool:
    """A database error that means "unreachable" (retry later), not "wrong"."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@dataclass
class Outcome:
    run_id: str
    status: str
    summary: RunSummary | None
    journal: Path | None  # set when the run awaits replay
    duration: float


class _Sink:
    """Records → journal (always) and writer (while the database answers)."""

    def __init__(self, writer: RunWriter, journal: Journal | None, batch_size: int, rlog: Any):
        self.writer = writer
        self.journal = journal
        self.batch_size = batch_size
        self.rlog = rlog
        self.db_ok = True
        self.pending = 0

    def _guard(self, fn: Any, *args: Any) -> Any:
        if not self.db_ok:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if self.journal is None or not is_outage(exc):
                raise
            self.outage(exc)
            return None

    def outage(self, exc: BaseException) -> None:
        self.db_ok = False
        assert self.journal is not None
        self.journal.mark_outage()
        self.rlog.warning(
            "database unreachable: spooling the rest of the run",
            spool=str(self.journal.path),
            error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
        )
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001,S110 - the connection is already gone
            pass

    def _tick(self) -> None:
        self.pending += 1
        if self.pending >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        self.pending = 0
        if self._guard(self.writer.flush) is None and self.db_ok and self.journal:
            self.journal.committed(self.writer.counts.as_dict())

    def evidence(self, ev: Evidence) -> str:
        body = canonical_body(ev.payload)
        chash = hashlib.sha256(body).hexdigest()
        if self.journal:
            self.journal.evidence(ev, body.decode("utf-8"))
        self._guard(self.writer.add_evidence, ev, body)
        self._tick()
        return chash

    def finding(self, f: Finding) -> None:
        if self.journal:
            self.journal.finding(f)
        self._guard(self.writer.add_finding, f)
        self._tick()

    def coverage(self, c: Coverage) -> None:
        if self.journal:
            self.journal.coverage(c, utcnow())
        self._guard(self.writer.add_coverage, c)

    def error(self, message: str) -> None:
        if self.journal:
            self.journal.error(message)
        self.writer.add_error(message)


def collect(
    settings: Settings,
    lc: LoadedConnector,
    engine: Engine,
    index: MappingIndex,
    *,
    run_id: str,
    cancel_event: threading.Event,
    spool_dir: Path | None,
    batch_size: int = 1000,
    rlog: Any = None,
) -> Outcome:
    """Run ``lc`` once as run ``run_id``. Raises only if the run cannot even start."""
    t0 = time.monotonic()
    rlog = rlog or log.bind(run_id=run_id, connector=lc.name, scope=instance_scope(lc))
    writer = RunWriter(
        engine,
        source=lc.name,
        connector_type=lc.cfg.type,
        config_digest=settings.digest(),
        mapping_digest=index.digest,
        agent_version=AGENT_VERSION,
        batch_size=NEVER_FLUSH,
        run_id=run_id,
        # The service heartbeats the run with its lease. A writer's own beat after the
        # last renewal would make a killed replica's run look alive for up to a
        # heartbeat after its lease expired: the replica taking over would then start
        # before sealing it, and the two runs would overlap.
        heartbeat=False,
    )
    writer.start()
    journal = None
    if spool_dir is not None:
        journal = Journal(
            spool_dir,
            {
                "run_id": run_id,
                "source": lc.name,
                "connector_type": lc.cfg.type,
                "config_digest": writer.config_digest,
                "mapping_digest": writer.mapping_digest,
                "agent_version": AGENT_VERSION,
                "started_at": writer.started_at.isoformat(),
            },
        )
    sink = _Sink(writer, journal, batch_size, rlog)
    rlog.info("run started", connector_type=lc.cfg.type)
    result = drive(
        lc,
        index,
        sink,
        run_id=run_id,
        rlog=rlog,
        cancel_event=cancel_event,
        cancel_reason="cancelled: the daemon was stopping and the grace period expired",
    )
    status, records = result.status, result.records
    if journal:
        journal.end(status)
    summary = sink._guard(writer.finish, status) if sink.db_ok else None
    duration = time.monotonic() - t0
    if summary is not None:
        if journal:
            journal.discard()
        return Outcome(run_id, status, summary, None, duration)
    assert journal is not None
    journal.close()
    rlog.warning(
        "run spooled: it will be written and sealed when the database answers",
        status=status,
        records=records,
    )
    return Outcome(run_id, status, None, journal.path, duration)
