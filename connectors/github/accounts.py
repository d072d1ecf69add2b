"""GitHub's account hook (:class:`core.accounts.AccountSource`): organisation members and
outside collaborators as accounts held directly (GitHub exposes no e-mail: they join
people through the identity map only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.accounts import Account, AccountRef, AccountSource


def github_account(ref: AccountRef, p: Mapping[str, Any]) -> Account:
    outside = ref.resource_type.endswith(".outside")
    return Account(
        ref.source, ref.kind, ref.resource_type, ref.id,
        login=p.get("login") or ref.id,
        state="active",
        status="outside collaborator" if outside else str(p.get("role") or "member"),
        since=None,
        idp=False,
    )  # fmt: skip


ACCOUNTS = AccountSource(
    ("github.member.account", "github.collaborator.outside"),
    ("member", "collaborator"),
    github_account,
)
