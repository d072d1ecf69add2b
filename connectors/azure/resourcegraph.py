"""Bulk inventory mode: Azure Resource Graph instead of per-subscription ARM listings.

With ``inventory = "resource_graph"`` the connector asks Resource Graph once per batch
of subscriptions (``POST /providers/Microsoft.ResourceGraph/resources``, api-version
2022-10-01, ``$top`` 1000 — the documented maximum — and ``$skipToken`` pages) for
every storage account, network security group and virtual network, then builds their
evidence with the same transforms as the direct path (:func:`storage.account_evidence`,
:func:`network.nsg_evidence`, :func:`network.vnet_evidence`): a row of the
``Resources`` table carries the resource's ``properties`` as ARM returns them, and the
other columns projected here are ARM's top-level fields, so the checks read the same
evidence and the content hashes are those of a direct read.

What the inventory replaces (units ``storage`` and ``network`` of each covered
subscription): the three ARM listings ``Microsoft.Storage/storageAccounts``,
``Microsoft.Network/networkSecurityGroups`` and ``Microsoft.Network/virtualNetworks``.
Direct reads fill only what the table lacks: each account's lifecycle policy
(``…/managementPolicies/default`` is a child resource Resource Graph does not index).

A subscription is *covered* when its batch's queries succeeded and Resource Graph
listed the subscription itself (``ResourceContainers``): Resource Graph silently leaves
out what the caller cannot read, so an empty answer alone would close a subscription's
resources by absence. Every other subscription — not listed, batch denied (403),
query refused, a page truncated without a ``$skipToken``, a row that names no
subscription — reads directly, and the reason is logged.

A row that names a resource but lacks a ``properties`` object gives an ``error``
finding for every check of that resource (no evidence: nothing may pass on half a
row); a row without an ``id`` fails its unit (the resource cannot be named).

Freshness: the ``Resources`` table has no per-resource change time (its columns are
``id, name, type, tenantId, kind, location, resourceGroup, subscriptionId, managedBy,
sku, plan, properties, tags, identity, zones, extendedLocation``; storage accounts
carry ``creationTime``, NSGs and VNets nothing), so ``Evidence.source_updated_at``
stays ``None`` rather than an invented time. See docs/bulk-inventory.md.

Permission: ``Microsoft.ResourceGraph/resources/read`` (in the Reader role).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.http import SourceError
from connectors.kit import batches
from core.checks import REGISTRY
from core.records import Evidence, Finding

from . import network, storage
from .arm import Arm
from .common import location_of

API_VERSION = "2022-10-01"
PATH = "/providers/Microsoft.ResourceGraph/resources"
PAGE_SIZE = 1000  # the documented maximum of QueryRequestOptions.$top
#: Subscriptions per request: the Azure CLI and SDK samples send at most 1000.
SUBSCRIPTION_BATCH = 1000
#: A pagination guard: this many pages of 1000 rows is ten million resources.
MAX_PAGES = 10_000

ACTIONS = ("Microsoft.ResourceGraph/resources/read",)

ACCOUNT_TYPE = "Microsoft.Storage/storageAccounts"
NSG_TYPE = "Microsoft.Network/networkSecurityGroups"
VNET_TYPE = "Microsoft.Network/virtualNetworks"
#: ARM type (Resource Graph lower-cases it) → (service, evidence resource type).
TYPES: dict[str, tuple[str, str]] = {
    ACCOUNT_TYPE: (storage.SERVICE, storage.ACCOUNT),
    NSG_TYPE: (network.SERVICE, network.NSG),
    VNET_TYPE: (network.SERVICE, network.VNET),
}
_CANONICAL = {t.lower(): t for t in TYPES}
#: The units the inventory replaces for a covered subscription.
SERVICES: frozenset[str] = frozenset(s for s, _ in TYPES.values())

#: ARM's top-level fields that are also ``Resources`` columns. ``tenantId``,
#: ``resourceGroup`` and ``subscriptionId`` are Resource Graph's own and not in an ARM
#: body; ``etag`` is in ARM bodies but not a column (evidence never stores an etag:
#: :data:`core.records.VOLATILE_KEYS`).
ENVELOPE = ("id", "name", "type", "location", "tags", "sku", "kind", "identity", "zones",
            "extendedLocation", "plan", "managedBy", "properties")
COLUMNS = (*ENVELOPE, "subscriptionId")


def _in_list(types: Sequence[str]) -> str:
    return ", ".join(f"'{t.lower()}'" for t in types)


RESOURCES_QUERY = (
    f"Resources | where type in~ ({_in_list(list(TYPES))}) "
    f"| project {', '.join(COLUMNS)} | order by id asc"
)
SUBSCRIPTIONS_QUERY = (
    "ResourceContainers | where type in~ ('microsoft.resources/subscriptions') "
    "| project id, subscriptionId | order by id asc"
)


class IncompleteResult(SourceError):
    """Resource Graph answered, but not with every row of the query."""


@dataclass(frozen=True)
class Broken:
    """A row that names a resource the checks cannot judge from it."""

    resource_type: str  # ARM type, canonical casing
    resource_id: str | None
    name: str | None
    location: str
    reason: str


@dataclass
class Inventory:
    """What the queries returned, by subscription and ARM type."""

    covered: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # subscription → why not covered
    resources: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    broken: dict[str, list[Broken]] = field(default_factory=dict)
    calls: int = 0

    def covers(self, subscription: str) -> bool:
        return subscription.lower() in self.covered

    def of(self, subscription: str, arm_type: str) -> list[dict[str, Any]]:
        return self.resources.get((subscription.lower(), arm_type), [])

    def broken_of(self, subscription: str, service: str) -> list[Broken]:
        return [b for b in self.broken.get(subscription.lower(), [])
                if TYPES[b.resource_type][0] == service]


def query(arm: Arm, subscriptions: Sequence[str], text: str, *, top: int = PAGE_SIZE,
          max_pages: int = MAX_PAGES, inv: Inventory | None = None
          ) -> Iterator[dict[str, Any]]:
    """Every row of ``text`` over ``subscriptions``, following ``$skipToken``.

    Raises :class:`IncompleteResult` when a page says ``resultTruncated`` without a
    ``$skipToken`` to continue from (Resource Graph then gives no way to the rest), or
    when fewer rows arrived than ``totalRecords`` announced; :class:`SourceError` for an
    HTTP failure or a body that is not a QueryResponse. Requests are counted into
    ``inv.calls``.
    """
    options: dict[str, Any] = {"$top": top, "resultFormat": "objectArray"}
    body: dict[str, Any] = {"subscriptions": list(subscriptions), "query": text,
                            "options": options}
    seen_tokens: set[str] = set()
    received = 0
    total: int | None = None
    for _ in range(max_pages):
        page = arm.http.request("POST", PATH, params={"api-version": API_VERSION},
                                json_body=body).json()
        if inv is not None:
            inv.calls += 1
        rows = page.get("data") if isinstance(page, Mapping) else None
        if not isinstance(rows, list):
            raise SourceError("Resource Graph answer has no data array (not a QueryResponse; "
                              "was resultFormat objectArray honoured?)")
        if total is None and isinstance(page.get("totalRecords"), int):
            total = page["totalRecords"]
        received += len(rows)
        yield from rows
        token = page.get("$skipToken")
        if token:
            if token in seen_tokens:
                raise SourceError("Resource Graph returned the same $skipToken twice")
            seen_tokens.add(str(token))
            body = {**body, "options": {**options, "$skipToken": str(token)}}
            continue
        if str(page.get("resultTruncated", "false")).lower() == "true":
            raise IncompleteResult(
                f"Resource Graph truncated the result ({received} of {total} rows) and gave "
                "no $skipToken to continue")
        if total is not None and received < total:
            raise IncompleteResult(f"Resource Graph returned {received} of {total} rows")
        return
    raise SourceError(f"Resource Graph paging did not end after {max_pages} pages")


def _subscription_of(row: Mapping[str, Any]) -> str | None:
    rid = row.get("id")
    if isinstance(rid, str):
        parts = rid.split("/")
        if len(parts) > 2 and parts[1].lower() == "subscriptions" and parts[2]:
            return parts[2].lower()
    sub = row.get("subscriptionId")
    return sub.lower() if isinstance(sub, str) and sub else None


def arm_shaped(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ARM body of a ``Resources`` row: ARM's top-level fields only, ``type`` in
    ARM's casing, and the columns Resource Graph fills for an absent field (null, or ""
    for a string column) left out, as ARM leaves them out."""
    out = {k: row[k] for k in ENVELOPE if k in row and row[k] is not None and row[k] != ""}
    out["type"] = _CANONICAL.get(str(row.get("type", "")).lower(), row.get("type"))
    return out


