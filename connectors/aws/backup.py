"""AWS Backup: does each region have a backup plan.

Regional units (service ``backup``): ``ListBackupPlans`` page by page. Resource type
``aws.backup.plans`` (id = region): ``{"BackupPlansList": [...]}`` without
``LastExecutionDate`` (it moves with every run of a plan).

``backup:ListBackupPlans`` is not part of AWS's managed ``SecurityAudit`` policy: with
that policy alone this unit is an ``error`` (see docs/permissions/aws.json).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import paginate, require, without
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence

SERVICE = "backup"
PLANS = "aws.backup.plans"

ACTIONS: dict[str, str | None] = {"backup:ListBackupPlans": "backup:ListBackupPlans"}


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("backup", region)
    plans = [without(p, ("LastExecutionDate",))
             for p in paginate(client, "list_backup_plans", "BackupPlansList")]
    yield account.evidence(PLANS, region, region, {"BackupPlansList": plans})


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check(
    id="aws.backup.plan_exists",
    title="An AWS Backup plan exists in every region",
    severity="medium",
    resource_type=PLANS,
    rationale="A backup plan schedules and retains backup copies of the region's "
    "resources centrally, instead of relying on each service's own settings.",
    remediation="Create a backup plan with rules and resource assignments in the region.",
    parameters={"min_plans": 1},
)
def plan_exists(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    plans: Any = require(payload, "BackupPlansList")
    want = params["min_plans"]
    names = ", ".join(str(p.get("BackupPlanName")) for p in plans)
    if len(plans) >= want:
        return passed(f"{len(plans)} backup plan(s): {names}")
    if not plans:
        return failed("No backup plan exists in the region")
    return failed(f"Only {len(plans)} backup plan(s) (required: {want}): {names}")
