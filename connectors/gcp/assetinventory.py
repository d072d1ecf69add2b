"""Bulk inventory mode: Cloud Asset Inventory instead of per-project, per-resource reads.

With ``inventory = "asset_inventory"`` the connector lists the resource types below once
per inventory parent (an organisation, folder or project) with ``GET
cloudasset.googleapis.com/v1/{parent}/assets`` (``contentType=RESOURCE`` and, for the
types whose checks read an IAM policy, ``contentType=IAM_POLICY``; every type of one
content type in one paged listing, ``pageSize=1000``, the maximum). ``resource.data`` of
an asset is the JSON the service's own API returns for it, so the payloads are built by
the same transforms as the direct path (:mod:`.storage`, :mod:`.network`) and every
check reads the same evidence whichever way it was collected.

What the inventory replaces (units ``storage`` and ``network`` of each covered project):

* ``storage.googleapis.com/Bucket``: the bucket listing and each bucket's ``…/iam``;
* ``compute.googleapis.com/Firewall``, ``…/Network``, ``…/Subnetwork``: the three
  compute listings.

Direct reads fill only what the inventory lacks: a bucket without an IAM policy asset
has its policy read from the bucket; a bucket whose ``resource.data`` lacks
``iamConfiguration`` is read with ``GET storage/v1/b/<name>``. A project is *covered*
when one of its ancestors (or itself) is a parent whose listings succeeded; the units of
other projects (or every project, when the Cloud Asset API is not enabled or denied)
read directly as before.

Freshness: each evidence carries ``source_updated_at`` — the ``readTime`` of the listing
page it came from ("time the snapshot was taken", ``ListAssetsResponse``; for a bucket
the older of its resource and IAM policy pages): the time up to which the inventory
vouches for the record. Not the asset's ``updateTime``, which is when Google last
recorded a *change*: an unchanged resource has an old ``updateTime`` and is still
described truly. The store counts it toward ``stale`` (docs/concepts.md).

Permissions: ``cloudasset.assets.listResource`` and ``cloudasset.assets.listIamPolicy``
on the parent (roles/cloudasset.viewer).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from connectors.http import SourceError
from core.records import Evidence
from core.times import parse_time

from . import network, storage
from .context import GcpContext, Project, evidence

API = "cloudasset"
BUCKET = "storage.googleapis.com/Bucket"
FIREWALL = "compute.googleapis.com/Firewall"
NETWORK = "compute.googleapis.com/Network"
SUBNETWORK = "compute.googleapis.com/Subnetwork"

RESOURCE_TYPES: tuple[str, ...] = (BUCKET, FIREWALL, NETWORK, SUBNETWORK)
IAM_POLICY_TYPES: tuple[str, ...] = (BUCKET,)
#: The units the inventory replaces for a covered project.
SERVICES: frozenset[str] = frozenset({storage.SERVICE, network.SERVICE})
PAGE_SIZE = 1000  # the documented maximum of assets.list

PERMISSIONS = ("cloudasset.assets.listResource", "cloudasset.assets.listIamPolicy")


@dataclass(frozen=True)
class Asset:
    """One listed asset: the service's JSON, and the snapshot time of its listing page."""

    name: str
    data: Mapping[str, Any]
    as_of: datetime | None


@dataclass
class Inventory:
    """What the listings returned, by project number and asset type."""

    parents: list[str] = field(default_factory=list)  # listed without error
    failed: dict[str, str] = field(default_factory=dict)  # parent → error
    resources: dict[tuple[str, str], list[Asset]] = field(default_factory=dict)
    policies: dict[str, Asset] = field(default_factory=dict)  # by asset name
    calls: int = 0

    def covers(self, chain: Iterable[str]) -> bool:
        """Whether a project whose ancestry (itself first) is ``chain`` was listed."""
        return any(node in self.parents for node in chain)

    def of(self, project: Project, asset_type: str) -> list[Asset]:
        return self.resources.get((project.number, asset_type), [])

    def policy(self, asset_name: str) -> Asset | None:
        return self.policies.get(asset_name)


