"""The Jira connector: change, incident, vulnerability, access-review and leaver processes.

Configuration (``[[connectors]] type = "jira"``)::

    [connectors.options]
    url = "https://acme.atlassian.net"      # Data Center: "https://jira.example.com"
    deployment = "cloud"                    # or "datacenter"
    email = "annexa@acme.example"           # with email: basic auth email:API token
    token = { env = "JIRA_API_TOKEN" }      # without email: a PAT sent as Bearer
    # search_api = "jql"                    # Cloud default; "offset" = /rest/api/2/search

    [[connectors.options.processes]]
    kind = "change"
    jql = "project = CHG AND issuetype = Change"
    approved_states = ["Approved"]
    implemented_states = ["Done"]

Units: scope = the site (``acme.atlassian.net``), region ``global``, service = the
process kind; resource types ``jira.<kind>.ticket`` (one per issue, id = issue key) and
``jira.<kind>.population`` (the summary, id = kind).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from connectors.http import HttpClient, HttpOptions, token_auth
from connectors.jira.issues import JiraReadSettings, read_process
from connectors.kit import SourceURL
from connectors.process import (
    ProcessBase,
    ProcessOptions,
    process_errors,
    process_units,
    register_process_checks,
    url_scope,
)
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Record

PREFIX = "jira"
register_process_checks(PREFIX, "Jira")


class JiraProcess(ProcessBase):
    """A process whose population is the result of a JQL query."""

    jql: str = Field(min_length=1, description="JQL selecting the population")
    #: Linked issues of these types count as a post-incident review.
    review_issue_types: list[str] = Field(
        default_factory=lambda: ["Post-incident review", "Postmortem"]
    )


class JiraOptions(ProcessOptions):
    url: SourceURL
    deployment: Literal["cloud", "datacenter"] = "cloud"
    #: Basic auth user (Cloud: the account e-mail). Without it the token is a Bearer PAT.
    email: str | None = None
    token: SecretRef
    #: "jql": /rest/api/3/search/jql (nextPageToken). "offset": /rest/api/2/search.
    search_api: Literal["jql", "offset"] | None = None
    page_size: int = Field(100, ge=1, le=5000)
    changelog_page_size: int = Field(100, ge=1, le=1000)
    max_changelog_entries: int = Field(20_000, ge=1)
    #: Further changelog fields kept in the history (id or name), e.g. an approver field.
    tracked_fields: list[str] = Field(default_factory=list)
    #: Account ids/names of automation that never counts as approver or implementer.
    system_users: list[str] = Field(default_factory=list)
    max_workers: int = Field(4, ge=1, le=16, description="concurrent changelog reads")
    processes: list[JiraProcess] = Field(min_length=1)
    http: HttpOptions = Field(default_factory=HttpOptions)

    @model_validator(mode="after")
    def _api(self) -> JiraOptions:
        if self.search_api is None:
            self.search_api = "jql" if self.deployment == "cloud" else "offset"
        elif self.search_api == "jql" and self.deployment == "datacenter":
            raise ValueError('Data Center has no /rest/api/3/search/jql: use search_api = "offset"')
        return self

    @property
    def scope(self) -> str:
        return url_scope(self.url)

    def read_settings(self) -> JiraReadSettings:
        return JiraReadSettings(
            base_url=self.url,
            deployment=self.deployment,
            search_api=self.search_api or "jql",
            page_size=self.page_size,
            changelog_page_size=self.changelog_page_size,
            max_changelog_entries=self.max_changelog_entries,
            tracked_fields=tuple(self.tracked_fields),
            system_users=tuple(self.system_users),
            max_workers=self.max_workers,
        )


class JiraConnector(Connector):
    type = "jira"
    prefix = PREFIX
    Options: ClassVar[type[ConnectorOptions]] = JiraOptions

    options: JiraOptions

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = opts.scope
        try:
            secret = opts.token.get()
        except SecretUnavailableError as exc:
            yield from process_errors(scope, opts.processes, str(exc))
            return
        if opts.email:
            basic = base64.b64encode(f"{opts.email}:{secret}".encode()).decode("ascii")
            auth = token_auth("Basic", basic)
        else:
            auth = token_auth("Bearer", secret)
        http = HttpClient(
            opts.url,
            auth=auth,
            options=opts.http,
            headers={"Accept": "application/json"},
            cancel_event=ctx.cancel_event,
        )
        settings = opts.read_settings()
        with http:
            yield from process_units(
                scope,
                opts.processes,
                self.checks(),
                PREFIX,
                lambda p, c: read_process(http, settings, p, scope, c, ctx.cancelled),
                ctx.cancelled,
                source=self.type,
            )
