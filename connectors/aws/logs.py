"""CloudWatch Logs log groups and their retention.

Regional units (service ``logs``): ``DescribeLogGroups`` page by page, one evidence per
log group. ``storedBytes`` (it grows with every event) is dropped.

Resource type ``aws.logs.log_group`` (id = log group ARN, without the ``:*`` suffix).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import actions, paginate, without
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "logs"
LOG_GROUP = "aws.logs.log_group"

ACTIONS = actions("logs:DescribeLogGroups")


def log_group_arn(group: Mapping[str, Any]) -> str:
    arn = str(group.get("logGroupArn") or group.get("arn") or "")
    return arn[:-2] if arn.endswith(":*") else arn


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("logs", region)
    for group in paginate(client, "describe_log_groups", "logGroups"):
        arn = log_group_arn(group) or account.arn(
            "logs", region, f"log-group:{group['logGroupName']}"
        )
        yield account.evidence(LOG_GROUP, arn, region, without(group, ("storedBytes",)))


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check(
    id="aws.logs.log_group_retention",
    title="CloudWatch log groups keep events long enough",
    severity="low",
    resource_type=LOG_GROUP,
    rationale="Logs deleted after a few days cannot support an investigation that starts "
    "weeks after the event; retention must match the logging policy.",
    remediation="Set the log group's retention to at least the required number of days "
    "(or export older events to S3).",
    parameters={"min_retention_days": 365},
)
def log_group_retention(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    want = params["min_retention_days"]
    days = payload.get("retentionInDays")
    if days is None:
        return passed("Events never expire")
    if days >= want:
        return passed(f"Events are kept {days} days (required: {want})")
    return failed(f"Events are kept only {days} days (required: {want})")


@check(
    id="aws.logs.log_group_retention_set",
    title="CloudWatch log groups delete events after a set retention",
    severity="low",
    resource_type=LOG_GROUP,
    rationale="Logs hold personal data and secrets that leak into messages; kept forever "
    "they outlive every purpose. A retention period deletes events once they are no "
    "longer required.",
    remediation="Set a retention period on the log group (PutRetentionPolicy) matching the "
    "logging policy, at most max_retention_days.",
    parameters={"max_retention_days": 3653},
)
def log_group_retention_set(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    """``retentionInDays`` absent means "never expire" (DescribeLogGroups omits it)."""
    limit = params["max_retention_days"]
    days = payload.get("retentionInDays")
    if days is None:
        return failed("Events never expire")
    if limit and days > limit:
        return failed(f"Events are kept {days} days (at most {limit} allowed)")
    return passed(f"Events are deleted after {days} days")
