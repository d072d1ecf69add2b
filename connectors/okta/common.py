"""Okta-specific constants; the helpers shared by every connector live in
:mod:`connectors.common` and are re-exported here for the Okta readers and checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import structlog

from connectors.common import (
    ERRORS_KEY,
    GLOBAL,
    EvidenceMissing,
    Pseudonymiser,
    activity_time,
    day_precision,
    days_since,
    parse_time,
    require,
)
from connectors.common import run_unit as _run_unit
from connectors.records import Evidence, Finding, Record

__all__ = [
    "ERRORS_KEY",
    "GLOBAL",
    "SIGN_IN_STATUSES",
    "EvidenceMissing",
    "Pseudonymiser",
    "activity_time",
    "day_precision",
    "days_since",
    "log",
    "parse_time",
    "require",
    "run_unit",
]

log = structlog.get_logger("annexa.connectors.okta")

#: User statuses in which the account can still sign in (or be recovered into use).
SIGN_IN_STATUSES = frozenset({"ACTIVE", "RECOVERY", "LOCKED_OUT", "PASSWORD_EXPIRED"})


def run_unit(
    scope: str,
    service: str,
    read: Callable[[], Iterator[Evidence | Finding]],
    cancelled: Callable[[], bool],
) -> Iterator[Record]:
    """:func:`connectors.common.run_unit` for an Okta unit (region ``global``)."""
    return _run_unit(scope, service, read, cancelled, source="okta")
