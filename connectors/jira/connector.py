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

from contextlib import ExitStack
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from connectors.http import HttpOptions, basic_auth, token_auth
from connectors.jira.issues import JiraReadSettings, read_process
from connectors.kit import SourceURL, run_client
from connectors.process import (
    ProcessBase,
    ProcessConnector,
    ProcessOptions,
    ProcessReader,
    register_process_checks,
    url_scope,
)
from core.connector import CollectContext, ConnectorOptions, SecretRef

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


class JiraConnector(ProcessConnector):
    type = "jira"
    prefix = PREFIX
    Options: ClassVar[type[ConnectorOptions]] = JiraOptions

    options: JiraOptions

    def _reader(self, ctx: CollectContext, stack: ExitStack) -> ProcessReader:
        opts = self.options
        secret = opts.token.get()
        if opts.email:
            auth = basic_auth(opts.email, secret)
        else:
            auth = token_auth("Bearer", secret)
        http = stack.enter_context(run_client(opts.url, auth, opts.http, ctx))
        settings = opts.read_settings()
        scope = opts.scope
        return lambda p, c: read_process(http, settings, p, scope, c, ctx.cancelled)