def _sort(inv: Inventory, batch: Sequence[str], rows: list[Any]) -> None:
    """File the rows of one batch; a row no subscription of the batch owns makes the
    whole batch untrusted (raised, so its subscriptions read directly)."""
    wanted = set(batch)
    seen: set[str] = set()
    for row in rows:
        if not isinstance(row, Mapping):
            raise SourceError("Resource Graph returned a row that is not an object")
        arm_type = _CANONICAL.get(str(row.get("type", "")).lower())
        sub = _subscription_of(row)
        if arm_type is None or sub not in wanted:
            raise SourceError(
                f"Resource Graph returned a row of type {row.get('type')!r} in subscription "
                f"{sub!r} that the query did not ask for")
        rid = row.get("id")
        name = row.get("name") if isinstance(row.get("name"), str) else None
        if isinstance(rid, str) and rid.lower() in seen:
            continue  # pages of a changing table can repeat a row (paging limitations)
        if not isinstance(rid, str) or not rid.lower().startswith("/subscriptions/"):
            inv.broken.setdefault(sub, []).append(
                Broken(arm_type, None, name, location_of(row), "the row has no resource id"))
        elif not isinstance(row.get("properties"), Mapping):
            inv.broken.setdefault(sub, []).append(
                Broken(arm_type, rid, name, location_of(row),
                       "the row has no properties object"))
        else:
            seen.add(rid.lower())
            inv.resources.setdefault((sub, arm_type), []).append(arm_shaped(row))


