"""Okta's account hook (:class:`core.accounts.AccountSource`): one ``okta.user.account``
payload (connectors/okta/users.py) as a normalised account for the identity analyzers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.accounts import Account, AccountRef, AccountSource, match_keys
from core.times import full_time

_ACTIVE = frozenset({"ACTIVE", "RECOVERY", "LOCKED_OUT", "PASSWORD_EXPIRED"})
_OFFBOARDED = frozenset({"DEPROVISIONED", "SUSPENDED"})


def okta_account(ref: AccountRef, p: Mapping[str, Any]) -> Account:
    status = str(p.get("status"))
    if status in _ACTIVE:
        state = "active"
    elif status in _OFFBOARDED:
        state = "offboarded"
    else:
        state = "pending"
    return Account(
        ref.source, ref.kind, ref.resource_type, ref.id,
        login=p.get("login") or p.get("email"),
        state=state,
        status=status,
        since=full_time(p.get("status_changed")) if state == "offboarded" else None,
        idp=True,
        emails=match_keys(p.get("login"), p.get("email")),
        # Staged accounts are not usable; activation is when sign-in became possible.
        active_from=full_time(p.get("activated"))
        if p.get("activated")
        else (full_time(p.get("created")) if state != "pending" else None),
    )  # fmt: skip


ACCOUNTS = AccountSource(("okta.user.account",), ("user",), okta_account, idp=True)
