"""The Okta connector: users and factors, policies, admin roles and API tokens of one org.

Configuration (``[[connectors]] type = "okta"``)::

    [connectors.options]
    org_url = "https://acme.okta.com"
    api_token = { env = "OKTA_API_TOKEN" }        # sent as "Authorization: SSWS …"
    # or: oauth_access_token = { file = "/run/secrets/okta-access-token" }   # Bearer
    # or an API service app (client credentials + private_key_jwt), preferred:
    # oauth_client_id = "0oa1abcdefgh"
    # oauth_private_key = { file = "/run/secrets/okta-annexa.pem" }
    # oauth_key_id = "kid-of-the-public-key"      # when the app holds several keys
    pseudonymise = false                          # HMAC-SHA256 logins/emails
    # pseudonymise_key = { env = "ANNEXA_PSEUDONYM_KEY" }

Units (service = second segment of the resource types): ``admin``
(``okta.admin.summary``), ``apitoken`` (``okta.apitoken.token``), ``policy``
(``okta.policy.sign_on``, ``okta.policy.password``) and ``user``
(``okta.user.account``), all in region ``global`` of scope = the org's host name. Admins
and tokens are read first (small), so each user's evidence carries their roles and tokens.

With ``oauth_client_id`` the connector obtains its own access token: a client assertion
JWT (``iss = sub = client id``, ``aud`` = the token URL, 5 minutes) signed with the
app's private key is exchanged at ``{org_url}/oauth2/v1/token`` for a token of the
read-only ``oauth_scopes``, refreshed before it expires (Okta: one hour). A failure to
get the token makes every unit ``error`` with the reason.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from connectors.http import (
    AuthHeaders,
    HttpClient,
    HttpOptions,
    token_auth,
)
from connectors.identityshared import SignInConnector, units_in_turn
from connectors.kit import PseudonymiseOptions, Pseudonymiser, SourceURL, run_client
from connectors.oauth import bearer_signed_in, post_token_form, sign_jwt_rs256
from connectors.okta import admins, apitokens, policies, users
from connectors.okta.accounts import ACCOUNTS
from core.connector import (
    CollectContext,
    ConnectorOptions,
    SecretRef,
)
from core.records import Record

SERVICES = ("admin", "apitoken", "policy", "user")

#: Read-only scopes of the endpoints the connector calls: users and their factors
#: (okta.users.read), admin role assignments (okta.roles.read), policies and rules
#: (okta.policies.read), API tokens (okta.apiTokens.read).
DEFAULT_SCOPES = ["okta.users.read", "okta.roles.read", "okta.policies.read", "okta.apiTokens.read"]
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class OktaOptions(PseudonymiseOptions):
    org_url: SourceURL = Field(description="https://<org>.okta.com (or a custom domain)")
    api_token: SecretRef | None = Field(None, description="SSWS API token (read-only admin)")
    oauth_access_token: SecretRef | None = Field(
        None, description="OAuth 2.0 access token of a service app (Bearer)"
    )
    oauth_client_id: str | None = Field(
        None, min_length=1, description="client id of an API service app (private_key_jwt)"
    )
    oauth_private_key: SecretRef | None = Field(
        None, description="PEM RSA private key whose public key is registered on the app"
    )
    oauth_key_id: str | None = Field(None, description="kid of that key, if the app has several")
    oauth_scopes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES), min_length=1, description="granted scopes"
    )
    page_size: int = Field(200, ge=1, le=200)
    max_workers: int = Field(4, ge=1, le=16, description="concurrent factor reads")
    http: HttpOptions = Field(default_factory=HttpOptions)


    @model_validator(mode="after")
    def _credentials(self) -> OktaOptions:
        given = [
            name
            for name in ("api_token", "oauth_access_token", "oauth_client_id")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of api_token, oauth_access_token or oauth_client_id"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if (self.oauth_client_id is None) != (self.oauth_private_key is None):
            raise ValueError("oauth_client_id and oauth_private_key go together")
        return self


class OktaConnector(SignInConnector):
    type = "okta"
    prefix = "okta"
    Options: ClassVar[type[ConnectorOptions]] = OktaOptions
    #: Its accounts, for the identity analyzers (core/accounts.py).
    accounts = ACCOUNTS

    refused_services = SERVICES

    options: OktaOptions

    @property
    def scope(self) -> str:
        return urlsplit(self.options.org_url).hostname or self.options.org_url

    @property
    def token_url(self) -> str:
        return f"{self.options.org_url}/oauth2/v1/token"

    def _auth(self, ctx: CollectContext, stack: ExitStack) -> AuthHeaders:
        """The auth callable; for a service app, its first token is fetched here so a
        refused client fails the run up front (every unit ``error``)."""
        opts = self.options
        if opts.api_token is not None:
            return token_auth("SSWS", opts.api_token.get())
        if opts.oauth_access_token is not None:
            return token_auth("Bearer", opts.oauth_access_token.get())
        assert opts.oauth_client_id is not None and opts.oauth_private_key is not None
        client_id = opts.oauth_client_id
        key = opts.oauth_private_key.get()
        token_http = stack.enter_context(self._client(ctx, None))

        def fetch() -> tuple[str, float]:
            now = int(time.time())
            assertion = sign_jwt_rs256(
                {
                    "iss": client_id,
                    "sub": client_id,
                    "aud": self.token_url,
                    "iat": now,
                    "exp": now + 300,
                    "jti": uuid.uuid4().hex,
                },
                key,
                kid=opts.oauth_key_id,
            )
            return post_token_form(
                token_http,
                self.token_url,
                {
                    "grant_type": "client_credentials",
                    "scope": " ".join(opts.oauth_scopes),
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": assertion,
                },
            )

        return bearer_signed_in(fetch)

    def _client(self, ctx: CollectContext, auth: AuthHeaders | None) -> HttpClient:
        return run_client(self.options.org_url, auth, self.options.http, ctx)

    def _collect(
        self, ctx: CollectContext, http: HttpClient, pseudo: Pseudonymiser
    ) -> Iterator[Record]:
        opts = self.options
        scope = self.scope
        admin_reader = admins.AdminReader(http, scope, pseudo)
        token_reader = apitokens.ApiTokenReader(http, scope)
        units = (
            ("admin", admin_reader.read),
            ("apitoken", token_reader.read),
            ("policy", lambda: policies.read_policies(http, scope)),
            (
                "user",
                lambda: users.read_users(
                    http,
                    scope,
                    pseudo,
                    admin_roles=admin_reader.roles_by_user,
                    admin_error=admin_reader.error,
                    tokens_by_owner=token_reader.tokens_by_owner,
                    tokens_error=token_reader.error,
                    page_size=opts.page_size,
                    max_workers=opts.max_workers,
                    cancelled=ctx.cancelled,
                ),
            ),
        )
        yield from units_in_turn(scope, units, ctx.cancelled, source="okta")
