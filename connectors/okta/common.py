"""Okta user statuses, by what they mean for access (Okta's management OpenAPI spec).

The connector machinery (units, ``require``, ``EvidenceMissing``…) is
:mod:`connectors.kit`'s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.kit import EvidenceMissing

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
