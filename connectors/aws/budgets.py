"""AWS Budgets: are cost (or usage) budgets set, with alerts.

One global unit per account (service ``budgets``): ``DescribeBudgets`` page by page, and
``DescribeNotificationsForBudget`` for each (a failure fails the unit). Resource type
``aws.budgets.budgets`` (id = account id)::

    {"Budgets": [{"BudgetName", "BudgetType", "TimeUnit", "BudgetLimit",
                  "Notifications": [{"NotificationType", "ComparisonOperator",
                                     "Threshold", "ThresholdType"?,
                                     "NotificationState"?}]}]}

Spend to date (``CalculatedSpend``) moves every day and is not kept. A notification
always has subscribers (``CreateNotification`` requires one to eleven), so it alerts
someone. Budget types are ``USAGE | COST | RI_UTILIZATION | RI_COVERAGE |
SAVINGS_PLANS_UTILIZATION | SAVINGS_PLANS_COVERAGE`` (botocore budgets 2016-10-20).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import paginate
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import GLOBAL, require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "budgets"
BUDGETS = "aws.budgets.budgets"

ACTIONS: dict[str, str | None] = {
    "budgets:DescribeBudgets": "budgets:ViewBudget",
    "budgets:DescribeNotificationsForBudget": "budgets:ViewBudget",
}
_FIELDS = ("BudgetName", "BudgetType", "TimeUnit", "BudgetLimit")


def read(account: Account, region: str = GLOBAL) -> Iterator[Evidence]:
    client = account.client("budgets", "us-east-1")
    aid = account.account_id
    budgets = []
    for budget in paginate(client, "describe_budgets", "Budgets", AccountId=aid):
        entry = {k: budget[k] for k in _FIELDS if k in budget}
        entry["Notifications"] = list(paginate(
            client, "describe_notifications_for_budget", "Notifications", AccountId=aid,
            BudgetName=budget["BudgetName"]))
        budgets.append(entry)
    yield account.evidence(BUDGETS, aid, GLOBAL, {"Budgets": budgets})


READERS = (ReaderSpec(SERVICE, read, regional=False),)


@check("aws.budgets.alerts_configured")
def alerts_configured(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    budgets = require(payload, "Budgets")
    kinds = set(params["budget_types"])
    relevant = [b for b in budgets if b.get("BudgetType") in kinds]
    alerting = [b for b in relevant if b.get("Notifications")]
    if not relevant:
        return failed("No " + " or ".join(sorted(kinds)).lower() + " budget exists")
    if not alerting:
        return failed("Budgets without alert notifications: "
                      + ", ".join(str(b.get("BudgetName")) for b in relevant))
    return passed("Budgets with alerts: " + ", ".join(
        f"{b.get('BudgetName')} ({len(b['Notifications'])} notification(s))"
        for b in alerting))
