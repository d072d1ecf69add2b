"""Microsoft Entra users: status, type, sign-in activity, MFA registration, roles held.

One evidence per user (``entra.user.account``), because auditors sample people. Each
record keeps only what the findings need: object id, user principal name and mail
(pseudonymised when configured), enabled flag, member/guest, invitation state,
creation date, last successful sign-in and last sign-in attempt (see :func:`_sign_ins`),
whether MFA is registered and
with which method *types*, and the directory roles held.

API calls (``@odata.nextLink`` paging):

* ``GET /reports/authenticationMethods/userRegistrationDetails`` — MFA registration
  (needs ``AuditLog.Read.All`` and Entra ID P1/P2); read first into a compact map;
* ``GET /users?$select=…,signInActivity&$top=…`` — Graph caps pages at 120 users
  when ``signInActivity`` is selected. A tenant without P1 answers 403 ("…doesn't have
  premium license"); the listing is then repeated without it and the inactivity checks
  become ``error`` (never a guessed pass).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain
from typing import Any

from connectors.http import HttpClient, HTTPStatusError, MalformedResponseError, SourceError
from connectors.identityshared import carry_over, last_sign_in_verdict
from connectors.kit import GLOBAL, EvidenceMissing, Pseudonymiser, require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence
from core.times import activity_time, day_precision, days_since, full_time, parse_time

USER_TYPE = "entra.user.account"

_SELECT = (
    "id,userPrincipalName,mail,accountEnabled,userType,createdDateTime,"
    "externalUserState,externalUserStateChangeDateTime,onPremisesSyncEnabled"
)

Registration = tuple[bool, tuple[str, ...]]
_END = object()


def read_registrations(http: HttpClient) -> dict[str, Registration]:
    """User id → (isMfaRegistered, methodsRegistered), compact for large tenants."""
    out: dict[str, Registration] = {}
    for row in http.paginate_next_url("/reports/authenticationMethods/userRegistrationDetails"):
        if not isinstance(row, Mapping) or not row.get("id"):
            raise MalformedResponseError("a userRegistrationDetails row without an id")
        methods = row.get("methodsRegistered")
        methods = methods if isinstance(methods, list) else []
        out[str(row["id"])] = (
            row.get("isMfaRegistered") is True,
            tuple(sorted(sys.intern(str(m)) for m in methods)),
        )
    return out


def _list_users(http: HttpClient, page_size: int) -> tuple[Iterable[Any], str | None]:
    """The user listing, with sign-in activity when the tenant allows it.

    Returns (users, None) or (users without sign-in activity, why it is missing).
    """
    top = min(page_size, 999)
    with_signin = http.paginate_next_url(
        "/users", params={"$select": f"{_SELECT},signInActivity", "$top": top}
    )
    try:
        first = next(with_signin, _END)
    except HTTPStatusError as exc:
        if exc.status != 403:
            raise
        plain = http.paginate_next_url("/users", params={"$select": _SELECT, "$top": top})
        return plain, f"sign-in activity could not be read: {exc}"
    return (chain([first], with_signin) if first is not _END else ()), None


def _moment(value: Any) -> str | None:
    """A sign-in timestamp, or None for Graph's empty values (null, ``0001-01-01…``)."""
    if not value or str(value).startswith("0001-01-01"):
        return None
    return str(value)


