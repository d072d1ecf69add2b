"""The Entra ID connector against a fake Microsoft Graph served by pytest-httpserver.

Shapes follow Microsoft Graph v1.0 metadata (microsoftgraph/msgraph-metadata
``schemas/v1.0-Prod.csdl``: ``user`` with ``signInActivity``, ``userRegistrationDetails``,
``directoryRole``, ``conditionalAccessPolicy`` with every ``conditionalAccessConditionSet``
and ``conditionalAccessGrantControls`` property, ``authenticationStrengthPolicy``,
``identitySecurityDefaultsEnforcementPolicy``); ``test_fake_responses_match_graph_metadata``
validates every body served against the excerpt in tests/vendor/graph. Pages are
``value`` + ``@odata.nextLink`` with a ``$skiptoken``, errors
``{"error": {"code", "message", "innerError"}}``; the fake caps page sizes server-side
as Graph does, refuses ``signInActivity`` to a tenant without a premium licence, and
injects faults per path (429 + Retry-After, 5xx bursts, malformed JSON, pagination
loops). Most tests authenticate with a static credential (any object with
``get_token``); the real-shape tests run the real azure-identity
``ClientSecretCredential`` against a TLS token endpoint, with Graph itself over TLS,
through the run engine.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
import trustme
from azure.core.credentials import AccessToken
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.entra import EntraConnector, EntraOptions
from connectors.entra.roles import GLOBAL_ADMINISTRATOR
from core.records import Finding
from core.times import full_time
from tests.fakehttp import FAST_HTTP
from tests.harness import by_status, judge_payload, run_built, run_engine
from tests.harness import coverage_by_service as coverage
from tests.harness import evidence_of as evidence
from tests.harness import stream as collect
from tests.raw_http import send_json
from tests.vendor_schemas import assert_all_served_valid, graph_schema

pytestmark = pytest.mark.clock

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-graph-access-token.signature0123"
SECRET = "Qx8~fake-client-secret-for-annexa-tests_0123456789"
KEY = "pseudonym-key-for-tests-0123456789"
TENANT = "8f3b1c2d-0000-4000-8000-00000000aaaa"
CLIENT = "5a1e2f3c-1111-4111-8111-00000000bbbb"
#: The app registration with its client secret (read from the environment), as options.
SECRET_AUTH: dict[str, Any] = {"tenant_id": TENANT, "client_id": CLIENT}
SECRET_AUTH["client_secret"] = {"env": "ANNEXA_TEST_ENTRA_SECRET"}
NOW = datetime.now(UTC)
SECURITY_ADMIN = "194ae4cb-b126-40b2-bd5b-6091b380977d"


def ts(days_ago: float) -> str:
    # Graph sends 7 fractional digits on some properties.
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class StaticCredential:
    """Any object with ``get_token`` is a credential; this one counts its calls."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        if self.fail is not None:
            raise self.fail
        return AccessToken(TOKEN, int(time.time()) + 3600)


# --------------------------------------------------------------------------- shapes


def graph_user(
    uid: str,
    upn: str,
    *,
    enabled: bool = True,
    guest: bool = False,
    last: float | None = 2,
    created: float = 400,
    pending: float | None = None,
    last_attempt: float | None = None,
    last_success: float | str | None = "same",
) -> dict[str, Any]:
    """A ``user`` with the selected properties. ``signInActivity`` follows Graph's
    ``signInActivity`` type: ``last`` sets every timestamp alike, ``last_attempt`` the
    interactive and non-interactive *attempts* (successful or not), ``last_success`` the
    ``lastSuccessfulSignInDateTime`` (None: no success recorded)."""
    user: dict[str, Any] = {
        "id": uid,
        "displayName": upn.split("@")[0].title(),
        "userPrincipalName": upn if not guest else upn.replace("@", "_") + "#EXT#@acme.example",
        "mail": upn,
        "accountEnabled": enabled,
        "userType": "Guest" if guest else "Member",
        "createdDateTime": ts(created).replace(".0000000", ""),
        "externalUserState": None,
        "externalUserStateChangeDateTime": None,
        "onPremisesSyncEnabled": None,
        "mobilePhone": "+1 555 0100",
        "signInActivity": None,
    }
    if guest:
        user["externalUserState"] = "PendingAcceptance" if pending is not None else "Accepted"
        user["externalUserStateChangeDateTime"] = ts(pending if pending is not None else created)
    attempt = last_attempt if last_attempt is not None else last
    success = last if last_success == "same" else last_success
    if attempt is not None or success is not None:
        user["signInActivity"] = {
            "lastSignInDateTime": ts(attempt) if attempt is not None else None,
            "lastSignInRequestId": "c7df2760-2c81-4ef7-b578-5b5392b571df",
            "lastNonInteractiveSignInDateTime": ts(attempt + 1) if attempt is not None else None,
            "lastNonInteractiveSignInRequestId": "c7df2760-2c81-4ef7-b578-5b5392b57100",
            "lastSuccessfulSignInDateTime": ts(success) if success is not None else None,
            "lastSuccessfulSignInRequestId": (
                "c7df2760-2c81-4ef7-b578-5b5392b571ff" if success is not None else None
            ),
        }
    return user


def registration(uid: str, upn: str, methods: list[str], *, admin: bool = False) -> dict:
    strong = [m for m in methods if m not in ("email", "securityQuestion")]
    return {
        "id": uid,
        "userPrincipalName": upn,
        "userDisplayName": upn.split("@")[0].title(),
        "userType": "member",
        "isAdmin": admin,
        "isSsprRegistered": bool(methods),
        "isSsprEnabled": True,
        "isSsprCapable": bool(methods),
        "isMfaRegistered": bool(strong),
        "isMfaCapable": bool(strong),
        "isPasswordlessCapable": "fido2SecurityKey" in methods,
        "lastUpdatedDateTime": ts(3),
        "methodsRegistered": methods,
        "isSystemPreferredAuthenticationMethodEnabled": True,
        "systemPreferredAuthenticationMethods": ["push"] if strong else [],
        "userPreferredMethodForSecondaryAuthentication": "push" if strong else "none",
    }


def users_condition(include: list[str], exclude: list[str], **over: Any) -> dict[str, Any]:
    """Graph's ``conditionalAccessUsers``: ``include`` and ``exclude`` users, no groups,
    roles or guest conditions, then ``over`` on top."""
    no_groups_or_roles = {k: [] for k in ("includeGroups", "excludeGroups")}
    no_groups_or_roles.update({k: [] for k in ("includeRoles", "excludeRoles")})
    guests = {"includeGuestsOrExternalUsers": None, "excludeGuestsOrExternalUsers": None}
    base = {"includeUsers": include, "excludeUsers": exclude, **no_groups_or_roles, **guests}
    return {**base, **over}


