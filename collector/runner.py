"""The run engine: one connector instance → checks → controls → store, as one run."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from collector.config import LoadedConnector, Settings
from collector.daemon.spool import NEVER_FLUSH, Journal, database_id
from core.checks import evaluate
from core.connector import CollectContext
from core.records import (
    Coverage,
    Evidence,
    Finding,
    canonical_body,
    service_of,
    utcnow,
)
from core.redaction import scrub_text
from mappings.loader import MappingIndex
from store.writer import RunSummary, RunWriter

log = structlog.get_logger("annexa.collector")

try:
    AGENT_VERSION = version("annexa")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    AGENT_VERSION = "0.0.0+source"

ProgressCallback = Callable[[str, int], None]


@dataclass
class _Tally:
    records: int = 0
    ok_units: int = 0
    error_units: int = 0


def _unit_error_findings(lc: LoadedConnector, c: Coverage, index: MappingIndex) -> list[Finding]:
    """An unreadable unit makes every check of its service an ``error`` there.

    Service ``*`` (the connector could not even open the scope: authentication, STS,
    an unreachable endpoint) makes every check an ``error``. The finding's resource is
    the unit itself, typed ``<prefix>.<service>.unit`` so that the next clean read of
    the same unit closes it.
    """
    out = []
    for spec in lc.enabled_checks.values():
        if c.service != "*" and service_of(spec.resource_type) != c.service:
            continue
        out.append(
            Finding(
                check_id=spec.id,
                scope=c.scope,
                region=c.region,
                resource_type=f"{lc.cls.prefix}.{c.service}.unit",
                resource_id=f"{lc.cls.prefix}:{c.unit}",
                status="error",
                severity=spec.severity,
                message=f"could not read {c.unit}: {c.error}",
                controls=index.controls_for(spec.id),
            )
        )
    return out


def _unread(lc: LoadedConnector, unit: tuple[str, str, str] | None, reason: str) -> Coverage:
    """The coverage error of what was not read: the unit, or the whole instance."""
    if unit is None:
        return Coverage(lc.name, "global", "*", ok=False, error=reason)
    scope, region, service = unit
    return Coverage(scope, region, service, ok=False, error=reason)


def unit_error(lc: LoadedConnector, index: MappingIndex, sink: RecordSink, c: Coverage) -> None:
    """Record an unreadable unit: its coverage error and an ``error`` for every check
    of its service (of every service for ``*``)."""
    sink.coverage(c)
    for f in _unit_error_findings(lc, c, index):
        sink.finding(f)


class RecordSink(Protocol):
    """Where a run's records go: the store writer, or the daemon's journaling sink."""

    def evidence(self, ev: Evidence) -> str: ...
    def finding(self, f: Finding) -> None: ...
    def coverage(self, c: Coverage) -> None: ...
    def error(self, message: str) -> None: ...


class WriterSink:
    """The plain sink: every record straight into a :class:`RunWriter`."""

    def __init__(self, writer: RunWriter) -> None:
        self.writer = writer

    def evidence(self, ev: Evidence) -> str:
        return self.writer.add_evidence(ev)

    def finding(self, f: Finding) -> None:
        self.writer.add_finding(f)

    def coverage(self, c: Coverage) -> None:
        self.writer.add_coverage(c)

    def error(self, message: str) -> None:
        self.writer.add_error(message)


@dataclass
class DriveResult:
    status: str
    records: int
    ok_units: int
    error_units: int


class _RunCancel(threading.Event):
    """The connector's cancel event: set by the caller's ``cancel`` or by the run
    deadline passing (``expired``), without ever setting the caller's event (a CLI
    shares one across connectors)."""

    def __init__(self, outer: threading.Event) -> None:
        super().__init__()
        self.outer = outer
        self.expired = False

    def is_set(self) -> bool:
        return super().is_set() or self.outer.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return False
            super().wait(0.2 if left is None else min(0.2, left))
        return True

    def expire(self) -> None:
        self.expired = True
        self.set()


def drive(
    lc: LoadedConnector,
    index: MappingIndex,
    sink: RecordSink,
    *,
    run_id: str,
    rlog: Any,
    cancel_event: threading.Event,
    progress: ProgressCallback | None = None,
    cancel_reason: str = "cancelled before the run completed",
    deadline: float | None = None,
    unit: tuple[str, str, str] | None = None,
) -> DriveResult:
    """Stream one connector run into ``sink``: checks, controls, unit errors, status.

    ``unit`` (scope, region, service): read that one unit of the instance
    (:meth:`core.connector.Connector.collect_unit`, a unit of a run spread over
    daemon replicas) instead of the whole instance; what cannot be read of it then is
    an error of that unit only.

    Never raises for the source or the connector: a crash becomes an ``error`` for every
    check of the instance. Messages are scrubbed of secrets before they are stored.
    Status: ``succeeded`` when every unit was read, ``partial`` when some failed,
    ``failed`` when nothing could be read or the connector broke before reading
    anything, ``aborted`` when cancelled.

    ``deadline`` (seconds, ``collection.run_deadline``): past it the connector is
    cancelled and what it had not read is an ``error`` for every check of the instance
    naming the bound (never a silent keep-the-last-verdict); the run ends ``partial``
    (or ``failed`` if nothing was read).
    """
    run_cancel = _RunCancel(cancel_event)
    timer = threading.Timer(deadline, run_cancel.expire) if deadline else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        return _drive(
            lc,
            index,
            sink,
            run_id=run_id,
            rlog=rlog,
            cancel_event=run_cancel,
            progress=progress,
            cancel_reason=cancel_reason,
            deadline=deadline,
            unit=unit,
        )
    finally:
        if timer is not None:
            timer.cancel()


def _drive(
    lc: LoadedConnector,
    index: MappingIndex,
    sink: RecordSink,
    *,
    run_id: str,
    rlog: Any,
    cancel_event: _RunCancel,
    progress: ProgressCallback | None,
    cancel_reason: str,
    deadline: float | None,
    unit: tuple[str, str, str] | None = None,
) -> DriveResult:
    tally = _Tally()
    crashed = False
    whole_reported = False
    checks_by_type: dict[str, list[Any]] = {}
    for spec in lc.enabled_checks.values():
        checks_by_type.setdefault(spec.resource_type, []).append(spec)

    def finding(f: Finding) -> None:
        sink.finding(
            replace(f, controls=index.controls_for(f.check_id), message=scrub_text(f.message))
        )

    try:
        connector = lc.build()
        ctx = CollectContext(run_id=run_id, log=rlog, cancel_event=cancel_event)
        source = connector.collect(ctx) if unit is None else connector.collect_unit(ctx, *unit)
        for rec in source:
            tally.records += 1
            if isinstance(rec, Evidence):
                h = sink.evidence(rec)
                for f in evaluate(rec, checks_by_type.get(rec.resource_type, ()), lc.params, h):
                    finding(f)
            elif isinstance(rec, Finding):
                if rec.check_id in lc.enabled_checks:
                    finding(rec)
            elif isinstance(rec, Coverage):
                if rec.error:
                    rec = replace(rec, error=scrub_text(rec.error))
                whole_reported |= rec.service == "*" and rec.scope == lc.name
                sink.coverage(rec)
                if rec.ok:
                    tally.ok_units += 1
                else:
                    tally.error_units += 1
                    rlog.warning(
                        "unit failed",
                        scope=rec.scope,
                        region=rec.region,
                        service=rec.service,
                        error=rec.error,
                    )
                    for f in _unit_error_findings(lc, rec, index):
                        sink.finding(f)
            if progress is not None:
                progress(lc.name, tally.records)
            if cancel_event.is_set():
                break
    except Exception as exc:  # noqa: BLE001 - a broken connector must not lose the run
        crashed = True
        reason = scrub_text(f"connector crashed: {type(exc).__name__}: {exc}")
        sink.error(reason)
        rlog.error("connector crashed", exc_info=True)
        # What was not read because of the crash is an error for every check, never a
        # silent keep-the-last-verdict; the next clean run closes these again.
        unit_error(lc, index, sink, _unread(lc, unit, reason))
    if cancel_event.expired and not cancel_event.outer.is_set():
        reason = (
            f"run_deadline={deadline:g}s passed: stopped reading; what was not read is an "
            "error for every check of the instance"
        )
        sink.error(reason)
        rlog.error("run deadline passed", run_deadline=deadline)
        unit_error(lc, index, sink, _unread(lc, unit, reason))
        status = "partial" if tally.ok_units else "failed"
    elif cancel_event.is_set():
        sink.error(cancel_reason)
        status = "aborted"
    else:
        if unit is not None and not crashed and not (tally.ok_units or tally.error_units):
            # A unit that reports no coverage of itself was not read, as far as anyone
            # can tell: an error, never a silent pass.
            unit_error(lc, index, sink, _unread(lc, unit, "the connector reported no coverage"))
            tally.error_units += 1
        elif unit is None and not crashed and not whole_reported:
            sink.coverage(Coverage(lc.name, "global", "*", ok=True))
        if crashed:
            status = "failed" if tally.ok_units == 0 else "partial"
        elif tally.error_units and tally.ok_units == 0:
            status = "failed"
        elif tally.error_units:
            status = "partial"
        else:
            status = "succeeded"
    return DriveResult(status, tally.records, tally.ok_units, tally.error_units)


class RunHeartbeat:
    """Keeps a CLI run's ``heartbeat_at`` fresh from a thread of its own.

    Without it a run whose source is slow to answer (nothing to flush for minutes)
    would look dead to the next process, which seals runs whose heartbeat is older
    than ``[collection] stale_after``. If the run turns out sealed by someone else, the
    run is cancelled: what it writes from then on would belong to no run.
    """

    def __init__(
        self, engine: Engine, run_id: str, cancel_event: threading.Event, every: float = 15.0
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.cancel_event = cancel_event
        self.every = every
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id[:8]}")
        self._thread.daemon = True

    def start(self) -> RunHeartbeat:
        self._thread.start()
        return self

    def _beat(self) -> None:
        from store.leases import touch_run

        while not self._stop.wait(self.every):
            try:
                with self.engine.begin() as conn:
                    alive = touch_run(conn, self.run_id)
            except Exception as exc:  # noqa: BLE001 - an outage: the journal covers it
                log.debug("heartbeat failed", run_id=self.run_id, error=type(exc).__name__)
                continue
            if not alive:
                self.lost = True
                self.cancel_event.set()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


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
    records: int = 0


@dataclass
class _JournalSink:
    """Records → journal (always, when spooling) and writer (while the database answers)."""

    writer: RunWriter
    journal: Journal | None
    batch_size: int
    rlog: Any
    db_ok: bool = field(default=True, init=False)
    pending: int = field(default=0, init=False)

    def guard(self, fn: Any, *args: Any) -> Any:
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
        if self.guard(self.writer.flush) is None and self.db_ok and self.journal:
            self.journal.committed(self.writer.counts.as_dict())

    def evidence(self, ev: Evidence) -> str:
        body = canonical_body(ev.payload)
        chash = hashlib.sha256(body).hexdigest()
        if self.journal:
            self.journal.evidence(ev, body.decode("utf-8"))
        self.guard(self.writer.add_evidence, ev, body)
        self._tick()
        return chash

    def finding(self, f: Finding) -> None:
        if self.journal:
            self.journal.finding(f)
        self.guard(self.writer.add_finding, f)
        self._tick()

    def coverage(self, c: Coverage) -> None:
        if self.journal:
            self.journal.coverage(c, utcnow())
        self.guard(self.writer.add_coverage, c)

    def error(self, message: str) -> None:
        if self.journal:
            self.journal.error(message)
        self.writer.add_error(message)


def collect_run(
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
    heartbeat: str = "thread",
    progress: ProgressCallback | None = None,
    cancel_reason: str = "cancelled before the run completed",
) -> Outcome:
    """Run ``lc`` once as run ``run_id``: the one run path of ``collect`` and the daemon.

    Every record goes to the run's journal in ``spool_dir`` (if given) and, while the
    database answers, to the writer; when the database stops answering the rest of the
    run goes to the journal only, and :func:`collector.daemon.spool.replay` writes it
    later under the same run id. ``heartbeat``: ``"thread"`` keeps the run's heartbeat
    from a thread (CLI runs); ``"lease"``: the caller renews it (the daemon, with its
    schedule lease). Raises only if the run cannot even start.
    """
    t0 = time.monotonic()
    rlog = rlog or log.bind(run_id=run_id, connector=lc.name, connector_type=lc.cfg.type)
    writer = RunWriter(
        engine,
        source=lc.name,
        connector_type=lc.cfg.type,
        config_digest=settings.digest(),
        mapping_digest=index.digest,
        agent_version=AGENT_VERSION,
        batch_size=NEVER_FLUSH,
        run_id=run_id,
        # A daemon's run is heartbeated with its lease: a writer's own beat after the
        # last renewal would make a killed replica's run look alive for up to a beat
        # after its lease expired, and the replica taking over would overlap it.
        heartbeat=heartbeat != "lease",
        signer=settings.signer(),
    )
    writer.start()
    beat = RunHeartbeat(engine, run_id, cancel_event).start() if heartbeat == "thread" else None
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
                "database": database_id(engine.url),
            },
        )
    sink = _JournalSink(writer, journal, batch_size, rlog)
    rlog.info("run started")
    try:
        result = drive(
            lc,
            index,
            sink,
            run_id=run_id,
            rlog=rlog,
            cancel_event=cancel_event,
            progress=progress,
            cancel_reason=cancel_reason,
            deadline=settings.model.collection.run_deadline_seconds,
        )
    finally:
        if beat is not None:
            beat.stop()
    status, records = result.status, result.records
    if beat is not None and beat.lost:
        sink.error("sealed by another process while it ran (its heartbeat looked stale)")
    if journal:
        journal.end(status)
    summary = sink.guard(writer.finish, status) if sink.db_ok else None
    duration = time.monotonic() - t0
    if summary is not None:
        if journal:
            journal.discard()
        rlog.info(
            "run finished",
            status=status,
            **{k: v for k, v in summary.counts.items() if isinstance(v, int)},
        )
        stamp_runs(settings, engine)
        return Outcome(run_id, status, summary, None, duration, records)
    assert journal is not None
    journal.close()
    rlog.warning(
        "run spooled: it will be written and sealed when the database answers",
        status=status,
        records=records,
    )
    return Outcome(run_id, status, None, journal.path, duration, records)


def stamp_runs(settings: Settings, engine: Engine, *, limit: int = 100) -> int:
    """Countersign sealed runs without a token by the configured TSA (RFC 3161).

    Best effort: a TSA that does not answer leaves the runs sealed and unstamped, and
    the next process stamps them. Returns how many runs were stamped.
    """
    url = settings.model.signing.tsa_url
    if not url:
        return 0
    from core.timestamping import TimestampError, request_token, run_message
    from store.timestamps import record_token, unstamped

    with engine.connect() as conn:
        pending = unstamped(conn, limit)
    done = 0
    for run_id, digest in pending:
        try:
            token = request_token(
                url, run_message(digest), timeout=settings.model.signing.tsa_timeout
            )
        except TimestampError as exc:
            log.warning("time stamp not obtained; retried by the next run", error=str(exc))
            break
        with engine.begin() as conn:
            record_token(
                conn,
                run_id=run_id,
                digest=digest,
                tsa=url,
                gen_time=token.gen_time,
                token=token.b64,
                recorded_at=utcnow(),
            )
        done += 1
    return done


class RunSpooledError(RuntimeError):
    """The database went away during the run: it was completed into its journal."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        super().__init__(
            f"run {outcome.run_id} lost the database; its {outcome.records} records are in "
            f"{outcome.journal} and are written under the same run id by the next annexa "
            "command or daemon that reaches the database"
        )


