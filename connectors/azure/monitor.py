"""Azure Monitor: is the subscription's activity log exported, and retained long enough?

The activity log itself keeps 90 days; a *diagnostic setting* on the subscription sends
it to a Log Analytics workspace, a storage account or an event hub. One unit per
subscription (service ``monitor``):

* ``GET /subscriptions/<id>/providers/Microsoft.Insights/diagnosticSettings`` — the
  listing (a failure fails the unit);
* for each workspace destination, ``GET <workspace id>`` for ``retentionInDays``;
* for each storage destination, ``GET <account id>/managementPolicies/default`` (404:
  no lifecycle policy, blobs are kept until deleted by hand), and its immutability:
  ``GET <account id>`` (account-level ``immutableStorageWithVersioning``) and
  ``GET <account id>/blobServices/default/containers/insights-activity-logs`` (the
  container's time-based retention policy; 404: no container yet).

Destination reads are partial: a failure is recorded in the destination's ``error``
and only the retention check becomes an error (unless another destination suffices).

Resource type ``azure.monitor.activity_log`` (id = ``/subscriptions/<id>/providers/
microsoft.insights/activitylog``, region ``global``)::

    {"subscriptionId": "...",
     "diagnosticSettings": [{"name", "workspaceId", "storageAccountId",
                             "eventHubAuthorizationRuleId", "eventHubName",
                             "logs": [{"category", "categoryGroup", "enabled"}]}],
     "destinations": {"<lower-cased id>": {"kind": "workspace", "retentionInDays": 365}
                      | {"kind": "storage", "deleteAfterDays": null | 90,
                         "immutability": {"container": null | {"state", "days",
                                                                "legalHold"},
                                          "account": {"enabled", "state", "days"}}
                           | "immutabilityError": "..."}
                      | {"kind": ..., "error": "..."}}}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.http import SourceError
from connectors.kit import GLOBAL, EvidenceMissing, require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence, utcnow

from .arm import Arm

SERVICE = "monitor"
ACTIVITY_LOG = "azure.monitor.activity_log"
DIAGNOSTIC_API = "2021-05-01-preview"
WORKSPACE_API = "2022-10-01"
STORAGE_API = "2023-05-01"

ACTIONS = (
    "Microsoft.Insights/diagnosticSettings/read",
    "Microsoft.OperationalInsights/workspaces/read",
    "Microsoft.Storage/storageAccounts/managementPolicies/read",
    "Microsoft.Storage/storageAccounts/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/read",
)

#: Where the activity log lands in a storage account.
ACTIVITY_CONTAINER = "insights-activity-logs"


def transform_setting(setting: Mapping[str, Any]) -> dict[str, Any]:
    p = setting.get("properties") or {}
    out: dict[str, Any] = {"name": setting.get("name")}
    for key in ("workspaceId", "storageAccountId", "eventHubAuthorizationRuleId",
                "eventHubName", "marketplacePartnerId"):
        if p.get(key):
            out[key] = p[key]
    out["logs"] = [
        {k: log[k] for k in ("category", "categoryGroup", "enabled") if log.get(k) is not None}
        for log in p.get("logs") or []
    ]
    return out


def storage_delete_after_days(policy: Mapping[str, Any] | None) -> int | None:
    """Days after which lifecycle rules delete activity-log blobs; None = never."""
    if not policy:
        return None
    rules = ((policy.get("properties") or {}).get("policy") or {}).get("rules") or []
    days: list[int] = []
    for rule in rules:
        if rule.get("enabled") is False:
            continue
        definition = rule.get("definition") or {}
        prefixes = (definition.get("filters") or {}).get("prefixMatch") or []
        applies = not prefixes or any(
            ACTIVITY_CONTAINER.startswith(p.strip("/").split("/")[0]) for p in prefixes
        )
        delete = ((definition.get("actions") or {}).get("baseBlob") or {}).get("delete") or {}
        for key in ("daysAfterModificationGreaterThan", "daysAfterCreationGreaterThan",
                    "daysAfterLastAccessTimeGreaterThan"):
            if applies and isinstance(delete.get(key), (int, float)):
                days.append(int(delete[key]))
    return min(days) if days else None


def read_immutability(arm: Arm, account_id: str) -> dict[str, Any]:
    """The WORM protection of the activity-log container: its own time-based retention
    policy, and the account's default version-level policy."""
    container = arm.get(f"{account_id}/blobServices/default/containers/{ACTIVITY_CONTAINER}",
                        STORAGE_API, missing_ok=True)
    account = arm.get(account_id, STORAGE_API)
    cprops = (container or {}).get("properties") or {}
    cpolicy = (cprops.get("immutabilityPolicy") or {}).get("properties") or {}
    versioning = (account.get("properties") or {}).get("immutableStorageWithVersioning") or {}
    apolicy = versioning.get("immutabilityPolicy") or {}
    return {
        "container": None if container is None else {
            "state": cpolicy.get("state"),
            "days": cpolicy.get("immutabilityPeriodSinceCreationInDays"),
            "legalHold": bool(cprops.get("hasLegalHold")),
        },
        "account": {"enabled": bool(versioning.get("enabled")), "state": apolicy.get("state"),
                    "days": apolicy.get("immutabilityPeriodSinceCreationInDays")},
    }


