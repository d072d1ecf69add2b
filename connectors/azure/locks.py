"""Management locks on critical resources.

Which resources are critical is configuration, not a check parameter, because it
decides what is read: the connector options ``critical_resource_types`` (default: key
vaults, Recovery Services vaults, SQL servers, storage accounts) and ``critical_tag``
(``"name=value"``: resources carrying that tag are critical too).

One unit per subscription (service ``locks``), all listings (a failure fails the unit):

* ``GET /subscriptions/<id>/providers/Microsoft.Authorization/locks`` — every lock in
  the subscription, at subscription, resource-group and resource level;
* ``GET /subscriptions/<id>/resources?$filter=resourceType eq '…' or …`` and, with a
  tag, ``$filter=tagName eq '…' and tagValue eq '…'``.

A lock applies to its own scope and everything below it, as ARM enforces it.

Resource type ``azure.locks.critical_resource`` (id = the resource's ARM id)::

    {"id", "name", "type", "resourceGroup", "criticalBecause": ["type" | "tag"],
     "locks": [{"name", "level": "CanNotDelete" | "ReadOnly", "scope": "<ARM id>"}]}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.kit import require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

from .arm import Arm, evidence
from .common import resource_group_of

SERVICE = "locks"
CRITICAL_RESOURCE = "azure.locks.critical_resource"
LOCKS_API = "2020-05-01"
RESOURCES_API = "2021-04-01"

ACTIONS = (
    "Microsoft.Authorization/locks/read",
    "Microsoft.Resources/subscriptions/resources/read",
)

DEFAULT_CRITICAL_TYPES = (
    "Microsoft.KeyVault/vaults",
    "Microsoft.RecoveryServices/vaults",
    "Microsoft.Sql/servers",
    "Microsoft.Storage/storageAccounts",
)

_LOCK_MARK = "/providers/microsoft.authorization/locks/"


def lock_scope(lock_id: str) -> str:
    """The ARM id a lock is attached to (lower-cased)."""
    lowered = lock_id.lower()
    i = lowered.rfind(_LOCK_MARK)
    return lowered[:i] if i >= 0 else lowered


def applies(scope: str, resource_id: str) -> bool:
    rid = resource_id.lower()
    return rid == scope or rid.startswith(scope + "/")


def _quote(value: str) -> str:
    return value.replace("'", "''")


def critical_resources(
    arm: Arm, subscription: str, types: Sequence[str], tag: tuple[str, str] | None
) -> dict[str, dict[str, Any]]:
    path = f"/subscriptions/{subscription}/resources"
    found: dict[str, dict[str, Any]] = {}
    if types:
        flt = " or ".join(f"resourceType eq '{_quote(t)}'" for t in types)
        for r in arm.list(path, RESOURCES_API, {"$filter": flt}):
            found.setdefault(str(r["id"]).lower(), {"resource": r, "because": []})[
                "because"].append("type")
    if tag:
        flt = f"tagName eq '{_quote(tag[0])}' and tagValue eq '{_quote(tag[1])}'"
        for r in arm.list(path, RESOURCES_API, {"$filter": flt}):
            found.setdefault(str(r["id"]).lower(), {"resource": r, "because": []})[
                "because"].append("tag")
    return found


def read(
    arm: Arm,
    subscription: str,
    *,
    critical_types: Sequence[str] = DEFAULT_CRITICAL_TYPES,
    critical_tag: tuple[str, str] | None = None,
    **_: Any,
) -> Iterator[Evidence]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.Authorization/locks"
    locks = [
        {
            "name": lock.get("name"),
            "level": (lock.get("properties") or {}).get("level"),
            "scope": lock_scope(str(lock.get("id", ""))),
        }
        for lock in arm.list(path, LOCKS_API)
    ]
    for rid, item in sorted(critical_resources(arm, subscription, critical_types,
                                               critical_tag).items()):
        r = item["resource"]
        payload = {
            "id": r.get("id"),
            "name": r.get("name"),
            "type": r.get("type"),
            "resourceGroup": resource_group_of(str(r.get("id", ""))),
            "criticalBecause": item["because"],
            "locks": sorted(
                (lk for lk in locks if applies(lk["scope"], rid)),
                key=lambda lk: (lk["scope"], str(lk["name"])),
            ),
        }
        yield evidence(subscription, CRITICAL_RESOURCE, r, payload)


@check("azure.locks.critical_resource_locked")
def critical_resource_locked(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    accepted = {str(level).lower() for level in params["accepted_levels"]}
    locks = require(payload, "locks")
    good = [lk for lk in locks if str(lk.get("level", "")).lower() in accepted]
    if good:
        lk = good[0]
        own = lk["scope"] == str(payload.get("id", "")).lower()
        where = "the resource itself" if own else lk["scope"]
        return passed(f"Lock {lk['name']} ({lk['level']}) on {where} protects it")
    if locks:
        levels = ", ".join(sorted({str(lk.get("level")) for lk in locks}))
        return failed(f"Only locks of level {levels} apply; none is accepted")
    return failed("No management lock protects this critical resource")
