"""The Okta connector: users and factors, policies, admin roles and API tokens of one org.

Configuration (``[[connectors]] type = "okta"``)::

    [connectors.options]
    org_url = "https://acme.okta.com"
    api_token = { env = "OKTA_API_TOKEN" }        # sent as "Authorization: SSWS …"
    # or: oauth_access_token = { file = "/run/secrets/okta-access-token" }   # Bearer
    pseudonymise = false                          # HMAC-SHA256 logins/emails
    # pseudonymise_key = { env = "ANNEXA_PSEUDONYM_KEY" }

Units (service = second segment of the resource types): ``admin``
(``okta.admin.summary``), ``apitoken`` (``okta.apitoken.token``), ``policy``
(``okta.policy.sign_on``, ``okta.policy.password``) and ``user``
(``okta.user.account``), all in region ``global`` of scope = the org's host name. Admins
and tokens are read first (small), so each user's evidence carries their roles and tokens.

TODO(oauth): obtain the access token ourselves with the client-credentials flow and a
``private_key_jwt`` client assertion (service app + scopes ``okta.users.read
okta.policies.read okta.roles.read okta.apiTokens.read``). Today an externally obtained
access token can be given as ``oauth_access_token``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from connectors.base import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from connectors.checks import REGISTRY, CheckSpec
from connectors.http import AuthHeaders, HttpClient, HttpOptions, check_url, token_auth
from connectors.okta import admins, apitokens, policies, users
from connectors.okta.common import GLOBAL, Pseudonymiser, run_unit
from connectors.records import Coverage, Record

SERVICES = ("admin", "apitoken", "policy", "user")


class OktaOptions(ConnectorOptions):
    org_url: str = Field(description="https://<org>.okta.com (or a custom domain)")
    api_token: SecretRef | None = Field(None, description="SSWS API token (read-only admin)")
    oauth_access_token: SecretRef | None = Field(
        None, description="OAuth 2.0 access token of a service app (Bearer)"
    )
    pseudonymise: bool = False
    pseudonymise_key: SecretRef | None = None
    page_size: int = Field(200, ge=1, le=200)
    max_workers: int = Field(4, ge=1, le=16, description="concurrent factor reads")
    http: HttpOptions = Field(default_factory=HttpOptions)

    @field_validator("org_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v).rstrip("/")

    @model_validator(mode="after")
    def _credentials(self) -> OktaOptions:
        if (self.api_token is None) == (self.oauth_access_token is None):
            raise ValueError("give exactly one of api_token or oauth_access_token")
        if self.pseudonymise and self.pseudonymise_key is None:
            raise ValueError("pseudonymise = true needs pseudonymise_key")
        return self


class OktaConnector(Connector):
    type = "okta"
    prefix = "okta"
    Options: ClassVar[type[ConnectorOptions]] = OktaOptions

    options: OktaOptions

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        return [s for s in REGISTRY if s.id.startswith("okta.")]

    @property
    def scope(self) -> str:
        return urlsplit(self.options.org_url).hostname or self.options.org_url

    def _auth(self) -> AuthHeaders:
        if self.options.api_token is not None:
            return token_auth("SSWS", self.options.api_token.get())
        assert self.options.oauth_access_token is not None
        return token_auth("Bearer", self.options.oauth_access_token.get())

    def _client(self, ctx: CollectContext, auth: AuthHeaders) -> HttpClient:
        return HttpClient(
            self.options.org_url,
            auth=auth,
            options=self.options.http,
            headers={"Accept": "application/json"},
            cancel_event=ctx.cancel_event,
        )

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = self.scope
        try:
            auth = self._auth()
            pseudo = Pseudonymiser(opts.pseudonymise_key.get() if opts.pseudonymise_key else None)
        except SecretUnavailableError as exc:
            for service in SERVICES:
                yield Coverage(scope, GLOBAL, service, ok=False, error=str(exc))
            return
        with self._client(ctx, auth) as http:
            admin_reader = admins.AdminReader(http, scope, pseudo)
            yield from run_unit(scope, "admin", admin_reader.read, ctx.cancelled)
            if ctx.cancelled():
                return
            token_reader = apitokens.ApiTokenReader(http, scope)
            yield from run_unit(scope, "apitoken", token_reader.read, ctx.cancelled)
            if ctx.cancelled():
                return
            yield from run_unit(
                scope, "policy", lambda: policies.read_policies(http, scope), ctx.cancelled
            )
            if ctx.cancelled():
                return
            yield from run_unit(
                scope,
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
                ctx.cancelled,
            )