def _project_number(asset: Mapping[str, Any]) -> str | None:
    for node in asset.get("ancestors") or []:
        if str(node).startswith("projects/"):
            return str(node).split("/", 1)[1]
    parent = str((asset.get("resource") or {}).get("parent") or "")
    if "/projects/" in parent:
        return parent.rsplit("/projects/", 1)[1].split("/", 1)[0]
    return None


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(value) if value else None
    except ValueError:
        return None


def _list(ctx: GcpContext, parent: str, content: str, types: Sequence[str]
          ) -> Iterator[tuple[dict[str, Any], datetime | None]]:
    """Each asset of the listing with its page's ``readTime`` (pages followed here, not by
    ``ctx.items``, because the snapshot time is on the page, not on the asset)."""
    params: dict[str, Any] = {"contentType": content, "assetTypes": list(types),
                              "pageSize": PAGE_SIZE}
    seen: set[str] = set()
    while True:
        page = ctx.api(API).get_json(f"/v1/{parent}/assets", params=params)
        if not isinstance(page, Mapping):
            raise SourceError(f"assets.list of {parent}: expected a JSON object")
        read = _time(page.get("readTime"))
        for a in page.get("assets") or []:
            if isinstance(a, Mapping):
                yield dict(a), read
        token = str(page.get("nextPageToken") or "")
        if not token:
            return
        if token in seen:
            raise SourceError(f"assets.list of {parent} returned the same nextPageToken "
                              "twice (pagination loop)")
        seen.add(token)
        params = {**params, "pageToken": token}


def load(ctx: GcpContext, parents: Sequence[str]) -> Inventory:
    """List every parent's resources and IAM policies; a parent whose listing fails is
    left out (its projects read directly), its error kept in ``failed``."""
    inv = Inventory()
    for parent in parents:
        resources: dict[tuple[str, str], list[Asset]] = {}
        policies: dict[str, Asset] = {}
        try:
            for a, read in _list(ctx, parent, "RESOURCE", RESOURCE_TYPES):
                number = _project_number(a)
                data = (a.get("resource") or {}).get("data")
                if number is None or not isinstance(data, Mapping):
                    continue
                resources.setdefault((number, str(a.get("assetType"))), []).append(
                    Asset(str(a.get("name")), data, read))
            for a, read in _list(ctx, parent, "IAM_POLICY", IAM_POLICY_TYPES):
                if isinstance(a.get("iamPolicy"), Mapping):
                    policies[str(a.get("name"))] = Asset(str(a.get("name")), a["iamPolicy"], read)
        except SourceError as exc:
            inv.failed[parent] = str(exc)
            continue
        inv.parents.append(parent)
        for key, assets in resources.items():
            inv.resources.setdefault(key, []).extend(assets)
        inv.policies.update(policies)
    return inv


def _oldest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def read_storage(ctx: GcpContext, inv: Inventory, project: Project) -> Iterator[Evidence]:
    """``gcp.storage.bucket`` evidence of a covered project, as :func:`storage.read`."""
    for asset in inv.of(project, BUCKET):
        bucket = asset.data
        if "iamConfiguration" not in bucket:  # fill from the bucket itself
            bucket = ctx.api("storage").get_json(
                f"/storage/v1/b/{quote(str(bucket['name']), safe='')}",
                params={"projection": "noAcl"})
        policy = inv.policy(asset.name)
        payload = storage.bucket_payload(ctx, bucket, policy.data if policy else None)
        yield evidence(project.id, storage.BUCKET, str(bucket["name"]), payload,
                       bucket.get("location"),
                       source_updated_at=_oldest(asset.as_of,
                                                 policy.as_of if policy else None))


def read_network(ctx: GcpContext, inv: Inventory, project: Project) -> Iterator[Evidence]:
    """Firewall, VPC and subnet evidence of a covered project, as :func:`network.read`."""
    rules = inv.of(project, FIREWALL)
    yield from network.firewall_evidence(
        project, [dict(a.data) for a in rules],
        {str(a.data.get("selfLink")): a.as_of for a in rules})
    for a in inv.of(project, NETWORK):
        yield network.network_evidence(project, a.data, a.as_of)
    for a in inv.of(project, SUBNETWORK):
        yield network.subnet_evidence(project, a.data, a.as_of)
