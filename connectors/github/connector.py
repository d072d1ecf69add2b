"""The GitHub connector: one organisation on github.com or GitHub Enterprise Server.

Configuration (``[[connectors]] type = "github"``)::

    [connectors.options]
    organization = "acme"
    api_url = "https://api.github.com"            # GHES: "https://ghe.example.com/api/v3"
    token = { env = "GITHUB_TOKEN" }              # fine-grained or classic PAT (Bearer)
    include_archived = true
    pseudonymise = false                          # HMAC-SHA256 logins
    # pseudonymise_key = { env = "ANNEXA_PSEUDONYM_KEY" }

Units (service = second segment of the resource types), region ``global``, scope = the
organisation login: ``org`` (``github.org.settings``), ``member``
(``github.member.account``), ``collaborator`` (``github.collaborator.outside``), ``repo``
(``github.repo.repository``), ``dependabot`` (``github.dependabot.alert``) and
``secretscanning`` (``github.secretscanning.alert``).

TODO(github-app): authenticate as a GitHub App installation (JWT signed with the app's
private key → installation access token, refreshed hourly) instead of a PAT; the
``AuthHeaders`` callable of the HTTP layer is where the refresh would go.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from connectors.base import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from connectors.checks import REGISTRY, CheckSpec
from connectors.github import alerts, org, repos
from connectors.github.common import GLOBAL, Pseudonymiser, run_unit
from connectors.http import HttpClient, HttpOptions, check_url, token_auth
from connectors.records import Coverage, Record

SERVICES = ("org", "member", "collaborator", "repo", "dependabot", "secretscanning")


class GitHubOptions(ConnectorOptions):
    organization: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$")
    api_url: str = "https://api.github.com"
    token: SecretRef
    include_archived: bool = True
    pseudonymise: bool = False
    pseudonymise_key: SecretRef | None = None
    max_workers: int = Field(4, ge=1, le=16, description="concurrent per-repository reads")
    http: HttpOptions = Field(default_factory=HttpOptions)

    @field_validator("api_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v).rstrip("/")

    @model_validator(mode="after")
    def _pseudonym_key(self) -> GitHubOptions:
        if self.pseudonymise and self.pseudonymise_key is None:
            raise ValueError("pseudonymise = true needs pseudonymise_key")
        return self


class GitHubConnector(Connector):
    type = "github"
    prefix = "github"
    Options: ClassVar[type[ConnectorOptions]] = GitHubOptions

    options: GitHubOptions

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        return [s for s in REGISTRY if s.id.startswith("github.")]

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = opts.organization
        try:
            auth = token_auth("Bearer", opts.token.get())
            pseudo = Pseudonymiser(opts.pseudonymise_key.get() if opts.pseudonymise_key else None)
        except SecretUnavailableError as exc:
            for service in SERVICES:
                yield Coverage(scope, GLOBAL, service, ok=False, error=str(exc))
            return
        http = HttpClient(
            opts.api_url,
            auth=auth,
            options=opts.http,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            cancel_event=ctx.cancel_event,
        )
        units = (
            ("org", lambda: org.read_org(http, scope, pseudo)),
            ("member", lambda: org.read_members(http, scope, pseudo)),
            ("collaborator", lambda: org.read_collaborators(http, scope, pseudo)),
            (
                "repo",
                lambda: repos.read_repos(
                    http,
                    scope,
                    include_archived=opts.include_archived,
                    max_workers=opts.max_workers,
                    cancelled=ctx.cancelled,
                ),
            ),
            ("dependabot", lambda: alerts.read_dependabot_alerts(http, scope)),
            ("secretscanning", lambda: alerts.read_secret_alerts(http, scope)),
        )
        with http:
            for service, read in units:
                if ctx.cancelled():
                    return
                yield from run_unit(scope, service, read, ctx.cancelled)
