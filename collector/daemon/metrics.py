"""Prometheus metrics of the daemon, in their own registry (nothing global).

Label values are connector instance names and statuses only — never a message,
resource id or URL — so no secret can reach ``/metrics``.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from functools import partial
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from store.status import CONTROL_STATUSES

RUN_STATUSES = ("succeeded", "partial", "failed", "aborted")
FINDING_STATUSES = ("pass", "fail", "error", "not_applicable")
CONTENT_TYPE = CONTENT_TYPE_LATEST
NOTIFY_CHANNELS = ("webhook", "jira")
NOTIFY_OUTCOMES = ("sent", "failed")


def annexa_version() -> str:
    try:
        return version("annexa")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


class Metrics:
    """Every labelled series is created at start-up with its zero value (connectors,
    statuses, controls and channels are known then), so an alert on ``increase()`` or
    on a status sees the first failure, not an absent series turning up."""

    def __init__(self, connectors: Iterable[str] = (), controls: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        connectors = list(connectors)
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds… of this
        # replica (Linux /proc), in this registry rather than the global one.
        ProcessCollector(registry=r)
        gauge = partial(Gauge, registry=r)
        counter = partial(Counter, registry=r)
        histogram = partial(Histogram, registry=r)
        Info("annexa_build", "Version of Annexa and Python this replica runs.", registry=r).info(
            {"version": annexa_version(), "python": platform.python_version()}
        )
        self.db_up = gauge(
            "annexa_database_up",
            "1 when the last database check of this replica succeeded, else 0.",
        )
        self.db_up.set(1)
        self.control_status = gauge(
            "annexa_control_status",
            "1 for the current status of each Annex A control, 0 for the other statuses.",
            ["control", "status"],
        )
        self._control_ids = sorted(controls)
        for control in self._control_ids:
            for status in CONTROL_STATUSES:
                self.control_status.labels(control, status).set(0)
        self.runs = counter("annexa_runs", "Finished collection runs.", ["connector", "status"])
        self.duration = histogram(
            "annexa_run_duration_seconds",
            "Duration of collection runs (collection to seal, spool wait excluded).",
            ["connector"],
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf")),
        )
        self.last_success = gauge(
            "annexa_last_success_timestamp_seconds",
            "Unix time of the last run that ended succeeded.",
            ["connector"],
        )
        self.findings = gauge(
            "annexa_findings",
            "Findings of the connector's latest run, by status.",
            ["connector", "status"],
        )
        self.controls = gauge("annexa_controls", "Annex A controls by current status.", ["status"])
        self.lateness = histogram(
            "annexa_schedule_lateness_seconds",
            "Delay between a collection's due time and its claim.",
            ["connector"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, float("inf")),
        )
        self.claims = counter(
            "annexa_schedule_claims",
            "Schedule claims won by this replica (takeover: a dead replica's run retried).",
            ["connector", "takeover"],
        )
        self.spooled = gauge(
            "annexa_spooled_runs", "Runs waiting in the local spool for the database."
        )
        self.reaped = counter(
            "annexa_reaped_runs", "Orphaned runs sealed as aborted by this replica."
        )
        self.notifications = counter(
            "annexa_notifications", "Notifications by channel and outcome.", ["channel", "outcome"]
        )
        self.active = gauge("annexa_active_runs", "Runs in progress on this replica.")
        self.missed = counter(
            "annexa_schedule_missed",
            "Due times recorded missed (not run) by this replica's claims.",
            ["connector"],
        )
        for name in connectors:
            for status in RUN_STATUSES:
                self.runs.labels(name, status)
            for status in FINDING_STATUSES:
                self.findings.labels(name, status).set(0)
            for takeover in ("false", "true"):
                self.claims.labels(name, takeover)
            self.missed.labels(name)
            self.duration.labels(name)
            self.lateness.labels(name)
            self.last_success.labels(name).set(0)
        for channel in NOTIFY_CHANNELS:
            for outcome in NOTIFY_OUTCOMES:
                self.notifications.labels(channel, outcome)
        for status in CONTROL_STATUSES:
            self.controls.labels(status).set(0)

    def watch_pool(self, pool: object) -> None:
        """Expose the database pool's connections (checked out / idle) at each scrape."""
        out = Gauge(
            "annexa_db_pool_checked_out",
            "Database connections in use.",
            registry=self.registry,
        )
        idle = Gauge(
            "annexa_db_pool_idle",
            "Database connections open and idle in the pool.",
            registry=self.registry,
        )
        if hasattr(pool, "checkedout") and hasattr(pool, "checkedin"):
            out.set_function(pool.checkedout)
            idle.set_function(pool.checkedin)

    def run_finished(
        self, connector: str, status: str, duration: float, finished_ts: float, by_status: dict
    ) -> None:
        self.runs.labels(connector, status).inc()
        self.duration.labels(connector).observe(duration)
        if status == "succeeded":
            self.last_success.labels(connector).set(finished_ts)
        for s in FINDING_STATUSES:
            self.findings.labels(connector, s).set(int(by_status.get(s, 0)))

    def set_controls(
        self, counts: dict[str, int], by_control: dict[str, str] | None = None
    ) -> None:
        for status in CONTROL_STATUSES:
            self.controls.labels(status).set(counts.get(status, 0))
        for control, current in (by_control or {}).items():
            for status in CONTROL_STATUSES:
                self.control_status.labels(control, status).set(int(status == current))

    def render(self) -> bytes:
        return generate_latest(self.registry)
