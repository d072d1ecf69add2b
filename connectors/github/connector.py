"""The GitHub connector: one organisation on github.com or GitHub Enterprise Server.

Configuration (``[[connectors]] type = "github"``)::

    [connectors.options]
    organization = "acme"
    api_url = "https://api.github.com"            # GHES: "https://ghe.example.com/api/v3"
    token = { env = "GITHUB_TOKEN" }              # fine-grained or classic PAT (Bearer)
    # or, preferred, a GitHub App installed on the organisation:
    # app_id = 123456
    # app_private_key = { file = "/run/secrets/annexa-github-app.pem" }
    # installation_id = 7890123                   # optional: looked up when absent
    include_archived = true
    pseudonymise = false                          # HMAC-SHA256 logins
    # pseudonymise_key = { env = "ANNEXA_PSEUDONYM_KEY" }

Units (service = second segment of the resource types), region ``global``, scope = the
organisation login: ``org`` (``github.org.settings``), ``member``
(``github.member.account``), ``collaborator`` (``github.collaborator.outside``), ``repo``
(``github.repo.repository``), ``dependabot`` (``github.dependabot.alert``),
``codescanning`` (``github.codescanning.alert``) and ``secretscanning``
(``github.secretscanning.alert``).

As a GitHub App the connector signs an app JWT (RS256, ``iss`` = app id, 9 minutes),
finds the installation on the organisation (``GET /orgs/{org}/installation``) unless
``installation_id`` is given, and exchanges the JWT for an installation access token
(``POST /app/installations/{id}/access_tokens``, one hour), refreshed before it
expires. A failure to get the token makes every unit ``error`` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import Field, model_validator

from connectors.github import alerts, org, repos
from connectors.github.accounts import ACCOUNTS
from connectors.http import (
    AuthHeaders,
    HttpClient,
    HttpOptions,
    MalformedResponseError,
    token_auth,
)
from connectors.identityshared import SignInConnector, units_in_turn
from connectors.kit import PseudonymiseOptions, Pseudonymiser, SourceURL, run_client
from connectors.oauth import bearer_signed_in, sign_jwt_rs256
from core.connector import (
    CollectContext,
    ConnectorOptions,
    SecretRef,
)
from core.records import Record

SERVICES = (
    "org",
    "member",
    "collaborator",
    "repo",
    "dependabot",
    "codescanning",
    "secretscanning",
)
API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHubOptions(PseudonymiseOptions):
    organization: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$")
    api_url: SourceURL = "https://api.github.com"
    token: SecretRef | None = Field(None, description="PAT (Bearer); or the app_* options")
    app_id: int | None = Field(None, ge=1, description="GitHub App id (authenticate as the app)")
    app_private_key: SecretRef | None = Field(None, description="the app's PEM private key")
    installation_id: int | None = Field(
        None, ge=1, description="the app's installation on the organisation; looked up if absent"
    )
    include_archived: bool = True
    max_workers: int = Field(4, ge=1, le=16, description="concurrent per-repository reads")
    http: HttpOptions = Field(default_factory=HttpOptions)


    @model_validator(mode="after")
    def _credentials(self) -> GitHubOptions:
        app = self.app_id is not None or self.app_private_key is not None
        if app and (self.app_id is None or self.app_private_key is None):
            raise ValueError("GitHub App auth needs both app_id and app_private_key")
        if self.installation_id is not None and not app:
            raise ValueError("installation_id needs app_id and app_private_key")
        if app == (self.token is not None):
            raise ValueError("give exactly one of token or app_id + app_private_key")
        return self


class GitHubConnector(SignInConnector):
    type = "github"
    prefix = "github"
    Options: ClassVar[type[ConnectorOptions]] = GitHubOptions
    #: Its accounts, for the identity analyzers (core/accounts.py).
    accounts = ACCOUNTS

    refused_services = SERVICES

    options: GitHubOptions

    @property
    def scope(self) -> str:
        return self.options.organization

    def _client(self, ctx: CollectContext, auth: AuthHeaders | None) -> HttpClient:
        return run_client(self.options.api_url, auth, self.options.http, ctx, API_HEADERS)

    def _auth(self, ctx: CollectContext, stack: ExitStack) -> AuthHeaders:
        """The auth callable; as an app, the first installation token is fetched here so
        a refused app fails the run up front (every unit ``error``)."""
        opts = self.options
        if opts.token is not None:
            return token_auth("Bearer", opts.token.get())
        assert opts.app_id is not None and opts.app_private_key is not None
        app_id = opts.app_id
        key = opts.app_private_key.get()

        def app_jwt() -> Mapping[str, str]:
            now = int(time.time())
            claims = {"iss": str(app_id), "iat": now - 60, "exp": now + 540}
            return {"Authorization": f"Bearer {sign_jwt_rs256(claims, key)}"}

        app_http = stack.enter_context(self._client(ctx, app_jwt))
        installation: list[int] = [opts.installation_id] if opts.installation_id else []

        def fetch() -> tuple[str, float]:
            if not installation:
                body = app_http.get_json(f"/orgs/{opts.organization}/installation")
                iid = body.get("id") if isinstance(body, Mapping) else None
                if not isinstance(iid, int) or isinstance(iid, bool):
                    raise MalformedResponseError(
                        "the organisation's installation has no numeric id",
                        url=f"{opts.api_url}/orgs/{opts.organization}/installation",
                    )
                installation.append(iid)
            resp = app_http.request("POST", f"/app/installations/{installation[0]}/access_tokens")
            return _installation_token(resp.json(), str(resp.url))

        return bearer_signed_in(fetch)

    def _collect(
        self, ctx: CollectContext, http: HttpClient, pseudo: Pseudonymiser
    ) -> Iterator[Record]:
        opts = self.options
        scope = self.scope
        owners = org.Owners(http, scope)  # one listing for the org and member units
        units = (
            ("org", lambda: org.read_org(http, scope, pseudo, owners)),
            ("member", lambda: org.read_members(http, scope, pseudo, owners)),
            ("collaborator", lambda: org.read_collaborators(http, scope, pseudo)),
            (
                "repo",
                lambda: repos.read_repos(
                    http,
                    scope,
                    include_archived=opts.include_archived,
                    max_workers=opts.max_workers,
                    cancelled=ctx.cancelled,
                    pseudo=pseudo,
                ),
            ),
            ("dependabot", lambda: alerts.read_dependabot_alerts(http, scope)),
            ("codescanning", lambda: alerts.read_code_alerts(http, scope)),
            ("secretscanning", lambda: alerts.read_secret_alerts(http, scope)),
        )
        yield from units_in_turn(scope, units, ctx.cancelled, source="github")


def _installation_token(body: object, url: str) -> tuple[str, float]:
    """``(token, seconds left)`` of an installation access token answer
    (``{"token": …, "expires_at": "2016-07-11T22:14:10Z", …}``)."""
    token = body.get("token") if isinstance(body, Mapping) else None
    expires = body.get("expires_at") if isinstance(body, Mapping) else None
    if not isinstance(token, str) or not token or not isinstance(expires, str):
        raise MalformedResponseError(
            "the installation token answer lacks token/expires_at", url=url
        )
    try:
        when = datetime.fromisoformat(expires.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedResponseError(
            "the installation token's expires_at is not ISO 8601", url=url
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return token, when.timestamp() - time.time()
