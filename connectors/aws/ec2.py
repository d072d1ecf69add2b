"""EC2: the account's enabled regions, and EBS encryption by default per region.

Regional units (service ``ec2``), one call each: if it fails the unit fails.
Resource type ``aws.ec2.ebs_encryption_by_default`` (id = region name):
``{"EbsEncryptionByDefault": bool}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import require
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence

SERVICE = "ec2"
EBS_ENCRYPTION_BY_DEFAULT = "aws.ec2.ebs_encryption_by_default"

ACTIONS: dict[str, str | None] = {
    "ec2:DescribeRegions": "ec2:DescribeRegions",
    "ec2:GetEbsEncryptionByDefault": "ec2:GetEbsEncryptionByDefault",
}

#: Opt-in states of regions the account can use.
_ENABLED = {"opt-in-not-required", "opted-in"}


def get_enabled_regions(client: Any) -> list[str]:
    """Regions enabled for the account (opt-in regions only once opted in)."""
    regions = client.describe_regions(AllRegions=False).get("Regions", [])
    return sorted(
        r["RegionName"] for r in regions if r.get("OptInStatus", "opt-in-not-required") in _ENABLED
    )


def discover_regions(account: Account) -> list[str]:
    return get_enabled_regions(account.client("ec2"))


def read_ebs_encryption_by_default(account: Account, region: str) -> Iterator[Evidence]:
    answer = account.client("ec2", region).get_ebs_encryption_by_default()
    payload = {"EbsEncryptionByDefault": answer["EbsEncryptionByDefault"]}
    yield account.evidence(EBS_ENCRYPTION_BY_DEFAULT, region, region, payload)


READERS = (ReaderSpec(SERVICE, read_ebs_encryption_by_default, regional=True),)


@check(
    id="aws.ec2.ebs_default_encryption",
    title="EBS encryption by default is on in every region",
    severity="medium",
    resource_type=EBS_ENCRYPTION_BY_DEFAULT,
    rationale="With encryption by default, every new volume and snapshot in the region is "
    "encrypted at rest, whoever creates it.",
    remediation="Enable EBS encryption by default in the region (EC2 console → Settings → "
    "EBS encryption).",
)
def ebs_default_encryption(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if require(payload, "EbsEncryptionByDefault"):
        return passed("EBS encryption by default is on")
    return failed("EBS encryption by default is off")
