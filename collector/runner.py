"""The run engine: one connector instance → checks → controls → store, as one run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version

import structlog
from sqlalchemy import Engine

from collector.config import LoadedConnector, Settings
from connectors.base import CollectContext
from connectors.checks import evaluate
from connectors.records import Coverage, Evidence, Finding, service_of
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


def _with_controls(f: Finding, index: MappingIndex) -> Finding:
    return replace(f, controls=index.controls_for(f.check_id))


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
    """Collect one connector instance into the store; never raises for source failures.

    Status: ``succeeded`` when every unit was read, ``partial`` when some failed,
    ``failed`` when nothing could be read or the connector itself broke, ``aborted``
    when cancelled.
    """
    cancel_event = cancel_event or threading.Event()
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
    tally = _Tally()
    crashed = False
    whole_reported = False
    checks_by_type: dict[str, list] = {}
    for spec in lc.enabled_checks.values():
        checks_by_type.setdefault(spec.resource_type, []).append(spec)
    try:
        connector = lc.build()
        ctx = CollectContext(run_id=run_id, log=rlog, cancel_event=cancel_event)
        for rec in connector.collect(ctx):
            tally.records += 1
            if isinstance(rec, Evidence):
                h = writer.add_evidence(rec)
                for f in evaluate(rec, checks_by_type.get(rec.resource_type, ()), lc.params, h):
                    writer.add_finding(_with_controls(f, index))
            elif isinstance(rec, Finding):
                if rec.check_id in lc.enabled_checks:
                    writer.add_finding(_with_controls(rec, index))
            elif isinstance(rec, Coverage):
                whole_reported |= rec.service == "*" and rec.scope == lc.name
                writer.add_coverage(rec)
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
                        writer.add_finding(f)
            if progress is not None:
                progress(lc.name, tally.records)
            if cancel_event.is_set():
                break
    except Exception as exc:  # noqa: BLE001 - a broken connector must not lose the run
        crashed = True
        reason = f"connector crashed: {type(exc).__name__}: {exc}"
        writer.add_error(reason)
        rlog.error("connector crashed", exc_info=True)
        # What was not read because of the crash is an error for every check, never a
        # silent keep-the-last-verdict; the next clean run closes these again.
        whole = Coverage(lc.name, "global", "*", ok=False, error=reason)
        writer.add_coverage(whole)
        for f in _unit_error_findings(lc, whole, index):
            writer.add_finding(f)
    if not crashed and not whole_reported and not cancel_event.is_set():
        writer.add_coverage(Coverage(lc.name, "global", "*", ok=True))
    if cancel_event.is_set():
        status = "aborted"
    elif crashed:
        status = "failed" if tally.ok_units == 0 else "partial"
    elif tally.error_units and tally.ok_units == 0:
        status = "failed"
    elif tally.error_units:
        status = "partial"
    else:
        status = "succeeded"
    summary = writer.finish(status)
    rlog.info(
        "run finished",
        status=status,
        **{k: v for k, v in summary.counts.items() if isinstance(v, int)},
    )
    return summary
