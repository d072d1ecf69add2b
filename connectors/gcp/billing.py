"""Cloud Billing budgets: is the project's spend watched, with alerts?

One unit per project (service ``billing``):

* ``GET cloudbilling.googleapis.com/v1/projects/<id>/billingInfo`` — the billing account
  the project is charged to (a failure fails the unit);
* ``GET billingbudgets.googleapis.com/v1/billingAccounts/<account>/budgets`` — the
  account's budgets, read once per run per account (partial: a failure, e.g. no
  ``billing.budgets.list`` on the account, is recorded under ``_errors.budgets``).

Resource type ``gcp.billing.budgets`` (id = ``projects/<id>/budgets``, region
``global``): the budgets that cover the project (no project filter, or one naming
it; budgets filtered to other projects, or to folders and organisations the project
is not under, are left out)::

    {"projectId", "billingAccount", "billingEnabled",
     "budgets": [{"name", "displayName", "thresholds": [percent],
                  "notifies": bool}]}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.http import SourceError
from connectors.kit import require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence

SERVICE = "billing"
BUDGETS = "gcp.billing.budgets"

PERMISSIONS = ("billing.budgets.list",)  # billingInfo needs resourcemanager.projects.get


def _budget(b: Mapping[str, Any]) -> dict[str, Any]:
    rule = b.get("notificationsRule") or {}
    notifies = (not rule.get("disableDefaultIamRecipients")
                or bool(rule.get("monitoringNotificationChannels"))
                or bool(rule.get("pubsubTopic")))
    return {"name": str(b.get("name", "")).rsplit("/", 1)[-1],
            "displayName": b.get("displayName"),
            "thresholds": sorted(float(t.get("thresholdPercent", 0)) * 100
                                 for t in b.get("thresholdRules") or []),
            "notifies": notifies,
            "filter": {"projects": list((b.get("budgetFilter") or {}).get("projects") or []),
                       "resourceAncestors": list((b.get("budgetFilter") or {})
                                                 .get("resourceAncestors") or [])}}


def covers(budget: Mapping[str, Any], project: Project, ancestors: list[str]) -> bool:
    """Whether a budget's scope includes the project (no filter: the whole account)."""
    projects, nodes = budget["filter"]["projects"], budget["filter"]["resourceAncestors"]
    if not projects and not nodes:
        return True
    return f"projects/{project.number}" in projects or bool(set(nodes) & set(ancestors))


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    info = ctx.api("cloudbilling").get_json(f"/v1/{project.resource}/billingInfo")
    account = str(info.get("billingAccountName") or "")
    payload: dict[str, Any] = {"projectId": project.id, "billingAccount": account or None,
                               "billingEnabled": info.get("billingEnabled") is True}
    errors: dict[str, str] = {}
    if account:
        try:
            ancestors = [project.parent, *ctx.hierarchy.ancestors(project.parent)] \
                if project.parent else []
            budgets = ctx.hierarchy.memo.get(f"budgets:{account}", lambda: [
                _budget(b) for b in ctx.items("billingbudgets", f"/v1/{account}/budgets",
                                              "budgets", {"pageSize": 100})])
            payload["budgets"] = sorted(
                ({k: v for k, v in b.items() if k != "filter"} for b in budgets
                 if covers(b, project, [str(a) for a in ancestors])),
                key=lambda b: str(b["name"]))
        except SourceError as exc:
            errors["budgets"] = str(exc)
    else:
        payload["budgets"] = []
    yield evidence(project.id, BUDGETS, f"{project.resource}/budgets",
                   with_errors(payload, errors))


@check("gcp.billing.budget_alerts")
def budget_alerts(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if not payload.get("billingEnabled"):
        return not_applicable("Billing is not enabled for the project")
    limit = float(params["max_threshold_percent"])
    budgets = require(payload, "budgets")
    for b in budgets:
        low = [t for t in b["thresholds"] if t <= limit]
        if low and b["notifies"]:
            return passed(f"Budget {b.get('displayName') or b['name']} alerts at "
                          + ", ".join(f"{t:g}%" for t in low))
    if not budgets:
        return failed(f"No budget of {payload.get('billingAccount')} covers the project")
    return failed(f"No covering budget alerts anyone at or below {limit:g}%: "
                  + ", ".join(str(b.get("displayName") or b["name"]) for b in budgets))
