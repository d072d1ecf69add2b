"""GitHub organisation settings, members and outside collaborators.

API calls (``per_page=100``, ``Link`` pagination):

* ``GET /orgs/{org}`` — 2FA requirement and base permission (``two_factor_requirement_enabled``
  is only returned to organisation owners);
* ``GET /orgs/{org}/members?role=admin`` — the owners;
* ``GET /orgs/{org}/members`` and ``GET /orgs/{org}/members?filter=2fa_disabled`` and
  ``?filter=2fa_insecure``;
* ``GET /orgs/{org}/outside_collaborators`` and ``…?filter=2fa_disabled`` /
  ``…?filter=2fa_insecure``.

GitHub documents three values of ``filter``: ``all``, ``2fa_disabled`` and
``2fa_insecure`` (2FA enabled, but only with a method GitHub deems insecure, such as
SMS); each person's payload records both flags. The filters are only available to
owners; without them, the flags are unknown and recorded as errors in the payload, so
the 2FA findings are ``error`` rather than a guess.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from connectors.http import HttpClient, MalformedResponseError, SourceError
from connectors.kit import ERRORS_KEY, GLOBAL, EvidenceMissing, Pseudonymiser, require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

ORG_TYPE = "github.org.settings"
MEMBER_TYPE = "github.member.account"
COLLABORATOR_TYPE = "github.collaborator.outside"

PAGE = {"per_page": 100}


def _logins(http: HttpClient, path: str, **params: Any) -> Iterator[Mapping[str, Any]]:
    for person in http.paginate_links(path, params={**PAGE, **params}):
        if not isinstance(person, Mapping) or not person.get("login"):
            raise MalformedResponseError(f"an account without a login in {path}")
        yield person


def _login_set(http: HttpClient, path: str, **params: Any) -> tuple[set[str] | None, str | None]:
    try:
        return {str(p["login"]) for p in _logins(http, path, **params)}, None
    except SourceError as exc:
        return None, str(exc)


class Owners:
    """``GET /orgs/{org}/members?role=admin``, read once per run by whichever unit asks
    first (``org`` lists the owners, ``member`` marks each member's role)."""

    def __init__(self, http: HttpClient, org: str) -> None:
        self._path = f"/orgs/{quote(org, safe='')}/members"
        self._http = http
        self._lock = threading.Lock()
        self._read: tuple[set[str] | None, SourceError | None] | None = None

    def get(self) -> set[str]:
        """The owners' logins; raises the listing's error (each time it is asked)."""
        with self._lock:
            if self._read is None:
                try:
                    self._read = ({str(p["login"]) for p in _logins(
                        self._http, self._path, role="admin")}, None)
                except SourceError as exc:
                    self._read = (None, exc)
        owners, error = self._read
        if owners is None:
            assert error is not None
            raise error  # the same error for both units, as two reads would have given
        return owners


def read_org(
    http: HttpClient, org: str, pseudo: Pseudonymiser, owners: Owners | None = None
) -> Iterator[Evidence]:
    q = quote(org, safe="")
    data = http.get_json(f"/orgs/{q}")
    if not isinstance(data, Mapping):
        raise MalformedResponseError(f"/orgs/{org} is not an object")
    owners_set = (owners or Owners(http, org)).get()
    payload = {
        "login": data.get("login"),
        "id": data.get("id"),
        "two_factor_requirement_enabled": data.get("two_factor_requirement_enabled"),
        "default_repository_permission": data.get("default_repository_permission"),
        "members_can_create_public_repositories": data.get(
            "members_can_create_public_repositories"
        ),
        "owners": sorted(str(pseudo(o)) for o in owners_set),
    }
    yield Evidence(org, GLOBAL, ORG_TYPE, org, payload)


#: A login set read with one ``filter`` value, or the reason it could not be read.
LoginSet = tuple[set[str] | None, str | None]


def _person_payload(
    person: Mapping[str, Any], pseudo: Pseudonymiser, no_2fa: LoginSet, insecure: LoginSet
) -> dict[str, Any]:
    login = str(person["login"])
    payload: dict[str, Any] = {
        "login": pseudo(login),
        "id": person.get("id"),
        "type": person.get("type"),
    }
    errors: dict[str, str] = {}
    for key, (logins, error) in (
        ("two_factor_enabled", no_2fa),
        ("two_factor_insecure", insecure),
    ):
        if logins is None:
            errors[key] = error or "not read"
        elif key == "two_factor_enabled":
            payload[key] = login not in logins
        else:
            payload[key] = login in logins
    if errors:
        payload[ERRORS_KEY] = errors
    return payload


def _two_factor_sets(http: HttpClient, path: str) -> tuple[LoginSet, LoginSet]:
    return _login_set(http, path, filter="2fa_disabled"), _login_set(
        http, path, filter="2fa_insecure"
    )


def read_members(
    http: HttpClient, org: str, pseudo: Pseudonymiser, owners_once: Owners | None = None
) -> Iterator[Evidence]:
    q = quote(org, safe="")
    owners: set[str] | None
    owners_error: str | None
    try:
        owners, owners_error = (owners_once or Owners(http, org)).get(), None
    except SourceError as exc:
        owners, owners_error = None, str(exc)
    no_2fa, insecure = _two_factor_sets(http, f"/orgs/{q}/members")
    for person in _logins(http, f"/orgs/{q}/members"):
        payload = _person_payload(person, pseudo, no_2fa, insecure)
        if owners is not None:
            payload["role"] = "owner" if person["login"] in owners else "member"
        else:
            payload.setdefault(ERRORS_KEY, {})["role"] = owners_error or "not read"
        yield Evidence(org, GLOBAL, MEMBER_TYPE, str(payload["login"]), payload)


def read_collaborators(http: HttpClient, org: str, pseudo: Pseudonymiser) -> Iterator[Evidence]:
    q = quote(org, safe="")
    no_2fa, insecure = _two_factor_sets(http, f"/orgs/{q}/outside_collaborators")
    for person in _logins(http, f"/orgs/{q}/outside_collaborators"):
        payload = _person_payload(person, pseudo, no_2fa, insecure)
        yield Evidence(org, GLOBAL, COLLABORATOR_TYPE, str(payload["login"]), payload)


# --------------------------------------------------------------------------- checks


def _visible(payload: Mapping[str, Any], key: str) -> Any:
    value = require(payload, key)
    if value is None:
        raise EvidenceMissing(
            f"{key} is not visible to the token (GitHub returns it to organisation owners only)"
        )
    return value


@check("github.org.two_factor_required")
def org_two_factor_required(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if _visible(payload, "two_factor_requirement_enabled") is True:
        return passed(f"organisation {payload.get('login')} requires 2FA")
    return failed(f"organisation {payload.get('login')} does not require 2FA")


@check("github.org.owner_count")
def org_owner_count(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    owners = require(payload, "owners")
    limit = params["max_owners"]
    if len(owners) > limit:
        return failed(f"{len(owners)} owners (maximum {limit}): {', '.join(owners)}")
    return passed(f"{len(owners)} owners (maximum {limit})")


@check("github.org.default_permission")
def org_default_permission(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    perm = _visible(payload, "default_repository_permission")
    if perm in params["allowed_permissions"]:
        return passed(f"base permission is {perm}")
    return failed(
        f"base permission is {perm} (allowed: {', '.join(params['allowed_permissions'])})"
    )


def _two_factor(payload: Mapping[str, Any], params: Mapping[str, Any], what: str) -> Verdict:
    who = f"{what} {payload.get('login')}"
    if require(payload, "two_factor_enabled") is not True:
        return failed(f"{who} has 2FA disabled")
    if params["allow_insecure_methods"]:
        return passed(f"{who} has 2FA enabled")
    if require(payload, "two_factor_insecure") is True:
        return failed(
            f"{who} has 2FA enabled only with a method GitHub lists as insecure "
            "(filter 2fa_insecure, e.g. SMS)"
        )
    return passed(f"{who} has 2FA enabled with a secure method")


@check("github.member.two_factor")
def member_two_factor(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _two_factor(payload, params, "member")


@check("github.collaborator.two_factor")
def collaborator_two_factor(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _two_factor(payload, params, "outside collaborator")
