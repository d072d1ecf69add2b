"""The run engine: one connector instance → checks → controls → store, as one run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import structlog
from sqlalchemy import Engine

from collector.config import LoadedConnector, Settings
from connectors.base import CollectContext
from connectors.checks import evaluate
from connectors.records import Coverage, Evidence, Finding, service_of
from connectors.redaction import scrub_text
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
) -> DriveResult:
    """Stream one connector run into ``sink``: checks, controls, unit errors, status.

    Never raises for the source or the connector: a crash becomes an ``error`` for every
    check of the instance. Messages are scrubbed of secrets before they are stored.
    Status: ``succeeded`` when every unit was read, ``partial`` when some failed,
    ``failed`` when nothing could be read or the connector broke before reading
    anything, ``aborted`` when cancelled.
    """
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
        for rec in connector.collect(ctx):
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
        whole = Coverage(lc.name, "global", "*", ok=False, error=reason)
        sink.coverage(whole)
        for f in _unit_error_findings(lc, whole, index):
            sink.finding(f)
    if cancel_event.is_set():
        sink.error(cancel_reason)
        status = "aborted"
    else:
        if not crashed and not whole_reported:
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
    """Collect one connector instance into the store as one run (see :func:`drive`)."""
    writer = RunWriter(
        engine,
        source=lc.name,
        connector_type=lc.cfg.type,
        config_digest=settings.digest(),
        mapping_digest=index.digest,
        agent_version=AGENT_VERSION,
        batch_size=batch_size,
    )
    run_id = writer.start()
    rlog = log.bind(run_id=run_id, connector=lc.name, connector_type=lc.cfg.type)
    rlog.info("run started")
    result = drive(
        lc,
        index,
        WriterSink(writer),
        run_id=run_id,
        rlog=rlog,
        cancel_event=cancel_event or threading.Event(),
        progress=progress,
    )
    summary = writer.finish(result.status)
    rlog.info(
        "run finished",
        status=result.status,
        **{k: v for k, v in summary.counts.items() if isinstance(v, int)},
    )
    return summary