def read_destination(arm: Arm, kind: str, resource_id: str) -> dict[str, Any]:
    try:
        if kind == "workspace":
            ws = arm.get(resource_id, WORKSPACE_API)
            return {"kind": kind,
                    "retentionInDays": (ws.get("properties") or {}).get("retentionInDays")}
        policy = arm.get(f"{resource_id}/managementPolicies/default", STORAGE_API,
                         missing_ok=True)
        dest: dict[str, Any] = {"kind": kind,
                                "deleteAfterDays": storage_delete_after_days(policy)}
    except SourceError as exc:
        return {"kind": kind, "error": str(exc)}
    try:
        dest["immutability"] = read_immutability(arm, resource_id)
    except SourceError as exc:  # only the immutability check needs it
        dest["immutabilityError"] = str(exc)
    return dest


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.Insights/diagnosticSettings"
    settings = [transform_setting(s) for s in arm.list(path, DIAGNOSTIC_API)]
    destinations: dict[str, dict[str, Any]] = {}
    for s in settings:
        for key, kind in (("workspaceId", "workspace"), ("storageAccountId", "storage")):
            rid = s.get(key)
            if rid and rid.lower() not in destinations:
                destinations[rid.lower()] = read_destination(arm, kind, rid)
    yield Evidence(
        scope=subscription,
        region=GLOBAL,
        resource_type=ACTIVITY_LOG,
        resource_id=f"/subscriptions/{subscription}/providers/microsoft.insights/activitylog",
        payload={
            "subscriptionId": subscription,
            "diagnosticSettings": sorted(settings, key=lambda s: str(s["name"])),
            "destinations": destinations,
        },
        collected_at=utcnow(),
    )


# --- checks --------------------------------------------------------------------------


def _enabled_categories(setting: Mapping[str, Any]) -> set[str]:
    cats: set[str] = set()
    for log in setting.get("logs") or []:
        if not log.get("enabled"):
            continue
        if log.get("category"):
            cats.add(str(log["category"]).lower())
        if str(log.get("categoryGroup", "")).lower() in ("alllogs", "audit"):
            cats.add("*")
    return cats


def _has_destination(setting: Mapping[str, Any]) -> bool:
    return any(setting.get(k) for k in ("workspaceId", "storageAccountId",
                                        "eventHubAuthorizationRuleId", "marketplacePartnerId"))


def exporting_settings(
    payload: Mapping[str, Any], categories: list[str]
) -> list[Mapping[str, Any]]:
    """Diagnostic settings sending every category in ``categories`` to a destination."""
    wanted = {c.lower() for c in categories}
    out = []
    for s in require(payload, "diagnosticSettings"):
        cats = _enabled_categories(s)
        if _has_destination(s) and ("*" in cats or wanted <= cats):
            out.append(s)
    return out