def ca_policy(
    pid: str,
    name: str,
    *,
    state: str = "enabled",
    users: list[str] = ("All",),
    apps: list[str] = ("All",),
    clients: list[str] = ("all",),
    controls: list[str] = ("mfa",),
    operator: str = "OR",
    exclude_users: int = 1,
    conditions: dict[str, Any] | None = None,
    strength: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``conditionalAccessPolicy`` as Graph v1.0 lists it: every property of
    ``conditionalAccessConditionSet`` and ``conditionalAccessGrantControls`` present
    (null or empty when unused), ``conditions`` overriding whole condition properties."""
    cond: dict[str, Any] = {
        "userRiskLevels": [],
        "signInRiskLevels": [],
        "servicePrincipalRiskLevels": [],
        "insiderRiskLevels": None,
        "clientAppTypes": list(clients),
        "platforms": None,
        "locations": None,
        "devices": None,
        "clientApplications": None,
        "authenticationFlows": None,
        "applications": {
            "includeApplications": list(apps),
            "excludeApplications": [],
            "includeUserActions": [],
            "includeAuthenticationContextClassReferences": [],
            "applicationFilter": None,
        },
        "users": users_condition(list(users), [f"bg-{i}" for i in range(exclude_users)]),
    }
    cond.update(conditions or {})
    grant: dict[str, Any] = {
        "operator": operator,
        "builtInControls": list(controls),
        "customAuthenticationFactors": [],
        "termsOfUse": [],
    }
    if strength is not None:
        grant["authenticationStrength@odata.context"] = (
            "https://graph.microsoft.com/v1.0/$metadata#identity/conditionalAccess/policies"
            f"('{pid}')/grantControls/authenticationStrength/$entity"
        )
        grant["authenticationStrength"] = strength
    return {
        "id": pid,
        "templateId": None,
        "displayName": name,
        "createdDateTime": ts(300),
        "modifiedDateTime": ts(10),
        "state": state,
        "sessionControls": None,
        "conditions": cond,
        "grantControls": grant,
    }


def auth_strength(sid: str, name: str, requirements: str, combos: list[str]) -> dict[str, Any]:
    """An ``authenticationStrengthPolicy`` as expanded inside grant controls."""
    return {
        "id": sid,
        "createdDateTime": "2021-12-01T00:00:00Z",
        "modifiedDateTime": "2021-12-01T00:00:00Z",
        "displayName": name,
        "description": "",
        "policyType": "builtIn" if sid.startswith("00000000-") else "custom",
        "requirementsSatisfied": requirements,
        "allowedCombinations": combos,
    }


def _typed(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return {"@odata.type": f"#microsoft.graph.{kind}", **obj}


# --------------------------------------------------------------------------- the fake


class FakeGraph:
    """A tiny Entra tenant behind a Graph-shaped HTTP handler."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.page_cap = 2
        self.users: list[dict[str, Any]] = []
        self.registrations: dict[str, dict[str, Any]] = {}
        self.roles: list[dict[str, Any]] = []
        self.role_members: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.group_users: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.security_defaults = False
        self.policies: list[dict[str, Any]] = []
        self.premium = True
        self.faults: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        self.looping: set[str] = set()
        self.requests: list[str] = []
        #: (path, body) of every successful answer, for the schema test.
        self.served: list[tuple[str, Any]] = []
        server.expect_request(re.compile(r"^/v1\.0/.*")).respond_with_handler(self.handle)

    @property
    def graph_url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def add_user(
        self, user: dict[str, Any], methods: list[str] | None = None, roles: list[str] = ()
    ) -> None:
        self.users.append(user)
        if methods is not None:
            self.registrations[user["id"]] = registration(
                user["id"], user["userPrincipalName"], methods, admin=bool(roles)
            )
        for template in roles:
            self.role(template).append(_typed(self._member_view(user), "user"))

    def role(self, template: str, name: str | None = None) -> list[dict[str, Any]]:
        names = {
            GLOBAL_ADMINISTRATOR: "Global Administrator",
            SECURITY_ADMIN: "Security Administrator",
        }
        for r in self.roles:
            if r["roleTemplateId"] == template:
                return self.role_members[r["id"]]
        rid = f"role-{len(self.roles)}-{template[:8]}"
        self.roles.append(
            {
                "id": rid,
                "displayName": name or names.get(template, template),
                "description": "…",
                "roleTemplateId": template,
            }
        )
        return self.role_members[rid]

    @staticmethod
    def _member_view(user: dict[str, Any]) -> dict[str, Any]:
        return {k: user[k] for k in ("id", "displayName", "userPrincipalName", "accountEnabled")}

    def fault(self, path: str, *answers: tuple[int, str, dict[str, str]]) -> None:
        self.faults["/v1.0" + path].extend(answers)

    # -- HTTP

    def _json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None):
        if status == 200:
            self.served.append((self.requests[-1], body))
        resp = Response(json.dumps(body), status=status, content_type="application/json")
        resp.headers["request-id"] = "0f5e3ad2-0000-4000-8000-000000000000"
        resp.headers["client-request-id"] = "0f5e3ad2-0000-4000-8000-000000000001"
        for k, v in (headers or {}).items():
            resp.headers[k] = v
        return resp

    def _error(self, status: int, code: str, message: str) -> Response:
        return self._json(
            {
                "error": {
                    "code": code,
                    "message": message,
                    "innerError": {
                        "date": NOW.strftime("%Y-%m-%dT%H:%M:%S"),
                        "request-id": "0f5e3ad2-0000-4000-8000-000000000000",
                        "client-request-id": "0f5e3ad2-0000-4000-8000-000000000001",
                    },
                }
            },
            status,
        )

    def _page(self, request: Request, items: list[dict[str, Any]], context: str) -> Response:
        top = int(request.args.get("$top", 100))
        size = min(top, self.page_cap)
        start = int(request.args.get("$skiptoken", "0") or 0)
        chunk = items[start : start + size]
        body: dict[str, Any] = {
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{context}",
            "value": chunk,
        }
        args = {k: v for k, v in request.args.items() if k != "$skiptoken"}
        if request.path in self.looping:
            body["@odata.nextLink"] = self.server.url_for(request.path) + "?" + urlencode(args)
        elif start + size < len(items):
            nxt = {**args, "$skiptoken": str(start + size)}
            body["@odata.nextLink"] = self.server.url_for(request.path) + "?" + urlencode(nxt)
        return self._json(body)

    def handle(self, request: Request) -> Response:
        full = request.path
        self.requests.append(full)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(401, "InvalidAuthenticationToken", "Access token is empty.")
        if self.faults.get(full):
            status, body, headers = self.faults[full].pop(0)
            return Response(body, status=status, headers=headers, content_type="application/json")
        path = full.removeprefix("/v1.0")
        select = set((request.args.get("$select") or "").split(",")) - {""}
        if path == "/users":
            if "signInActivity" in select and not self.premium:
                return self._error(
                    403,
                    "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                    "Neither tenant is B2C or tenant doesn't have premium license",
                )
            rows = [
                {k: v for k, v in u.items() if not select or k in select or k == "id"}
                for u in self.users
            ]
            return self._page(request, rows, "users")
        if path == "/reports/authenticationMethods/userRegistrationDetails":
            return self._page(
                request,
                list(self.registrations.values()),
                "reports/authenticationMethods/userRegistrationDetails",
            )
        if path == "/directoryRoles":
            return self._page(request, self.roles, "directoryRoles")
        if m := re.fullmatch(r"/directoryRoles/([^/]+)/members", path):
            return self._page(request, self.role_members.get(m[1], []), "directoryObjects")
        if m := re.fullmatch(r"/groups/([^/]+)/transitiveMembers/microsoft\.graph\.user", path):
            return self._page(request, self.group_users.get(m[1], []), "users")
        if path == "/policies/identitySecurityDefaultsEnforcementPolicy":
            return self._json(
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#policies/"
                    "identitySecurityDefaultsEnforcementPolicy/$entity",
                    "id": "00000000-0000-0000-0000-000000000005",
                    "displayName": "Security Defaults",
                    "description": "Security defaults is a set of basic identity security "
                    "mechanisms recommended by Microsoft.",
                    "isEnabled": self.security_defaults,
                }
            )
        if path == "/identity/conditionalAccess/policies":
            if not self.premium:
                return self._error(
                    403,
                    "AccessDenied",
                    "Tenant does not have a SKU required for this operation (AAD Premium).",
                )
            return self._page(request, self.policies, "identity/conditionalAccess/policies")
        return self._error(418, "NotImplementedInFake", f"{path} is not faked")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def graph(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeGraph:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_ENTRA_SECRET", SECRET)
    monkeypatch.setenv("ANNEXA_TEST_PSEUDONYM_KEY", KEY)
    return FakeGraph(httpserver)


FAST = FAST_HTTP


def healthy_tenant(g: FakeGraph) -> None:
    """Two Global Administrators (one through a group) with FIDO2 keys, MFA everywhere,
    Conditional Access requiring MFA and blocking legacy auth, one active guest."""
    g.add_user(
        graph_user("u-alice", "alice@acme.example", last=1),
        ["microsoftAuthenticatorPush", "fido2SecurityKey"],
        [GLOBAL_ADMINISTRATOR],
    )
    bob = graph_user("u-bob", "bob@acme.example", last=3)
    g.add_user(bob, ["passKeyDeviceBound", "softwareOneTimePasscode"])
    g.role(GLOBAL_ADMINISTRATOR).append(
        _typed({"id": "g-admins", "displayName": "Tier-0 admins"}, "group")
    )
    g.group_users["g-admins"].append(_typed(g._member_view(bob), "user"))
    g.role(GLOBAL_ADMINISTRATOR).append(
        _typed(
            {"id": "sp-automation", "displayName": "automation", "appId": "x"}, "servicePrincipal"
        )
    )
    g.add_user(graph_user("u-carol", "carol@acme.example", last=20), ["microsoftAuthenticatorPush"])
    g.add_user(graph_user("u-dan", "dan@acme.example", enabled=False, last=200), [])
    g.add_user(graph_user("u-guest", "eve@partner.example", guest=True, last=10), [])
    g.policies = [
        ca_policy("ca-1", "Require MFA for everyone", exclude_users=2),
        ca_policy(
            "ca-2",
            "Block legacy authentication",
            clients=["exchangeActiveSync", "other"],
            controls=["block"],
        ),
        ca_policy("ca-3", "Report-only device policy", state="enabledForReportingButNotEnforced"),
        ca_policy(
            "ca-4",
            "Compliant device off the trusted networks",
            controls=["compliantDevice"],
            conditions={
                "locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}
            },
        ),
    ]


def connector(
    g: FakeGraph, credential: Any | None = None, **options: Any
) -> tuple[EntraConnector, StaticCredential | Any]:
    opts = {
        **SECRET_AUTH,
        "graph_url": g.graph_url,
        "http": FAST,
        **options,
    }
    cred = credential if credential is not None else StaticCredential()
    return EntraConnector("entra-test", EntraOptions.model_validate(opts), credential=cred), cred


# --------------------------------------------------------------------------- tests


def test_healthy_tenant_passes_everything_across_pages(graph):
    healthy_tenant(graph)
    conn, cred = connector(graph)
    run = run_built(conn)
    records = run.records
    cov = coverage(records)
    assert set(cov) == {"*", "role", "tenant", "user"} and all(c.ok for c in cov.values()), cov
    found = run.findings
    assert by_status(found, "fail") == set()
    assert by_status(found, "error") == set()
    users = {e.resource_id: e.payload for e in evidence(records, "entra.user.account")}
    assert set(users) == {"u-alice", "u-bob", "u-carol", "u-dan", "u-guest"}
    # Five users at two a page: three pages, each followed through @odata.nextLink.
    assert graph.requests.count("/v1.0/users") == 3
    alice = users["u-alice"]
    assert alice["last_sign_in"] == full_time(NOW - timedelta(days=1))
    assert alice["methods_registered"] == ["fido2SecurityKey", "microsoftAuthenticatorPush"]
    assert [r["name"] for r in alice["directory_roles"]] == ["Global Administrator"]
    # Bob is a Global Administrator through a role-assignable group.
    assert [r["template_id"] for r in users["u-bob"]["directory_roles"]] == [GLOBAL_ADMINISTRATOR]
    summary = evidence(records, "entra.role.summary")[0].payload
    ga = summary["roles"][0]
    assert {(m["id"], m["type"], m["via_group"]) for m in ga["members"]} == {
        ("u-alice", "user", None),
        ("g-admins", "group", None),
        ("u-bob", "user", "g-admins"),
        ("sp-automation", "servicePrincipal", None),
    }
    count = next(f for f in found if f.check_id == "entra.role.global_admin_count")
    assert (
        "2 enabled Global Administrators" in count.message
        and "1 service principal" in count.message
    )
    tenant = evidence(records, "entra.tenant.authentication")[0].payload
    assert tenant["security_defaults_enabled"] is False
    assert [len(p["users"]["exclude_users"]) for p in tenant["conditional_access_policies"]] == [
        1,
        1,
        1,
        2,
    ]
    # The token was asked for once up front, then served from the credential's cache.
    assert set(cred.calls) == {(f"{graph.graph_url}/.default",)}
    assert {e.scope for e in evidence(records)} == {TENANT}


def test_planted_users_fail_exactly_their_checks(graph):
    healthy_tenant(graph)
    graph.add_user(graph_user("u-nomfa", "nomfa@acme.example"), ["email"])
    graph.add_user(
        graph_user("u-idle", "idle@acme.example", last=120), ["microsoftAuthenticatorPush"]
    )
    graph.add_user(
        graph_user("u-gone", "gone@acme.example", enabled=False, last=30),
        [],
        [SECURITY_ADMIN],
    )
    graph.add_user(
        graph_user("u-pending", "late@partner.example", guest=True, last=None, pending=45), []
    )
    for uid in ("u-ga3", "u-ga4", "u-ga5"):
        graph.add_user(
            graph_user(uid, f"{uid}@acme.example"),
            ["fido2SecurityKey", "microsoftAuthenticatorPush"],
            [GLOBAL_ADMINISTRATOR],
        )
    run = run_built(connector(graph)[0])
    records = run.records
    assert all(c.ok for c in coverage(records).values())
    found = run.findings
    assert by_status(found, "fail") == {
        ("entra.user.mfa_registered", "u-nomfa"),
        ("entra.user.inactive", "u-idle"),
        ("entra.user.disabled_no_roles", "u-gone"),
        ("entra.user.guest_stale", "u-pending"),
        ("entra.role.global_admin_count", "directory-roles"),
    }
    assert by_status(found, "error") == set()
    count = next(f for f in found if f.check_id == "entra.role.global_admin_count")
    assert "5 enabled Global Administrators (maximum 4)" in count.message
    gone = next(f for f in found if f.resource_id == "u-gone" and f.status == "fail")
    assert "Security Administrator" in gone.message


def test_admin_without_phishing_resistant_method_fails(graph):
    healthy_tenant(graph)
    graph.add_user(
        graph_user("u-weak", "weak@acme.example"),
        ["microsoftAuthenticatorPush", "mobilePhone"],
        [SECURITY_ADMIN],
    )
    found = run_built(connector(graph)[0]).findings
    assert by_status(found, "fail") == {("entra.user.admin_phishing_resistant_mfa", "u-weak")}


def test_weak_tenant_policies_fail(graph):
    healthy_tenant(graph)
    graph.policies = [
        # MFA OR compliant device: a compliant device alone satisfies the grant.
        ca_policy("ca-or", "MFA or compliant device", controls=["mfa", "compliantDevice"]),
        ca_policy("ca-ro", "MFA (report only)", state="enabledForReportingButNotEnforced"),
        ca_policy("ca-some", "MFA for a group", users=["u-alice"]),
    ]
    found = run_built(connector(graph)[0]).findings
    assert by_status(found, "fail") == {
        ("entra.tenant.mfa_enforced", "authentication-policies"),
        ("entra.tenant.legacy_auth_blocked", "authentication-policies"),
        ("entra.tenant.managed_device_required", "authentication-policies"),
    }
    mfa = next(f for f in found if f.check_id == "entra.tenant.mfa_enforced")
    assert "'MFA (report only)': state is enabledForReportingButNotEnforced" in mfa.message
    graph.security_defaults = True
    # Security defaults enforce MFA and block legacy clients, but check no device.
    assert by_status(run_built(connector(graph)[0]).findings, "fail") == {
        ("entra.tenant.managed_device_required", "authentication-policies")}


def test_429_retry_after_then_success_and_5xx_burst(graph):
    healthy_tenant(graph)
    graph.fault(
        "/users",
        (
            429,
            '{"error":{"code":"TooManyRequests","message":"Too many requests"}}',
            {"Retry-After": "1"},
        ),
    )
    graph.fault("/directoryRoles", (503, "", {}), (504, "<html>gateway</html>", {}), (500, "", {}))
    started = time.monotonic()
    run = run_built(connector(graph)[0])
    records = run.records
    elapsed = time.monotonic() - started
    assert all(c.ok for c in coverage(records).values())
    assert by_status(run.findings, "fail") == set()
    assert elapsed >= 1.0  # Retry-After: 1 honoured (backoff alone waits ~0)
    assert graph.requests.count("/v1.0/directoryRoles") == 4
    assert graph.requests.count("/v1.0/users") == 4  # 3 pages + the throttled attempt


def test_5xx_forever_is_an_error_for_that_unit_only(graph):
    healthy_tenant(graph)
    graph.fault("/identity/conditionalAccess/policies", *[(503, "", {})] * 4)
    graph.fault("/policies/identitySecurityDefaultsEnforcementPolicy", *[(502, "", {})] * 4)
    run = run_built(connector(graph)[0])
    records = run.records
    cov = coverage(records)
    assert not cov["tenant"].ok and "HTTP 502" in cov["tenant"].error
    assert cov["user"].ok and cov["role"].ok
    errors = {f.check_id for f in run.findings if f.status == "error"}
    assert errors == {"entra.tenant.mfa_enforced", "entra.tenant.legacy_auth_blocked",
                      "entra.tenant.managed_device_required"}


def test_malformed_json_fails_only_its_unit_and_dependants_error(graph):
    healthy_tenant(graph)
    graph.fault("/directoryRoles", (200, '{"value": [{"id": ', {}))
    run = run_built(connector(graph)[0])
    records = run.records
    cov = coverage(records)
    assert not cov["role"].ok and "malformed JSON" in cov["role"].error
    assert cov["user"].ok and cov["tenant"].ok
    found = run.findings
    errors = by_status(found, "error")
    # Role checks error at the unit; per-user checks that need roles error per user.
    assert ("entra.role.global_admin_count", f"entra:{TENANT}/global/role") in errors
    assert ("entra.user.admin_phishing_resistant_mfa", "u-alice") in errors
    assert ("entra.user.disabled_no_roles", "u-dan") in errors
    assert ("entra.user.mfa_registered", "u-alice") not in errors
    assert by_status(found, "fail") == set()


def test_unreadable_registration_report_makes_only_mfa_checks_error(graph):
    healthy_tenant(graph)
    graph.fault(
        "/reports/authenticationMethods/userRegistrationDetails",
        (
            403,
            '{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges"}}',
            {},
        ),
    )
    run = run_built(connector(graph)[0])
    records = run.records
    assert coverage(records)["user"].ok
    errors = by_status(run.findings, "error")
    assert errors == {
        ("entra.user.mfa_registered", "u-alice"),
        ("entra.user.mfa_registered", "u-bob"),
        ("entra.user.mfa_registered", "u-carol"),
        ("entra.user.admin_phishing_resistant_mfa", "u-alice"),
        ("entra.user.admin_phishing_resistant_mfa", "u-bob"),
    }


def test_tenant_without_premium_licence(graph):
    """No P1: signInActivity is refused (the listing is repeated without it) and
    Conditional Access is unavailable, which only matters without security defaults."""
    healthy_tenant(graph)
    graph.premium = False
    graph.security_defaults = True
    run = run_built(connector(graph)[0])
    records = run.records
    assert all(c.ok for c in coverage(records).values())
    found = run.findings
    errors = by_status(found, "error")
    # Without P1 there is no Conditional Access to read: the device check cannot judge.
    assert {c for c, _ in errors} == {"entra.user.inactive", "entra.user.guest_stale",
                                      "entra.tenant.managed_device_required"}
    msg = next(f.message for f in found
               if f.status == "error" and f.check_id == "entra.user.inactive")
    assert "premium license" in msg
    assert by_status(found, "fail") == set()
    graph.security_defaults = False
    errors = by_status(run_built(connector(graph)[0]).findings, "error")
    assert ("entra.tenant.mfa_enforced", "authentication-policies") in errors


def test_empty_tenant(graph):
    run = run_built(connector(graph)[0])
    records = run.records
    cov = coverage(records)
    assert all(c.ok for c in cov.values()) and set(cov) == {"*", "role", "tenant", "user"}
    assert evidence(records, "entra.user.account") == []
    assert {(f.check_id, f.status) for f in run.findings} == {
        ("entra.role.global_admin_count", "fail"),  # documented: fewer than two admins
        ("entra.tenant.mfa_enforced", "fail"),
        ("entra.tenant.legacy_auth_blocked", "fail"),
        ("entra.tenant.managed_device_required", "fail"),
    }


def test_page_loop_is_a_unit_error_not_a_hang(graph):
    healthy_tenant(graph)
    graph.looping.add("/v1.0/users")
    records = collect(connector(graph)[0])
    cov = coverage(records)
    assert not cov["user"].ok and "pagination loop" in cov["user"].error
    assert cov["role"].ok and cov["tenant"].ok


def test_credential_failure_fails_the_whole_scope(graph):
    from azure.core.exceptions import ClientAuthenticationError

    healthy_tenant(graph)
    failing = StaticCredential(
        ClientAuthenticationError(
            "ClientSecretCredential.get_token failed: AADSTS7000215: Invalid client secret "
            "provided.\nTrace ID: 1\nCorrelation ID: 2"
        )
    )
    run = run_built(connector(graph, credential=failing)[0])
    records = run.records
    cov = coverage(records)
    assert set(cov) == {"*"} and not cov["*"].ok
    assert "AADSTS7000215" in cov["*"].error and "Trace ID" not in cov["*"].error
    assert graph.requests == []
    found = run.findings
    assert {f.status for f in found} == {"error"} and len(found) == len(EntraConnector.checks())


def test_missing_secret_is_reported_by_name(graph, monkeypatch):
    monkeypatch.delenv("ANNEXA_TEST_ENTRA_SECRET")
    conn = EntraConnector(
        "entra-test",
        EntraOptions.model_validate({**SECRET_AUTH, "graph_url": graph.graph_url}),
    )
    cov = coverage(collect(conn))
    assert set(cov) == {"*"} and "ANNEXA_TEST_ENTRA_SECRET" in cov["*"].error


def test_secrets_never_in_evidence_and_personal_data_minimal(graph):
    healthy_tenant(graph)
    records = collect(connector(graph)[0])
    for e in evidence(records):
        body = e.body()
        assert TOKEN not in body and SECRET not in body
        assert "[REDACTED]" not in body
        assert "+1 555" not in body and "Alice" not in body  # phone, display name dropped
        assert "RequestId" not in body
    request, _ = graph.server.log[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_pseudonymise_replaces_personal_identifiers(graph):
    healthy_tenant(graph)
    conn, _ = connector(
        graph, pseudonymise=True, pseudonymise_key={"env": "ANNEXA_TEST_PSEUDONYM_KEY"}
    )
    records = collect(conn)
    bodies = " ".join(e.body() for e in evidence(records))
    assert "acme.example" not in bodies and "partner.example" not in bodies
    alice = next(e.payload for e in evidence(records) if e.resource_id == "u-alice")
    assert alice["mail"].startswith("pseud:") and alice["mail"] == alice["user_principal_name"]
    # The same key gives the same pseudonym in every connector (cross-source matching).
    from connectors.kit import Pseudonymiser

    assert alice["mail"] == Pseudonymiser(KEY)("Alice@ACME.example")


def test_options_validation():
    base = {"tenant_id": TENANT, "client_id": CLIENT, "client_secret": {"env": "X"}}
    opts = EntraOptions.model_validate(base)
    assert opts.scope == "https://graph.microsoft.com/.default"
    gov = EntraOptions.model_validate(
        {**base, "graph_url": "https://graph.microsoft.us", "authority": "login.microsoftonline.us"}
    )
    assert gov.scope == "https://graph.microsoft.us/.default"
    assert gov.authority == "https://login.microsoftonline.us"
    assert EntraOptions.model_validate({"tenant_id": TENANT, "auth": "managed_identity"})
    for bad in (
        {**base, "graph_url": "http://graph.microsoft.com"},
        {**base, "authority": "http://127.0.0.1:8443"},
        {**base, "tenant_id": "bad tenant"},
        {"tenant_id": TENANT, "client_id": CLIENT},  # client_secret auth without a secret
        {**base, "auth": "certificate"},
        {"tenant_id": TENANT, "auth": "managed_identity", "client_secret": {"env": "X"}},
        {**base, "pseudonymise": True},
        {**base, "unknown": 1},
    ):
        with pytest.raises(ValueError):
            EntraOptions.model_validate(bad)


def test_each_credential_kind_is_built_from_options(tmp_path, monkeypatch):
    """The options select the azure-identity class (built, not used: no network)."""
    from azure.identity import (
        CertificateCredential,
        ClientSecretCredential,
        DefaultAzureCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    from connectors.entra.auth import build_credential

    ca = trustme.CA()
    pem = tmp_path / "app.pem"
    # Entra signs client assertions with RS256: the app certificate needs an RSA key.
    ca.issue_cert(
        "annexa", key_type=trustme.KeyType.RSA
    ).private_key_and_cert_chain_pem.write_to_path(str(pem))
    token_file = tmp_path / "federated"
    token_file.write_text("eyJhbGciOi.fake.federated", encoding="utf-8")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("ANNEXA_TEST_ENTRA_SECRET", SECRET)
    base = {"tenant_id": TENANT, "client_id": CLIENT}
    cases = [
        ({"client_secret": {"env": "ANNEXA_TEST_ENTRA_SECRET"}}, ClientSecretCredential),
        ({"auth": "certificate", "certificate_path": str(pem)}, CertificateCredential),
        ({"auth": "managed_identity"}, ManagedIdentityCredential),
        ({"auth": "workload_identity"}, WorkloadIdentityCredential),
        ({"auth": "default"}, DefaultAzureCredential),
    ]
    for extra, cls in cases:
        cred = build_credential(EntraOptions.model_validate({**base, **extra}))
        try:
            assert isinstance(cred, cls)
        finally:
            cred.close()


# --------------------------------------------------------------------------- pure checks


def judge(check_id: str, payload: dict, **params: Any) -> Finding:
    return judge_payload(TENANT, check_id, payload, **params)


def test_checks_on_payloads():
    user = {
        "id": "u",
        "user_principal_name": "u@x",
        "user_type": "member",
        "account_enabled": True,
        "created": ts(10),
        "last_sign_in": None,
        "mfa_registered": False,
        "methods_registered": [],
        "directory_roles": [],
    }
    assert judge("entra.user.inactive", user).status == "pass"  # new, not yet signed in
    assert judge("entra.user.inactive", {**user, "created": ts(200)}).status == "fail"
    assert judge("entra.user.inactive", user, inactive_days=5).status == "fail"
    no_signin = {k: v for k, v in user.items() if k != "last_sign_in"}
    f = judge("entra.user.inactive", {**no_signin, "_errors": {"last_sign_in": "HTTP 403"}})
    assert f.status == "error" and "HTTP 403" in f.message
    assert judge("entra.user.mfa_registered", user).status == "fail"
    assert judge("entra.user.mfa_registered", {**user, "account_enabled": False}).status == (
        "not_applicable"
    )
    assert judge("entra.user.disabled_no_roles", user).status == "not_applicable"
    admin = {
        **user,
        "directory_roles": [{"template_id": SECURITY_ADMIN, "name": "Security Administrator"}],
    }
    assert judge("entra.user.admin_phishing_resistant_mfa", admin).status == "fail"
    assert (
        judge("entra.user.admin_phishing_resistant_mfa", admin, privileged_role_templates=[]).status
        == "not_applicable"
    )
    tenant = {"security_defaults_enabled": False, "_errors": {"conditional_access_policies": "403"}}
    f = judge("entra.tenant.mfa_enforced", tenant)
    assert f.status == "error" and "security defaults are off" in f.message
    strength = {
        "security_defaults_enabled": False,
        "conditional_access_policies": [
            {
                "name": "Phishing-resistant for all",
                "state": "enabled",
                "users": {"include_users": ["All"]},
                "applications": {"include": ["All"]},
                "client_app_types": ["all"],
                "grant_controls": [],
                "grant_operator": "OR",
                "authentication_strength": {
                    "id": "00000000-0000-0000-0000-000000000004",
                    "name": "Phishing-resistant MFA",
                },
            }
        ],
    }
    assert judge("entra.tenant.mfa_enforced", strength).status == "pass"
    roles = {"roles": [{"template_id": GLOBAL_ADMINISTRATOR, "members": []}]}
    assert judge("entra.role.global_admin_count", roles, min_global_admins=0).status == "pass"


def test_every_entra_check_is_documented():
    specs = EntraConnector.checks()
    assert len(specs) >= 6
    for s in specs:
        assert s.title and s.rationale and s.remediation and s.severity
        assert s.resource_type.split(".")[1] in {"role", "tenant", "user"}


# --------------------------------------------------------------------------- real TLS + credential


class _TokenEndpoint(BaseHTTPRequestHandler):
    """The two endpoints azure-identity's ClientSecretCredential calls, over TLS."""

    server: Any

    def log_message(self, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        send_json(self, status, body)

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path))
        base = f"https://127.0.0.1:{self.server.server_address[1]}/{TENANT}"
        if self.path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
            self._send(
                200,
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "issuer": f"{base}/v2.0",
                    "token_endpoint_auth_methods_supported": ["client_secret_post"],
                    "response_types_supported": ["code", "id_token", "token"],
                },
            )
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:
        self.server.seen.append(("POST", self.path))
        length = int(self.headers.get("Content-Length", 0))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        self.server.forms.append(form)
        if self.path != f"/{TENANT}/oauth2/v2.0/token":
            self._send(404, {"error": "not_found"})
        elif form.get("client_secret") != SECRET or form.get("client_id") != CLIENT:
            self._send(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
            )
        else:
            self._send(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "ext_expires_in": 3599,
                    "access_token": TOKEN,
                },
            )


