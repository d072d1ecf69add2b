"""The Google Workspace connector against a fake Admin SDK + OAuth token endpoint.

Everything runs over real sockets on 127.0.0.1 with the real client libraries:
google-auth signs a JWT assertion with a freshly generated RSA service-account key and
exchanges it at the fake token endpoint, which *verifies* the signature and the claims
(issuer, delegated subject, scope, audience) before issuing a token; the connector then
reads the fake Directory API through the shared HTTP layer. The fake answers with the
Directory API's shapes as its discovery document describes them
(``googleapiclient/discovery_cache/documents/admin.directory_v1.json``, schemas ``Users``
and ``User``; ``test_fake_responses_match_the_discovery_document`` validates every body
served): ``kind``/``users``/``nextPageToken``, ``lastLoginTime``
``1970-01-01T00:00:00.000Z`` for never, Google error bodies. Like Google it answers a
``fields`` partial-response request with only the fields asked for, pages with opaque
``pageToken`` values, honours ``query=isAdmin=true``, omits ``users`` when empty, and
injects faults (429 + Retry-After, 5xx bursts, malformed JSON, a repeated page token).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.workspace import WorkspaceConnector, WorkspaceOptions
from connectors.workspace.auth import DIRECTORY_USER_READONLY
from core.records import Finding
from core.times import full_time
from tests.fakehttp import FAST_HTTP
from tests.harness import by_status, judge_payload, run_built
from tests.harness import coverage_by_service as coverage
from tests.harness import evidence_of as evidence
from tests.harness import stream as collect
from tests.keys import public_pem, throwaway_rsa
from tests.vendor_schemas import assert_valid, discovery_schema

pytestmark = pytest.mark.clock

TOKEN = "ya29.a0AfH6SMfake-workspace-access-token-0123456789"
KEY = "pseudonym-key-for-tests-0123456789"
ADMIN = "annexa-reader@acme.example"
CLIENT_EMAIL = "annexa@annexa-test.iam.gserviceaccount.com"
NOW = datetime.now(UTC)
NEVER = "1970-01-01T00:00:00.000Z"


def ts(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(scope="module")
def rsa_key() -> tuple[str, str]:
    """(private PEM, public PEM) of a throwaway service-account key."""
    private, key = throwaway_rsa()
    return private, public_pem(key).decode()


def gws_user(
    uid: str,
    email: str,
    *,
    enrolled: bool = True,
    enforced: bool = True,
    admin: bool = False,
    delegated: bool = False,
    suspended: bool = False,
    last: float | None = 2,
    created: float = 400,
) -> dict[str, Any]:
    first = email.split("@")[0]
    return {
        "kind": "admin#directory#user",
        "id": uid,
        "etag": f'"etag-{uid}"',
        "primaryEmail": email,
        "name": {"givenName": first.title(), "familyName": "Example", "fullName": first.title()},
        "isAdmin": admin,
        "isDelegatedAdmin": delegated,
        "lastLoginTime": ts(last) if last is not None else NEVER,
        "creationTime": ts(created),
        "agreedToTerms": True,
        "suspended": suspended,
        **({"suspensionReason": "ADMIN"} if suspended else {}),
        "archived": False,
        "changePasswordAtNextLogin": False,
        "ipWhitelisted": False,
        "emails": [{"address": email, "primary": True}],
        "phones": [{"value": "+44 20 7946 0000", "type": "work"}],
        "customerId": "C03az79cb",
        "orgUnitPath": "/Staff",
        "isMailboxSetup": True,
        "isEnrolledIn2Sv": enrolled,
        "isEnforcedIn2Sv": enforced,
        "includeInGlobalAddressList": True,
    }


def partial_response(body: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """Google's partial response for ``fields=a,b(c,d)`` (one level of nesting, as the
    connector asks): only the named keys, and inside lists only the named sub-keys."""
    if not fields:
        return body
    wanted: dict[str, set[str] | None] = {}
    for name, inner in re.findall(r"([A-Za-z]+)(?:\(([^)]*)\))?", fields):
        wanted[name] = set(inner.split(",")) if inner else None
    out: dict[str, Any] = {}
    for key, sub in wanted.items():
        if key not in body:
            continue
        value = body[key]
        if sub is not None and isinstance(value, list):
            value = [{k: v for k, v in item.items() if k in sub} for item in value]
        out[key] = value
    return out


class FakeGoogle:
    """OAuth token endpoint + Directory API users listing."""

    def __init__(self, server: HTTPServer, public_pem: str) -> None:
        self.server = server
        self.public_pem = public_pem
        self.page_cap = 2
        self.users: list[dict[str, Any]] = []
        self.delegation_granted = True
        self.faults: dict[str, list[tuple[int, str, dict[str, str]]]] = defaultdict(list)
        self.looping = False
        self.requests: list[str] = []
        #: (path, body) of every successful listing answer, for the schema test.
        self.served: list[tuple[str, Any]] = []
        self.assertions: list[dict[str, Any]] = []
        server.expect_request("/token", method="POST").respond_with_handler(self.token)
        server.expect_request(re.compile(r"^/admin/directory/v1/.*")).respond_with_handler(
            self.handle
        )

    @property
    def base(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def fault(self, path: str, *answers: tuple[int, str, dict[str, str]]) -> None:
        self.faults[path].extend(answers)

    def _json(self, body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    def token(self, request: Request) -> Response:
        import google.auth.jwt

        self.requests.append("/token")
        form = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._json({"error": "unsupported_grant_type"}, 400)
        try:
            # google-auth always addresses the assertion to Google's token endpoint,
            # whatever token_uri it posts to; Google checks exactly that audience.
            claims = google.auth.jwt.decode(
                form["assertion"],
                certs=self.public_pem,
                audience="https://oauth2.googleapis.com/token",
            )
        except Exception as exc:  # noqa: BLE001 - the fake answers like Google does
            return self._json({"error": "invalid_grant", "error_description": str(exc)}, 400)
        self.assertions.append(claims)
        if (
            not self.delegation_granted
            or claims.get("iss") != CLIENT_EMAIL
            or claims.get("sub") != ADMIN
            or claims.get("scope") != DIRECTORY_USER_READONLY
        ):
            return self._json(
                {
                    "error": "unauthorized_client",
                    "error_description": "Client is unauthorized to retrieve access tokens "
                    "using this method, or client not authorized for any of the scopes "
                    "requested.",
                },
                401,
            )
        return self._json({"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"})

    def _error(self, status: int, reason: str, message: str) -> Response:
        return self._json(
            {
                "error": {
                    "code": status,
                    "message": message,
                    "errors": [{"message": message, "domain": "global", "reason": reason}],
                }
            },
            status,
        )

    def handle(self, request: Request) -> Response:
        path = request.path
        self.requests.append(path)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(401, "authError", "Invalid Credentials")
        if self.faults.get(path):
            status, body, headers = self.faults[path].pop(0)
            return Response(body, status=status, headers=headers, content_type="application/json")
        if path != "/admin/directory/v1/users":
            return self._error(404, "notFound", "Not Found")
        args = request.args
        if args.get("customer") not in ("my_customer", "C03az79cb") and not args.get("domain"):
            return self._error(400, "badRequest", "Bad Request")
        users = self.users
        if args.get("query") == "isAdmin=true":
            users = [u for u in users if u["isAdmin"]]
        size = min(int(args.get("maxResults", 100)), self.page_cap)
        start = int(args.get("pageToken", "Q0FF-0").split("-")[1])
        chunk = users[start : start + size]
        body: dict[str, Any] = {"kind": "admin#directory#users", "etag": '"list-etag"'}
        if chunk:
            body["users"] = chunk
        if self.looping:
            body["nextPageToken"] = "Q0FF-0"
        elif start + size < len(users):
            body["nextPageToken"] = f"Q0FF-{start + size}"
        body = partial_response(body, args.get("fields"))
        self.served.append((path, body))
        return self._json(body)


@pytest.fixture
def google(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, rsa_key) -> FakeGoogle:
    httpserver.no_handler_status_code = 418
    private, public = rsa_key
    fake = FakeGoogle(httpserver, public)
    key = {
        "type": "service_account",
        "project_id": "annexa-test",
        "private_key_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
        "private_key": private,
        "client_email": CLIENT_EMAIL,
        "client_id": "108273645546372819201",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/annexa",
        "universe_domain": "googleapis.com",
    }
    monkeypatch.setenv("ANNEXA_TEST_GWS_KEY", json.dumps(key))
    monkeypatch.setenv("ANNEXA_TEST_PSEUDONYM_KEY", KEY)
    return fake


def healthy_domain(g: FakeGoogle) -> None:
    g.users += [
        gws_user("100000000000000000001", "alice@acme.example", admin=True, last=1),
        gws_user("100000000000000000002", "bob@acme.example", admin=True),
        gws_user("100000000000000000003", "carol@acme.example", delegated=True, last=40),
        gws_user("100000000000000000004", "dan@acme.example", last=10, created=10),
        gws_user("100000000000000000005", "new@acme.example", last=None, created=5),
        gws_user(
            "100000000000000000006", "eve@acme.example", suspended=True, enrolled=False, last=300
        ),
    ]


def connector(g: FakeGoogle, **options: Any) -> WorkspaceConnector:
    opts = {
        "admin_email": ADMIN,
        "service_account_key": {"env": "ANNEXA_TEST_GWS_KEY"},
        "directory_url": g.base,
        "oauth_url": f"{g.base}/token",
        "http": FAST_HTTP,
        **options,
    }
    return WorkspaceConnector("workspace-test", WorkspaceOptions.model_validate(opts))


USERS = "/admin/directory/v1/users"

# --------------------------------------------------------------------------- tests


def test_healthy_domain_passes_everything_across_pages(google):
    healthy_domain(google)
    run = run_built(connector(google))
    records = run.records
    cov = coverage(records)
    assert set(cov) == {"*", "admin", "user"} and all(c.ok for c in cov.values()), cov
    found = run.findings
    assert by_status(found, "fail") == set() and by_status(found, "error") == set()
    users = {e.resource_id: e.payload for e in evidence(records, "workspace.user.account")}
    assert len(users) == 6
    # 6 users at 2 a page = 3 pages, + 1 page of admins; one token for all of it.
    assert google.requests.count(USERS) == 4
    assert google.requests.count("/token") == 1
    claims = google.assertions[0]
    assert claims["sub"] == ADMIN and claims["scope"] == DIRECTORY_USER_READONLY
    alice = users["100000000000000000001"]
    assert alice["last_login"] == full_time(NOW - timedelta(days=1))
    assert alice["two_step_enrolled"] is True and alice["is_admin"] is True
    assert users["100000000000000000005"]["last_login"] is None  # 1970 = never
    admins = evidence(records, "workspace.admin.summary")[0].payload["super_admins"]
    assert [a["primary_email"] for a in admins] == ["alice@acme.example", "bob@acme.example"]
    assert {e.scope for e in evidence(records)} == {"acme.example"}


def test_planted_users_fail_exactly_their_checks(google):
    healthy_domain(google)
    google.users += [
        gws_user("200000000000000000001", "nomfa@acme.example", enrolled=False),
        gws_user("200000000000000000002", "optional@acme.example", enforced=False),
        gws_user("200000000000000000003", "idle@acme.example", last=120),
        gws_user("200000000000000000004", "ghost@acme.example", last=None, created=60),
        gws_user("200000000000000000005", "gone@acme.example", suspended=True, admin=True, last=30),
    ]
    for i in range(3):
        google.users.append(gws_user(f"30000000000000000000{i}", f"sa{i}@acme.example", admin=True))
    run = run_built(connector(google))
    records = run.records
    assert all(c.ok for c in coverage(records).values())
    found = run.findings
    assert by_status(found, "fail") == {
        ("workspace.user.two_step_enrolled", "200000000000000000001"),
        ("workspace.user.two_step_enforced", "200000000000000000002"),
        ("workspace.user.inactive", "200000000000000000003"),
        ("workspace.user.never_signed_in", "200000000000000000004"),
        ("workspace.user.suspended_no_admin", "200000000000000000005"),
        ("workspace.admin.super_admin_count", "super-admins"),
    }
    assert by_status(found, "error") == set()
    count = next(f for f in found if f.check_id == "workspace.admin.super_admin_count")
    assert "5 active super administrators (maximum 4)" in count.message
    assert "gone@" not in count.message  # the suspended super admin is not counted


def test_429_retry_after_then_success_and_5xx_burst(google):
    healthy_domain(google)
    google.fault(
        USERS,
        (429, '{"error":{"code":429,"message":"Rate Limit Exceeded"}}', {"Retry-After": "1"}),
        (503, "", {}),
        (502, "<html>bad gateway</html>", {}),
    )
    started = time.monotonic()
    run = run_built(connector(google))
    records = run.records
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert all(c.ok for c in coverage(records).values())
    assert by_status(run.findings, "fail") == set()
    assert google.requests.count(USERS) == 4 + 3  # 4 pages + 3 answers retried


def test_5xx_forever_is_an_error_for_that_unit(google):
    healthy_domain(google)
    google.fault(USERS, *[(503, "", {})] * 4)  # exhausts the admin listing's attempts
    run = run_built(connector(google))
    records = run.records
    cov = coverage(records)
    assert not cov["admin"].ok and "HTTP 503" in cov["admin"].error
    assert cov["user"].ok and cov["*"].ok
    assert {f.check_id for f in run.findings if f.status == "error"} == {
        "workspace.admin.super_admin_count"
    }


def test_malformed_json_fails_only_its_unit(google):
    healthy_domain(google)
    google.fault(USERS, (200, '{"kind": "admin#directory#users", "users": [', {}))
    run = run_built(connector(google))
    records = run.records
    cov = coverage(records)
    assert not cov["admin"].ok and "malformed JSON" in cov["admin"].error
    assert cov["user"].ok
    assert by_status(run.findings, "fail") == set()


def test_empty_customer(google):
    run = run_built(connector(google))
    records = run.records
    cov = coverage(records)
    assert set(cov) == {"*", "admin", "user"} and all(c.ok for c in cov.values())
    assert evidence(records, "workspace.user.account") == []
    assert {(f.check_id, f.status) for f in run.findings} == {
        ("workspace.admin.super_admin_count", "pass")
    }


def test_repeated_page_token_is_a_unit_error_not_a_hang(google):
    healthy_domain(google)
    google.looping = True
    records = collect(connector(google))
    cov = coverage(records)
    assert not cov["user"].ok and "pagination loop" in cov["user"].error
    assert not cov["admin"].ok and "*" not in cov


def test_delegation_not_granted_fails_the_whole_scope(google):
    healthy_domain(google)
    google.delegation_granted = False
    run = run_built(connector(google))
    records = run.records
    cov = coverage(records)
    assert set(cov) == {"*"} and not cov["*"].ok
    assert "unauthorized_client" in cov["*"].error
    assert USERS not in google.requests
    assert {f.status for f in run.findings} == {"error"}


def test_bad_key_is_reported_by_option_name(google, monkeypatch):
    monkeypatch.setenv("ANNEXA_TEST_GWS_KEY", '{"type": "authorized_user", "client_id": "x"}')
    cov = coverage(collect(connector(google)))
    assert "service_account_key is a 'authorized_user' credential" in cov["*"].error
    monkeypatch.setenv("ANNEXA_TEST_GWS_KEY", "not json at all")
    cov = coverage(collect(connector(google)))
    assert "service_account_key is not JSON" in cov["*"].error
    monkeypatch.delenv("ANNEXA_TEST_GWS_KEY")
    cov = coverage(collect(connector(google)))
    assert "ANNEXA_TEST_GWS_KEY" in cov["*"].error
    assert google.requests == []


def test_secrets_and_extra_personal_data_never_in_evidence(google, rsa_key):
    healthy_domain(google)
    records = collect(connector(google))
    private_body = rsa_key[0].splitlines()[1]
    for e in evidence(records):
        body = e.body()
        assert TOKEN not in body and private_body not in body
        assert "[REDACTED]" not in body
        assert "+44 20" not in body and "Example" not in body and "etag" not in body
    request = next(r for r, _ in google.server.log if r.path == USERS)
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "users(id,primaryEmail" in request.args["fields"]  # partial response requested


def test_pseudonymise_replaces_personal_identifiers(google):
    healthy_domain(google)
    records = collect(
        connector(google, pseudonymise=True, pseudonymise_key={"env": "ANNEXA_TEST_PSEUDONYM_KEY"})
    )
    bodies = " ".join(e.body() for e in evidence(records))
    assert "acme.example" not in bodies
    from connectors.kit import Pseudonymiser

    emails = {e.payload.get("primary_email") for e in evidence(records, "workspace.user.account")}
    assert Pseudonymiser(KEY)("alice@acme.example") in emails


def test_options_validation():
    base = {"admin_email": ADMIN, "service_account_key": {"env": "X"}}
    opts = WorkspaceOptions.model_validate(base)
    assert opts.scope == "acme.example" and opts.listing == {"customer": "my_customer"}
    assert WorkspaceOptions.model_validate({**base, "customer": "C03az79cb"}).scope == "C03az79cb"
    dom = WorkspaceOptions.model_validate({**base, "domain": "eu.acme.example"})
    assert dom.listing == {"domain": "eu.acme.example"} and dom.scope == "eu.acme.example"
    for bad in (
        {**base, "admin_email": "not-an-email"},
        {**base, "directory_url": "http://admin.googleapis.com"},
        {**base, "oauth_url": "ftp://x"},
        {**base, "customer": "someone"},
        {"admin_email": ADMIN},
        {**base, "pseudonymise": True},
        {**base, "unknown": 1},
    ):
        with pytest.raises(ValueError):
            WorkspaceOptions.model_validate(bad)


def judge(check_id: str, payload: dict, **params: Any) -> Finding:
    return judge_payload("acme.example", check_id, payload, **params)


def test_checks_on_payloads():
    user = {
        "id": "1",
        "primary_email": "u@x",
        "is_admin": False,
        "is_delegated_admin": False,
        "suspended": False,
        "archived": False,
        "created": ts(10),
        "last_login": None,
        "two_step_enrolled": None,
        "two_step_enforced": True,
    }
    f = judge("workspace.user.two_step_enrolled", user)
    assert f.status == "error" and "not returned" in f.message  # never a guessed verdict
    assert judge("workspace.user.never_signed_in", user).status == "pass"
    assert judge("workspace.user.never_signed_in", user, max_days_without_login=5).status == "fail"
    assert judge("workspace.user.inactive", user).status == "not_applicable"
    archived = {**user, "archived": True, "is_delegated_admin": True}
    f = judge("workspace.user.suspended_no_admin", archived)
    assert f.status == "fail" and "archived" in f.message and "delegated admin" in f.message
    unread = {"_errors": {"super_admins": "HTTP 403"}}
    assert judge("workspace.admin.super_admin_count", unread).status == "error"


def test_every_workspace_check_is_documented():
    specs = WorkspaceConnector.checks()
    assert len(specs) >= 5
    for s in specs:
        assert s.title and s.rationale and s.remediation and s.severity
        assert s.resource_type.split(".")[1] in {"admin", "user"}


def test_end_to_end_through_the_run_engine_into_the_store(google, engine):
    """Options → run engine → store on both databases; a second run after the user is
    deleted in Google closes its evidence (the unit was read cleanly)."""
    from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
    from collector.runner import run_connector
    from mappings.loader import load_mappings
    from store.queries import evidence_at, findings_at

    healthy_domain(google)
    google.users.append(gws_user("200000000000000000001", "nomfa@acme.example", enrolled=False))
    options = {
        "admin_email": ADMIN,
        "service_account_key": {"env": "ANNEXA_TEST_GWS_KEY"},
        "directory_url": google.base,
        "oauth_url": f"{google.base}/token",
        "http": {"max_attempts": 2, "retry_min_wait": 0},
    }
    cfg = ConnectorConfig(type="workspace", name="gws", options=options)
    lc = LoadedConnector(cfg, WorkspaceConnector, WorkspaceOptions.model_validate(options))
    settings = Settings(AnnexaConfig(), None)
    index = load_mappings()
    assert run_connector(settings, lc, engine, index).status == "succeeded"
    with engine.connect() as conn:
        mfa = {
            f["resource_id"]: f
            for f in findings_at(conn, check_id="workspace.user.two_step_enrolled")
        }
    assert mfa["200000000000000000001"]["status"] == "fail"
    assert "A.8.5" in mfa["200000000000000000001"]["controls"]
    google.users.pop()
    second = run_connector(settings, lc, engine, index)
    assert second.status == "succeeded" and second.counts["evidence_closed"] == 1
    with engine.connect() as conn:
        ids = {e["resource_id"] for e in evidence_at(conn, resource_type="workspace.user.account")}
    assert "200000000000000000001" not in ids and len(ids) == 6


def test_fake_responses_match_the_discovery_document(google):
    """Every listing the fake served validates against the discovery document's ``Users``
    schema, and holds only the partial-response fields the connector asked for."""
    healthy_domain(google)
    records = collect(connector(google))
    assert all(c.ok for c in coverage(records).values())
    schema = discovery_schema("workspace", "Users")
    assert len(google.served) == 4
    for path, body in google.served:
        assert_valid(body, schema, path)
        assert set(body) <= {"users", "nextPageToken"}
        for user in body.get("users", []):
            assert "phones" not in user and "name" not in user