@check("azure.monitor.activity_log_exported")
def activity_log_exported(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    settings = require(payload, "diagnosticSettings")
    if not settings:
        return failed("No diagnostic setting exports the activity log")
    good = exporting_settings(payload, list(params["required_categories"]))
    if good:
        return passed(f"Diagnostic setting {good[0]['name']} exports the activity log")
    return failed(
        "No diagnostic setting sends all of "
        + ", ".join(map(str, params["required_categories"]))
        + " to a destination"
    )


@check("azure.monitor.activity_log_retention")
def activity_log_retention(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    min_days = int(params["min_retention_days"])
    destinations = payload.get("destinations") or {}
    unknown: list[str] = []
    short: list[str] = []
    for s in exporting_settings(payload, list(params["required_categories"])):
        for key in ("workspaceId", "storageAccountId"):
            rid = s.get(key)
            if not rid:
                continue
            dest = destinations.get(str(rid).lower()) or {}
            label = str(rid).rsplit("/", 1)[-1]
            if "error" in dest or not dest:
                unknown.append(f"{label}: {dest.get('error', 'not read')}")
            elif dest["kind"] == "workspace":
                days = dest.get("retentionInDays")
                if isinstance(days, int) and days >= min_days:
                    return passed(f"Workspace {label} keeps the activity log {days} days")
                short.append(f"workspace {label} keeps {days} days")
            else:
                days = dest.get("deleteAfterDays")
                if days is None:
                    return passed(f"Storage account {label} keeps the activity log until "
                                  "deleted (no lifecycle deletion)")
                if days >= min_days:
                    return passed(f"Storage account {label} deletes activity logs after "
                                  f"{days} days")
                short.append(f"storage account {label} deletes after {days} days")
    if unknown:
        raise EvidenceMissing("retention could not be read for " + "; ".join(unknown))
    if short:
        return failed(f"Activity log retention below {min_days} days: " + "; ".join(short))
    return failed("The activity log is not exported to a workspace or storage account, so "
                  "it is kept only 90 days")


def _locked(policy: Mapping[str, Any] | None, states: set[str], min_days: int) -> bool:
    if not policy or str(policy.get("state") or "").lower() not in states:
        return False
    days = policy.get("days")
    return isinstance(days, int) and days >= min_days


@check("azure.monitor.activity_log_immutable")
def activity_log_immutable(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    min_days = int(params["min_retention_days"])
    states = {str(x).lower() for x in params["accepted_states"]}
    destinations = payload.get("destinations") or {}
    unknown: list[str] = []
    weak: list[str] = []
    for s in exporting_settings(payload, list(params["required_categories"])):
        rid = s.get("storageAccountId")
        if not rid:
            continue
        label = str(rid).rsplit("/", 1)[-1]
        dest = destinations.get(str(rid).lower()) or {}
        if "immutability" not in dest:
            unknown.append(f"{label}: {dest.get('immutabilityError') or dest.get('error')}")
            continue
        imm = dest["immutability"]
        for where, policy in ((f"container {ACTIVITY_CONTAINER}", imm.get("container")),
                              ("account default policy", imm.get("account"))):
            if _locked(policy, states, min_days):
                return passed(f"Storage account {label} keeps the activity log immutable "
                              f"({where}: {policy['state']}, {policy['days']} days)")
        c = imm.get("container") or {}
        weak.append(f"{label} (container policy {c.get('state') or 'none'}, "
                    f"{c.get('days') or 0} days)")
    if unknown:
        raise EvidenceMissing("immutability could not be read for " + "; ".join(unknown))
    if weak:
        return failed(f"No storage destination has a {'/'.join(sorted(states))} retention "
                      f"policy of at least {min_days} days: " + "; ".join(weak))
    return failed("The activity log is not exported to a storage account; workspaces and "
                  "event hubs are not immutable storage")
