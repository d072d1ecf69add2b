"""Log in through an OpenID Connect provider (authlib), the authorization code flow.

``[oidc]`` in the access file names the issuer (discovery at
``{issuer}/.well-known/openid-configuration``), the client id, the client secret by
reference, and who gets which role (by e-mail or subject). authlib fetches the
discovery document and the JWKS, exchanges the code at the token endpoint, and checks
the ID token: signature (RS256 by the provider's keys), issuer, audience (our client
id), expiry, issued-at and nonce. The audience and expiry are checked once more here,
explicitly, because a token for another client or an old one must never open a session
whatever a library's defaults become. Someone the role map does not list gets
``default_role``, or is refused when there is none.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from collector.console.auth import OidcEntry, Person

log = structlog.get_logger("annexa.console")


class OidcLogin:
    """The two routes of the code flow: ``/login/oidc`` and ``/login/oidc/callback``."""

    def __init__(self, entry: OidcEntry) -> None:
        from authlib.integrations.starlette_client import OAuth

        self.entry = entry
        self.oauth = OAuth()
        self.client = self.oauth.register(
            name="annexa",
            client_id=entry.client_id,
            client_secret=entry.client_secret.get(),
            server_metadata_url=entry.issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": "openid email profile", "timeout": 10},
        )

    def routes(self) -> list[Route]:
        return [
            Route("/login/oidc", self.start),
            Route("/login/oidc/callback", self.callback, name="oidc_callback"),
        ]

    async def start(self, request: Request) -> Response:
        from collector.console.app import _safe_next

        request.session["oidc_next"] = _safe_next(request.query_params.get("next"))
        redirect_uri = str(request.url_for("oidc_callback"))
        return await self.client.authorize_redirect(request, redirect_uri)

    def person(self, claims: dict[str, Any], now: float) -> Person:
        """Who the verified ID token says this is, with their role; raise 401/403 if not."""
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if self.entry.client_id not in auds:
            raise HTTPException(401, "the identity token was issued for another client")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= now:
            raise HTTPException(401, "the identity token has expired")
        email, sub = claims.get("email"), str(claims.get("sub") or "")
        role = (self.entry.roles.get(email) if isinstance(email, str) else None) or (
            self.entry.roles.get(sub)
        ) or self.entry.default_role
        if role is None:
            raise HTTPException(403, "your account has no role on this console")
        return Person(str(email or sub), role)

    async def callback(self, request: Request) -> Response:
        from authlib.common.errors import AuthlibBaseError
        from joserfc.errors import JoseError

        from collector.console.app import _start_session

        console = request.app.state.console
        try:
            token = await self.client.authorize_access_token(request)
        except (AuthlibBaseError, JoseError) as exc:
            log.warning("oidc login refused", reason=type(exc).__name__)
            raise HTTPException(401, f"login refused by the identity check: {exc}") from None
        claims = dict(token.get("userinfo") or {})
        if not claims:
            raise HTTPException(401, "the provider returned no identity token")
        who = self.person(claims, time.time())
        nxt = request.session.get("oidc_next") or "/"
        _start_session(request, console, who)
        log.info("login", user=who.user, role=who.role, via="oidc")
        return RedirectResponse(nxt, status_code=303)
