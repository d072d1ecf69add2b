"""The Google Workspace connector: users, 2-Step Verification and super admins of one
customer, read from the Admin SDK Directory API with a delegated service account.

Configuration (``[[connectors]] type = "workspace"``)::

    [connectors.options]
    admin_email = "annexa-reader@example.com"   # the admin the service account acts as
    service_account_key = { file = "/run/secrets/annexa-workspace.json" }
    customer = "my_customer"                    # or the customer id, e.g. "C03az79cb"
    # domain = "example.com"                    # only this domain's users
    directory_url = "https://admin.googleapis.com"
    # oauth_url = "https://oauth2.googleapis.com/token"   # default: the key's token_uri
    pseudonymise = false

Units (service = second segment of the resource types), region ``global``, scope = the
customer id (or, for ``my_customer``, the domain / the admin's domain): ``admin``
(``workspace.admin.summary``) and ``user`` (``workspace.user.account``). When no token
can be obtained at all (bad key, delegation not granted), the whole scope (``*``) is
reported unreadable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field, field_validator

from connectors.http import HttpOptions, SourceError, check_url
from connectors.identityshared import reopening, units_in_turn
from connectors.kit import GLOBAL, PseudonymiseOptions, run_client
from connectors.workspace import users
from connectors.workspace.accounts import ACCOUNTS
from connectors.workspace.auth import DelegatedCredentials, load_key
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Coverage, Record

SERVICES = ("admin", "user")
_EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


class WorkspaceOptions(PseudonymiseOptions):
    admin_email: str = Field(description="administrator impersonated via domain-wide delegation")
    service_account_key: SecretRef = Field(description="the service account key JSON")
    customer: str = Field("my_customer", pattern=r"^(my_customer|C[0-9A-Za-z]{4,20})$")
    domain: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
    directory_url: str = "https://admin.googleapis.com"
    oauth_url: str | None = Field(None, description="OAuth 2.0 token endpoint (token_uri)")
    page_size: int = Field(500, ge=1, le=500, description="users per page (maxResults)")
    http: HttpOptions = Field(default_factory=HttpOptions)

    @field_validator("admin_email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not _EMAIL.match(v):
            raise ValueError("must be the e-mail address of a Workspace administrator")
        return v

    @field_validator("directory_url", "oauth_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return check_url(v).rstrip("/") if v is not None else None

    @property
    def scope(self) -> str:
        if self.customer != "my_customer":
            return self.customer
        return self.domain or self.admin_email.rsplit("@", 1)[1].lower()

    @property
    def listing(self) -> dict[str, str]:
        """``domain=`` restricts the listing to one domain; otherwise the customer's."""
        return {"domain": self.domain} if self.domain else {"customer": self.customer}


class WorkspaceConnector(Connector):
    type = "workspace"
    prefix = "workspace"
    Options: ClassVar[type[ConnectorOptions]] = WorkspaceOptions
    #: Its accounts, for the identity analyzers (core/accounts.py).
    accounts = ACCOUNTS

    options: WorkspaceOptions

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = opts.scope
        creds: DelegatedCredentials | None = None
        try:
            pseudo = opts.pseudonymiser()
            info = load_key(opts.service_account_key.get(), "service_account_key")
            creds = DelegatedCredentials(
                info,
                opts.admin_email,
                token_uri=opts.oauth_url,
                timeout=opts.http.timeout,
                ca_bundle=opts.http.ca_bundle,
            )
            creds.token()  # fail the whole scope once if delegation does not work
            http = run_client(opts.directory_url, creds.auth(), opts.http, ctx)
        except (SecretUnavailableError, SourceError) as exc:
            yield Coverage(scope, GLOBAL, "*", ok=False, error=str(exc))
            if creds is not None:
                creds.close()
            return
        units: tuple[tuple[str, Any], ...] = (
            (
                "admin",
                lambda: users.read_super_admins(http, scope, opts.listing, pseudo, opts.page_size),
            ),
            (
                "user",
                lambda: users.read_users(
                    http, scope, opts.listing, pseudo, opts.page_size, ctx.cancelled
                ),
            ),
        )
        try:
            with http:
                read = units_in_turn(scope, units, ctx.cancelled, source="workspace")
                yield from reopening(scope, read, ctx.cancelled)
        finally:
            creds.close()
