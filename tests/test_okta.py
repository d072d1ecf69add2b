"""The Okta connector against a fake Okta org served by pytest-httpserver on 127.0.0.1.

The fake answers with the shapes of Okta's management OpenAPI spec
(okta/okta-management-openapi-spec ``dist/current/management-minimal.yaml``: ``User``,
``UserFactor``, ``StandardRole``, ``RoleAssignedUsers``, ``ApiToken``, ``Policy`` and
``PolicyRule`` with the ``ACCESS_POLICY`` verification methods ``ASSURANCE``,
``AUTH_METHOD_CHAIN`` and ``ID_PROOFING`` as in the spec's examples ``amc-two-chain``,
``device-condition-with-oamp-response`` and ``oamp-id-proofing-policy-rule-response``);
``test_fake_responses_match_the_okta_spec`` validates every body it served against the
excerpt in tests/vendor/okta. It paginates users with ``after``/``limit`` and two
``Link`` lines (self + next) as Okta does, hides DEPROVISIONED users unless filtered
for, and can inject faults (429, 5xx bursts, malformed JSON, pagination loops) per path.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.okta import OktaConnector, OktaOptions
from connectors.okta.common import SIGN_IN_STATUSES
from core.records import Finding
from core.times import full_time
from tests.configs import connector_table, secret_env, write_config
from tests.fakehttp import FAST_HTTP
from tests.harness import by_status, judge_payload, run_built, run_engine
from tests.harness import coverage_by_service as coverage
from tests.harness import evidence_of as evidence
from tests.harness import stream as collect
from tests.vendor_schemas import assert_valid, openapi_schema

pytestmark = pytest.mark.clock

TOKEN = "00TestOktaApiToken_abcdefghijklmnop1234"
KEY = "pseudonym-key-for-tests-0123456789"
NOW = datetime.now(UTC)


def ts(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --------------------------------------------------------------------------- the fake


def okta_user(
    uid: str,
    login: str,
    status: str = "ACTIVE",
    *,
    last_login: float | None = 2,
    created: float = 400,
    status_changed: float | None = None,
) -> dict[str, Any]:
    first, _, _ = login.partition("@")
    return {
        "id": uid,
        "status": status,
        "created": ts(created),
        "activated": ts(created - 1) if status != "STAGED" else None,
        "statusChanged": ts(status_changed) if status_changed is not None else ts(created - 1),
        "lastLogin": ts(last_login) if last_login is not None else None,
        "lastUpdated": ts(5),
        "passwordChanged": ts(30),
        "type": {"id": "otyfnjfba4ye7pgjB0g4"},
        "profile": {
            "firstName": first.title(),
            "lastName": "Example",
            "mobilePhone": None,
            "secondEmail": None,
            "login": login,
            "email": login,
        },
        "credentials": {"password": {}, "provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": {"self": {"href": f"https://acme.okta.com/api/v1/users/{uid}"}},
    }


def factor(kind: str, status: str = "ACTIVE", provider: str = "OKTA") -> dict[str, Any]:
    return {
        "id": f"uf{kind.replace(':', '')[:6]}1234",
        "factorType": kind,
        "provider": provider,
        "vendorName": provider,
        "status": status,
        "created": ts(100),
        "lastUpdated": ts(100),
        "profile": {"credentialId": "someone@example.com"},
        "_links": {"self": {"href": "https://acme.okta.com/api/v1/users/x/factors/y"}},
    }


def role(kind: str, label: str) -> dict[str, Any]:
    return {
        "id": f"ra{kind.lower()[:8]}",
        "label": label,
        "type": kind,
        "status": "ACTIVE",
        "created": ts(300),
        "lastUpdated": ts(300),
        "assignmentType": "USER",
        "_links": {"assignee": {"href": "https://acme.okta.com/api/v1/users/x"}},
    }


def sign_on_policy(pid: str, *, require_factor: bool = True, idle: int = 60) -> tuple[dict, list]:
    policy = {
        "id": pid,
        "status": "ACTIVE",
        "name": "Default Policy",
        "description": "The default policy applies in all situations.",
        "priority": 1,
        "system": True,
        "conditions": {"people": {"groups": {"include": ["00g1"]}}},
        "created": ts(900),
        "lastUpdated": ts(10),
        "type": "OKTA_SIGN_ON",
        "_links": {},
    }
    rules = [
        {
            "id": f"{pid}r1",
            "status": "ACTIVE",
            "name": "Default Rule",
            "priority": 1,
            "created": ts(900),
            "lastUpdated": ts(10),
            "system": True,
            "conditions": {
                "people": {"users": {"exclude": []}},
                "network": {"connection": "ANYWHERE"},
                "authContext": {"authType": "ANY"},
            },
            "actions": {
                "signon": {
                    "access": "ALLOW",
                    "requireFactor": require_factor,
                    **({"factorPromptMode": "ALWAYS"} if require_factor else {}),
                    "primaryFactor": "PASSWORD_IDP_ANY_FACTOR",
                    "rememberDeviceByDefault": False,
                    "factorLifetime": 15,
                    "session": {
                        "usePersistentCookie": False,
                        "maxSessionIdleMinutes": idle,
                        "maxSessionLifetimeMinutes": 0,
                    },
                }
            },
            "type": "SIGN_ON",
        }
    ]
    return policy, rules


def assurance(factor_mode: str | None = "2FA", constraints: Any = None) -> dict[str, Any]:
    """An ``AssuranceMethod`` (spec example ``create-auth-policy-rule-condition-response``)."""
    method: dict[str, Any] = {
        "type": "ASSURANCE",
        "reauthenticateIn": "PT2H",
        "constraints": (
            constraints
            if constraints is not None
            else [{"knowledge": {"required": True, "types": ["PASSWORD"]}}]
        ),
    }
    if factor_mode is not None:
        method["factorMode"] = factor_mode
    return method


def step(*methods: tuple[str, str], then: dict | None = None, uv: bool = False) -> dict:
    """One ``AuthenticationMethodChain`` step: any of ``(key, method)``, then ``then``."""
    out: dict[str, Any] = {
        "authenticationMethods": [
            {"key": k, "method": m, **({"userVerification": "REQUIRED"} if uv else {})}
            for k, m in methods
        ]
    }
    if then is not None:
        out["next"] = [then]
    return out


def chains(*alternatives: dict) -> dict[str, Any]:
    """An ``AuthenticationMethodChainMethod`` (spec example ``amc-two-chain``)."""
    return {"type": "AUTH_METHOD_CHAIN", "chains": list(alternatives)}


def access_policy(
    pid: str, factor_mode: str = "2FA", *, rules: list[tuple[str, dict]] | None = None
) -> tuple[dict, list]:
    """An ``AccessPolicy`` and its ``AccessPolicyRule``s: ``rules`` are (name,
    verificationMethod); the default is one catch-all ASSURANCE rule of ``factor_mode``."""
    policy = {
        "id": pid,
        "status": "ACTIVE",
        "name": "Any two factors",
        "priority": 1,
        "system": False,
        "type": "ACCESS_POLICY",
        "created": ts(500),
        "lastUpdated": ts(10),
        "_links": {},
    }
    wanted = rules if rules is not None else [("Catch-all Rule", assurance(factor_mode))]
    out = [
        {
            "id": f"{pid}r{i}",
            "status": "ACTIVE",
            "name": name,
            "priority": i,
            "system": name == "Catch-all Rule",
            "type": "ACCESS_POLICY",
            "created": ts(500),
            "lastUpdated": ts(10),
            "conditions": {"network": {"connection": "ANYWHERE"}},
            "actions": {"appSignOn": {"access": "ALLOW", "verificationMethod": method}},
        }
        for i, (name, method) in enumerate(wanted, start=1)
    ]
    return policy, out


def password_policy(
    pid: str, *, min_length: int = 12, attempts: int = 5, common: bool = True
) -> dict[str, Any]:
    return {
        "id": pid,
        "status": "ACTIVE",
        "name": "Default Policy",
        "priority": 1,
        "system": True,
        "type": "PASSWORD",
        "conditions": {
            "people": {"groups": {"include": ["00g1"]}},
            "authProvider": {"provider": "OKTA"},
        },
        "settings": {
            "password": {
                "complexity": {
                    "minLength": min_length,
                    "minLowerCase": 1,
                    "minUpperCase": 1,
                    "minNumber": 1,
                    "minSymbol": 0,
                    "excludeUsername": True,
                    "dictionary": {"common": {"exclude": common}},
                    "excludeAttributes": [],
                },
                "age": {
                    "maxAgeDays": 0,
                    "expireWarnDays": 0,
                    "minAgeMinutes": 0,
                    "historyCount": 4,
                },
                "lockout": {
                    "maxAttempts": attempts,
                    "autoUnlockMinutes": 0,
                    "userLockoutNotificationChannels": [],
                    "showLockoutFailures": False,
                },
            },
            "recovery": {"factors": {}},
            "delegation": {"options": {"skipUnlock": False}},
        },
        "_links": {},
    }


def api_token(tid: str, owner: str, *, connection: str = "ZONE", created: float = 30) -> dict:
    return {
        "id": tid,
        "name": f"{tid}-automation",
        "userId": owner,
        "clientName": "Okta API",
        "created": ts(created),
        "expiresAt": ts(-30),
        "lastUpdated": ts(1),
        "tokenWindow": "P30D",
        "network": {"connection": connection, "include": ["nzo1"] if connection == "ZONE" else []},
        "_links": {"self": {"href": f"https://acme.okta.com/api/v1/api-tokens/{tid}"}},
    }


class FakeOkta:
    """A tiny Okta org: state plus a request handler routing like the real API."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.users: list[dict[str, Any]] = []
        self.factors: dict[str, list[dict]] = defaultdict(list)
        self.roles: dict[str, list[dict]] = {}
        self.policies: dict[str, list[dict]] = defaultdict(list)
        self.rules: dict[str, list[dict]] = {}
        self.tokens: list[dict[str, Any]] = []
        self.classic = False
        self.faults: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        self.looping: set[str] = set()
        self.requests: list[str] = []
        #: (path, body) of every successful JSON answer, for the schema test.
        self.served: list[tuple[str, Any]] = []
        server.expect_request(re.compile(r"^/api/v1/.*")).respond_with_handler(self.handle)

    @property
    def base(self) -> str:
        return self.server.url_for("/").rstrip("/")

    # -- state helpers

    def add_user(self, user: dict[str, Any], factors: list[dict] = (), roles: list[dict] = ()):
        self.users.append(user)
        self.factors[user["id"]] = list(factors)
        if roles:
            self.roles[user["id"]] = list(roles)

    def fault(self, path: str, *answers: tuple[int, str, dict[str, str]]) -> None:
        self.faults[path].extend(answers)

    # -- HTTP

    def _json(self, body: Any, status: int = 200, links: list[str] = ()) -> Response:
        if status == 200:
            self.served.append((self.requests[-1], body))
        resp = Response(json.dumps(body), status=status, content_type="application/json")
        for line in links:
            resp.headers.add("Link", line)
        resp.headers["X-Rate-Limit-Limit"] = "600"
        resp.headers["X-Rate-Limit-Remaining"] = "599"
        resp.headers["X-Rate-Limit-Reset"] = str(int(NOW.timestamp()) + 60)
        return resp

    def _page(self, request: Request, items: list[dict], key: str = "id") -> Response:
        limit = int(request.args.get("limit", 200))
        after = request.args.get("after")
        items = sorted(items, key=lambda i: i[key])
        if after:
            items = [i for i in items if i[key] > after]
        page = items[:limit]
        base = self.server.url_for(request.path)
        query = {k: v for k, v in request.args.items() if k != "after"}
        links = [f'<{base}?{_qs(query)}>; rel="self"']
        if len(items) > limit:
            nxt = dict(query, after=page[-1][key])
            links.append(f'<{base}?{_qs(nxt)}>; rel="next"')
        if request.path in self.looping:
            links = [f'<{base}?{_qs(query)}>; rel="self"', f'<{base}?{_qs(query)}>; rel="next"']
        return self._json(page, links=links)

    def handle(self, request: Request) -> Response:
        path = request.path
        self.requests.append(path)
        if request.headers.get("Authorization") != f"SSWS {TOKEN}":
            return self._json(
                {"errorCode": "E0000011", "errorSummary": "Invalid token provided"}, 401
            )
        if self.faults.get(path):
            status, body, headers = self.faults[path].pop(0)
            return Response(body, status=status, headers=headers, content_type="application/json")
        if path == "/api/v1/users":
            flt = request.args.get("filter")
            if flt == 'status eq "DEPROVISIONED"':
                users = [u for u in self.users if u["status"] == "DEPROVISIONED"]
            elif flt is None:
                users = [u for u in self.users if u["status"] != "DEPROVISIONED"]
            else:
                return self._json({"errorCode": "E0000031", "errorSummary": "Invalid search"}, 400)
            return self._page(request, users)
        if m := re.fullmatch(r"/api/v1/users/([^/]+)/factors", path):
            return self._json(self.factors.get(m[1], []))
        if m := re.fullmatch(r"/api/v1/users/([^/]+)/roles", path):
            return self._json(self.roles.get(m[1], []))
        if m := re.fullmatch(r"/api/v1/users/([^/]+)", path):
            for u in self.users:
                if u["id"] == m[1]:
                    return self._json(u)
            return self._json({"errorCode": "E0000007", "errorSummary": "Not found"}, 404)
        if path == "/api/v1/iam/assignees/users":
            ids = sorted(self.roles)
            limit = int(request.args.get("limit", 100))
            start = ids.index(request.args["after"]) + 1 if "after" in request.args else 0
            page = ids[start : start + limit]
            body: dict[str, Any] = {
                "value": [
                    {
                        "id": i,
                        "orn": f"orn:okta:directory:00o1:users:{i}",
                        "_links": {"self": {"href": f"{self.base}/api/v1/users/{i}"}},
                    }
                    for i in page
                ],
                "_links": {},
            }
            if start + limit < len(ids):
                body["_links"]["next"] = {
                    "href": f"{self.base}{path}?after={page[-1]}&limit={limit}"
                }
            return self._json(body)
        if path == "/api/v1/api-tokens":
            return self._page(request, self.tokens)
        if path == "/api/v1/policies":
            kind = request.args.get("type")
            if kind == "ACCESS_POLICY" and self.classic:
                return self._json(
                    {"errorCode": "E0000001", "errorSummary": "Api validation failed: type"}, 400
                )
            return self._json(self.policies.get(kind, []))
        if m := re.fullmatch(r"/api/v1/policies/([^/]+)/rules", path):
            return self._json(self.rules.get(m[1], []))
        return self._json({"errorCode": "E0000022", "errorSummary": "not implemented"}, 418)


