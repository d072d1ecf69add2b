"""Cloud-service governance: subscription ownership and environment tags, management
group placement, and production/non-production separation.

One unit per subscription (service ``governance``):

* ``GET /subscriptions/<id>`` — the subscription with its ``tags`` and ``tenantId``
  (a failure fails the unit);
* ``GET /subscriptions/<id>/resourcegroups`` — every resource group with its tags
  (a listing: a failure fails the unit);
* ``GET /providers/Microsoft.Management/managementGroups/<tenant id>?$expand=children
  &$recurse=true`` — the management-group tree under the tenant root group, read once
  per run for all subscriptions of the tenant (:class:`ManagementTree`); a failure
  (typically: no Reader role at the root group) is recorded under
  ``_errors.managementGroups`` and only the placement check becomes an error.

Resource type ``azure.governance.subscription`` (id = ``/subscriptions/<id>``, region
``global``)::

    {"subscriptionId", "displayName", "state", "tenantId", "tags": {...},
     "managementGroups": [{"name", "displayName"}] (nearest first; the last is the
                          tenant root group, named after the tenant id),
     "resourceGroups": [{"name", "tags": {...}}]}
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.http import SourceError
from connectors.kit import GLOBAL, EvidenceMissing, read_partial, require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence, utcnow

from .arm import Arm

SERVICE = "governance"
SUBSCRIPTION = "azure.governance.subscription"
SUBSCRIPTION_API = "2022-12-01"
GROUPS_API = "2021-04-01"
MANAGEMENT_API = "2021-04-01"

ACTIONS = (
    "Microsoft.Resources/subscriptions/read",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Management/managementGroups/read",
)

_SUBSCRIPTION_TYPE = "/subscriptions"


class ManagementTree:
    """The management groups above each subscription, read once per tenant per run
    (thread-safe; a failure is remembered and raised to every caller)."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        self._lock = threading.Lock()
        self._trees: dict[str, dict[str, list[dict[str, Any]]] | SourceError] = {}

    def _read(self, tenant: str) -> dict[str, list[dict[str, Any]]]:
        root = self.arm.http.get(
            f"/providers/Microsoft.Management/managementGroups/{tenant}",
            params={"api-version": MANAGEMENT_API, "$expand": "children", "$recurse": "true"},
        ).json()
        chains: dict[str, list[dict[str, Any]]] = {}

        def walk(node: Mapping[str, Any], above: list[dict[str, Any]]) -> None:
            props = node.get("properties") or {}
            me = {"name": node.get("name"),
                  "displayName": props.get("displayName") or node.get("displayName")}
            for child in props.get("children") or node.get("children") or []:
                if child.get("type") == _SUBSCRIPTION_TYPE:
                    chains[str(child.get("name")).lower()] = [me, *above]
                else:
                    walk(child, [me, *above])

        walk(root, [])
        return chains

    def ancestors(self, tenant: str, subscription: str) -> list[dict[str, Any]] | None:
        """Management groups above ``subscription``, nearest first; None when the tree
        does not list it."""
        with self._lock:
            if tenant not in self._trees:
                try:
                    self._trees[tenant] = self._read(tenant)
                except SourceError as exc:
                    self._trees[tenant] = exc
            tree = self._trees[tenant]
        if isinstance(tree, SourceError):
            raise tree
        return tree.get(subscription.lower())


def read(arm: Arm, subscription: str, *, tree: ManagementTree | None = None,
         **_: Any) -> Iterator[Evidence]:
    sub = arm.get(f"/subscriptions/{subscription}", SUBSCRIPTION_API)
    groups = [{"name": g.get("name"), "tags": dict(g.get("tags") or {})}
              for g in arm.list(f"/subscriptions/{subscription}/resourcegroups", GROUPS_API)]
    tenant = str(sub.get("tenantId") or "")
    errors: dict[str, str] = {}
    ancestors = None
    if tree is not None and tenant:
        ancestors = read_partial(errors, "managementGroups",
                                 lambda: tree.ancestors(tenant, subscription))
    payload: dict[str, Any] = {
        "subscriptionId": subscription,
        "displayName": sub.get("displayName"),
        "state": sub.get("state"),
        "tenantId": tenant,
        "tags": dict(sub.get("tags") or {}),
        "managementGroups": ancestors,
        "resourceGroups": sorted(groups, key=lambda g: str(g["name"]).lower()),
    }
    if tree is None or not tenant or "managementGroups" in errors:
        del payload["managementGroups"]  # unknown, not "none": the check errors
    yield Evidence(scope=subscription, region=GLOBAL, resource_type=SUBSCRIPTION,
                   resource_id=f"/subscriptions/{subscription}",
                   payload=with_errors(payload, errors), collected_at=utcnow())


# --- checks --------------------------------------------------------------------------


def tag_value(tags: Mapping[str, Any] | None, name: str) -> str | None:
    """A tag's value by case-insensitive name (Azure tag names are case-insensitive)."""
    for key, value in (tags or {}).items():
        if str(key).lower() == name.lower() and str(value or "").strip():
            return str(value).strip()
    return None


@check("azure.governance.subscription_tagged")
def subscription_tagged(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    tags = require(payload, "tags")
    missing = [str(t) for t in params["required_tags"] if tag_value(tags, str(t)) is None]
    if missing:
        return failed("Subscription tags missing or empty: " + ", ".join(missing))
    return passed("Subscription is tagged with " + ", ".join(
        f"{t}={tag_value(tags, str(t))}" for t in params["required_tags"]))


@check("azure.governance.subscription_in_management_group")
def subscription_in_management_group(payload: Mapping[str, Any], params: Mapping[str, Any]
                                     ) -> Verdict:
    chain = require(payload, "managementGroups")
    if chain is None:
        raise EvidenceMissing("the subscription is not in the management-group tree read")
    tenant = str(payload.get("tenantId") or "").lower()
    below_root = [g for g in chain if str(g.get("name")).lower() != tenant]
    if not chain or not below_root:
        return failed("The subscription sits directly under the tenant root group")
    path = " > ".join(str(g.get("displayName") or g.get("name")) for g in reversed(chain))
    return passed(f"The subscription sits in {path}")


def _values(text: str) -> list[str]:
    return [v for v in re.split(r"[\s,;/|+&]+", text.lower()) if v]


def environment_classes(values: Mapping[str, str], production: Sequence[str]
                        ) -> dict[str, list[str]]:
    """``production``/``non-production`` → where (subscription, resource groups) each
    class of environment was named."""
    prod = {p.lower() for p in production}
    out: dict[str, list[str]] = {}
    for where, text in values.items():
        for v in _values(text):
            cls = "production" if v in prod else "non-production"
            out.setdefault(cls, []).append(f"{where}={v}")
    return out


@check("azure.governance.environments_separated")
def environments_separated(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    tag = str(params["tag"])
    named: dict[str, str] = {}
    sub_value = tag_value(require(payload, "tags"), tag)
    if sub_value:
        named["subscription"] = sub_value
    for g in require(payload, "resourceGroups"):
        value = tag_value(g.get("tags"), tag)
        if value:
            named[f"resource group {g.get('name')}"] = value
    if not named:
        return failed(f"No '{tag}' tag on the subscription or its resource groups: "
                      "separation cannot be shown")
    classes = environment_classes(named, params["production_values"])
    if len(classes) > 1:
        return failed("Production and non-production mixed: "
                      + "; ".join(f"{k}: {', '.join(v[:4])}" for k, v in classes.items()))
    [(cls, where)] = classes.items()
    return passed(f"Only {cls} environments here ({', '.join(where[:4])})")
