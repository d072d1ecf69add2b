"""The Azure connector: options, subscription discovery, and ``collect``.

Configuration (``[[connectors]] type = "azure"``)::

    [connectors.options]
    auth = "client_secret"            # default | client_secret | certificate |
                                      # managed_identity | workload_identity
    tenant_id = "00000000-0000-0000-0000-000000000000"
    client_id = "11111111-1111-1111-1111-111111111111"
    client_secret = { env = "AZURE_CLIENT_SECRET" }
    # subscriptions = ["…"]           # default: every subscription the identity can read
    # arm_url = "https://management.usgovcloudapi.net"     # sovereign clouds
    # authority = "https://login.microsoftonline.us"
    # inventory = "resource_graph"    # bulk reads (default "direct")

Units are ``<subscription id>/global/<service>`` — ``storage``, ``network``,
``security``, ``monitor``, ``keyvault``, ``sql``, ``compute``, ``recoveryservices``,
``locks``, ``governance``, ``gateway``, ``consumption``, ``policy`` — the second
segment of the resource types each produces. Evidence carries
the resource's location as its region (a ``global`` unit covers every region of its
service). A 403 on one subscription fails that subscription's units only; the run
goes on with the others. Units run on a bounded thread pool sharing one HTTP client.

Bulk inventory (``inventory = "resource_graph"``, off by default): before the units
run, Azure Resource Graph is queried once per 1000 subscriptions for storage accounts,
NSGs and VNets; the ``storage`` and ``network`` units of each subscription it covers
are built from its rows (:mod:`.resourcegraph`), every other unit, and those of a
subscription it does not cover, read ARM directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from connectors.cloudshared import all_match
from connectors.http import HttpOptions, SourceError, check_url
from connectors.kit import GLOBAL, SourceURL, Unit, run_client, stream_units
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Coverage, Record

from . import (
    compute,
    consumption,
    gateway,
    governance,
    keyvault,
    locks,
    monitor,
    network,
    policy,
    recoveryservices,
    resourcegraph,
    security,
    sql,
    storage,
)
from .arm import Arm, CredentialError, TokenCredential, bearer_auth
from .credentials import REQUIRED, CredentialKind, build_credential

SERVICE_MODULES: tuple[ModuleType, ...] = (
    storage, network, security, monitor, keyvault, sql, compute, recoveryservices, locks,
    governance, gateway, consumption, policy,
)
SERVICES: tuple[str, ...] = tuple(m.SERVICE for m in SERVICE_MODULES)
SUBSCRIPTIONS_API = "2022-12-01"

#: Every ARM permission (action) the connector uses; all are ``*/read`` actions, so the
#: built-in Reader role grants them. ``docs/permissions/azure.md`` lists exactly these.
ACTIONS: tuple[str, ...] = tuple(
    dict.fromkeys(
        ["Microsoft.Resources/subscriptions/read"]
        + [a for m in SERVICE_MODULES for a in m.ACTIONS]
        + list(resourcegraph.ACTIONS)
    )
)

#: Subscription states whose resources can still be read.
READABLE_STATES = frozenset({"enabled", "warned", "pastdue"})

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_RESOURCE_TYPE = re.compile(r"^[A-Za-z0-9.]+/[A-Za-z0-9/]+$")


class AzureOptions(ConnectorOptions):
    """``[connectors.options]`` of an ``azure`` connector."""

    auth: CredentialKind = Field(
        "default", description="how to authenticate (azure-identity credential kind)"
    )
    tenant_id: str | None = Field(None, description="directory (tenant) id or primary domain")
    client_id: str | None = Field(None, description="application (client) id")
    client_secret: SecretRef | None = None
    certificate_path: str | None = Field(None, description="PEM or PKCS12 file with the key")
    certificate_password: SecretRef | None = None
    managed_identity_client_id: str | None = Field(
        None, description="client id of a user-assigned managed identity"
    )
    workload_identity_file: str | None = Field(
        None, description="federated token file of workload identity "
        "(default: AZURE_FEDERATED_TOKEN_FILE)"
    )
    authority: str = Field(
        "https://login.microsoftonline.com", description="Microsoft Entra login host"
    )
    disable_instance_discovery: bool = Field(
        False, description="true for authorities Microsoft cannot validate (Azure Stack…)"
    )
    authority_ca_bundle: str | None = Field(
        None, description="PEM bundle to verify the authority with (default: http.ca_bundle)"
    )
    arm_url: SourceURL = Field("https://management.azure.com", description="Resource Manager URL")
    arm_scope: str | None = Field(None, description="token scope; default: <arm_url>/.default")
    subscriptions: list[str] | None = Field(
        None, description="subscription ids to read; default: every readable subscription"
    )
    exclude_subscriptions: list[str] = Field(default_factory=list)
    critical_resource_types: list[str] = Field(
        default_factory=lambda: list(locks.DEFAULT_CRITICAL_TYPES),
        description="resource types that must carry a management lock",
    )
    critical_tag: str | None = Field(
        None, description='"name=value": resources with this tag must carry a lock too'
    )
    max_workers: int = Field(8, ge=1, le=64, description="units read concurrently")
    inventory: Literal["direct", "resource_graph"] = Field(
        "direct", description="resource_graph: read storage accounts, NSGs and VNets in bulk "
        "with Azure Resource Graph (Microsoft.ResourceGraph/resources/read); direct: ARM "
        "listings per subscription"
    )
    http: HttpOptions = Field(default_factory=HttpOptions)


    @field_validator("authority")
    @classmethod
    def _authority(cls, v: str) -> str:
        check_url(v)
        if not v.startswith("https://"):
            raise ValueError("authority must be an https:// URL (azure-identity refuses http)")
        return v.rstrip("/")

    @field_validator("tenant_id", "client_id")
    @classmethod
    def _guid_or_domain(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[A-Za-z0-9.-]{1,253}$", v):
            raise ValueError(f"not a tenant/client id: {v!r}")
        return v

    @field_validator("subscriptions", "exclude_subscriptions")
    @classmethod
    def _subscriptions(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        all_match(v, _GUID, "subscription ids (GUIDs)")
        return list(dict.fromkeys(s.lower() for s in v))

    @field_validator("critical_resource_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        return all_match(v, _RESOURCE_TYPE, "resource types (Provider/type)")

    @field_validator("critical_tag")
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        if v is not None and ("=" not in v or not v.split("=", 1)[0].strip()):
            raise ValueError('critical_tag must be "name=value"')
        return v

    @model_validator(mode="after")
    def _credential_fields(self) -> AzureOptions:
        missing = [f for f in REQUIRED[self.auth] if getattr(self, f) in (None, "")]
        if missing:
            raise ValueError(f"auth = {self.auth!r} needs {', '.join(missing)}")
        if self.subscriptions == []:
            raise ValueError("subscriptions must not be empty (omit it to discover them)")
        return self

    @property
    def scope_for_token(self) -> str:
        return self.arm_scope or f"{self.arm_url}/.default"

    @property
    def tag(self) -> tuple[str, str] | None:
        if self.critical_tag is None:
            return None
        name, _, value = self.critical_tag.partition("=")
        return name.strip(), value.strip()


@dataclass(frozen=True)
class Subscription:
    id: str
    name: str | None = None


def discover_subscriptions(arm: Arm) -> list[Subscription]:
    """Every subscription the identity can read (``GET /subscriptions`` + ``nextLink``)."""
    subs: list[Subscription] = []
    for s in arm.list("/subscriptions", SUBSCRIPTIONS_API):
        state = str(s.get("state", "Enabled")).lower()
        sid = str(s.get("subscriptionId") or "").lower()
        if sid and state in READABLE_STATES:
            subs.append(Subscription(sid, s.get("displayName")))
    return subs


class AzureConnector(Connector):
    """Reads storage, network, Defender, activity log, Key Vault, SQL, compute, backup,
    lock, governance, gateway, budget and policy-compliance settings of every
    subscription an Entra identity can read."""

    type: ClassVar[str] = "azure"
    prefix: ClassVar[str] = "azure"
    Options: ClassVar[type[ConnectorOptions]] = AzureOptions

    options: AzureOptions

    def __init__(
        self,
        name: str,
        options: ConnectorOptions,
        *,
        credential: TokenCredential | None = None,
    ) -> None:
        if not isinstance(options, AzureOptions):
            options = AzureOptions.model_validate(options.model_dump())
        super().__init__(name, options)
        self._credential = credential
        #: Subscriptions read by the last ``collect`` (discovered or configured).
        self.subscriptions: list[Subscription] = []

    @property
    def tenant_scope(self) -> str:
        """Scope of failures before any subscription is known (discovery, credential)."""
        return self.options.tenant_id or self.name

    def _readers(self, arm: Arm) -> list[tuple[str, Callable[..., Iterator[Any]]]]:
        o = self.options
        tree = governance.ManagementTree(arm)  # read once per tenant, shared by the units
        out: list[tuple[str, Callable[..., Iterator[Any]]]] = []
        for m in SERVICE_MODULES:
            read = m.read
            if m is locks:
                read = partial(locks.read, critical_types=tuple(o.critical_resource_types),
                               critical_tag=o.tag)
            elif m is governance:
                read = partial(governance.read, tree=tree)
            out.append((m.SERVICE, read))
        return out

    def plan(self, arm: Arm, subscriptions: list[Subscription],
             inventory: resourcegraph.Inventory | None = None) -> Iterator[Unit]:
        """Units lazily, subscription by subscription (the pool pulls them one by one);
        the units ``inventory`` covers read from it."""
        readers = self._readers(arm)
        for sub in subscriptions:
            bulk = inventory is not None and inventory.covers(sub.id)
            for service, read in readers:
                if bulk and service in resourcegraph.READERS:
                    yield Unit(sub.id, service, partial(resourcegraph.READERS[service], arm,
                                                        inventory, sub.id), source="azure")
                else:
                    yield Unit(sub.id, service, partial(read, arm, sub.id), source="azure")

    def load_inventory(self, ctx: CollectContext, arm: Arm, subscriptions: list[Subscription]
                       ) -> resourcegraph.Inventory | None:
        """The Resource Graph inventory when asked for; every subscription it does not
        cover is logged with the reason (it reads directly)."""
        if self.options.inventory != "resource_graph" or not subscriptions:
            return None
        inv = resourcegraph.load(arm, [s.id for s in subscriptions])
        reasons: dict[str, list[str]] = {}
        for sub, reason in inv.failed.items():
            reasons.setdefault(reason, []).append(sub)
        for reason, subs in reasons.items():
            ctx.log.warning("azure resource graph does not cover these subscriptions; "
                            "reading them directly", connector=self.name, error=reason,
                            subscriptions=len(subs), first=subs[0])
        ctx.log.info("azure resource graph inventory", connector=self.name,
                     covered=len(inv.covered), direct=len(inv.failed), calls=inv.calls)
        return inv

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        o = self.options
        try:
            credential = self._credential or build_credential(o)
        except (SecretUnavailableError, ValueError, OSError) as exc:
            yield from self._scope_errors(f"credential could not be created: {exc}")
            return
        auth = bearer_auth(credential, o.scope_for_token)
        try:
            auth()  # one token up front: a bad credential is one clear error per scope
        except CredentialError as exc:
            ctx.log.warning("azure credential failed", connector=self.name, error=str(exc))
            yield from self._scope_errors(str(exc))
            return
        http = run_client(o.arm_url, auth, o.http, ctx)
        with http:
            arm = Arm(http)
            if o.subscriptions is not None:
                subs = [Subscription(s) for s in o.subscriptions]
                for s in subs:  # the credential works here: closes an earlier "*" error
                    yield Coverage(s.id, GLOBAL, "*", ok=True)
            else:
                try:
                    subs = discover_subscriptions(arm)
                except SourceError as exc:
                    ctx.log.warning("azure subscriptions could not be listed",
                                    connector=self.name, error=str(exc))
                    yield Coverage(self.tenant_scope, GLOBAL, "*", ok=False,
                                   error=f"subscription discovery failed: {exc}")
                    return
                yield Coverage(self.tenant_scope, GLOBAL, "*", ok=True)
            excluded = set(o.exclude_subscriptions)
            subs = [s for s in subs if s.id not in excluded]
            self.subscriptions = subs
            ctx.log.info("azure subscriptions", connector=self.name, count=len(subs))
            inventory = self.load_inventory(ctx, arm, subs)
            yield from stream_units(
                self.plan(arm, subs, inventory),
                max_workers=o.max_workers,
                cancelled=ctx.cancelled,
                source="azure",
            )

    def _scope_errors(self, error: str) -> Iterator[Coverage]:
        """The credential failed before anything was read: every scope we know fails."""
        scopes = self.options.subscriptions or [self.tenant_scope]
        for scope in scopes:
            yield Coverage(scope, GLOBAL, "*", ok=False, error=error)

