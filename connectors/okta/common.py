"""Okta-specific constants; the helpers shared by every connector live in
:mod:`connectors.common` and are re-exported here for the Okta readers and checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog

from connectors.common import ERRORS_KEY, GLOBAL, EvidenceMissing, Pseudonymiser, require
from connectors.common import run_unit as _run_unit
from core.records import Evidence, Finding, Record
from core.times import activity_time, day_precision, days_since, parse_time

__all__ = [
    "ERRORS_KEY",
    "GLOBAL",
    "INACTIVE_STATUSES",
    "KNOWN_STATUSES",
    "PENDING_STATUSES",
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
    "user_status",
]

log = structlog.get_logger("annexa.connectors.okta")

#: Every ``UserStatus`` of Okta's management OpenAPI spec, by what it means for access.
#: User statuses in which the account can still sign in (or be recovered into use).
SIGN_IN_STATUSES = frozenset({"ACTIVE", "RECOVERY", "LOCKED_OUT", "PASSWORD_EXPIRED"})
#: Created, not yet activated (``ACTIVATING`` is the spec's transitional status).
PENDING_STATUSES = frozenset({"STAGED", "PROVISIONED", "ACTIVATING"})
#: Deactivated or suspended: no sign-in until an administrator restores the account.
INACTIVE_STATUSES = frozenset({"DEPROVISIONED", "SUSPENDED"})
KNOWN_STATUSES = SIGN_IN_STATUSES | PENDING_STATUSES | INACTIVE_STATUSES


def user_status(payload: Mapping[str, Any]) -> str:
    """The user's status; one the spec does not document is an ``error``, never a guess."""
    status = payload.get("status")
    if status not in KNOWN_STATUSES:
        raise EvidenceMissing(
            f"user status {status!r} is not one Okta documents; the user cannot be judged"
        )
    return str(status)


def run_unit(
    scope: str,
    service: str,
    read: Callable[[], Iterator[Evidence | Finding]],
    cancelled: Callable[[], bool],
) -> Iterator[Record]:
    """:func:`connectors.common.run_unit` for an Okta unit (region ``global``)."""
    return _run_unit(scope, service, read, cancelled, source="okta")
