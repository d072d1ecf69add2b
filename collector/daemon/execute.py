"""One scheduled collection: the shared run path (:func:`collector.runner.collect_run`)
with the daemon's heartbeat (its schedule lease) and cancellation reason."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine

from collector.config import LoadedConnector, Settings
from collector.runner import Outcome, collect_run, is_outage
from core.redaction import scrub_text
from mappings.loader import MappingIndex

__all__ = ["Outcome", "collect", "instance_scope", "is_outage"]

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
    """Run ``lc`` once as run ``run_id`` for the daemon (see :func:`collect_run`).

    Analyzer instances (``identity`` correlation, ``device_owners``…) read the store
    rather than an API: they get their view of it here, as ``annexa collect`` gives it
    after the sources, or a scheduled one would only report that it was not bound.
    """
    from collector.analysis import bind

    lc = bind(settings, lc, engine)
    rlog = rlog or log.bind(run_id=run_id, connector=lc.name, scope=instance_scope(lc))
    return collect_run(
        settings,
        lc,
        engine,
        index,
        run_id=run_id,
        cancel_event=cancel_event,
        spool_dir=spool_dir,
        batch_size=batch_size,
        rlog=rlog,
        heartbeat="lease",
        cancel_reason="cancelled: the daemon was stopping and the grace period expired",
    )