def recover(settings: Settings, engine: Engine, *, source: str | None = None) -> list[str]:
    """Before writing: finish what dead agents left behind, so every run ends sealed.

    1. Journals in the spool directory whose agent is gone (their lock is free) are
       replayed under their own run ids: records read before a kill or an outage are
       written, and the run is sealed with its final status (``aborted`` if it never
       finished).
    2. Runs of ``source`` (every source when None) whose heartbeat is older than
       ``[collection] stale_after`` — an agent killed on another host, or without a
       journal — are sealed ``aborted``, chained and signed.

    Returns one line per run dealt with, for the caller to print.
    """
    from collector.daemon import spool
    from store.leases import reap_stale

    done: list[str] = []
    signer = settings.signer()
    me = f"{socket.gethostname()}:{os.getpid()}"
    spool_dir = settings.spool_dir
    if spool_dir is not None:
        db = database_id(engine.url)
        for path in spool.pending(spool_dir):
            result = spool.replay(engine, path, signer=signer, database=db)
            if result.summary is not None:
                done.append(
                    f"run {result.original_run_id} ({result.summary.source}) was written from "
                    f"its journal and sealed {result.summary.status}"
                )
    stale = settings.stale_after.total_seconds()
    for r in reap_stale(
        engine,
        stale_after=stale,
        unscheduled_stale_after=stale,
        me=me,
        source=source,
        signer=signer,
    ):
        done.append(
            f"run {r.id} ({r.source}) had no heartbeat since "
            f"{r.heartbeat_at.isoformat() if r.heartbeat_at else 'its start'}: sealed aborted"
        )
    for line in done:
        log.warning("recovered a run", detail=line)
    stamp_runs(settings, engine)
    return done


def run_connector(
    settings: Settings,
    lc: LoadedConnector,
    engine: Engine,
    index: MappingIndex,
    *,
    cancel_event: threading.Event | None = None,
    progress: ProgressCallback | None = None,
    batch_size: int = 1000,
) -> RunSummary:
    """Collect one connector instance into the store as one run (see :func:`drive`).

    Runs of the same source left behind by dead agents are sealed first
    (:func:`recover`). Raises :class:`RunSpooledError` when the database went away
    during the run (nothing is lost: the run is in its journal).
    """
    recover(settings, engine, source=lc.name)
    outcome = collect_run(
        settings,
        lc,
        engine,
        index,
        run_id=str(uuid.uuid4()),
        cancel_event=cancel_event or threading.Event(),
        spool_dir=settings.spool_dir,
        batch_size=batch_size,
        progress=progress,
        cancel_reason="interrupted: the run was cancelled before it completed",
    )
    if outcome.summary is None:
        raise RunSpooledError(outcome)
    return outcome.summary
