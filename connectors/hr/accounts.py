"""The HR account hook (:class:`core.accounts.AccountSource`): one employee record of the
HR model (connectors/hr/model.py, shared by ``hr`` and ``bamboohr``) as a person record
for the identity analyzers — employment dates, never an account held."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.accounts import Account, AccountRef, AccountSource, match_keys


def hr_account(ref: AccountRef, p: Mapping[str, Any]) -> Account:
    left = bool(p.get("terminated"))
    end = p.get("termination_date")
    return Account(
        ref.source, ref.kind, ref.resource_type, ref.id,
        login=p.get("work_email"),
        state="offboarded" if left else "active",
        status=str(p.get("employment_status") or ("terminated" if left else "employed")),
        since=end if left else None,
        idp=False,
        emails=match_keys(p.get("work_email")),
        hr=True,
        hire_date=p.get("hire_date"),
        termination_date=end,
    )  # fmt: skip


def hr_accounts(resource_type: str) -> AccountSource:
    """The hook of an HR connector storing employee records as ``resource_type``."""
    return AccountSource((resource_type,), ("employee",), hr_account, hr=True)
