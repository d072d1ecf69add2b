"""OAuth / GitHub App authentication of the REST connectors, against fake token endpoints.

Each fake token endpoint verifies what a real one verifies (the client assertion's or app
JWT's RS256 signature with the registered public key and its claims, or the form fields)
and issues short-lived tokens; the fake API then accepts only an issued, unexpired token.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.github import GitHubOptions
from connectors.http import HttpClient
from connectors.oauth import (
    CachedToken,
    InvalidPrivateKeyError,
    bearer,
    post_token_form,
    sign_jwt_rs256,
)
from connectors.okta import OktaOptions
from connectors.servicenow import ServiceNowOptions
from core.connector import CollectContext
from core.records import Coverage, Evidence, Record
from tests import test_github as gh_t
from tests import test_okta as okta_t
from tests import test_servicenow as sn_t
from tests.harness import by_check, run_built
from tests.keys import throwaway_rsa

CLIENT_ID = "0oaAnnexaServiceApp"
SN_CLIENT_SECRET = "sn-client-secret-0123456789abcdef"
APP_ID = 424242
INSTALLATION = 777


@pytest.fixture(scope="module")
def rsa_key() -> tuple[str, Any]:
    pem, key = throwaway_rsa()
    return pem, key.public_key()


class Issuer:
    """Issues distinct tokens with a lifetime, and says whether a bearer is valid now."""

    def __init__(self, prefix: str, expires_in: int) -> None:
        self.prefix = prefix
        self.expires_in = expires_in
        self.issued: dict[str, float] = {}
        self.forms: list[dict[str, str]] = []
        self.refuse = False
        self._n = itertools.count(1)

    def issue(self) -> str:
        token = f"{self.prefix}{next(self._n):04d}abcdefghijklmnopqrstuvwxyz"
        self.issued[token] = time.time() + self.expires_in
        return token

    def valid(self, header: str) -> bool:
        token = header.removeprefix("Bearer ")
        return header.startswith("Bearer ") and self.issued.get(token, 0) > time.time()


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _translating(base: type, issuer: Issuer, accepted: str) -> type:
    """``base`` fake whose API accepts only the issuer's valid tokens (then answers as if
    given its own fixed credential)."""

    class Fake(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.bearers: list[str] = []
            super().__init__(*args, **kwargs)

        def handle(self, request: Request) -> Response:
            header = request.headers.get("Authorization", "")
            self.bearers.append(header)
            if not issuer.valid(header):
                return _json({"message": "Bad credentials"}, 401)
            environ = dict(request.environ)
            environ["HTTP_AUTHORIZATION"] = accepted
            return super().handle(Request(environ))

    return Fake


def _text(records: list[Record]) -> str:
    return " ".join(
        r.body() if isinstance(r, Evidence) else str(getattr(r, "error", "")) for r in records
    )


def _collect(conn: Any) -> list[Record]:
    return list(conn.collect(CollectContext(run_id="test")))


def _coverage(records: list[Record]) -> dict[str, Coverage]:
    return {r.service: r for r in records if isinstance(r, Coverage)}


# --------------------------------------------------------------------------- the module


def test_cached_token_refreshes_within_margin_and_registers_secret():
    now = [1000.0]
    tokens = iter(["first-token-abcdef", "second-token-abcdef"])
    source = CachedToken(lambda: (next(tokens), 120), margin=60, clock=lambda: now[0])
    auth = bearer(source)
    assert auth() == {"Authorization": "Bearer first-token-abcdef"}
    now[0] += 59  # 61 s left: still cached
    assert auth()["Authorization"].endswith("first-token-abcdef")
    now[0] += 2  # 59 s left: refreshed
    assert auth()["Authorization"].endswith("second-token-abcdef")
    assert source.fetches == 2
    from core.redaction import scrub_text

    assert "second-token-abcdef" not in scrub_text("x second-token-abcdef y")


def test_sign_jwt_rs256_verifies_and_bad_key_is_clear(rsa_key):
    pem, public = rsa_key
    token = sign_jwt_rs256({"iss": "a", "exp": int(time.time()) + 60}, pem, kid="k1")
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    assert jwt.decode(token, public, algorithms=["RS256"])["iss"] == "a"
    with pytest.raises(InvalidPrivateKeyError, match="RSA private key in PEM") as exc:
        sign_jwt_rs256({"iss": "a"}, "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----")
    assert "nope" not in str(exc.value)


def test_post_token_form_sends_a_form_body(httpserver: HTTPServer):
    seen: list[dict[str, str]] = []

    def token(request: Request) -> Response:
        assert request.content_type.startswith("application/x-www-form-urlencoded")
        seen.append(dict(request.form))
        return _json({"access_token": "form-token-0123456789", "expires_in": 30})

    httpserver.expect_request("/token", method="POST").respond_with_handler(token)
    with HttpClient(httpserver.url_for("/")) as http:
        assert post_token_form(http, "/token", {"grant_type": "x", "a b": "c&d"}) == (
            "form-token-0123456789",
            30.0,
        )
    assert seen == [{"grant_type": "x", "a b": "c&d"}]


# --------------------------------------------------------------------------- Okta


def _okta_token_endpoint(httpserver: HTTPServer, issuer: Issuer, public: Any) -> None:
    url = httpserver.url_for("/oauth2/v1/token")

    def token(request: Request) -> Response:
        form = dict(request.form)
        issuer.forms.append(form)
        if issuer.refuse:
            return _json({"error": "invalid_client", "error_description": "refused"}, 401)
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        )
        assert set(form["scope"].split()) == {
            "okta.users.read",
            "okta.roles.read",
            "okta.policies.read",
            "okta.apiTokens.read",
        }
        claims = jwt.decode(
            form["client_assertion"],
            public,
            algorithms=["RS256"],
            audience=url.rstrip("/"),
            options={"require": ["exp", "iat", "iss", "sub", "jti"]},
        )
        assert claims["iss"] == claims["sub"] == CLIENT_ID
        assert 0 < claims["exp"] - claims["iat"] <= 300
        assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "kid-1"
        return _json(
            {
                "token_type": "Bearer",
                "expires_in": issuer.expires_in,
                "access_token": issuer.issue(),
            }
        )

    httpserver.expect_request("/oauth2/v1/token", method="POST").respond_with_handler(token)


def _okta(httpserver: HTTPServer, monkeypatch, rsa_key, expires_in: int):
    pem, public = rsa_key
    issuer = Issuer("eyJokta", expires_in)
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_OKTA_KEY", pem)
    monkeypatch.setenv("ANNEXA_TEST_PSEUDONYM_KEY", okta_t.KEY)
    _okta_token_endpoint(httpserver, issuer, public)
    fake = _translating(okta_t.FakeOkta, issuer, f"SSWS {okta_t.TOKEN}")(httpserver)
    okta_t.healthy_org(fake)
    conn = okta_t.connector(
        fake,
        api_token=None,
        oauth_client_id=CLIENT_ID,
        oauth_private_key={"env": "ANNEXA_TEST_OKTA_KEY"},
        oauth_key_id="kid-1",
    )
    return issuer, fake, conn


def test_okta_service_app_token_cached(httpserver, monkeypatch, rsa_key):
    issuer, fake, conn = _okta(httpserver, monkeypatch, rsa_key, expires_in=3600)
    records = _collect(conn)
    cov = _coverage(records)
    assert set(cov) == {"admin", "apitoken", "policy", "user"}
    assert all(c.ok for c in cov.values()), cov
    assert len(issuer.issued) == 1  # one token for the whole run
    (token,) = issuer.issued
    assert fake.bearers and set(fake.bearers) == {f"Bearer {token}"}
    assert token not in _text(records)


def test_okta_token_refreshed_before_expiry(httpserver, monkeypatch, rsa_key):
    # 30 s of life is under the 60 s margin: every request needs a new token
    issuer, fake, conn = _okta(httpserver, monkeypatch, rsa_key, expires_in=30)
    records = _collect(conn)
    assert all(c.ok for c in _coverage(records).values())
    assert len(issuer.issued) > 2
    assert len({b for b in fake.bearers}) > 2
    assert all(issuer.valid(b) for b in fake.bearers)
    text = _text(records)
    assert not any(t in text for t in issuer.issued)


def test_okta_token_refused_is_an_error_for_every_unit(httpserver, monkeypatch, rsa_key):
    issuer, fake, conn = _okta(httpserver, monkeypatch, rsa_key, expires_in=3600)
    issuer.refuse = True
    records = _collect(conn)
    cov = _coverage(records)
    assert set(cov) == {"admin", "apitoken", "policy", "user"}
    assert not any(c.ok for c in cov.values())
    assert all("HTTP 401" in (c.error or "") and "refused" in (c.error or "") for c in cov.values())
    assert fake.bearers == []  # no API call without a token
    assert len(issuer.forms) == 1  # a 401 is not retried
    assert rsa_key[0] not in _text(records)


def test_okta_options_exactly_one_credential():
    base = {"org_url": "https://acme.okta.com"}
    key = {"env": "K"}
    OktaOptions.model_validate({**base, "oauth_client_id": "c", "oauth_private_key": key})
    with pytest.raises(ValueError, match="exactly one of api_token, oauth_access_token"):
        OktaOptions.model_validate(
            {**base, "api_token": key, "oauth_client_id": "c", "oauth_private_key": key}
        )
    with pytest.raises(ValueError, match="exactly one"):
        OktaOptions.model_validate(base)
    with pytest.raises(ValueError, match="go together"):
        OktaOptions.model_validate({**base, "oauth_client_id": "c"})
    with pytest.raises(ValueError, match="go together"):
        OktaOptions.model_validate({**base, "api_token": key, "oauth_private_key": key})


# --------------------------------------------------------------------------- GitHub


def _github(httpserver: HTTPServer, monkeypatch, rsa_key, *, expires_in: int, lookup: bool):
    pem, public = rsa_key
    issuer = Issuer("ghs_", expires_in)
    calls: list[str] = []
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_GH_KEY", pem)
    monkeypatch.setenv("ANNEXA_TEST_PSEUDONYM_KEY", gh_t.KEY)

    def app_jwt_ok(request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        claims = jwt.decode(
            header.removeprefix("Bearer "),
            public,
            algorithms=["RS256"],
            options={"require": ["exp", "iat", "iss"]},
        )
        assert claims["iss"] == str(APP_ID)
        assert claims["exp"] - claims["iat"] <= 600
        return True

    def installation(request: Request) -> Response:
        calls.append(request.path)
        app_jwt_ok(request)
        return _json({"id": INSTALLATION, "account": {"login": gh_t.ORG}, "app_id": APP_ID})

    def access_token(request: Request) -> Response:
        calls.append(request.path)
        if issuer.refuse:
            return _json({"message": "A JSON web token could not be decoded"}, 401)
        app_jwt_ok(request)
        expires = datetime.now(UTC) + timedelta(seconds=expires_in)
        return _json(
            {"token": issuer.issue(), "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}, 201
        )

    # registered before the fake's catch-all /orgs/… handler, so matched first
    httpserver.expect_request(f"/orgs/{gh_t.ORG}/installation").respond_with_handler(installation)
    httpserver.expect_request(
        f"/app/installations/{INSTALLATION}/access_tokens", method="POST"
    ).respond_with_handler(access_token)
    fake = _translating(gh_t.FakeGitHub, issuer, f"Bearer {gh_t.TOKEN}")(httpserver)
    gh_t.healthy_org(fake)
    extra = {} if lookup else {"installation_id": INSTALLATION}
    conn = gh_t.connector(
        fake, token=None, app_id=APP_ID, app_private_key={"env": "ANNEXA_TEST_GH_KEY"}, **extra
    )
    return issuer, fake, conn, calls


def test_github_app_with_installation_lookup(httpserver, monkeypatch, rsa_key):
    issuer, fake, conn, calls = _github(
        httpserver, monkeypatch, rsa_key, expires_in=3600, lookup=True
    )
    records = _collect(conn)
    cov = _coverage(records)
    assert len(cov) == 7 and all(c.ok for c in cov.values()), cov  # 7 GitHub units
    assert calls == [
        f"/orgs/{gh_t.ORG}/installation",
        f"/app/installations/{INSTALLATION}/access_tokens",
    ]
    (token,) = issuer.issued
    assert set(fake.bearers) == {f"Bearer {token}"}
    assert token not in _text(records)


def test_github_installation_token_refreshed(httpserver, monkeypatch, rsa_key):
    issuer, fake, conn, calls = _github(
        httpserver, monkeypatch, rsa_key, expires_in=30, lookup=False
    )
    records = _collect(conn)
    assert all(c.ok for c in _coverage(records).values())
    assert f"/orgs/{gh_t.ORG}/installation" not in calls  # installation_id given
    assert len(issuer.issued) > 2 and all(issuer.valid(b) for b in fake.bearers)


def test_github_app_refused_is_an_error_for_every_unit(httpserver, monkeypatch, rsa_key):
    issuer, fake, conn, _ = _github(httpserver, monkeypatch, rsa_key, expires_in=3600, lookup=False)
    issuer.refuse = True
    cov = _coverage(_collect(conn))
    assert len(cov) == 7  # every GitHub unit
    assert all(not c.ok and "HTTP 401" in (c.error or "") for c in cov.values())
    assert fake.bearers == []


def test_github_options_exactly_one_credential():
    base = {"organization": "acme"}
    key = {"env": "K"}
    GitHubOptions.model_validate({**base, "app_id": 1, "app_private_key": key})
    for bad in (
        {},
        {"token": key, "app_id": 1, "app_private_key": key},
        {"app_id": 1},
        {"token": key, "installation_id": 3},
    ):
        with pytest.raises(ValueError, match="app_id"):
            GitHubOptions.model_validate({**base, **bad})


# --------------------------------------------------------------------------- ServiceNow


def _servicenow(httpserver: HTTPServer, monkeypatch, *, expires_in: int, user: bool):
    issuer = Issuer("sn-access-", expires_in)
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_SN_PASSWORD", sn_t.PASSWORD)
    monkeypatch.setenv("ANNEXA_TEST_SN_SECRET", SN_CLIENT_SECRET)

    def token(request: Request) -> Response:
        form = dict(request.form)
        issuer.forms.append(form)
        if issuer.refuse or form.get("client_secret") != SN_CLIENT_SECRET:
            return _json({"error_description": "access_denied", "error": "server_error"}, 401)
        assert form["client_id"] == CLIENT_ID
        if user:
            assert form["grant_type"] == "password"
            assert (form["username"], form["password"]) == (sn_t.USER, sn_t.PASSWORD)
        else:
            assert form["grant_type"] == "client_credentials"
            assert "username" not in form and "password" not in form
        return _json(
            {
                "access_token": issuer.issue(),
                "refresh_token": "sn-refresh-token-unused-012345",
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": issuer.expires_in,
            }
        )

    httpserver.expect_request("/oauth_token.do", method="POST").respond_with_handler(token)
    fake = _translating(sn_t.FakeServiceNow, issuer, f"Bearer {sn_t.OAUTH}")(httpserver, oauth=True)
    expected = sn_t.plant(fake)
    extra: dict[str, Any] = {
        "token": None,
        "oauth_client_id": CLIENT_ID,
        "oauth_client_secret": {"env": "ANNEXA_TEST_SN_SECRET"},
    }
    if user:
        extra.update(username=sn_t.USER, password={"env": "ANNEXA_TEST_SN_PASSWORD"})
    return issuer, fake, sn_t.connector(fake, **extra), expected


@pytest.mark.parametrize("user", [True, False])
def test_servicenow_oauth_grants(httpserver, monkeypatch, user):
    issuer, fake, conn, expected = _servicenow(httpserver, monkeypatch, expires_in=1800, user=user)
    run = run_built(conn)
    assert by_check(run.findings) == expected
    (token,) = issuer.issued
    assert set(fake.bearers) == {f"Bearer {token}"}
    text = _text(run.records)
    assert token not in text and SN_CLIENT_SECRET not in text


def test_servicenow_token_refreshed(httpserver, monkeypatch):
    issuer, fake, conn, expected = _servicenow(httpserver, monkeypatch, expires_in=30, user=False)
    run = run_built(conn)
    assert by_check(run.findings) == expected
    assert len(issuer.issued) > 2 and all(issuer.valid(b) for b in fake.bearers)


def test_servicenow_token_refused_is_an_error_for_every_process(httpserver, monkeypatch):
    issuer, fake, conn, _ = _servicenow(httpserver, monkeypatch, expires_in=1800, user=True)
    issuer.refuse = True
    records = _collect(conn)
    cov = _coverage(records)
    assert set(cov) == {p["kind"] for p in sn_t.processes()}
    assert all(not c.ok and "HTTP 401" in (c.error or "") for c in cov.values())
    assert fake.bearers == []
    text = _text(records)
    assert SN_CLIENT_SECRET not in text and sn_t.PASSWORD not in text


def test_servicenow_options():
    base = {"instance_url": "https://acme.service-now.com", "processes": [{"kind": "change"}]}
    key = {"env": "K"}
    ServiceNowOptions.model_validate({**base, "oauth_client_id": "c", "oauth_client_secret": key})
    with pytest.raises(ValueError, match="oauth_client_secret"):
        ServiceNowOptions.model_validate({**base, "oauth_client_id": "c"})
    with pytest.raises(ValueError, match="not both"):
        ServiceNowOptions.model_validate(
            {**base, "oauth_client_id": "c", "oauth_client_secret": key, "token": key}
        )
