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


@check("aws.logs.log_group_retention")
def log_group_retention(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    want = params["min_retention_days"]
    days = payload.get("retentionInDays")
    if days is None:
        return passed("Events never expire")
    if days >= want:
        return passed(f"Events are kept {days} days (required: {want})")
    return failed(f"Events are kept only {days} days (required: {want})")


@check("aws.logs.log_group_retention_set")
def log_group_retention_set(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    """``retentionInDays`` absent means "never expire" (DescribeLogGroups omits it)."""
    limit = params["max_retention_days"]
    days = payload.get("retentionInDays")
    if days is None:
        return failed("Events never expire")
    if limit and days > limit:
        return failed(f"Events are kept {days} days (at most {limit} allowed)")
    return passed(f"Events are deleted after {days} days")