@pytest.fixture
def tls(tmp_path, monkeypatch):
    """A private CA, an HTTPS token endpoint and an HTTPS Graph fake, both for 127.0.0.1."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_path))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    token_server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    token_server.socket = ctx.wrap_socket(token_server.socket, server_side=True)
    token_server.seen = []
    token_server.forms = []
    thread = threading.Thread(target=token_server.serve_forever, daemon=True)
    thread.start()
    graph_server = HTTPServer(host="127.0.0.1", port=0, ssl_context=ctx)
    graph_server.no_handler_status_code = 418
    graph_server.start()
    try:
        yield {
            "ca": str(ca_path),
            "authority": f"https://127.0.0.1:{token_server.server_address[1]}",
            "token_server": token_server,
            "graph": FakeGraph(graph_server),
        }
    finally:
        token_server.shutdown()
        token_server.server_close()
        graph_server.clear()
        graph_server.stop()


def test_real_client_secret_credential_over_tls_authenticates_once(tls, engine, monkeypatch):
    """config options → azure-identity ClientSecretCredential (TLS authority fake) → Graph
    over TLS (private CA via http.ca_bundle) → run engine → store, on both databases."""
    from collector.config import ConnectorConfig, LoadedConnector, Settings
    from collector.runner import run_connector
    from mappings.loader import load_mappings
    from store.queries import evidence_at, findings_at

    monkeypatch.setenv("ANNEXA_TEST_ENTRA_SECRET", SECRET)
    g = tls["graph"]
    healthy_tenant(g)
    g.add_user(graph_user("u-nomfa", "nomfa@acme.example"), ["email"])
    cfg = ConnectorConfig(
        type="entra",
        name="entra-tls",
        options=tls_options(tls),
    )
    assert g.graph_url.startswith("https://")
    lc = LoadedConnector(cfg, EntraConnector, EntraOptions.model_validate(cfg.options))
    from collector.config import AnnexaConfig

    settings = Settings(AnnexaConfig(), None)
    index = load_mappings()
    summary = run_connector(settings, lc, engine, index)
    assert summary.status == "succeeded", summary.errors
    token_server = tls["token_server"]
    posts = [p for m, p in token_server.seen if m == "POST"]
    assert posts == [f"/{TENANT}/oauth2/v2.0/token"]  # authenticated exactly once
    form = token_server.forms[0]
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == f"{g.graph_url}/.default"
    assert len(g.requests) >= 8  # many Graph calls, one token
    with engine.connect() as conn:
        mfa = {f["resource_id"]: f for f in findings_at(conn, check_id="entra.user.mfa_registered")}
        users = list(evidence_at(conn, resource_type="entra.user.account"))
    assert mfa["u-nomfa"]["status"] == "fail" and mfa["u-alice"]["status"] == "pass"
    assert "A.8.5" in mfa["u-nomfa"]["controls"]
    assert len(users) == 6 and all(SECRET not in json.dumps(u["payload"]) for u in users)


def test_wrong_secret_against_the_real_credential_is_a_scope_error(tls, monkeypatch):
    monkeypatch.setenv("ANNEXA_TEST_ENTRA_SECRET", "not-the-secret-0123456789")
    g = tls["graph"]
    conn = EntraConnector(
        "entra-tls",
        EntraOptions.model_validate({**tls_options(tls), "http": {"ca_bundle": tls["ca"]}}),
    )
    cov = coverage(collect(conn))
    assert set(cov) == {"*"} and not cov["*"].ok
    assert "AADSTS7000215" in cov["*"].error
    assert "not-the-secret" not in cov["*"].error
    assert g.requests == []


# --------------------------------------------------------------------------- real shapes
# Graph-shaped tenants judged by the run engine (tests/harness.py) with the real
# azure-identity credential against the TLS fakes, as `annexa collect` would.

BREAK_GLASS = ["bg-0", "bg-1"]
PHISHING_RESISTANT = auth_strength(
    "00000000-0000-0000-0000-000000000004",
    "Phishing-resistant MFA",
    "mfa",
    ["windowsHelloForBusiness", "fido2", "x509CertificateMultiFactor"],
)
PASSWORD_ONLY_STRENGTH = auth_strength(
    "3e8a7c1b-8f53-4d3f-9a7e-0b1c2d3e4f50", "Any sign-in", "none", ["password"]
)


def tls_options(tls: dict[str, Any]) -> dict[str, Any]:
    return {
        **SECRET_AUTH,
        "authority": tls["authority"],
        "disable_instance_discovery": True,
        "authority_ca_bundle": tls["ca"],
        "graph_url": tls["graph"].graph_url,
        "http": {"ca_bundle": tls["ca"], "max_attempts": 2, "retry_min_wait": 0},
    }


def _users_cond(**over: Any) -> dict[str, Any]:
    return {"users": users_condition(["All"], list(BREAK_GLASS), **over)}


#: (case, policy keyword arguments, verdict of entra.tenant.mfa_enforced, message part).
CA_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("all users, all apps, mfa", {"exclude_users": 2}, "pass", "requires MFA"),
    (
        "only risky sign-ins",
        {"conditions": {"signInRiskLevels": ["high", "medium"]}},
        "fail",
        "only at sign-in risk high, medium",
    ),
    ("only risky users", {"conditions": {"userRiskLevels": ["high"]}}, "fail", "user risk"),
    (
        "only outside trusted locations",
        {
            "conditions": {
                "locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}
            }
        },
        "fail",
        "exclude ['AllTrusted']",
    ),
    ("only browsers", {"clients": ["browser"]}, "fail", "only client apps browser"),
    ("modern clients", {"clients": ["browser", "mobileAppsAndDesktopClients"]}, "pass", ""),
    (
        "only mobile platforms",
        {
            "conditions": {
                "platforms": {"includePlatforms": ["android", "iOS"], "excludePlatforms": []}
            }
        },
        "fail",
        "platforms include",
    ),
    (
        "a group excluded",
        {"conditions": _users_cond(excludeGroups=["grp-contractors"])},
        "fail",
        "groups excluded: grp-contractors",
    ),
    (
        "a role excluded",
        {"conditions": _users_cond(excludeRoles=[GLOBAL_ADMINISTRATOR])},
        "fail",
        "directory roles excluded",
    ),
    (
        "guests excluded",
        {
            "conditions": _users_cond(
                excludeGuestsOrExternalUsers={
                    "guestOrExternalUserTypes": "b2bCollaborationGuest,b2bCollaborationMember",
                    "externalTenants": {
                        "@odata.type": "#microsoft.graph.conditionalAccessAllExternalTenants",
                        "membershipKind": "all",
                    },
                }
            )
        },
        "fail",
        "guests or external users excluded",
    ),
    ("five users excluded", {"exclude_users": 5}, "fail", "5 users excluded (at most 2)"),
    (
        "Exchange Online excluded",
        {
            "conditions": {
                "applications": {
                    "includeApplications": ["All"],
                    "excludeApplications": ["00000002-0000-0ff1-ce00-000000000000"],
                    "includeUserActions": [],
                    "includeAuthenticationContextClassReferences": [],
                    "applicationFilter": None,
                }
            }
        },
        "fail",
        "applications excluded",
    ),
    (
        "device filter",
        {
            "conditions": {
                "devices": {
                    "deviceFilter": {"mode": "exclude", "rule": "device.isCompliant -eq True"}
                }
            }
        },
        "fail",
        "device filter (exclude)",
    ),
    ("insider risk", {"conditions": {"insiderRiskLevels": "elevated"}}, "fail", "insider risk"),
    (
        "strength OR compliant device",
        {"controls": ["compliantDevice"], "strength": PHISHING_RESISTANT},
        "fail",
        "MFA OR compliantDevice",
    ),
    ("phishing-resistant strength", {"controls": [], "strength": PHISHING_RESISTANT}, "pass", ""),
    (
        "strength that is not MFA",
        {"controls": [], "strength": PASSWORD_ONLY_STRENGTH},
        "fail",
        "",
    ),
    (
        "mfa AND compliant device",
        {"controls": ["mfa", "compliantDevice"], "operator": "AND"},
        "pass",
        "",
    ),
    ("report only", {"state": "enabledForReportingButNotEnforced"}, "fail", "report"),
]


def policy_finding(
    tls: dict[str, Any], monkeypatch: pytest.MonkeyPatch, policy: dict[str, Any], check: str,
    params: dict[str, Any] | None = None,
) -> Finding:
    """The ``entra.tenant.<check>`` finding (``params`` set) on the authentication policies
    of a healthy tenant whose only conditional-access policy is ``policy``."""
    monkeypatch.setenv("ANNEXA_TEST_ENTRA_SECRET", SECRET)
    g = tls["graph"]
    healthy_tenant(g)
    g.policies = [policy]
    check_id = f"entra.tenant.{check}"
    run = run_engine("entra", tls_options(tls), checks={check_id: params} if params else None)
    assert run.status == "succeeded", run.errors
    return run.one(check_id, "authentication-policies")


@pytest.mark.parametrize(
    ("case", "kwargs", "verdict", "says"), CA_CASES, ids=[c[0] for c in CA_CASES]
)
def test_conditional_access_conditions_are_all_judged(
    tls, monkeypatch, case, kwargs, verdict, says
):
    """One Graph-shaped policy per tenant (security defaults off). Before the fix the risk,
    location, client-app, platform, exclusion, application, device-filter, insider-risk and
    strength-OR cases all passed: the policy summary dropped those conditions."""
    f = policy_finding(tls, monkeypatch, ca_policy("ca-x", case, **kwargs), "mfa_enforced")
    assert f.status == verdict, f.message
    assert says in f.message


TRUSTED_ONLY = {"locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}}

#: (case, policy keyword arguments, verdict of entra.tenant.managed_device_required).
DEVICE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("compliant device, everywhere", {"controls": ["compliantDevice"]}, "pass"),
    ("hybrid joined, outside trusted locations",
     {"controls": ["domainJoinedDevice"], "conditions": TRUSTED_ONLY}, "pass"),
    ("compliant device AND mfa", {"controls": ["compliantDevice", "mfa"], "operator": "AND"},
     "pass"),
    ("compliant device OR mfa", {"controls": ["compliantDevice", "mfa"]}, "fail"),
    ("one named location excluded", {"controls": ["compliantDevice"], "conditions": {
        "locations": {"includeLocations": ["All"], "excludeLocations": ["loc-branch"]}}},
     "fail"),
    ("only some users", {"controls": ["compliantDevice"], "users": ["u-alice"]}, "fail"),
    ("report only", {"controls": ["compliantDevice"],
                     "state": "enabledForReportingButNotEnforced"}, "fail"),
    ("only browsers", {"controls": ["compliantDevice"], "clients": ["browser"]}, "fail"),
    ("only risky sign-ins", {"controls": ["compliantDevice"],
                             "conditions": {"signInRiskLevels": ["high"]}}, "fail"),
    ("mfa only", {"controls": ["mfa"]}, "fail"),
]


@pytest.mark.parametrize(("case", "kwargs", "verdict"), DEVICE_CASES,
                         ids=[c[0] for c in DEVICE_CASES])
def test_managed_device_policies_are_judged(tls, monkeypatch, case, kwargs, verdict):
    """Graph-shaped policies (grant ``compliantDevice`` / ``domainJoinedDevice``) through
    the run engine: A.6.7 remote working is evidenced only by a policy every user meets
    on every app and client, off the trusted networks at least."""
    policy = ca_policy("ca-d", case, **kwargs)
    f = policy_finding(tls, monkeypatch, policy, "managed_device_required")
    assert f.status == verdict, f.message
    assert tuple(f.controls) == ("A.6.7",)


def test_approved_exclusions_are_a_parameter(tls, monkeypatch):
    """A break-glass group named in approved_exclusions may be excluded."""
    policy = ca_policy("ca-x", "MFA", conditions=_users_cond(excludeGroups=["grp-breakglass"]))
    params = {"approved_exclusions": ["grp-breakglass"]}
    assert policy_finding(tls, monkeypatch, policy, "mfa_enforced", params).status == "pass"


def test_failed_sign_in_attempts_do_not_make_an_account_active(tls, monkeypatch):
    """``lastSignInDateTime``/``lastNonInteractiveSignInDateTime`` count failed attempts;
    only ``lastSuccessfulSignInDateTime`` shows use. A dormant account being sprayed
    (recent attempts, no success recorded) passed ``entra.user.inactive`` before the fix,
    as did a guest who never got in."""
    monkeypatch.setenv("ANNEXA_TEST_ENTRA_SECRET", SECRET)
    g = tls["graph"]
    healthy_tenant(g)
    g.add_user(
        graph_user(
            "u-sprayed", "sprayed@acme.example", created=400, last_attempt=1, last_success=None
        ),
        ["microsoftAuthenticatorPush"],
    )
    g.add_user(
        graph_user("u-old", "old@acme.example", created=400, last_attempt=1, last_success=150),
        ["microsoftAuthenticatorPush"],
    )
    g.add_user(
        graph_user(
            "u-gsprayed",
            "x@partner.example",
            guest=True,
            created=400,
            last_attempt=2,
            last_success=None,
        ),
        [],
    )
    run = run_engine("entra", tls_options(tls))
    assert run.ids("fail", "entra.user.") == {
        ("entra.user.inactive", "u-sprayed"),
        ("entra.user.inactive", "u-old"),
        ("entra.user.guest_stale", "u-gsprayed"),
    }
    sprayed = run.payload("entra.user.account", "u-sprayed")
    assert sprayed["last_sign_in"] is None and sprayed["last_sign_in_attempt"]
    assert "successful or not" in run.one("entra.user.inactive", "u-sprayed").message


def test_fake_responses_match_graph_metadata(tls, monkeypatch):
    """Every body the fake served in a full run validates against Graph v1.0 metadata."""
    monkeypatch.setenv("ANNEXA_TEST_ENTRA_SECRET", SECRET)
    g = tls["graph"]
    healthy_tenant(g)
    g.policies += [ca_policy(f"ca-{i}", c, **kw) for i, (c, kw, _, _) in enumerate(CA_CASES)]
    g.add_user(
        graph_user("u-sprayed", "s@acme.example", last_attempt=1, last_success=None), ["email"]
    )
    run_engine("entra", tls_options(tls))
    schemas = [
        (r"/v1\.0/users", graph_schema("user", collection=True)),
        (
            r"/v1\.0/reports/authenticationMethods/userRegistrationDetails",
            graph_schema("userRegistrationDetails", collection=True),
        ),
        (r"/v1\.0/directoryRoles", graph_schema("directoryRole", collection=True)),
        (r"/v1\.0/directoryRoles/[^/]+/members", graph_schema("directoryObject", collection=True)),
        (
            r"/v1\.0/groups/[^/]+/transitiveMembers/microsoft\.graph\.user",
            graph_schema("user", collection=True),
        ),
        (
            r"/v1\.0/policies/identitySecurityDefaultsEnforcementPolicy",
            graph_schema("identitySecurityDefaultsEnforcementPolicy"),
        ),
        (
            r"/v1\.0/identity/conditionalAccess/policies",
            graph_schema("conditionalAccessPolicy", collection=True),
        ),
    ]
    assert_all_served_valid(g.served, schemas)
