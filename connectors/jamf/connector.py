"""The Jamf Pro connector: the Macs of one Jamf Pro server, in the shared device model.

Configuration (``[[connectors]] type = "jamf"``)::

    [connectors.options]
    url = "https://acme.jamfcloud.com"
    auth = "api_client"                  # or "basic" (user account → bearer token)
    client_id = "c0ffee00-…"             # API client (Settings → API roles and clients)
    client_secret = { env = "ANNEXA_JAMF_CLIENT_SECRET" }
    # username = "annexa-reader"         # auth = "basic"
    # password = { env = "ANNEXA_JAMF_PASSWORD" }
    page_size = 2000                     # the API's maximum (the default)
    pseudonymise = false

Authentication, both ending in a short-lived bearer token cached and renewed before it
expires (:class:`connectors.oauth.CachedToken`):

* ``api_client`` — ``POST /api/oauth/token`` (client credentials; Jamf Pro 10.49+), the
  way Jamf recommends: the client's API role grants exactly the read privileges below;
* ``basic`` — ``POST /api/v1/auth/token`` with HTTP Basic credentials of a Jamf user
  account, answered ``{"token", "expires"}``.

One unit, ``computer`` (``jamf.computer.inventory``), scope = the server's host name.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from connectors.http import (
    AuthHeaders,
    HttpClient,
    HttpOptions,
    MalformedResponseError,
)
from connectors.identityshared import SignInConnector, reopening
from connectors.jamf import computers
from connectors.kit import PseudonymiseOptions, Pseudonymiser, SourceURL, run_client, run_unit
from connectors.oauth import bearer_signed_in, post_token_form
from core.connector import (
    CollectContext,
    ConnectorOptions,
    SecretRef,
)
from core.records import Record
from core.redaction import register_secret
from core.times import parse_time

SERVICES = ("computer",)


class JamfOptions(PseudonymiseOptions):
    url: SourceURL = Field(description="Jamf Pro server, e.g. https://acme.jamfcloud.com")
    auth: Literal["api_client", "basic"] = "api_client"
    client_id: str | None = Field(None, description="API client id (auth = api_client)")
    client_secret: SecretRef | None = None
    username: str | None = Field(None, description="Jamf user account (auth = basic)")
    password: SecretRef | None = None
    # 2000, the maximum Jamf Pro serves: a 10,000-Mac fleet in 5 calls, not 20
    # (benchmarks/calls.py flagged the former default of 500).
    page_size: int = Field(
        2000, ge=1, le=2000, description="computers per page (page-size; 2000 is the maximum)"
    )
    http: HttpOptions = Field(default_factory=HttpOptions)


    @model_validator(mode="after")
    def _credentials(self) -> JamfOptions:
        needs = {"api_client": ("client_id", "client_secret"), "basic": ("username", "password")}
        missing = [n for n in needs[self.auth] if getattr(self, n) is None]
        if missing:
            raise ValueError(f"auth = {self.auth!r} needs {' and '.join(missing)}")
        other = needs["basic" if self.auth == "api_client" else "api_client"]
        stray = [n for n in other if getattr(self, n) is not None]
        if stray:
            raise ValueError(f"{', '.join(stray)} given but auth = {self.auth!r}")
        return self


def _seconds_until(expires: Any, resp_url: str) -> float:
    """Seconds of life of a Jamf token from its ``expires`` timestamp."""
    try:
        return (parse_time(expires) - datetime.now(UTC)).total_seconds()
    except (ValueError, TypeError):
        raise MalformedResponseError(
            "the Jamf token answer has no valid expires time", url=resp_url
        ) from None


class JamfConnector(SignInConnector):
    type = "jamf"
    prefix = "jamf"
    Options: ClassVar[type[ConnectorOptions]] = JamfOptions

    options: JamfOptions

    @property
    def scope(self) -> str:
        return urlsplit(self.options.url).netloc

    def _client(self, ctx: CollectContext, auth: AuthHeaders | None) -> HttpClient:
        return run_client(self.options.url, auth, self.options.http, ctx)

    def _auth(self, ctx: CollectContext, stack: ExitStack) -> AuthHeaders:
        opts = self.options
        token_http = stack.enter_context(self._client(ctx, None))
        if opts.auth == "api_client":
            assert opts.client_id is not None and opts.client_secret is not None
            form = {
                "grant_type": "client_credentials",
                "client_id": opts.client_id,
                "client_secret": opts.client_secret.get(),
            }

            def fetch() -> tuple[str, float]:
                return post_token_form(token_http, "/api/oauth/token", form)

        else:
            assert opts.username is not None and opts.password is not None
            pair = f"{opts.username}:{opts.password.get()}".encode()
            basic = "Basic " + base64.b64encode(pair).decode("ascii")
            register_secret(basic.removeprefix("Basic "))

            def fetch() -> tuple[str, float]:
                # Read-only in effect (it issues a token); retried like any request.
                resp = token_http.request(
                    "POST", "/api/v1/auth/token", headers={"Authorization": basic}
                )
                body = resp.json()
                token = body.get("token") if isinstance(body, dict) else None
                if not isinstance(token, str) or not token:
                    raise MalformedResponseError(
                        "the Jamf token answer has no token", url=str(resp.url)
                    )
                register_secret(token)
                return token, _seconds_until(body.get("expires"), str(resp.url))

        return bearer_signed_in(fetch)

    def _collect(
        self, ctx: CollectContext, http: HttpClient, pseudo: Pseudonymiser
    ) -> Iterator[Record]:
        opts = self.options
        scope = self.scope
        read = run_unit(
            scope,
            "computer",
            lambda: computers.read_computers(
                http, scope, pseudo, page_size=opts.page_size, cancelled=ctx.cancelled
            ),
            ctx.cancelled,
            source="jamf",
        )
        yield from reopening(scope, read, ctx.cancelled)
