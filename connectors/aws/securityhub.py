"""Security Hub: is it enabled in each region.

Regional units (service ``securityhub``): ``DescribeHub``. The answer
``InvalidAccessException`` ("not subscribed to AWS Security Hub") is Security Hub's own
way of saying it is off, and is recorded as ``{"Hub": null}``; any other error fails the
unit. Resource type ``aws.securityhub.hub`` (id = region).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError

from connectors.aws.common import actions, error_code, without
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "securityhub"
HUB = "aws.securityhub.hub"

ACTIONS = actions("securityhub:DescribeHub")

NOT_ENABLED = ("InvalidAccessException",)


def get_hub(client: Any) -> dict[str, Any] | None:
    try:
        return without(client.describe_hub(), ("ResponseMetadata",))
    except ClientError as exc:
        if error_code(exc) in NOT_ENABLED:
            return None
        raise


def read(account: Account, region: str) -> Iterator[Evidence]:
    hub = get_hub(account.client("securityhub", region))
    yield account.evidence(HUB, region, region, {"Hub": hub})


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.securityhub.enabled")
def enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    hub = require(payload, "Hub")
    if hub is None:
        return failed("Security Hub is not enabled in the region")
    return passed(f"Security Hub is enabled ({hub.get('HubArn', 'hub')})")
