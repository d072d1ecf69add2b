"""GitHub-specific glue; the helpers shared by every connector live in
:mod:`connectors.common` and are re-exported here for the GitHub readers and checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import structlog

from connectors.common import ERRORS_KEY, GLOBAL, EvidenceMissing, Pseudonymiser, require
from connectors.common import run_unit as _run_unit
from core.records import Evidence, Finding, Record
from core.times import day_precision, days_since, parse_time

__all__ = [
    "ERRORS_KEY",
    "GLOBAL",
    "EvidenceMissing",
    "Pseudonymiser",
    "day_precision",
    "days_since",
    "log",
    "parse_time",
    "require",
    "run_unit",
]

log = structlog.get_logger("annexa.connectors.github")


def run_unit(
    scope: str,
    service: str,
    read: Callable[[], Iterator[Evidence | Finding]],
    cancelled: Callable[[], bool],
) -> Iterator[Record]:
    """:func:`connectors.common.run_unit` for a GitHub unit (region ``global``)."""
    return _run_unit(scope, service, read, cancelled, source="github")
