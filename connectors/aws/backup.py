"""AWS Backup: does each region have a backup plan, and are restores tested.

Regional units (service ``backup``): ``ListBackupPlans`` page by page. Resource type
``aws.backup.plans`` (id = region): ``{"BackupPlansList": [...]}`` without
``LastExecutionDate`` (it moves with every run of a plan). Resource type
``aws.backup.restore_testing`` (id = region): ``{"RestoreTestingPlans": [{name, ARN,
schedule, "Selections": [{name, protected resource type}]}]}`` without execution times,
read partially (a failure is recorded under ``_errors``).

``backup:ListBackupPlans`` is not part of AWS's managed ``SecurityAudit`` policy: with
that policy alone this unit is an ``error`` (see docs/permissions/aws.json).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import MISSING, actions, paginate, read_partial, without
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "backup"
PLANS = "aws.backup.plans"
RESTORE_TESTING = "aws.backup.restore_testing"

ACTIONS = actions(
    "backup:ListBackupPlans", "backup:ListRestoreTestingPlans",
    "backup:ListRestoreTestingSelections",
)


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("backup", region)
    plans = [without(p, ("LastExecutionDate",))
             for p in paginate(client, "list_backup_plans", "BackupPlansList")]
    yield account.evidence(PLANS, region, region, {"BackupPlansList": plans})
    errors: dict[str, str] = {}
    testing = read_partial(errors, "RestoreTestingPlans", lambda: restore_testing(client))
    yield account.evidence(RESTORE_TESTING, region, region, with_errors(
        {} if testing is MISSING else {"RestoreTestingPlans": testing}, errors))


def restore_testing(client: Any) -> list[dict[str, Any]]:
    """Each restore testing plan with its selections (what it restores)."""
    plans = []
    for plan in paginate(client, "list_restore_testing_plans", "RestoreTestingPlans"):
        name = plan["RestoreTestingPlanName"]
        selections = [
            {k: s.get(k) for k in ("RestoreTestingSelectionName", "ProtectedResourceType")}
            for s in paginate(client, "list_restore_testing_selections",
                              "RestoreTestingSelections", RestoreTestingPlanName=name)]
        plans.append({"RestoreTestingPlanName": name,
                      "RestoreTestingPlanArn": plan.get("RestoreTestingPlanArn"),
                      "ScheduleExpression": plan.get("ScheduleExpression"),
                      "Selections": selections})
    return plans


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.backup.plan_exists")
def plan_exists(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    plans: Any = require(payload, "BackupPlansList")
    want = params["min_plans"]
    names = ", ".join(str(p.get("BackupPlanName")) for p in plans)
    if len(plans) >= want:
        return passed(f"{len(plans)} backup plan(s): {names}")
    if not plans:
        return failed("No backup plan exists in the region")
    return failed(f"Only {len(plans)} backup plan(s) (required: {want}): {names}")


@check("aws.backup.restore_testing")
def restore_testing_plans(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    plans = require(payload, "RestoreTestingPlans")
    if not plans:
        return failed("No restore testing plan exists in the region")
    useful = [p for p in plans if p.get("Selections")]
    if not useful:
        return failed("Restore testing plans select nothing to restore: "
                      + ", ".join(str(p.get("RestoreTestingPlanName")) for p in plans))
    return passed("Restore testing plans: " + ", ".join(
        f"{p.get('RestoreTestingPlanName')} ("
        + ", ".join(str(s.get("ProtectedResourceType")) for s in p["Selections"]) + ")"
        for p in useful))
