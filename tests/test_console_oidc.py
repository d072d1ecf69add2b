"""Console login through OpenID Connect (authlib) against a local fake provider.

The whole code flow runs over real sockets: the browser-side redirects are followed by
httpx, the console fetches discovery and JWKS and exchanges the code at the fake's
token endpoint. A token for another audience, an expired one, or a person with no role
opens no session.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from collector.console.auth import load_access
from tests.console_fixtures import Estate, LiveConsole, serve
from tests.oidc_fake import FakeOpenIdProvider

pytest_plugins = ["tests.console_fixtures"]

CLIENT_ID = "annexa-console"
SECRET = "oidc-client-secret-0123456789abcdef"


def access_file(tmp: Path, issuer: str) -> Path:
    path = tmp / "oidc-access.toml"
    path.write_text(
        'session_secret = { env = "ANNEXA_TEST_CONSOLE_SECRET" }\n'
        "[oidc]\n"
        f'issuer = "{issuer}"\nclient_id = "{CLIENT_ID}"\n'
        'client_secret = { env = "ANNEXA_TEST_OIDC_SECRET" }\n'
        '[oidc.roles]\n"auditor@example.test" = "auditor"\n'
    )
    return path


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> FakeOpenIdProvider:
    monkeypatch.setenv("ANNEXA_TEST_OIDC_SECRET", SECRET)
    monkeypatch.setenv("ANNEXA_TEST_CONSOLE_SECRET", "console-session-secret-for-tests-only")
    with FakeOpenIdProvider(CLIENT_ID, SECRET) as p:
        yield p


def console_for(estate: Estate, provider: FakeOpenIdProvider, tmp_path: Path) -> LiveConsole:
    """The console as ``annexa serve --auth FILE`` builds it when the file has ``[oidc]``."""
    from collector.console.oidc import OidcLogin

    access = load_access(access_file(tmp_path, provider.issuer))
    assert access.oidc is not None
    return serve(estate, comments=True, access=access, oidc=OidcLogin(access.oidc))


def test_oidc_login_opens_a_session_with_the_mapped_role(
    estate: Estate, provider: FakeOpenIdProvider, tmp_path: Path
) -> None:
    with console_for(estate, provider, tmp_path) as live, httpx.Client(
        base_url=live.url, follow_redirects=True, timeout=60
    ) as c:
        assert "oidc-login" in c.get("/login").text
        home = c.get("/login/oidc")
        assert home.status_code == 200 and str(home.url) == live.url + "/"
        assert "auditor@example.test · auditor" in home.text
        assert 'id="comment-form"' in c.get("/controls/A.8.32").text
    assert {"GET /.well-known/openid-configuration", "GET /jwks", "GET /authorize",
            "POST /token"} <= set(provider.requests)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"audience": "some-other-client"}, "aud"),
        ({"lifetime": -3600.0}, "expired"),
        ({"user": {"sub": "u-2", "email": "stranger@example.test"}}, "no role"),
    ],
)
def test_wrong_audience_expired_token_or_no_role_is_refused(
    estate: Estate, provider: FakeOpenIdProvider, tmp_path: Path, change: dict, why: str
) -> None:
    for k, v in change.items():
        setattr(provider, k, v)
    with console_for(estate, provider, tmp_path) as live, httpx.Client(
        base_url=live.url, follow_redirects=True, timeout=60
    ) as c:
        r = c.get("/login/oidc")
        assert r.status_code in (401, 403), (why, r.status_code)
        after = c.get("/", follow_redirects=False)
        assert after.status_code == 303 and after.headers["location"].startswith("/login")
    assert "POST /token" in provider.requests


def test_own_audience_and_expiry_checks_on_verified_claims() -> None:
    """Checked here as well as by authlib, with an explicit ``now``."""
    from starlette.exceptions import HTTPException

    from collector.console.auth import OidcEntry
    from collector.console.oidc import OidcLogin

    os.environ.setdefault("ANNEXA_TEST_OIDC_SECRET", SECRET)
    entry = OidcEntry.model_validate({
        "issuer": "http://127.0.0.1:1", "client_id": CLIENT_ID,
        "client_secret": {"env": "ANNEXA_TEST_OIDC_SECRET"},
        "roles": {"a@example.test": "admin"}, "default_role": "viewer",
    })
    login = OidcLogin(entry)
    now = 1_900_000_000.0
    ok = {"aud": [CLIENT_ID, "other"], "exp": now + 60, "sub": "s", "email": "a@example.test"}
    assert login.person(ok, now).role == "admin"
    assert login.person({**ok, "email": "b@example.test"}, now).role == "viewer"
    for bad in ({**ok, "aud": "other"}, {**ok, "exp": now}, {**ok, "exp": None}):
        with pytest.raises(HTTPException) as exc:
            login.person(bad, now)
        assert exc.value.status_code == 401