def load(arm: Arm, subscriptions: Sequence[str]) -> Inventory:
    """Query every batch of ``subscriptions``; a batch whose queries fail is left out
    (its subscriptions read directly), the reason kept in ``failed``."""
    inv = Inventory()
    for batch in batches([s.lower() for s in subscriptions], SUBSCRIPTION_BATCH):
        part = Inventory()
        try:
            listed = {_subscription_of(r) for r in query(arm, batch, SUBSCRIPTIONS_QUERY,
                                                          inv=part) if isinstance(r, Mapping)}
            _sort(part, batch, list(query(arm, batch, RESOURCES_QUERY, inv=part)))
        except SourceError as exc:
            inv.calls += part.calls
            inv.failed.update(dict.fromkeys(batch, str(exc)))
            continue
        inv.calls += part.calls
        for sub in batch:
            if sub in listed:
                inv.covered.add(sub)
            else:
                inv.failed[sub] = "Resource Graph does not list the subscription (no read " \
                                  "access to it as a whole)"
        for (sub, arm_type), items in part.resources.items():
            if sub in inv.covered:
                inv.resources.setdefault((sub, arm_type), []).extend(items)
        for sub, rows in part.broken.items():
            if sub in inv.covered:
                inv.broken.setdefault(sub, []).extend(rows)
    return inv


def probe(arm: Arm, subscriptions: Sequence[str]) -> str:
    """One page (``$top`` 1) of the resource query over the first batch: whether
    Resource Graph answers this identity. Raises :class:`SourceError` when it does not."""
    batch = [s.lower() for s in subscriptions][:SUBSCRIPTION_BATCH]
    body = {"subscriptions": batch, "query": RESOURCES_QUERY,
            "options": {"$top": 1, "resultFormat": "objectArray"}}
    page = arm.http.request("POST", PATH, params={"api-version": API_VERSION},
                            json_body=body).json()
    if not isinstance(page, Mapping) or not isinstance(page.get("data"), list):
        raise SourceError("Resource Graph answer is not a QueryResponse")
    return (f"reachable: {page.get('totalRecords', '?')} storage accounts, NSGs and VNets "
            f"in {len(batch)} subscriptions")


# --- unit readers --------------------------------------------------------------------


def _errors(subscription: str, broken: list[Broken]) -> Iterator[Finding]:
    """``error`` for every check of each broken row that names its resource; a row
    without an id fails the unit (raised after the rest of the unit was yielded)."""
    for b in broken:
        if b.resource_id is None:
            continue
        resource_type = TYPES[b.resource_type][1]
        for spec in REGISTRY.for_type(resource_type):
            yield Finding(check_id=spec.id, scope=subscription, region=b.location,
                          resource_type=resource_type, resource_id=b.resource_id.lower(),
                          status="error", severity=spec.severity,
                          message=f"Resource Graph: {b.reason}; the resource cannot be "
                                  "judged from it (inventory = \"direct\" reads it from ARM)")


def _unnamed(broken: list[Broken]) -> None:
    unnamed = [b for b in broken if b.resource_id is None]
    if unnamed:
        names = ", ".join(f"{b.resource_type} {b.name or '?'}" for b in unnamed)
        raise SourceError(f"Resource Graph returned {len(unnamed)} row(s) without a resource "
                          f"id ({names}); they cannot be judged (inventory = \"direct\" "
                          "reads them from ARM)")


def read_storage(arm: Arm, inv: Inventory, subscription: str, **_: Any
                 ) -> Iterator[Evidence | Finding]:
    """``azure.storage.account`` evidence of a covered subscription, as
    :func:`storage.read` (the lifecycle policy still read per account)."""
    broken = inv.broken_of(subscription, storage.SERVICE)
    yield from _errors(subscription, broken)
    for account in inv.of(subscription, ACCOUNT_TYPE):
        yield storage.account_evidence(arm, subscription, account)
    _unnamed(broken)


def read_network(arm: Arm, inv: Inventory, subscription: str, **_: Any
                 ) -> Iterator[Evidence | Finding]:
    """NSG and VNet evidence of a covered subscription, as :func:`network.read`."""
    broken = inv.broken_of(subscription, network.SERVICE)
    yield from _errors(subscription, broken)
    for nsg in inv.of(subscription, NSG_TYPE):
        yield network.nsg_evidence(subscription, nsg)
    for vnet in inv.of(subscription, VNET_TYPE):
        yield network.vnet_evidence(subscription, vnet)
    _unnamed(broken)


READERS = {storage.SERVICE: read_storage, network.SERVICE: read_network}
