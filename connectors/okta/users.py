"""Okta users: status, sign-in recency, enrolled factors, admin roles and API tokens held.

One evidence per person (``okta.user.account``), because auditors sample people: each
record carries only what the findings need — id, login/email (pseudonymised when
configured), status and lifecycle timestamps, last sign-in (day precision), the types of
enrolled factors, the admin role types and the ids of API tokens the person owns.

API calls: ``GET /api/v1/users`` (which omits deprovisioned users) and
``GET /api/v1/users?filter=status eq "DEPROVISIONED"``, then
``GET /api/v1/users/{id}/factors`` for each user who can sign in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from connectors.http import HttpClient, MalformedResponseError, SourceError
from connectors.identityshared import carry_over, last_sign_in_verdict
from connectors.kit import GLOBAL, Pseudonymiser, batches, require, with_errors
from connectors.okta.common import (
    INACTIVE_STATUSES,
    PENDING_STATUSES,
    SIGN_IN_STATUSES,
    user_status,
)
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence
from core.times import activity_time, day_precision, days_since, parse_time

USER_TYPE = "okta.user.account"

_DEPROVISIONED_FILTER = 'status eq "DEPROVISIONED"'

#: ``UserFactorType`` values (Okta management OpenAPI spec) that count as a second factor
#: beside the password: possession authenticators. Left out by default: ``question``
#: (knowledge, like the password) and ``email`` (NIST SP 800-63B §5.1.3.1 does not
#: accept e-mail as an out-of-band authenticator). ``sms``/``call`` stay (restricted, not
#: forbidden, by SP 800-63B); remove them to demand stronger factors. The default of
#: okta.user.mfa_enrolled's second_factor_types in users.checks.toml, which must list
#: the same (tests/test_check_metadata.py holds them together).
SECOND_FACTOR_TYPES: tuple[str, ...] = (
    "push",
    "signed_nonce",
    "token:software:totp",
    "token:hotp",
    "token:hardware",
    "token",
    "webauthn",
    "u2f",
    "web",
    "sms",
    "call",
)


def _factor_summary(factor: Mapping[str, Any]) -> dict[str, Any]:
    provider = factor.get("provider")
    return {
        "type": factor.get("factorType"),
        "provider": provider if isinstance(provider, str) else None,
        "status": factor.get("status"),
    }


def _read_factors(
    http: HttpClient, user: Mapping[str, Any]
) -> tuple[list[dict] | None, str | None]:
    """(factors, None), or (None, reason) when they could not be read; (None, None) when
    the user cannot sign in and factors are irrelevant."""
    if user.get("status") not in SIGN_IN_STATUSES:
        return None, None
    try:
        path = f"/api/v1/users/{quote(str(user['id']), safe='')}/factors"
        factors = [_factor_summary(f) for f in http.paginate_links(path) if isinstance(f, Mapping)]
    except SourceError as exc:
        return None, str(exc)
    factors.sort(key=lambda f: (str(f["type"]), str(f["provider"]), str(f["status"])))
    return factors, None


def user_payload(
    user: Mapping[str, Any],
    factors: list[dict] | None,
    factor_error: str | None,
    admin_roles: Mapping[str, list[str]] | None,
    admin_error: str | None,
    tokens_by_owner: Mapping[str, list[str]] | None,
    tokens_error: str | None,
    pseudo: Pseudonymiser,
) -> dict[str, Any]:
    """The evidence payload of one user: only what the checks and an auditor need."""
    profile = user.get("profile") if isinstance(user.get("profile"), Mapping) else {}
    uid = str(user["id"])
    payload: dict[str, Any] = {
        "id": uid,
        "login": pseudo(profile.get("login")),
        "email": pseudo(profile.get("email")),
        "status": user.get("status"),
        "created": user.get("created"),
        "activated": user.get("activated"),
        "status_changed": user.get("statusChanged"),
        "last_login": activity_time(user.get("lastLogin")),
    }
    errors: dict[str, str] = {}
    if factors is not None:
        payload["factors"] = factors
    elif factor_error:
        errors["factors"] = factor_error
    carry_over(
        payload, errors, "admin_roles", admin_roles, uid, admin_error,
        unread="admin role assignments were not read", arrange=sorted,
    )
    carry_over(
        payload, errors, "api_tokens", tokens_by_owner, uid, tokens_error,
        unread="API tokens were not read", arrange=sorted,
    )
    return with_errors(payload, errors)


def read_users(
    http: HttpClient,
    scope: str,
    pseudo: Pseudonymiser,
    *,
    admin_roles: Mapping[str, list[str]] | None,
    admin_error: str | None,
    tokens_by_owner: Mapping[str, list[str]] | None,
    tokens_error: str | None,
    page_size: int,
    max_workers: int,
    cancelled: Callable[[], bool],
) -> Iterator[Evidence]:
    """Every user (deprovisioned included) with factors, streamed page by page.

    A listing failure raises (the unit fails); a factor read failure is recorded in that
    user's payload, so only that user's MFA findings become ``error``.
    """
    seen: set[str] = set()

    def all_users() -> Iterator[Mapping[str, Any]]:
        for params in (
            {"limit": page_size},
            {"limit": page_size, "filter": _DEPROVISIONED_FILTER},
        ):
            for user in http.paginate_links("/api/v1/users", params=params):
                if not isinstance(user, Mapping) or not user.get("id"):
                    raise MalformedResponseError("a user without an id in /api/v1/users")
                uid = str(user["id"])
                if uid not in seen:
                    seen.add(uid)
                    yield user

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="okta-factors") as pool:
        for batch in batches(all_users(), page_size):
            if cancelled():
                return
            results = pool.map(lambda u: _read_factors(http, u), batch)
            for user, (factors, factor_error) in zip(batch, results, strict=True):
                yield Evidence(
                    scope=scope,
                    region=GLOBAL,
                    resource_type=USER_TYPE,
                    resource_id=str(user["id"]),
                    payload=user_payload(
                        user,
                        factors,
                        factor_error,
                        admin_roles,
                        admin_error,
                        tokens_by_owner,
                        tokens_error,
                        pseudo,
                    ),
                )


# --------------------------------------------------------------------------- checks


def _who(payload: Mapping[str, Any]) -> str:
    return str(payload.get("login") or payload.get("email") or payload.get("id"))


def _active_factor_types(payload: Mapping[str, Any], counted: Iterable[str] | None) -> list[str]:
    """Types of the user's ACTIVE factors (only those in ``counted`` unless None)."""
    keep = None if counted is None else set(counted)
    return sorted(
        {
            str(f.get("type"))
            for f in require(payload, "factors")
            if f.get("status") == "ACTIVE" and (keep is None or f.get("type") in keep)
        }
    )