def _qs(params: dict[str, str]) -> str:
    return urlencode(params)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def okta(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeOkta:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_OKTA_TOKEN", TOKEN)
    monkeypatch.setenv("ANNEXA_TEST_PSEUDONYM_KEY", KEY)
    return FakeOkta(httpserver)


def healthy_org(okta: FakeOkta) -> None:
    """Five people, policies that pass, one restricted API token."""
    okta.add_user(
        okta_user("00u0alice", "alice@acme.example", last_login=1),
        [factor("push"), factor("webauthn", provider="FIDO")],
        [role("SUPER_ADMIN", "Super Administrator")],
    )
    okta.add_user(okta_user("00u1bob", "bob@acme.example"), [factor("token:software:totp")])
    okta.add_user(
        okta_user("00u2carol", "carol@acme.example", last_login=10),
        [factor("push"), factor("sms", status="PENDING_ACTIVATION")],
    )
    okta.add_user(
        okta_user("00u3dan", "dan@acme.example", "SUSPENDED", status_changed=20, last_login=40), []
    )
    okta.add_user(
        okta_user("00u4eve", "eve@acme.example", "DEPROVISIONED", status_changed=60, last_login=70),
        [],
    )
    p, r = sign_on_policy("00p1")
    okta.policies["OKTA_SIGN_ON"].append(p)
    okta.rules["00p1"] = r
    p, r = access_policy("rst1")
    okta.policies["ACCESS_POLICY"].append(p)
    okta.rules["rst1"] = r
    okta.policies["PASSWORD"].append(password_policy("00p2"))
    okta.tokens.append(api_token("00T1", "00u0alice"))


def connector(okta: FakeOkta, **options: Any) -> OktaConnector:
    opts = {
        "org_url": okta.base,
        "api_token": {"env": "ANNEXA_TEST_OKTA_TOKEN"},
        "page_size": 2,
        "max_workers": 2,
        "http": FAST_HTTP,
        **options,
    }
    return OktaConnector("okta-test", OktaOptions.model_validate(opts))


# --------------------------------------------------------------------------- tests


def test_healthy_org_passes_everything(okta):
    healthy_org(okta)
    run = run_built(connector(okta))
    records = run.records
    cov = coverage(records)
    assert set(cov) == {"admin", "apitoken", "policy", "user"}
    assert all(c.ok for c in cov.values()), cov
    found = run.findings
    assert by_status(found, "fail") == set()
    assert by_status(found, "error") == set()
    users = {e.resource_id: e for e in evidence(records) if e.resource_type == "okta.user.account"}
    # Deprovisioned users are fetched with the explicit filter; five people over 3+ pages.
    assert set(users) == {"00u0alice", "00u1bob", "00u2carol", "00u3dan", "00u4eve"}
    alice = users["00u0alice"].payload
    assert alice["admin_roles"] == ["SUPER_ADMIN"] and alice["api_tokens"] == ["00T1"]
    assert {f["type"] for f in alice["factors"]} == {"push", "webauthn"}
    assert alice["last_login"] == full_time(NOW - timedelta(days=1))
    # Factors are not read for people who cannot sign in.
    assert "factors" not in users["00u4eve"].payload
    assert not any("/00u4eve/factors" in p for p in okta.requests)
    # 4 users that can be listed by default at 2 a page, then 1 deprovisioned: 3 pages.
    assert okta.requests.count("/api/v1/users") == 3
    # Every record is per resource, global, scoped by the org host.
    assert {e.scope for e in evidence(records)} == {"localhost"}
    assert {e.region for e in evidence(records)} == {"global"}


def test_planted_users_fail_exactly_their_checks(okta):
    healthy_org(okta)
    okta.add_user(okta_user("00u5nomfa", "nomfa@acme.example"), [factor("question")])
    okta.add_user(okta_user("00u6idle", "idle@acme.example", last_login=120), [factor("push")])
    okta.add_user(
        okta_user(
            "00u7gone", "gone@acme.example", "DEPROVISIONED", status_changed=30, last_login=10
        ),
        [],
        [role("ORG_ADMIN", "Organization Administrator")],
    )
    for uid in ("00u8adm", "00u9adm"):
        okta.add_user(
            okta_user(uid, f"{uid}@acme.example"),
            [factor("webauthn", provider="FIDO")],
            [role("APP_ADMIN", "Application Administrator")],
        )
    run = run_built(connector(okta), checks={"okta.admin.count": {"max_admins": 2}})
    assert all(c.ok for c in coverage(run.records).values())
    found = run.findings
    assert by_status(found, "fail") == {
        ("okta.user.mfa_enrolled", "00u5nomfa"),
        ("okta.user.inactive", "00u6idle"),
        ("okta.user.deprovisioned_no_access", "00u7gone"),
        ("okta.admin.count", "admin-roles"),
    }
    assert by_status(found, "error") == set()
    gone = next(
        f
        for f in found
        if f.check_id == "okta.user.deprovisioned_no_access" and f.resource_id == "00u7gone"
    )
    assert "ORG_ADMIN" in gone.message and "signed in" in gone.message
    count = next(f for f in found if f.check_id == "okta.admin.count")
    assert "3 active users" in count.message  # the deprovisioned admin is not counted


def test_weak_policies_fail(okta):
    okta.add_user(okta_user("00u0a", "a@acme.example"), [factor("push")])
    p, r = sign_on_policy("00pweak", require_factor=False, idle=720)
    okta.policies["OKTA_SIGN_ON"].append(p)
    okta.rules["00pweak"] = r
    p, r = access_policy("rst1fa", factor_mode="1FA")
    okta.policies["ACCESS_POLICY"].append(p)
    okta.rules["rst1fa"] = r
    okta.policies["PASSWORD"].append(
        password_policy("00ppw", min_length=8, attempts=0, common=False)
    )
    okta.tokens.append(api_token("00Told", "00u0a", connection="ANYWHERE", created=800))
    assert by_status(run_built(connector(okta)).findings, "fail") == {
        ("okta.policy.mfa_required", "00pweak"),
        ("okta.policy.session_idle_timeout", "00pweak"),
        ("okta.policy.mfa_required", "rst1fa"),
        ("okta.policy.password_min_length", "00ppw"),
        ("okta.policy.password_lockout", "00ppw"),
        ("okta.policy.password_common_excluded", "00ppw"),
        ("okta.apitoken.network_restricted", "00Told"),
        ("okta.apitoken.max_age", "00Told"),
    }


def test_429_then_success_and_5xx_burst_are_absorbed(okta):
    healthy_org(okta)
    okta.fault("/api/v1/users", (429, '{"errorCode":"E0000047"}', {"Retry-After": "0"}))
    okta.fault(
        "/api/v1/users/00u1bob/factors",
        (503, "", {}),
        (502, "<html>bad gateway</html>", {}),
        (500, "", {}),
    )
    run = run_built(connector(okta))
    assert all(c.ok for c in coverage(run.records).values())
    assert by_status(run.findings, "fail") == set()
    assert by_status(run.findings, "error") == set()
    assert okta.requests.count("/api/v1/users/00u1bob/factors") == 4
    assert okta.requests.count("/api/v1/users") == 4  # 3 pages + the throttled attempt


def test_malformed_json_fails_only_its_unit(okta):
    healthy_org(okta)
    okta.fault("/api/v1/policies", (200, '[{"id": "00p1", "type": ', {}))
    run = run_built(connector(okta))
    cov = coverage(run.records)
    assert not cov["policy"].ok and "malformed JSON" in cov["policy"].error
    assert cov["user"].ok and cov["admin"].ok and cov["apitoken"].ok
    found = run.findings
    errors = {f.check_id for f in found if f.status == "error"}
    assert errors == {s.id for s in OktaConnector.checks() if s.id.startswith("okta.policy.")}
    assert by_status(found, "fail") == set()


def test_unreadable_factors_make_only_that_users_mfa_checks_error(okta):
    healthy_org(okta)
    okta.fault("/api/v1/users/00u1bob/factors", (200, "{not json", {}))
    run = run_built(connector(okta))
    assert coverage(run.records)["user"].ok
    found = run.findings
    assert by_status(found, "error") == {("okta.user.mfa_enrolled", "00u1bob")}
    bob = next(f for f in found if f.resource_id == "00u1bob" and f.status == "error")
    assert "factors could not be read" in bob.message


def test_admin_unit_failure_turns_role_checks_into_errors_not_passes(okta):
    healthy_org(okta)
    okta.fault(
        "/api/v1/iam/assignees/users",
        (403, '{"errorCode":"E0000006","errorSummary":"You do not have permission"}', {}),
    )
    run = run_built(connector(okta))
    cov = coverage(run.records)
    assert not cov["admin"].ok and "permission" in cov["admin"].error and cov["user"].ok
    errors = by_status(run.findings, "error")
    # Per-person checks that need roles are errors for the people they apply to.
    assert ("okta.user.admin_phishing_resistant_mfa", "00u0alice") in errors
    assert ("okta.user.deprovisioned_no_access", "00u4eve") in errors
    assert ("okta.user.mfa_enrolled", "00u0alice") not in errors


def test_empty_org(okta):
    run = run_built(connector(okta))
    cov = coverage(run.records)
    assert all(c.ok for c in cov.values()) and set(cov) == {"admin", "apitoken", "policy", "user"}
    ev = evidence(run.records)
    assert [e.resource_type for e in ev] == ["okta.admin.summary"]
    assert {(f.check_id, f.status) for f in run.findings} == {
        ("okta.admin.count", "pass"),
        ("okta.admin.super_admin_count", "pass"),
    }


def test_page_loop_is_a_unit_error_not_a_hang(okta):
    healthy_org(okta)
    okta.looping.add("/api/v1/users")
    records = collect(connector(okta))
    cov = coverage(records)
    assert not cov["user"].ok and "pagination loop" in cov["user"].error
    assert cov["policy"].ok and cov["admin"].ok


def test_classic_org_without_access_policies(okta):
    healthy_org(okta)
    okta.classic = True
    records = collect(connector(okta))
    assert coverage(records)["policy"].ok
    types = {
        e.payload.get("type") for e in evidence(records) if e.resource_type == "okta.policy.sign_on"
    }
    assert types == {"OKTA_SIGN_ON"}


def test_missing_secret_is_an_error_for_every_unit(okta, monkeypatch):
    monkeypatch.delenv("ANNEXA_TEST_OKTA_TOKEN")
    records = collect(connector(okta))
    cov = coverage(records)
    assert set(cov) == {"admin", "apitoken", "policy", "user"}
    assert all(not c.ok and "ANNEXA_TEST_OKTA_TOKEN" in c.error for c in cov.values())
    assert okta.requests == []


def test_secrets_never_in_evidence_and_token_sent_as_ssws(okta):
    healthy_org(okta)
    records = collect(connector(okta))
    for e in evidence(records):
        assert TOKEN not in e.body()
        assert "[REDACTED]" not in e.body()  # key names never trip the store's redaction
    request, _ = okta.server.log[0]
    assert request.headers["Authorization"] == f"SSWS {TOKEN}"


def test_pseudonymise_replaces_personal_identifiers(okta):
    healthy_org(okta)
    records = collect(
        connector(okta, pseudonymise=True, pseudonymise_key={"env": "ANNEXA_TEST_PSEUDONYM_KEY"})
    )
    bodies = " ".join(e.body() for e in evidence(records))
    assert "acme.example" not in bodies
    users = {
        e.resource_id: e.payload
        for e in evidence(records)
        if e.resource_type == "okta.user.account"
    }
    login = users["00u0alice"]["login"]
    assert login.startswith("pseud:") and users["00u0alice"]["email"] == login
    again = collect(
        connector(okta, pseudonymise=True, pseudonymise_key={"env": "ANNEXA_TEST_PSEUDONYM_KEY"})
    )
    assert {e.payload.get("login") for e in evidence(again)} >= {login}  # stable


def test_options_validation():
    base = {"org_url": "https://acme.okta.com", "api_token": {"env": "X"}}
    assert OktaOptions.model_validate(base).org_url == "https://acme.okta.com"
    for bad in (
        {**base, "org_url": "http://acme.okta.com"},
        {"org_url": "https://acme.okta.com"},
        {**base, "oauth_access_token": {"env": "Y"}},
        {**base, "pseudonymise": True},
        {**base, "unknown": 1},
    ):
        with pytest.raises(ValueError):
            OktaOptions.model_validate(bad)


# --------------------------------------------------------------------------- pure checks


def judge(check_id: str, payload: dict, **params: Any) -> Finding:
    return judge_payload("acme", check_id, payload, **params)


def test_checks_on_payloads():
    user = {
        "id": "u",
        "login": "u@x",
        "status": "ACTIVE",
        "created": ts(10),
        "activated": ts(10),
        "last_login": None,
        "admin_roles": [],
        "api_tokens": [],
    }
    # No factors read (error recorded) → error, never pass or fail.
    f = judge("okta.user.mfa_enrolled", {**user, "_errors": {"factors": "HTTP 503"}})
    assert f.status == "error" and "HTTP 503" in f.message
    assert judge("okta.user.mfa_enrolled", {**user, "factors": []}).status == "fail"
    # Never signed in: judged from activation.
    assert judge("okta.user.inactive", user).status == "pass"
    assert judge("okta.user.inactive", {**user, "activated": ts(200)}).status == "fail"
    assert (
        judge("okta.user.inactive", {**user, "last_login": ts(100)[:10]}, inactive_days=120).status
        == "pass"
    )
    assert (
        judge(
            "okta.user.pending_activation", {**user, "status": "STAGED", "created": ts(45)}
        ).status
        == "fail"
    )
    assert judge("okta.user.pending_activation", user).status == "not_applicable"
    assert set(SIGN_IN_STATUSES) >= {"ACTIVE", "LOCKED_OUT"}


def test_every_okta_check_is_documented():
    specs = OktaConnector.checks()
    assert len(specs) >= 10
    for s in specs:
        assert s.title and s.rationale and s.remediation and s.severity
        assert s.resource_type.split(".")[1] in {"admin", "apitoken", "policy", "user"}


def test_end_to_end_through_config_runner_and_store(okta, tmp_path):
    """config.toml → entry point → run engine → SQLite store, with one unit unreadable."""
    from collector.cli import known_checks
    from collector.config import load_settings
    from collector.runner import run_connector
    from mappings.loader import load_mappings
    from store.engine import make_engine
    from store.migrate import upgrade
    from store.queries import findings_at

    healthy_org(okta)
    okta.add_user(okta_user("00u5nomfa", "nomfa@acme.example"), [])
    okta.fault("/api/v1/policies", (200, "{broken", {}))
    cfg = tmp_path / "annexa.toml"
    write_config(
        cfg,
        f"sqlite:///{tmp_path / 'annexa.db'}",
        connector_table("okta", "okta-e2e", {
            "org_url": okta.base, "api_token": secret_env("ANNEXA_TEST_OKTA_TOKEN"),
            "http": {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01},
        }, **{"okta.user.inactive": {"inactive_days": 30}}),
    )
    settings = load_settings(cfg)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    try:
        index = load_mappings(settings.mapping_dirs, known_checks=set(known_checks()))
        summary = run_connector(settings, settings.connectors[0], engine, index)
        assert summary.status == "partial"
        with engine.connect() as conn:
            mfa = {
                f["resource_id"]: f for f in findings_at(conn, check_id="okta.user.mfa_enrolled")
            }
            policy = list(findings_at(conn, check_id="okta.policy.mfa_required"))
        assert mfa["00u5nomfa"]["status"] == "fail" and mfa["00u0alice"]["status"] == "pass"
        assert "A.8.5" in mfa["00u5nomfa"]["controls"]
        assert [f["status"] for f in policy] == ["error"]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- real shapes
# Each case below is served as Okta's management OpenAPI spec documents it and judged by
# the run engine (tests/harness.py), as `annexa collect` would.


def engine_options(okta: FakeOkta) -> dict[str, Any]:
    return {
        "org_url": okta.base,
        "api_token": {"env": "ANNEXA_TEST_OKTA_TOKEN"},
        "page_size": 2,
        "max_workers": 2,
        "http": {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01},
    }


def add_access_policy(okta: FakeOkta, pid: str, name: str, method: dict) -> None:
    policy, rules = access_policy(pid, rules=[(name, method)])
    okta.policies["ACCESS_POLICY"].append(policy)
    okta.rules[pid] = rules


#: (policy id, rule verificationMethod, verdict of okta.policy.mfa_required by default).
VERIFICATION_CASES: list[tuple[str, dict, str]] = [
    # AUTH_METHOD_CHAIN whose only step is the password: one factor.
    ("rstpwonly", chains(step(("okta_password", "password"))), "fail"),
    # The spec's own example amc-two-chain: password then SMS, or FastPass with UV.
    (
        "rstamc2",
        chains(
            step(("okta_password", "password"), then=step(("phone_number", "sms"))),
            step(("okta_verify", "signed_nonce"), uv=True),
        ),
        "pass",
    ),
    # One strong chain and one weak alternative: the weak one lets people in.
    (
        "rstmixed",
        chains(
            step(("okta_password", "password"), then=step(("okta_verify", "push"))),
            step(
                ("okta_password", "password"), then=step(("security_question", "security_question"))
            ),
        ),
        "fail",
    ),
    # Password then e-mail: e-mail is not counted as a second factor by default.
    (
        "rstemail",
        chains(step(("okta_password", "password"), then=step(("okta_email", "email")))),
        "fail",
    ),
    # A passkey without user verification alone is one factor.
    ("rstkeyonly", chains(step(("webauthn", "webauthn"))), "fail"),
    # ASSURANCE without factorMode: nothing says two factors.
    ("rstnomode", assurance(None), "fail"),
    # Spec example device-condition-with-oamp-response: 1FA, phishing-resistant, UV optional.
    (
        "rst1fapr",
        assurance(
            "1FA",
            [{"possession": {"phishingResistant": "REQUIRED", "userVerification": "OPTIONAL"}}],
        ),
        "fail",
    ),
    # 1FA with a possession factor that requires user verification: two factors in one.
    (
        "rst1fauv",
        assurance("1FA", [{"possession": {"userVerification": "REQUIRED", "types": ["APP"]}}]),
        "pass",
    ),
    # 2FA whose possession factor may only be e-mail.
    (
        "rst2faemail",
        assurance("2FA", [{"possession": {"required": True, "methods": ["EMAIL"]}}]),
        "fail",
    ),
    # The spec example oamp-id-proofing-policy-rule-response: identity proofing.
    ("rstidp", {"id": "entity_id", "type": "ID_PROOFING"}, "fail"),
    ("rst2fa", assurance("2FA"), "pass"),
]


def plant_verification_cases(okta: FakeOkta) -> None:
    for pid, method, _ in VERIFICATION_CASES:
        add_access_policy(okta, pid, f"rule of {pid}", method)


def test_every_documented_verification_method_is_judged(okta):
    """AUTH_METHOD_CHAIN, ASSURANCE (2FA/1FA/no mode) and ID_PROOFING rules, each as the
    spec documents them: only rules whose every path combines two factor classes pass.
    Before the fix, the chain of the password alone (``rstpwonly``) passed."""
    healthy_org(okta)
    plant_verification_cases(okta)
    run = run_engine("okta", engine_options(okta))
    assert run.status == "succeeded"
    mfa = {
        f.resource_id: f.status for f in run.findings if f.check_id == "okta.policy.mfa_required"
    }
    expected = {pid: verdict for pid, _, verdict in VERIFICATION_CASES}
    assert {k: v for k, v in mfa.items() if k in expected} == expected
    assert run.ids("fail", "okta.policy.") == {
        ("okta.policy.mfa_required", pid) for pid, _, v in VERIFICATION_CASES if v == "fail"
    }
    msg = run.one("okta.policy.mfa_required", "rstpwonly").message
    assert "okta_password/password" in msg
    # The stored evidence keeps the chains that were judged.
    rule = run.payload("okta.policy.sign_on", "rstamc2")["rules"][0]
    assert rule["verification_type"] == "AUTH_METHOD_CHAIN"
    assert rule["verification_method"]["chains"][1]["authenticationMethods"][0] == {
        "key": "okta_verify",
        "method": "signed_nonce",
        "userVerification": "REQUIRED",
    }


def test_second_factor_methods_is_a_parameter(okta):
    """An auditor who accepts e-mail says so: then password → e-mail passes."""
    healthy_org(okta)
    plant_verification_cases(okta)
    from connectors.okta.assurance import SECOND_FACTOR_METHODS

    run = run_engine(
        "okta",
        engine_options(okta),
        checks={
            "okta.policy.mfa_required": {"second_factor_methods": [*SECOND_FACTOR_METHODS, "email"]}
        },
    )
    assert run.one("okta.policy.mfa_required", "rstemail").status == "pass"
    assert run.one("okta.policy.mfa_required", "rst2faemail").status == "pass"
    assert run.one("okta.policy.mfa_required", "rstpwonly").status == "fail"


def test_factor_types_counted_as_second_factor(okta):
    """``UserFactorType`` values: only e-mail or a security question enrolled is no second
    factor by default (before the fix an e-mail factor passed); the list is a parameter."""
    healthy_org(okta)
    okta.add_user(okta_user("00u5mail", "mail@acme.example"), [factor("email")])
    okta.add_user(okta_user("00u6q", "q@acme.example"), [factor("question")])
    okta.add_user(okta_user("00u7otp", "otp@acme.example"), [factor("token:software:totp")])
    run = run_engine("okta", engine_options(okta))
    assert run.ids("fail", "okta.user.mfa_enrolled") == {
        ("okta.user.mfa_enrolled", "00u5mail"),
        ("okta.user.mfa_enrolled", "00u6q"),
    }
    from connectors.okta.users import SECOND_FACTOR_TYPES

    run = run_engine(
        "okta",
        engine_options(okta),
        checks={"okta.user.mfa_enrolled": {"second_factor_types": [*SECOND_FACTOR_TYPES, "email"]}},
    )
    assert run.ids("fail", "okta.user.mfa_enrolled") == {("okta.user.mfa_enrolled", "00u6q")}


def test_api_token_network_connections(okta):
    """``PolicyNetworkConnection`` ANYWHERE/ZONE: a ZONE condition that only excludes
    zones leaves the token usable from everywhere else (before the fix it passed)."""
    healthy_org(okta)
    okta.tokens.append(api_token("00Tanywhere", "00u0alice", connection="ANYWHERE"))
    excl = api_token("00Texclude", "00u0alice")
    excl["network"] = {"connection": "ZONE", "exclude": ["nzo9o4rctwQCJNE6y1d7"]}
    okta.tokens.append(excl)
    nonet = api_token("00Tnonet", "00u0alice")
    del nonet["network"]  # as the spec's ApiTokenListMetadataResponse's second token
    okta.tokens.append(nonet)
    allzones = api_token("00Tallzones", "00u0alice")
    allzones["network"] = {"connection": "ZONE", "include": ["ALL_IP_ZONES"]}
    okta.tokens.append(allzones)
    run = run_engine("okta", engine_options(okta))
    assert run.ids("fail", "okta.apitoken.network_restricted") == {
        ("okta.apitoken.network_restricted", t) for t in ("00Tanywhere", "00Texclude", "00Tnonet")
    }
    assert "only excludes" in run.one("okta.apitoken.network_restricted", "00Texclude").message


def test_user_statuses_are_each_judged(okta):
    """Every ``UserStatus`` of the spec maps to a verdict; a status it does not document is
    an ``error`` for the per-user checks, never a silent not-applicable."""
    healthy_org(okta)
    okta.add_user(okta_user("00u8prov", "prov@acme.example", "PROVISIONED", created=60), [])
    okta.add_user(okta_user("00u9odd", "odd@acme.example", "ACTIVATING_SOON"), [])
    run = run_engine("okta", engine_options(okta))
    assert ("okta.user.pending_activation", "00u8prov") in run.ids("fail")
    assert {cid for cid, rid in run.ids("error") if rid == "00u9odd"} == {
        "okta.user.mfa_enrolled",
        "okta.user.inactive",
        "okta.user.deprovisioned_no_access",
        "okta.user.pending_activation",
    }


def test_fake_responses_match_the_okta_spec(okta):
    """Every body the fake served in a full run validates against the spec's schemas."""
    healthy_org(okta)
    plant_verification_cases(okta)
    p, r = sign_on_policy("00pweak", require_factor=False, idle=720)
    okta.policies["OKTA_SIGN_ON"].append(p)
    okta.rules["00pweak"] = r
    run_engine("okta", engine_options(okta))
    schemas = [
        (r"/api/v1/users", openapi_schema("okta", "User", array=True)),
        (r"/api/v1/users/[^/]+/factors", openapi_schema("okta", "UserFactor", array=True)),
        (r"/api/v1/users/[^/]+/roles", openapi_schema("okta", "StandardRole", array=True)),
        (r"/api/v1/users/[^/]+", openapi_schema("okta", "User")),
        (r"/api/v1/iam/assignees/users", openapi_schema("okta", "RoleAssignedUsers")),
        (r"/api/v1/api-tokens", openapi_schema("okta", "ApiToken", array=True)),
        (r"/api/v1/policies", openapi_schema("okta", "Policy", array=True)),
        (r"/api/v1/policies/[^/]+/rules", openapi_schema("okta", "PolicyRule", array=True)),
    ]
    seen = set()
    for path, body in okta.served:
        schema = next(s for pattern, s in schemas if re.fullmatch(pattern, path))
        assert_valid(body, schema, path)
        seen.add(next(pattern for pattern, _ in schemas if re.fullmatch(pattern, path)))
    assert len(seen) == len(schemas)


def test_assurance_constraints_as_one_object():
    """The spec's examples answer ``constraints`` as one object, its schema as a list:
    both are read (``twofa-enabled-disallow-password-allow-phishing-response``)."""
    from connectors.okta.assurance import SECOND_FACTOR_METHODS, verification_weakness

    example = {
        "factorMode": "2FA",
        "type": "ASSURANCE",
        "reauthenticateIn": "PT0S",
        "constraints": {
            "knowledge": {
                "excludedAuthenticationMethods": {"key": "okta_password"},
                "required": False,
            },
            "possession": {"deviceBound": "REQUIRED", "required": True},
        },
    }
    assert verification_weakness(example, SECOND_FACTOR_METHODS) is None
    email_only = {**example, "constraints": {"possession": {"methods": ["EMAIL"]}}}
    assert "email" in (verification_weakness(email_only, SECOND_FACTOR_METHODS) or "")
    assert verification_weakness({"type": "NEW_KIND"}, SECOND_FACTOR_METHODS)
    assert verification_weakness(None, SECOND_FACTOR_METHODS) == "no verification method"
