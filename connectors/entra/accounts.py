"""Entra ID's account hook (:class:`core.accounts.AccountSource`): one
``entra.user.account`` payload as a normalised account for the identity analyzers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.accounts import Account, AccountRef, AccountSource, match_keys
from core.times import full_time


def entra_account(ref: AccountRef, p: Mapping[str, Any]) -> Account:
    enabled = p.get("account_enabled")
    return Account(
        ref.source, ref.kind, ref.resource_type, ref.id,
        login=p.get("mail") or p.get("user_principal_name"),
        state="active" if enabled is True else "offboarded" if enabled is False else "pending",
        status="enabled" if enabled else "disabled",
        since=None,  # Graph has no "disabled since"
        idp=True,
        emails=match_keys(p.get("mail"), p.get("user_principal_name")),
        active_from=full_time(p.get("created")),
    )  # fmt: skip


ACCOUNTS = AccountSource(("entra.user.account",), ("user",), entra_account, idp=True)
