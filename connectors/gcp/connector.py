"""The Google Cloud connector: options, hierarchy discovery, and ``collect``.

Configuration (``[[connectors]] type = "gcp"``)::

    [connectors.options]
    auth = "service_account_key"                # or "adc" (the default)
    service_account_key = { file = "/run/secrets/annexa-gcp.json" }
    # project_ids = ["acme-prod"]               # default: every active project visible
    # kms_locations = ["europe-west1", "global"]
    # resource_manager_transport = "rest"       # default grpc
    # inventory = "asset_inventory"             # bulk reads (default "direct")
    # asset_inventory_parents = ["organizations/123"]  # default: the organisations found

Discovery (Resource Manager v3): ``projects:search`` (every ACTIVE project the identity
can see), ``organizations:search`` and ``folders.list`` under each organisation (the
hierarchy above the projects; a folder not reachable that way is read with
``folders.get`` when a project names it as parent).

Bulk inventory (``inventory = "asset_inventory"``, off by default: the Cloud Asset API
must be enabled): before the units run, Cloud Asset Inventory lists the buckets, their
IAM policies, firewall rules, networks and subnets of every project under each parent
in a few paged calls, and the ``storage`` and ``network`` units of the projects it
covers are built from that listing (:mod:`.assetinventory`); the other units, and every
unit of a project the inventory does not cover, read directly.

Units: per project (scope = project id, region ``global``) ``iam``, ``logging``,
``storage``, ``network``, ``sql``, ``kms``, ``scc``, ``governance``, ``dlp``,
``loadbalancing``, ``billing``, ``orgpolicy`` — the second segment of the resource types
each produces; per folder and organisation (scope ``folders/N`` /
``organizations/N``) ``iam`` (its policy). A 403 on one project fails that project's
units only. Units run on a bounded thread pool; the HTTP clients and the Resource
Manager clients are shared.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from types import ModuleType
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.cloudshared import all_match
from connectors.http import HttpClient, HttpOptions, SourceError, check_url
from connectors.kit import GLOBAL, Unit, run_client, stream_units
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
)
from core.records import Coverage, Record

from . import (
    assetinventory,
    billing,
    cloudlogging,
    dlp,
    governance,
    iam,
    kms,
    loadbalancing,
    network,
    orgpolicy,
    scc,
    sql,
    storage,
)
from .auth import CredentialKind, bearer_auth, build_credentials
from .context import GcpContext, Project
from .resourcemanager import Hierarchy, ResourceManager, Transport

PROJECT_MODULES: tuple[ModuleType, ...] = (
    iam, cloudlogging, storage, network, sql, kms, scc, governance, dlp, loadbalancing,
    billing, orgpolicy,
)
SERVICES: tuple[str, ...] = tuple(m.SERVICE for m in PROJECT_MODULES)

#: Every IAM permission the connector uses (``docs/permissions/gcp.md`` lists exactly
#: these; roles/iam.securityReviewer + roles/viewer grant them all).
PERMISSIONS: tuple[str, ...] = tuple(dict.fromkeys(
    [
        "resourcemanager.organizations.get",
        "resourcemanager.folders.list",
        "resourcemanager.folders.get",
        "resourcemanager.projects.get",
    ]
    + [p for m in PROJECT_MODULES for p in m.PERMISSIONS]
    + list(assetinventory.PERMISSIONS)
))

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z0-9.-]+:[a-z][a-z0-9-]+$")
_NODE = re.compile(r"^(organizations|folders)/\d+$")
_ORGANIZATION = re.compile(r"^organizations/\d+$")
_LOCATION = re.compile(r"^[a-z0-9-]+$")
_CONSTRAINT = re.compile(r"^[a-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)+$")


class GcpEndpoints(BaseModel):
    """Base URLs of the APIs called over HTTP (private/restricted VIPs, sovereign
    clouds, tests). ``https://``, or ``http://`` to a loopback host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iam: str = "https://iam.googleapis.com"
    storage: str = "https://storage.googleapis.com"
    compute: str = "https://compute.googleapis.com"
    sqladmin: str = "https://sqladmin.googleapis.com"
    cloudkms: str = "https://cloudkms.googleapis.com"
    logging: str = "https://logging.googleapis.com"
    scc: str = "https://securitycentermanagement.googleapis.com"
    securitycenter: str = "https://securitycenter.googleapis.com"
    dlp: str = "https://dlp.googleapis.com"
    cloudbilling: str = "https://cloudbilling.googleapis.com"
    billingbudgets: str = "https://billingbudgets.googleapis.com"
    orgpolicy: str = "https://orgpolicy.googleapis.com"
    cloudasset: str = "https://cloudasset.googleapis.com"

    @field_validator("*")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v).rstrip("/")


