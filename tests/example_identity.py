"""A test-only identity source: the fictional Acme Directory, read from a JSON export.

It exists to show that a new identity source touches no file outside its own: it is a
connector like any other (registered by entry point by tests/test_example_identity.py,
as a third-party package would), and its class declares the account hook
(``accounts``, core/accounts.py) through which the identity analyzer correlates its
accounts with those of every other source. Nothing in ``analyzers/``, ``core/`` or
``collector/`` names it.

The export is ``{"users": [{"uid", "mail", "state": "enabled" | "disabled" | "invited",
"disabled_at", "created"}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from core.accounts import Account, AccountRef, AccountSource, match_keys
from core.checks import CheckSpec
from core.connector import CollectContext, Connector, ConnectorOptions
from core.records import Coverage, Evidence, Record
from core.times import full_time

USER_TYPE = "acme.user.account"


class AcmeOptions(ConnectorOptions):
    path: str


def acme_account(ref: AccountRef, p: Mapping[str, Any]) -> Account:
    """One ``acme.user.account`` payload as a normalised account."""
    state = {"enabled": "active", "disabled": "offboarded"}.get(str(p.get("state")), "pending")
    return Account(
        ref.source, ref.kind, ref.resource_type, ref.id,
        login=p.get("mail"),
        state=state,
        status=str(p.get("state")),
        since=full_time(p.get("disabled_at")) if state == "offboarded" else None,
        idp=True,
        emails=match_keys(p.get("mail")),
        active_from=full_time(p.get("created")) if state != "pending" else None,
    )  # fmt: skip


class AcmeDirectoryConnector(Connector):
    type = "acme_directory"
    prefix = "acme"
    Options: ClassVar[type[ConnectorOptions]] = AcmeOptions
    accounts = AccountSource((USER_TYPE,), ("user",), acme_account, idp=True)

    options: AcmeOptions

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        return []

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        scope = "acme"
        try:
            users = json.loads(Path(self.options.path).read_text(encoding="utf-8"))["users"]
        except (OSError, ValueError, KeyError) as exc:
            yield Coverage(scope, "global", "user", ok=False, error=f"export unreadable: {exc}")
            return
        for u in users:
            yield Evidence(scope, "global", USER_TYPE, u["uid"], dict(u))
        yield Coverage(scope, "global", "user", ok=True)
