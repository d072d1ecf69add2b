"""The Microsoft Entra ID connector: users, MFA registration, roles and MFA policy of one
tenant, read from Microsoft Graph through an azure-identity credential.

Configuration (``[[connectors]] type = "entra"``)::

    [connectors.options]
    tenant_id = "00000000-0000-0000-0000-000000000000"
    auth = "client_secret"              # certificate | managed_identity |
                                        # workload_identity | default
    client_id = "11111111-1111-1111-1111-111111111111"
    client_secret = { env = "ANNEXA_ENTRA_CLIENT_SECRET" }
    # certificate_path = "/run/secrets/annexa-entra.pem"
    # certificate_password = { file = "/run/secrets/annexa-entra-pem-password" }
    # managed_identity_client_id = "…"  # user-assigned managed identity
    authority = "https://login.microsoftonline.com"   # .us / .chinacloudapi.cn
    graph_url = "https://graph.microsoft.com"         # graph.microsoft.us, …
    pseudonymise = false

Units (service = second segment of the resource types), region ``global``, scope = the
tenant id: ``role`` (``entra.role.summary``), ``tenant``
(``entra.tenant.authentication``) and ``user`` (``entra.user.account``). Roles are read
first so each user's evidence carries the roles they hold. When no token can be
obtained at all, the whole scope (``*``) is reported unreadable: every check becomes an
``error`` until a later run authenticates again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from connectors.entra import policies, roles, users
from connectors.entra.accounts import ACCOUNTS
from connectors.entra.auth import TokenCredential, bearer_auth, build_credential, token_value
from connectors.http import HttpClient, HttpOptions, SourceError, check_url
from connectors.identityshared import reopening, units_in_turn
from connectors.kit import GLOBAL, PseudonymiseOptions, Pseudonymiser, SourceURL, run_client
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Coverage, Record

SERVICES = ("role", "tenant", "user")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")


def _https(value: str, what: str) -> str:
    """azure-identity refuses authorities that are not https, loopback included."""
    check_url(value)
    if urlsplit(value).scheme != "https":
        raise ValueError(f"{what} must be an https:// URL (azure-identity refuses http)")
    return value.rstrip("/")


class EntraOptions(PseudonymiseOptions):
    tenant_id: str = Field(description="directory (tenant) id or primary domain")
    auth: Literal[
        "client_secret", "certificate", "managed_identity", "workload_identity", "default"
    ] = "client_secret"
    client_id: str | None = Field(None, description="application (client) id")
    client_secret: SecretRef | None = None
    certificate_path: str | None = Field(None, description="PEM or PKCS12 file with the key")
    certificate_password: SecretRef | None = None
    managed_identity_client_id: str | None = Field(
        None, description="client id of a user-assigned managed identity"
    )
    authority: str = "https://login.microsoftonline.com"
    disable_instance_discovery: bool = Field(
        False, description="true for authorities Microsoft cannot validate (Azure Stack…)"
    )
    authority_ca_bundle: str | None = Field(
        None, description="PEM bundle to verify the authority with (replaces the default)"
    )
    graph_url: SourceURL = "https://graph.microsoft.com"
    graph_version: Literal["v1.0", "beta"] = "v1.0"
    graph_scope: str | None = Field(None, description="default: <graph_url>/.default")
    page_size: int = Field(999, ge=1, le=999, description="users per page ($top)")
    http: HttpOptions = Field(default_factory=HttpOptions)

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, v: str) -> str:
        if not _TENANT.match(v):
            raise ValueError("must be a tenant id (GUID) or domain name")
        return v


    @field_validator("authority")
    @classmethod
    def _authority(cls, v: str) -> str:
        if "://" not in v:
            v = f"https://{v}"  # azure-identity also accepts a bare host name
        return _https(v, "authority")

    @model_validator(mode="after")
    def _credentials(self) -> EntraOptions:
        needs = {
            "client_secret": ("client_id", "client_secret"),
            "certificate": ("client_id", "certificate_path"),
            "workload_identity": ("client_id",),
        }.get(self.auth, ())
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            raise ValueError(f"auth = {self.auth!r} needs {' and '.join(missing)}")
        stray = [
            n
            for n, wanted in (
                ("client_secret", "client_secret"),
                ("certificate_path", "certificate"),
                ("certificate_password", "certificate"),
            )
            if getattr(self, n) is not None and self.auth != wanted
        ]
        if stray:
            raise ValueError(f"{', '.join(stray)} given but auth = {self.auth!r}")
        return self

    @property
    def scope(self) -> str:
        """The OAuth scope of Graph (sovereign clouds have their own Graph host)."""
        if self.graph_scope:
            return self.graph_scope
        parts = urlsplit(self.graph_url)
        return f"{parts.scheme}://{parts.netloc}/.default"


class EntraConnector(Connector):
    type = "entra"
    prefix = "entra"
    Options: ClassVar[type[ConnectorOptions]] = EntraOptions
    #: Its accounts, for the identity analyzers (core/accounts.py).
    accounts = ACCOUNTS

    options: EntraOptions

    def __init__(
        self, name: str, options: ConnectorOptions, credential: TokenCredential | None = None
    ) -> None:
        """``credential``: any object with ``get_token(*scopes)`` used instead of the one
        the options describe (embedding, tests)."""
        super().__init__(name, options)
        self._credential = credential

    def _client(self, ctx: CollectContext, credential: TokenCredential) -> HttpClient:
        opts = self.options
        graph = f"{opts.graph_url}/{opts.graph_version}"
        return run_client(graph, bearer_auth(credential, opts.scope), opts.http, ctx)

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = opts.tenant_id
        owned: Any = None
        try:
            pseudo = opts.pseudonymiser()
            credential = self._credential
            if credential is None:
                credential = owned = build_credential(opts)
            # One token up front: a credential that cannot authenticate fails the whole
            # scope once, instead of every unit with the same message.
            token_value(credential, opts.scope)
            http = self._client(ctx, credential)
        except (SecretUnavailableError, SourceError, ValueError, OSError) as exc:
            yield Coverage(scope, GLOBAL, "*", ok=False, error=str(exc))
            _close(owned)
            return
        try:
            with http:
                yield from reopening(scope, self._read(ctx, http, scope, pseudo), ctx.cancelled)
        finally:
            _close(owned)

    def _read(
        self, ctx: CollectContext, http: HttpClient, scope: str, pseudo: Pseudonymiser
    ) -> Iterator[Record]:
        """The units of an authenticated tenant (Intune reads its own)."""
        opts = self.options
        role_reader = roles.RoleReader(http, scope, pseudo)
        units = (
            ("role", role_reader.read),
            ("tenant", lambda: policies.read_tenant_policies(http, scope)),
            (
                "user",
                lambda: users.read_users(
                    http,
                    scope,
                    pseudo,
                    roles_by_user=role_reader.roles_by_user,
                    roles_error=role_reader.error,
                    page_size=opts.page_size,
                    cancelled=ctx.cancelled,
                ),
            ),
        )
        yield from units_in_turn(scope, units, ctx.cancelled, source=self.type)


def _close(credential: Any) -> None:
    close = getattr(credential, "close", None)
    if callable(close):
        close()
