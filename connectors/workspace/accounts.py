"""Google Workspace's account hook (:class:`core.accounts.AccountSource`): one
``workspace.user.account`` payload as a normalised account for the identity analyzers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.accounts import Account, AccountRef, AccountSource, match_keys
from core.times import full_time


def workspace_account(ref: AccountRef, p: Mapping[str, Any]) -> Account:
    off = next((f for f in ("suspended", "archived") if p.get(f)), None)
    return Account(
        ref.source, ref.kind, ref.resource_type, ref.id,
        login=p.get("primary_email"),
        state="offboarded" if off else "active",
        status=off or "active",
        since=None,
        idp=True,
        emails=match_keys(p.get("primary_email")),
        active_from=full_time(p.get("created")),
    )  # fmt: skip


ACCOUNTS = AccountSource(("workspace.user.account",), ("user",), workspace_account, idp=True)
