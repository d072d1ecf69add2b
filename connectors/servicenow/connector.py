"""The ServiceNow connector: processes read from the Table API with their audit history.

Configuration (``[[connectors]] type = "servicenow"``)::

    [connectors.options]
    instance_url = "https://acme.service-now.com"
    username = "annexa.integration"             # basic auth …
    password = { env = "SN_PASSWORD" }
    # token = { env = "SN_OAUTH_TOKEN" }        # … or an OAuth bearer token instead
    # … or an OAuth application registry entry (token fetched and refreshed by Annexa):
    # oauth_client_id = "0123456789abcdef0123456789abcdef"
    # oauth_client_secret = { env = "SN_OAUTH_CLIENT_SECRET" }
    # with username + password above: password grant; without: client_credentials

    [[connectors.options.processes]]
    kind = "change"                             # table change_request, defaults below
    query = "type!=emergency^sys_created_on>=javascript:gs.beginningOfLast12Months()"

Defaults per kind (any may be overridden): ``change`` / ``emergency_change`` read
``change_request`` (``type!=emergency`` / ``type=emergency``), approved when the
``approval`` field or an approval record becomes ``approved``, implemented on entering
``Implement``; an emergency change is reviewed when it is ``Closed`` (after its
post-implementation review). ``incident`` reads ``incident``: acknowledged on
``In Progress``, resolved on ``Resolved``/``Closed``, severity from ``priority``.
``vulnerability`` (e.g. ``sn_vul_vulnerable_item``), ``access_review`` and ``leaver``
need their table and states declared.

Units: scope = the instance host, region ``global``, service = the process kind;
resource types ``servicenow.<kind>.ticket`` (id = the record number) and
``servicenow.<kind>.population``. See :mod:`connectors.servicenow.records` for the
history source and the requests made.

With ``oauth_client_id`` the connector posts to ``{instance_url}/oauth_token.do`` (form:
``grant_type=password`` with the integration user's credentials, or
``client_credentials`` when no user is configured) and sends the access token as a
Bearer, fetching a new one before it expires. A failure to get the token makes every
process unit ``error`` with the reason.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from connectors.http import AuthHeaders, HttpOptions, basic_auth, token_auth
from connectors.kit import SourceURL, run_client
from connectors.oauth import bearer_signed_in, post_token_form
from connectors.process import (
    ProcessBase,
    ProcessConnector,
    ProcessOptions,
    ProcessReader,
    register_process_checks,
    url_scope,
)
from connectors.servicenow.records import SnReadSettings, read_process
from core.connector import CollectContext, ConnectorOptions, SecretRef

PREFIX = "servicenow"
register_process_checks(PREFIX, "ServiceNow")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "change": {
        "table": "change_request",
        "query": "type!=emergency",
        "approved_states": ["approved"],
        "implemented_states": ["Implement"],
        "resolved_states": ["Closed"],
    },
    "emergency_change": {
        "table": "change_request",
        "query": "type=emergency",
        "approved_states": ["approved"],
        "implemented_states": ["Implement"],
        "reviewed_states": ["Closed"],
        "resolved_states": ["Closed"],
    },
    "incident": {
        "table": "incident",
        "acknowledged_states": ["In Progress"],
        "resolved_states": ["Resolved", "Closed"],
        "severity_field": "priority",
    },
}


class ServiceNowProcess(ProcessBase):
    """A process whose population is a table filtered by an encoded query."""

    table: str = Field(pattern=r"^[a-z0-9_]{1,80}$")
    #: An encoded query (``sysparm_query``), e.g. ``type=emergency^active=false``.
    query: str = ""
    #: Incidents: a reference field naming the post-incident review (e.g. ``problem_id``).
    review_field: str | None = Field(None, pattern=r"^[a-z0-9_.]{1,80}$")
    #: Further fields stored with each record (display values).
    fields: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") in _DEFAULTS:
            return {**_DEFAULTS[data["kind"]], **data}
        return data

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name.replace("_", "").replace(".", "").isalnum():
                raise ValueError(f"{name!r} is not a field name")
        return v


class ServiceNowOptions(ProcessOptions):
    instance_url: SourceURL
    #: Basic auth (an integration user with read roles); or ``token`` (OAuth bearer);
    #: or ``oauth_client_id`` + ``oauth_client_secret`` (with username + password: the
    #: password grant, else client_credentials).
    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None
    oauth_client_id: str | None = Field(None, min_length=1)
    oauth_client_secret: SecretRef | None = None
    #: Records per request; each page costs two more requests (audit, approvals), and
    #: page_size sys_ids go into their query string, hence the cap.
    page_size: int = Field(100, ge=1, le=200)
    audit_page_size: int = Field(1000, ge=1, le=10_000)
    max_history_entries: int = Field(20_000, ge=1)
    #: User names that never count as approver or implementer.
    system_users: list[str] = Field(default_factory=lambda: ["system", "guest"])
    processes: list[ServiceNowProcess] = Field(min_length=1)
    http: HttpOptions = Field(default_factory=HttpOptions)

    @model_validator(mode="after")
    def _auth(self) -> ServiceNowOptions:
        basic = self.username is not None or self.password is not None
        if basic and (self.username is None or self.password is None):
            raise ValueError("basic auth needs both username and password")
        oauth = self.oauth_client_id is not None or self.oauth_client_secret is not None
        if oauth and (self.oauth_client_id is None or self.oauth_client_secret is None):
            raise ValueError("OAuth needs both oauth_client_id and oauth_client_secret")
        if oauth and self.token is not None:
            raise ValueError("give token or oauth_client_id + oauth_client_secret, not both")
        if not oauth and basic == (self.token is not None):
            raise ValueError(
                "give either username + password (basic), token (OAuth bearer) or "
                "oauth_client_id + oauth_client_secret"
            )
        return self

    @property
    def scope(self) -> str:
        return url_scope(self.instance_url)

    def read_settings(self) -> SnReadSettings:
        return SnReadSettings(
            instance_url=self.instance_url,
            page_size=self.page_size,
            audit_page_size=self.audit_page_size,
            max_history_entries=self.max_history_entries,
            system_users=tuple(self.system_users),
        )


class ServiceNowConnector(ProcessConnector):
    type = "servicenow"
    prefix = PREFIX
    Options: ClassVar[type[ConnectorOptions]] = ServiceNowOptions

    options: ServiceNowOptions

    def _reader(self, ctx: CollectContext, stack: ExitStack) -> ProcessReader:
        opts = self.options
        auth = self._auth(ctx, stack)
        http = stack.enter_context(run_client(opts.instance_url, auth, opts.http, ctx))
        settings = opts.read_settings()
        scope = opts.scope
        choices: dict[str, list[Any] | None] = {}  # state labels, read once per table
        return lambda p, c: read_process(http, settings, p, scope, c, ctx.cancelled, choices)

    def _auth(self, ctx: CollectContext, stack: ExitStack) -> AuthHeaders:
        """The auth callable; with OAuth the first token is fetched here so a refused
        client fails the run up front (every process ``error``)."""
        opts = self.options
        if opts.oauth_client_id is not None:
            assert opts.oauth_client_secret is not None
            form = {
                "grant_type": "client_credentials",
                "client_id": opts.oauth_client_id,
                "client_secret": opts.oauth_client_secret.get(),
            }
            if opts.username is not None:
                assert opts.password is not None
                form.update(
                    grant_type="password", username=opts.username, password=opts.password.get()
                )
            token_http = stack.enter_context(run_client(opts.instance_url, None, opts.http, ctx))
            return bearer_signed_in(lambda: post_token_form(token_http, "/oauth_token.do", form))
        if opts.token is not None:
            return token_auth("Bearer", opts.token.get())
        assert opts.username is not None and opts.password is not None
        return basic_auth(opts.username, opts.password.get())