def _sign_ins(user: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(last *successful* sign-in, last sign-in *attempt*) from ``signInActivity``.

    Graph's ``lastSignInDateTime`` (interactive) and ``lastNonInteractiveSignInDateTime``
    record attempts "either successfully or unsuccessfully"; only
    ``lastSuccessfulSignInDateTime`` (recorded since 1 December 2023, not backfilled)
    shows the account was used. A dormant account whose password is being sprayed has
    recent attempts and no recent success: activity is judged by successes alone.
    """
    activity = user.get("signInActivity")
    if not isinstance(activity, Mapping):
        return None, None
    success = _moment(activity.get("lastSuccessfulSignInDateTime"))
    attempts = [
        parse_time(v)
        for v in (
            _moment(activity.get("lastSignInDateTime")),
            _moment(activity.get("lastNonInteractiveSignInDateTime")),
        )
        if v
    ]
    return (
        activity_time(success) if success else None,
        activity_time(max(attempts)) if attempts else None,
    )


def user_payload(
    user: Mapping[str, Any],
    *,
    registrations: Mapping[str, Registration] | None,
    registration_error: str | None,
    roles_by_user: Mapping[str, list[dict[str, str]]] | None,
    roles_error: str | None,
    signin_error: str | None,
    pseudo: Pseudonymiser,
) -> dict[str, Any]:
    """The evidence payload of one user: only what the checks and an auditor need."""
    uid = str(user["id"])
    user_type = user.get("userType")
    payload: dict[str, Any] = {
        "id": uid,
        "user_principal_name": pseudo(user.get("userPrincipalName")),
        "mail": pseudo(user.get("mail")),
        "user_type": user_type.lower() if isinstance(user_type, str) else None,
        "account_enabled": user.get("accountEnabled"),
        "created": user.get("createdDateTime"),
        "external_user_state": user.get("externalUserState"),
        "external_user_state_changed": full_time(user.get("externalUserStateChangeDateTime")),
        "on_premises_sync_enabled": user.get("onPremisesSyncEnabled"),
    }
    errors: dict[str, str] = {}
    if signin_error:
        errors["last_sign_in"] = signin_error
    else:
        payload["last_sign_in"], payload["last_sign_in_attempt"] = _sign_ins(user)
    if registrations is None:
        for key in ("mfa_registered", "methods_registered"):
            errors[key] = registration_error or "MFA registration details were not read"
    elif uid in registrations:
        payload["mfa_registered"], methods = registrations[uid]
        payload["methods_registered"] = list(methods)
    else:
        for key in ("mfa_registered", "methods_registered"):
            errors[key] = "the user is not (yet) in the userRegistrationDetails report"
    carry_over(
        payload, errors, "directory_roles", roles_by_user, uid, roles_error,
        unread="directory roles were not read",
    )
    return with_errors(payload, errors)


def read_users(
    http: HttpClient,
    scope: str,
    pseudo: Pseudonymiser,
    *,
    roles_by_user: Mapping[str, list[dict[str, str]]] | None,
    roles_error: str | None,
    page_size: int,
    cancelled: Callable[[], bool],
) -> Iterator[Evidence]:
    """Every user with registration and roles, streamed page by page.

    A listing failure raises (the unit fails); a registration-report failure is recorded
    in each payload, so only the MFA findings become ``error``.
    """
    try:
        registrations: dict[str, Registration] | None = read_registrations(http)
        registration_error = None
    except SourceError as exc:
        registrations, registration_error = None, str(exc)
    users, signin_error = _list_users(http, page_size)
    seen: set[str] = set()
    for user in users:
        if cancelled():
            return
        if not isinstance(user, Mapping) or not user.get("id"):
            raise MalformedResponseError("a user without an id in /users")
        uid = str(user["id"])
        if uid in seen:
            continue
        seen.add(uid)
        yield Evidence(
            scope,
            GLOBAL,
            USER_TYPE,
            uid,
            user_payload(
                user,
                registrations=registrations,
                registration_error=registration_error,
                roles_by_user=roles_by_user,
                roles_error=roles_error,
                signin_error=signin_error,
                pseudo=pseudo,
            ),
        )


# --------------------------------------------------------------------------- checks


def _who(payload: Mapping[str, Any]) -> str:
    return str(payload.get("user_principal_name") or payload.get("mail") or payload.get("id"))


def _skip_disabled(payload: Mapping[str, Any]) -> Verdict | None:
    enabled = payload.get("account_enabled")
    if enabled is None:
        raise EvidenceMissing(f"accountEnabled of user {_who(payload)} was not returned")
    if enabled is not True:
        return not_applicable(f"user {_who(payload)} is disabled and cannot sign in")
    return None


def _is_guest(payload: Mapping[str, Any]) -> bool:
    return payload.get("user_type") == "guest"


def _inactivity(payload: Mapping[str, Any], limit: int, what: str) -> Verdict:
    last = require(payload, "last_sign_in")
    attempt = payload.get("last_sign_in_attempt")
    tried = f"; last attempt {attempt} (successful or not)" if attempt and not last else ""
    if last:
        return last_sign_in_verdict(f"{what} {_who(payload)}", last, limit)
    created = payload.get("created")
    if not created:
        return failed(
            f"{what} {_who(payload)} has no successful sign-in and no creation date{tried}"
        )
    age = days_since(created)
    if age > limit:
        return failed(
            f"{what} {_who(payload)} has no successful sign-in recorded since "
            f"{day_precision(created)} ({int(age)} days, limit {limit}){tried}"
        )
    return passed(
        f"{what} {_who(payload)} was created {int(age)} days ago, no successful sign-in yet{tried}"
    )


@check("entra.user.mfa_registered")
def user_mfa_registered(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _skip_disabled(payload)) is not None:
        return na
    if _is_guest(payload):
        return not_applicable(f"guest {_who(payload)} authenticates in their home tenant")
    if require(payload, "mfa_registered") is True:
        methods = ", ".join(require(payload, "methods_registered")) or "unspecified"
        return passed(f"user {_who(payload)} has MFA registered ({methods})")
    methods = ", ".join(payload.get("methods_registered") or []) or "none"
    return failed(f"user {_who(payload)} has no MFA method registered (methods: {methods})")


@check("entra.user.admin_phishing_resistant_mfa")
def admin_phishing_resistant(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    roles = require(payload, "directory_roles")
    privileged = [r for r in roles if r.get("template_id") in params["privileged_role_templates"]]
    if not privileged:
        return not_applicable(f"user {_who(payload)} holds no privileged directory role")
    if (na := _skip_disabled(payload)) is not None:
        return na
    names = ", ".join(str(r.get("name")) for r in privileged)
    methods = list(require(payload, "methods_registered"))
    strong = sorted(set(methods) & set(params["phishing_resistant_methods"]))
    if strong:
        return passed(f"admin {_who(payload)} ({names}) has {', '.join(strong)}")
    return failed(
        f"admin {_who(payload)} ({names}) has no phishing-resistant method "
        f"(registered: {', '.join(methods) or 'none'})"
    )


@check("entra.user.inactive")
def user_inactive(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if (na := _skip_disabled(payload)) is not None:
        return na
    if _is_guest(payload):
        return not_applicable(f"guest {_who(payload)} is judged by entra.user.guest_stale")
    return _inactivity(payload, params["inactive_days"], "user")


@check("entra.user.guest_stale")
def guest_stale(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if not _is_guest(payload):
        return not_applicable(f"user {_who(payload)} is not a guest")
    if (na := _skip_disabled(payload)) is not None:
        return na
    if payload.get("external_user_state") == "PendingAcceptance":
        since = payload.get("external_user_state_changed") or payload.get("created")
        age = days_since(since) if since else float("inf")
        if age > params["max_pending_days"]:
            return failed(
                f"guest {_who(payload)} has not accepted the invitation sent on "
                f"{day_precision(since) if since else 'an unknown date'} "
                f"(limit {params['max_pending_days']} days)"
            )
        return passed(f"guest {_who(payload)} was invited {int(age)} days ago")
    return _inactivity(payload, params["inactive_days"], "guest")


@check("entra.user.disabled_no_roles")
def disabled_no_roles(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("account_enabled") is not False:
        return not_applicable(f"user {_who(payload)} is enabled")
    roles = require(payload, "directory_roles")
    if roles:
        names = ", ".join(str(r.get("name")) for r in roles)
        return failed(f"disabled user {_who(payload)} still holds {names}")
    return passed(f"disabled user {_who(payload)} holds no directory role")