class GcpOptions(ConnectorOptions):
    """``[connectors.options]`` of a ``gcp`` connector."""

    auth: CredentialKind = Field("adc", description="adc | service_account_key")
    service_account_key: SecretRef | None = Field(
        None, description="the JSON key document, by reference"
    )
    oauth_url: str | None = Field(
        None, description="OAuth 2.0 token endpoint (token_uri) override"
    )
    project_ids: list[str] | None = Field(
        None, description="projects to read; default: every active project visible"
    )
    exclude_project_ids: list[str] = Field(default_factory=list)
    organization_ids: list[str] | None = Field(
        None, description='"organizations/N" whose folders to list; default: search'
    )
    read_hierarchy_policies: bool = Field(
        True, description="read folder and organisation IAM policies as their own units"
    )
    kms_locations: list[str] | None = Field(
        None, description="KMS locations to read; default: every location listed"
    )
    org_policy_constraints: list[str] = Field(
        default_factory=lambda: list(orgpolicy.DEFAULT_CONSTRAINTS),
        description="boolean organisation-policy constraints that must be enforced",
    )
    inventory: Literal["direct", "asset_inventory"] = Field(
        "direct", description="asset_inventory: read storage and network resources in bulk "
        "from Cloud Asset Inventory (the API must be enabled)")
    asset_inventory_parents: list[str] | None = Field(
        None, description='"organizations/N", "folders/N" or "projects/ID" to list; '
        "default: the organisations found, else each project")
    resource_manager_transport: Transport = "grpc"
    resource_manager_endpoint: str | None = Field(
        None, description="REST: https URL (or loopback http); gRPC: host[:port]"
    )
    resource_manager_retry_timeout: float = Field(
        60.0, ge=0, description="seconds of retries of transient errors (0: no retry)"
    )
    endpoints: GcpEndpoints = Field(default_factory=GcpEndpoints)
    max_workers: int = Field(8, ge=1, le=64, description="units read concurrently")
    http: HttpOptions = Field(default_factory=HttpOptions)

    @field_validator("project_ids", "exclude_project_ids")
    @classmethod
    def _projects(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        return list(dict.fromkeys(all_match(v, _PROJECT_ID, "project ids")))

    @field_validator("organization_ids")
    @classmethod
    def _orgs(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else all_match(v, _ORGANIZATION, '"organizations/<number>"')

    @field_validator("asset_inventory_parents")
    @classmethod
    def _parents(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            bad = [p for p in v if not (_NODE.match(p) or (
                p.startswith("projects/") and _PROJECT_ID.match(p.split("/", 1)[1])))]
            if bad or not v:
                raise ValueError('asset_inventory_parents: not "organizations/N", '
                                 f'"folders/N" or "projects/ID": {", ".join(bad)}')
        return v

    @field_validator("kms_locations")
    @classmethod
    def _locations(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else all_match(v, _LOCATION, "KMS locations")

    @field_validator("org_policy_constraints")
    @classmethod
    def _constraints(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(all_match(v, _CONSTRAINT, "constraint names (service.name)")))

    @field_validator("oauth_url")
    @classmethod
    def _oauth_url(cls, v: str | None) -> str | None:
        return None if v is None else check_url(v)

    @model_validator(mode="after")
    def _consistent(self) -> GcpOptions:
        if self.auth == "service_account_key" and self.service_account_key is None:
            raise ValueError('auth = "service_account_key" needs service_account_key')
        if self.project_ids == []:
            raise ValueError("project_ids must not be empty (omit it to discover projects)")
        ep = self.resource_manager_endpoint
        if ep is not None:
            if self.resource_manager_transport == "rest":
                check_url(ep)
            elif "://" in ep:
                raise ValueError("with the grpc transport, resource_manager_endpoint is "
                                 "host[:port] (no scheme)")
        return self


def _project(d: dict[str, Any]) -> Project:
    return Project(id=str(d["projectId"]), name=str(d.get("name") or ""),
                   parent=d.get("parent") or None, display_name=d.get("displayName"),
                   labels=dict(d.get("labels") or {}))


def _chain(gctx: GcpContext, project: Project) -> list[str]:
    """The project (by number and id) and its ancestors, nearest first; only the project
    itself when an ancestor cannot be read."""
    own = [project.name, project.resource]
    try:
        return own + gctx.hierarchy.ancestors(project.name)
    except SourceError:
        return own


class GcpConnector(Connector):
    """Reads IAM, logging, storage, network, Cloud SQL, KMS, SCC, governance, DLP,
    load-balancer, billing and organisation-policy settings of every project (and the
    IAM policies of the folders and organisation above them)."""

    type: ClassVar[str] = "gcp"
    prefix: ClassVar[str] = "gcp"
    Options: ClassVar[type[ConnectorOptions]] = GcpOptions

    options: GcpOptions

    def __init__(self, name: str, options: ConnectorOptions, *,
                 credentials: Any = None) -> None:
        if not isinstance(options, GcpOptions):
            options = GcpOptions.model_validate(options.model_dump())
        super().__init__(name, options)
        self._credentials = credentials
        #: Projects and hierarchy nodes read by the last ``collect``.
        self.projects: list[Project] = []
        self.nodes: list[str] = []

    # -- discovery

    def discover_projects(self, rm: ResourceManager) -> Iterator[Project | Coverage]:
        o = self.options
        excluded = set(o.exclude_project_ids)
        if o.project_ids is not None:
            for pid in o.project_ids:
                if pid in excluded:
                    continue
                try:
                    yield _project(rm.get_project(pid))
                except SourceError as exc:
                    yield Coverage(pid, GLOBAL, "*", ok=False, error=f"project: {exc}")
            return
        for d in rm.search_projects():
            if d.get("projectId") and d["projectId"] not in excluded:
                yield _project(d)

    def discover_nodes(self, ctx: CollectContext, rm: ResourceManager, hierarchy: Hierarchy,
                       projects: list[Project]) -> dict[str, tuple[str | None, str | None]]:
        """Organisations and folders: ``name → (parent, display name)``."""
        nodes: dict[str, tuple[str | None, str | None]] = {}
        try:
            orgs = self.options.organization_ids or [
                o["name"] for o in rm.search_organizations()]
        except SourceError as exc:
            ctx.log.warning("gcp organizations could not be searched", error=str(exc))
            orgs = []
        queue = list(orgs)
        for org in orgs:
            nodes[org] = (None, None)
        while queue:
            parent = queue.pop(0)
            try:
                children = rm.list_folders(parent)
            except SourceError as exc:
                ctx.log.warning("gcp folders could not be listed", parent=parent,
                                error=str(exc))
                continue
            for f in children:
                hierarchy.learn(f["name"], f.get("parent"))
                if f["name"] not in nodes:
                    nodes[f["name"]] = (f.get("parent"), f.get("displayName"))
                    queue.append(f["name"])
        # Ancestors of projects outside what the listings showed (no org-level access).
        for p in projects:
            if not p.parent:
                continue
            try:
                chain = [p.parent, *hierarchy.ancestors(p.parent)]
            except SourceError:
                continue  # the project's policy evidence records the gap
            for node in chain:
                if node not in nodes:
                    nodes[node] = (hierarchy.parent_of(node), None)
        return nodes

    # -- collect

    def _apis(self, ctx: CollectContext, auth: Any) -> dict[str, HttpClient]:
        eps = self.options.endpoints
        return {
            name: run_client(getattr(eps, name), auth, self.options.http, ctx)
            for name in GcpEndpoints.model_fields
        }

    def _readers(self) -> list[tuple[str, Callable[..., Iterator[Any]]]]:
        out: list[tuple[str, Callable[..., Iterator[Any]]]] = []
        for m in PROJECT_MODULES:
            read = m.read
            if m is orgpolicy:
                read = partial(orgpolicy.read,
                               constraints=tuple(self.options.org_policy_constraints))
            out.append((m.SERVICE, read))
        return out

    def plan(self, gctx: GcpContext, projects: list[Project],
             nodes: dict[str, tuple[str | None, str | None]],
             inventory: assetinventory.Inventory | None = None) -> Iterator[Unit]:
        for node, (parent, display) in nodes.items():
            yield Unit(node, iam.SERVICE, partial(iam.read_node, gctx, node, parent, display),
                       source="gcp")
        readers = self._readers()
        bulk = {storage.SERVICE: assetinventory.read_storage,
                network.SERVICE: assetinventory.read_network}
        for project in projects:
            covered = inventory is not None and inventory.covers(_chain(gctx, project))
            for service, read in readers:
                if covered and service in bulk:
                    yield Unit(project.id, service,
                               partial(bulk[service], gctx, inventory, project), source="gcp")
                else:
                    yield Unit(project.id, service, partial(read, gctx, project), source="gcp")

    def inventory_parents(self, projects: list[Project],
                          nodes: dict[str, tuple[str | None, str | None]]) -> list[str]:
        """The configured parents, else the organisations discovered, else each
        project (an identity without organisation access)."""
        if self.options.asset_inventory_parents is not None:
            return list(self.options.asset_inventory_parents)
        orgs = [n for n in nodes if n.startswith("organizations/")]
        return orgs or [p.resource for p in projects]

    def load_inventory(self, ctx: CollectContext, gctx: GcpContext, projects: list[Project],
                       nodes: dict[str, tuple[str | None, str | None]]
                       ) -> assetinventory.Inventory | None:
        """The bulk listing, or None in direct mode; a parent that cannot be listed
        is logged and its projects read directly."""
        if self.options.inventory != "asset_inventory":
            return None
        inv = assetinventory.load(gctx, self.inventory_parents(projects, nodes))
        for parent, error in inv.failed.items():
            ctx.log.warning("gcp asset inventory could not be listed; reading directly",
                            connector=self.name, parent=parent, error=error)
        return inv

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        o = self.options
        try:
            creds = self._credentials or build_credentials(o)
        except Exception as exc:  # noqa: BLE001 - secret, key format, ADC lookup…
            error = f"credentials could not be created: {type(exc).__name__}: {exc}"
            for scope in o.project_ids or [self.name]:
                yield Coverage(scope, GLOBAL, "*", ok=False, error=error)
            return
        auth = bearer_auth(creds)
        try:
            auth()  # one token up front: a bad key is one clear error, not one per unit
        except SourceError as exc:
            ctx.log.warning("gcp credentials failed", connector=self.name, error=str(exc))
            for scope in o.project_ids or [self.name]:
                yield Coverage(scope, GLOBAL, "*", ok=False, error=str(exc))
            return
        rm = ResourceManager(
            creds,
            transport=o.resource_manager_transport,
            endpoint=o.resource_manager_endpoint,
            timeout=o.http.timeout,
            retry_timeout=o.resource_manager_retry_timeout,
        )
        apis = self._apis(ctx, auth)
        try:
            hierarchy = Hierarchy(rm)
            projects: list[Project] = []
            try:
                for item in self.discover_projects(rm):
                    if isinstance(item, Coverage):
                        yield item
                    else:
                        projects.append(item)
                        hierarchy.learn(item.name, item.parent)
                        if o.project_ids is not None:  # closes an earlier "*" error
                            yield Coverage(item.id, GLOBAL, "*", ok=True)
            except SourceError as exc:
                ctx.log.warning("gcp projects could not be listed", connector=self.name,
                                error=str(exc))
                yield Coverage(self.name, GLOBAL, "*", ok=False,
                               error=f"project discovery failed: {exc}")
                return
            if o.project_ids is None:
                yield Coverage(self.name, GLOBAL, "*", ok=True)
            nodes = (self.discover_nodes(ctx, rm, hierarchy, projects)
                     if o.read_hierarchy_policies else {})
            self.projects, self.nodes = projects, list(nodes)
            ctx.log.info("gcp scopes", connector=self.name, projects=len(projects),
                         folders_and_orgs=len(nodes))
            gctx = GcpContext(rm=rm, hierarchy=hierarchy, apis=apis,
                              kms_locations=o.kms_locations)
            inventory = self.load_inventory(ctx, gctx, projects, nodes)
            yield from stream_units(
                self.plan(gctx, projects, nodes, inventory), max_workers=o.max_workers,
                cancelled=ctx.cancelled, source="gcp",
            )
        finally:
            for client in apis.values():
                client.close()
            rm.close()
