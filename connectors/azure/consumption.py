"""Cost Management budgets: capacity and spend are watched, with alerts.

One unit per subscription (service ``consumption``): ``GET /subscriptions/<id>/
providers/Microsoft.Consumption/budgets`` (the listing; a failure fails the unit).

Resource type ``azure.consumption.budgets`` (id = ``/subscriptions/<id>/providers/
Microsoft.Consumption/budgets``, region ``global``)::

    {"subscriptionId", "budgets": [{"name", "category", "amount", "timeGrain",
      "notifications": [{"name", "enabled", "operator", "threshold", "thresholdType",
                         "contactEmails": n, "contactGroups": n, "contactRoles": [...]}]}]}

Recipients' e-mail addresses are counted, not kept (personal data the checks do not
need); ``currentSpend`` and ``forecastSpend`` move every day and are left out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.kit import GLOBAL, require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence, utcnow

from .arm import Arm

SERVICE = "consumption"
BUDGETS = "azure.consumption.budgets"
API_VERSION = "2023-05-01"

ACTIONS = ("Microsoft.Consumption/budgets/read",)


def _notification(name: str, n: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": name, "enabled": n.get("enabled") is True, "operator": n.get("operator"),
            "threshold": n.get("threshold"), "thresholdType": n.get("thresholdType", "Actual"),
            "contactEmails": len(n.get("contactEmails") or []),
            "contactGroups": len(n.get("contactGroups") or []),
            "contactRoles": sorted(n.get("contactRoles") or [])}


def transform(budget: Mapping[str, Any]) -> dict[str, Any]:
    p = budget.get("properties") or {}
    return {"name": budget.get("name"), "category": p.get("category"), "amount": p.get("amount"),
            "timeGrain": p.get("timeGrain"),
            "notifications": sorted((_notification(k, v) for k, v in
                                     (p.get("notifications") or {}).items()),
                                    key=lambda n: str(n["name"]))}


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.Consumption/budgets"
    budgets = sorted((transform(b) for b in arm.list(path, API_VERSION)),
                     key=lambda b: str(b["name"]))
    yield Evidence(scope=subscription, region=GLOBAL, resource_type=BUDGETS,
                   resource_id=path.lower(),
                   payload={"subscriptionId": subscription, "budgets": budgets},
                   collected_at=utcnow())


def _alerts(budget: Mapping[str, Any], max_threshold: float) -> list[str]:
    out = []
    for n in budget.get("notifications") or []:
        recipients = n["contactEmails"] + n["contactGroups"] + len(n["contactRoles"])
        threshold = n.get("threshold")
        if (n["enabled"] and recipients and isinstance(threshold, (int, float))
                and threshold <= max_threshold):
            out.append(f"{n['name']} at {threshold}% ({n['thresholdType']})")
    return out


@check("azure.consumption.budget_alerts")
def budget_alerts(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    budgets = [b for b in require(payload, "budgets")
               if str(b.get("category") or "Cost").lower() == "cost"]
    if not budgets:
        return failed("No cost budget is set on the subscription")
    limit = float(params["max_threshold_percent"])
    for b in budgets:
        alerts = _alerts(b, limit)
        if alerts:
            return passed(f"Budget {b['name']} ({b.get('amount')} per "
                          f"{str(b.get('timeGrain')).lower()}) alerts: {', '.join(alerts)}")
    return failed(f"No budget has an enabled alert with recipients at or below {limit:g}%: "
                  + ", ".join(str(b["name"]) for b in budgets))
