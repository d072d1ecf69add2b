"""Google Workspace users and super administrators (Admin SDK Directory API).

API calls (``pageToken``/``nextPageToken`` paging, partial responses with ``fields``):

* ``GET /admin/directory/v1/users?customer=…&query=isAdmin=true`` — the super admins,
  summarised in one ``workspace.admin.summary`` evidence so the count check judges the
  whole set;
* ``GET /admin/directory/v1/users?customer=…`` — every user, one
  ``workspace.user.account`` evidence each.

A user record keeps only what the findings need: id, primary e-mail (pseudonymised when
configured), super/delegated admin flags, suspended/archived state, organisational unit,
creation date, last login (to the day; Google's ``1970-01-01`` means never) and the
2-Step Verification enrolment and enforcement flags. Names, phones, addresses, aliases
and custom schemas are not even requested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from connectors.http import HttpClient, MalformedResponseError
from connectors.identityshared import last_sign_in_verdict
from connectors.kit import GLOBAL, EvidenceMissing, Pseudonymiser, require
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence
from core.times import activity_time, day_precision, days_since

USER_TYPE = "workspace.user.account"
ADMIN_TYPE = "workspace.admin.summary"
SUMMARY_ID = "super-admins"
USERS_PATH = "/admin/directory/v1/users"

_FIELDS = (
    "id,primaryEmail,isAdmin,isDelegatedAdmin,suspended,suspensionReason,archived,"
    "orgUnitPath,creationTime,lastLoginTime,isEnrolledIn2Sv,isEnforcedIn2Sv"
)
_NEVER = "1970-01-01"


def _last_login(value: Any) -> str | None:
    if not value or str(value).startswith(_NEVER):
        return None
    return activity_time(value)


def user_payload(user: Mapping[str, Any], pseudo: Pseudonymiser) -> dict[str, Any]:
    return {
        "id": str(user["id"]),
        "primary_email": pseudo(user.get("primaryEmail")),
        "is_admin": user.get("isAdmin") is True,
        "is_delegated_admin": user.get("isDelegatedAdmin") is True,
        "suspended": user.get("suspended") is True,
        "suspension_reason": user.get("suspensionReason"),
        "archived": user.get("archived") is True,
        "org_unit_path": user.get("orgUnitPath"),
        "created": user.get("creationTime"),
        "last_login": _last_login(user.get("lastLoginTime")),
        "two_step_enrolled": user.get("isEnrolledIn2Sv"),
        "two_step_enforced": user.get("isEnforcedIn2Sv"),
    }


def _users(
    http: HttpClient, params: Mapping[str, Any], page_size: int
) -> Iterator[Mapping[str, Any]]:
    query = {
        **params,
        "maxResults": page_size,
        "projection": "basic",
        "viewType": "admin_view",
        "fields": f"nextPageToken,users({_FIELDS})",
    }
    for user in http.paginate_cursor(
        USERS_PATH,
        params=query,
        items_key="users",
        cursor_param="pageToken",
        cursor_key="nextPageToken",
        last_key=None,
    ):
        if not isinstance(user, Mapping) or not user.get("id"):
            raise MalformedResponseError(f"a user without an id in {USERS_PATH}")
        yield user


def read_super_admins(
    http: HttpClient,
    scope: str,
    listing: Mapping[str, str],
    pseudo: Pseudonymiser,
    page_size: int,
) -> Iterator[Evidence]:
    admins = []
    for user in _users(http, {**listing, "query": "isAdmin=true"}, page_size):
        if user.get("isAdmin") is not True:
            continue  # the query is a search index: trust the flag, not the match
        admins.append(
            {
                "id": str(user["id"]),
                "primary_email": pseudo(user.get("primaryEmail")),
                "suspended": user.get("suspended") is True,
                "archived": user.get("archived") is True,
                "two_step_enrolled": user.get("isEnrolledIn2Sv"),
            }
        )
    admins.sort(key=lambda a: a["id"])
    yield Evidence(scope, GLOBAL, ADMIN_TYPE, SUMMARY_ID, {"super_admins": admins})


def read_users(
    http: HttpClient,
    scope: str,
    listing: Mapping[str, str],
    pseudo: Pseudonymiser,
    page_size: int,
    cancelled: Callable[[], bool],
) -> Iterator[Evidence]:
    for user in _users(http, listing, page_size):
        if cancelled():
            return
        yield Evidence(scope, GLOBAL, USER_TYPE, str(user["id"]), user_payload(user, pseudo))


# --------------------------------------------------------------------------- checks


def _who(payload: Mapping[str, Any]) -> str:
    return str(payload.get("primary_email") or payload.get("id"))


def _skip_inactive_account(payload: Mapping[str, Any]) -> Verdict | None:
    for flag in ("suspended", "archived"):
        if payload.get(flag):
            return not_applicable(f"user {_who(payload)} is {flag} and cannot sign in")
    return None


def _flag(payload: Mapping[str, Any], key: str) -> bool:
    value = require(payload, key)
    if not isinstance(value, bool):
        raise EvidenceMissing(f"{key} was not returned by the Directory API")
    return value


@check("workspace.user.two_step_enrolled")
def two_step_enrolled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _skip_inactive_account(payload)) is not None:
        return na
    if _flag(payload, "two_step_enrolled"):
        return passed(f"user {_who(payload)} is enrolled in 2-Step Verification")
    return failed(f"user {_who(payload)} is not enrolled in 2-Step Verification")


@check("workspace.user.two_step_enforced")
def two_step_enforced(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _skip_inactive_account(payload)) is not None:
        return na
    if _flag(payload, "two_step_enforced"):
        return passed(f"2-Step Verification is enforced for {_who(payload)}")
    return failed(
        f"2-Step Verification is not enforced for {_who(payload)} "
        f"(organisational unit {payload.get('org_unit_path') or '/'})"
    )


@check("workspace.user.inactive")
def user_inactive(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _skip_inactive_account(payload)) is not None:
        return na
    last = payload.get("last_login")
    if not last:
        return not_applicable(
            f"user {_who(payload)} has never signed in (judged by workspace.user.never_signed_in)"
        )
    return last_sign_in_verdict(f"user {_who(payload)}", last, params["inactive_days"])


@check("workspace.user.never_signed_in")
def never_signed_in(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _skip_inactive_account(payload)) is not None:
        return na
    if payload.get("last_login"):
        return not_applicable(f"user {_who(payload)} has signed in")
    created = payload.get("created")
    if not created:
        return failed(f"user {_who(payload)} has never signed in and has no creation date")
    age = days_since(created)
    limit = params["max_days_without_login"]
    if age > limit:
        return failed(
            f"user {_who(payload)} was created on {day_precision(created)} and has never "
            f"signed in ({int(age)} days, limit {limit})"
        )
    return passed(f"user {_who(payload)} was created {int(age)} days ago")


@check("workspace.user.suspended_no_admin")
def suspended_no_admin(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    state = next((f for f in ("suspended", "archived") if payload.get(f)), None)
    if state is None:
        return not_applicable(f"user {_who(payload)} is active")
    roles = [
        name
        for key, name in (("is_admin", "super admin"), ("is_delegated_admin", "delegated admin"))
        if payload.get(key)
    ]
    if roles:
        return failed(f"{state} user {_who(payload)} is still {' and '.join(roles)}")
    return passed(f"{state} user {_who(payload)} holds no admin role")


@check("workspace.admin.super_admin_count")
def super_admin_count(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    admins = [
        a
        for a in require(payload, "super_admins")
        if not a.get("suspended") and not a.get("archived")
    ]
    limit = params["max_super_admins"]
    names = ", ".join(sorted(str(a.get("primary_email") or a.get("id")) for a in admins))
    if len(admins) > limit:
        return failed(f"{len(admins)} active super administrators (maximum {limit}): {names}")
    return passed(f"{len(admins)} active super administrators (maximum {limit})")