@check("okta.user.mfa_enrolled")
def user_mfa_enrolled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    status = user_status(payload)
    if status not in SIGN_IN_STATUSES:
        return not_applicable(f"user {_who(payload)} is {status} and cannot sign in")
    types = _active_factor_types(payload, params["second_factor_types"])
    if types:
        return passed(f"user {_who(payload)} has active factors: {', '.join(types)}")
    enrolled = sorted({f"{f.get('type')} ({f.get('status')})" for f in payload["factors"]})
    extra = f" (enrolled but not counted or not active: {', '.join(enrolled)})" if enrolled else ""
    return failed(f"user {_who(payload)} ({status}) has no active second factor{extra}")


@check("okta.user.admin_phishing_resistant_mfa")
def admin_phishing_resistant(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    roles = require(payload, "admin_roles")
    if not roles:
        return not_applicable(f"user {_who(payload)} holds no admin role")
    status = user_status(payload)
    if status not in SIGN_IN_STATUSES:
        return not_applicable(f"admin {_who(payload)} is {status} and cannot sign in")
    types = _active_factor_types(payload, None)
    strong = sorted(set(types) & set(params["phishing_resistant_types"]))
    if strong:
        return passed(f"admin {_who(payload)} has phishing-resistant factors: {', '.join(strong)}")
    return failed(
        f"admin {_who(payload)} ({', '.join(roles)}) has no phishing-resistant factor "
        f"(active: {', '.join(types) or 'none'})"
    )


@check("okta.user.inactive")
def user_inactive(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    status = user_status(payload)
    if status not in SIGN_IN_STATUSES:
        return not_applicable(f"user {_who(payload)} is {status}")
    limit = params["inactive_days"]
    last = payload.get("last_login")
    if last:
        return last_sign_in_verdict(f"user {_who(payload)}", last, limit)
    since = payload.get("activated") or payload.get("created")
    if since is None:
        return failed(f"user {_who(payload)} has never signed in and has no activation date")
    age = days_since(since)
    if age > limit:
        return failed(
            f"user {_who(payload)} has never signed in since {day_precision(since)} "
            f"({int(age)} days, limit {limit})"
        )
    return passed(f"user {_who(payload)} was activated {int(age)} days ago, not yet signed in")


@check("okta.user.deprovisioned_no_access")
def user_deprovisioned_no_access(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    status = user_status(payload)
    if status not in INACTIVE_STATUSES:
        return not_applicable(f"user {_who(payload)} is {status}")
    problems = []
    roles = require(payload, "admin_roles")
    if roles:
        problems.append(f"still holds admin roles {', '.join(roles)}")
    tokens = require(payload, "api_tokens")
    if tokens:
        problems.append(f"still owns {len(tokens)} API token(s)")
    changed, last = payload.get("status_changed"), payload.get("last_login")
    if changed and last and parse_time(last).date() > parse_time(changed).date():
        problems.append(f"signed in on {last}, after the status change on {changed[:10]}")
    if problems:
        return failed(f"{status.lower()} user {_who(payload)} " + "; ".join(problems))
    return passed(f"{status.lower()} user {_who(payload)} holds no residual access")


@check("okta.user.pending_activation")
def user_pending_activation(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    status = user_status(payload)
    if status not in PENDING_STATUSES:
        return not_applicable(f"user {_who(payload)} is {status}")
    created = payload.get("created")
    if not created:
        return failed(f"user {_who(payload)} is {status} with no creation date")
    age = days_since(created)
    if age > params["max_pending_days"]:
        return failed(
            f"user {_who(payload)} has been {status} since {day_precision(created)} "
            f"({int(age)} days, limit {params['max_pending_days']})"
        )
    return passed(f"user {_who(payload)} is {status} for {int(age)} days")
