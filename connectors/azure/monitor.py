"""Azure Monitor: is the subscription's activity log exported, and retained long enough?

The activity log itself keeps 90 days; a *diagnostic setting* on the subscription sends
it to a Log Analytics workspace, a storage account or an event hub. One unit per
subscription (service ``monitor``):

* ``GET /subscriptions/<id>/providers/Microsoft.Insights/diagnosticSettings`` — the
  listing (a failure fails the unit);
* for each workspace destination, ``GET <workspace id>`` for ``retentionInDays``;
* for each storage destination, ``GET <account id>/managementPolicies/default`` (404:
  no lifecycle policy, blobs are kept until deleted by hand).

Destination reads are partial: a failure is recorded in the destination's ``error``
and only the retention check becomes an error (unless another destination suffices).

Resource type ``azure.monitor.activity_log`` (id = ``/subscriptions/<id>/providers/
microsoft.insights/activitylog``, region ``global``)::

    {"subscriptionId": "...",
     "diagnosticSettings": [{"name", "workspaceId", "storageAccountId",
                             "eventHubAuthorizationRuleId", "eventHubName",
                             "logs": [{"category", "categoryGroup", "enabled"}]}],
     "destinations": {"<lower-cased id>": {"kind": "workspace", "retentionInDays": 365}
                      | {"kind": "storage", "deleteAfterDays": null | 90}
                      | {"kind": ..., "error": "..."}}}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.checks import Verdict, check, failed, passed
from connectors.http import SourceError
from connectors.records import Evidence, utcnow

from .arm import Arm
from .common import GLOBAL, EvidenceMissing, require

SERVICE = "monitor"
ACTIVITY_LOG = "azure.monitor.activity_log"
DIAGNOSTIC_API = "2021-05-01-preview"
WORKSPACE_API = "2022-10-01"
STORAGE_API = "2023-05-01"

ACTIONS = (
    "Microsoft.Insights/diagnosticSettings/read",
    "Microsoft.OperationalInsights/workspaces/read",
    "Microsoft.Storage/storageAccounts/managementPolicies/read",
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


def read_destination(arm: Arm, kind: str, resource_id: str) -> dict[str, Any]:
    try:
        if kind == "workspace":
            ws = arm.get(resource_id, WORKSPACE_API)
            return {"kind": kind,
                    "retentionInDays": (ws.get("properties") or {}).get("retentionInDays")}
        policy = arm.get(f"{resource_id}/managementPolicies/default", STORAGE_API,
                         missing_ok=True)
        return {"kind": kind, "deleteAfterDays": storage_delete_after_days(policy)}
    except SourceError as exc:
        return {"kind": kind, "error": str(exc)}


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


@check(
    id="azure.monitor.activity_log_exported",
    title="The subscription's activity log is exported by a diagnostic setting",
    severity="high",
    resource_type=ACTIVITY_LOG,
    rationale="The activity log records every control-plane change and sign-in to ARM; "
    "kept only in the portal it disappears after 90 days and cannot be searched or "
    "alerted on with other logs.",
    remediation="Create a subscription diagnostic setting sending the Administrative, "
    "Security, Policy and Alert categories to a Log Analytics workspace or storage account.",
    parameters={"required_categories": ["Administrative", "Security", "Policy", "Alert"]},
)
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


@check(
    id="azure.monitor.activity_log_retention",
    title="The exported activity log is retained for at least a year",
    severity="medium",
    resource_type=ACTIVITY_LOG,
    rationale="Investigations and audits look back months; logs must be kept long enough "
    "to reconstruct who changed what, when.",
    remediation="Set the destination workspace's retention (or the storage account's "
    "lifecycle rules for insights-activity-logs) to at least the required number of days.",
    parameters={"min_retention_days": 365,
                "required_categories": ["Administrative", "Security", "Policy", "Alert"]},
)
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
