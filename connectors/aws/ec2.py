"""EC2: enabled regions, EBS encryption by default, security groups, volumes, instances.

Regional units (service ``ec2``). Each region's unit reads, in order, EBS encryption by
default, then the security groups, volumes and instances page by page, yielding each
resource as its page arrives; a failed call fails the unit (what was already yielded is
kept, and nothing of the unit is closed by absence).

Resource types
    ``aws.ec2.ebs_encryption_by_default``  id = region; ``{"EbsEncryptionByDefault"}``
    ``aws.ec2.security_group``  id = group ARN; the ``DescribeSecurityGroups`` entry,
                                plus ``PrefixListEntries`` ({prefix list id: [CIDR]}) of
                                the managed prefix lists its ingress rules reference
    ``aws.ec2.volume``          id = volume ARN; the ``DescribeVolumes`` entry
    ``aws.ec2.instance``        id = instance ARN; the ``DescribeInstances`` entry

Security-group checks are named ``aws.network.*`` so that the Azure and GCP connectors
can share the same check names for "SSH/RDP/all ports open to the internet"; exposure
is judged by set arithmetic over every rule (:mod:`connectors.aws.exposure`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from connectors.aws.common import (
    ERRORS_KEY,
    MISSING,
    EvidenceMissing,
    paginate,
    read_partial,
    require,
    with_errors,
    without,
)
from connectors.aws.exposure import Exposure
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.checks import Verdict, check, failed, not_applicable, passed
from connectors.records import Evidence

SERVICE = "ec2"
EBS_ENCRYPTION_BY_DEFAULT = "aws.ec2.ebs_encryption_by_default"
SECURITY_GROUP = "aws.ec2.security_group"
VOLUME = "aws.ec2.volume"
INSTANCE = "aws.ec2.instance"

ACTIONS: dict[str, str | None] = {
    "ec2:DescribeRegions": "ec2:DescribeRegions",
    "ec2:GetEbsEncryptionByDefault": "ec2:GetEbsEncryptionByDefault",
    "ec2:DescribeSecurityGroups": "ec2:DescribeSecurityGroups",
    "ec2:GetManagedPrefixListEntries": "ec2:GetManagedPrefixListEntries",
    "ec2:DescribeVolumes": "ec2:DescribeVolumes",
    "ec2:DescribeInstances": "ec2:DescribeInstances",
}

#: Opt-in states of regions the account can use.
_ENABLED = {"opt-in-not-required", "opted-in"}

# --- get -----------------------------------------------------------------------------


def get_enabled_regions(client: Any) -> list[str]:
    """Regions enabled for the account (opt-in regions only once opted in)."""
    regions = client.describe_regions(AllRegions=False).get("Regions", [])
    return sorted(
        r["RegionName"] for r in regions if r.get("OptInStatus", "opt-in-not-required") in _ENABLED
    )


def discover_regions(account: Account) -> list[str]:
    return get_enabled_regions(account.client("ec2"))


def get_instances(client: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner account, instance) for every instance, one page at a time."""
    for reservation in paginate(client, "describe_instances", "Reservations",
                                PaginationConfig={"PageSize": 1000}):
        for instance in reservation.get("Instances") or []:
            yield reservation.get("OwnerId", ""), instance


class PrefixLists:
    """Entries of the managed prefix lists ingress rules reference, read once per unit.

    A rule naming a prefix list admits every CIDR block in it (a customer list may hold
    ``0.0.0.0/0``), so each security group's payload carries the entries of the lists
    its ingress rules name, under ``PrefixListEntries``. A list that cannot be read is
    recorded under ``_errors`` and the exposure checks become errors unless the group
    is open to the internet anyway.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._entries: dict[str, list[str] | str] = {}  # id -> CIDRs, or an error code

    def _read(self, pl: str) -> list[str] | str:
        if pl not in self._entries:
            errors: dict[str, str] = {}
            entries = read_partial(errors, "PrefixListEntries", lambda: sorted(
                str(e.get("Cidr")) for e in paginate(
                    self._client, "get_managed_prefix_list_entries", "Entries",
                    PrefixListId=pl)))
            self._entries[pl] = errors["PrefixListEntries"] if entries is MISSING else entries
        return self._entries[pl]

    def attach(self, group: Mapping[str, Any]) -> dict[str, Any]:
        names = sorted({str(ref.get("PrefixListId")) for p in group.get("IpPermissions") or []
                        for ref in p.get("PrefixListIds") or []})
        if not names:
            return dict(group)
        out = dict(group)
        out["PrefixListEntries"] = {}
        errors: dict[str, str] = {}
        for pl in names:
            entries = self._read(pl)
            if isinstance(entries, str):
                errors["PrefixListEntries"] = f"{pl}: {entries}"
            else:
                out["PrefixListEntries"][pl] = entries
        return with_errors(out, errors)


# --- transform -----------------------------------------------------------------------


def transform_instance(instance: Mapping[str, Any]) -> dict[str, Any]:
    """The instance less its client token, plus ``IMDSv2Required``.

    Evidence normalisation redacts string values of keys that look like secrets, which
    catches ``MetadataOptions.HttpTokens`` ("required"/"optional"); the boolean copy
    keeps the fact the IMDSv2 check judges.
    """
    out = without(instance, ("ClientToken",))
    options = instance.get("MetadataOptions")
    if isinstance(options, Mapping) and "HttpTokens" in options:
        out["IMDSv2Required"] = options["HttpTokens"] == "required"
    return out


# --- read (one unit) -----------------------------------------------------------------


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("ec2", region)
    answer = client.get_ebs_encryption_by_default()
    payload = {"EbsEncryptionByDefault": answer["EbsEncryptionByDefault"]}
    yield account.evidence(EBS_ENCRYPTION_BY_DEFAULT, region, region, payload)

    prefix_lists = PrefixLists(client)
    for group in paginate(client, "describe_security_groups", "SecurityGroups",
                          PaginationConfig={"PageSize": 1000}):
        arn = group.get("SecurityGroupArn") or account.arn(
            "ec2", region, f"security-group/{group['GroupId']}"
        )
        yield account.evidence(SECURITY_GROUP, arn, region, prefix_lists.attach(group))

    for volume in paginate(client, "describe_volumes", "Volumes",
                           PaginationConfig={"PageSize": 500}):
        arn = account.arn("ec2", region, f"volume/{volume['VolumeId']}")
        yield account.evidence(VOLUME, arn, region, volume)

    for _owner, instance in get_instances(client):
        arn = account.arn("ec2", region, f"instance/{instance['InstanceId']}")
        yield account.evidence(INSTANCE, arn, region, transform_instance(instance))


READERS = (ReaderSpec(SERVICE, read, regional=True),)


# --- checks --------------------------------------------------------------------------


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


def open_to_internet_verdict(
    payload: Mapping[str, Any], what: str, reached: Callable[[Exposure], list[str]]
) -> Verdict:
    """Fail when the whole internet reaches ``what`` (see :mod:`connectors.aws.exposure`)."""
    exposure = Exposure(require(payload, "IpPermissions"), payload.get("PrefixListEntries") or {})
    name = payload.get("GroupName") or payload.get("GroupId") or "?"
    families = reached(exposure)
    if families:
        return failed(f"Security group {name} opens {what} to the internet (every public "
                      f"address of {' and '.join(families)})")
    if exposure.unknown:
        reason = (payload.get(ERRORS_KEY) or {}).get("PrefixListEntries", "not read")
        raise EvidenceMissing(f"entries of prefix lists {', '.join(sorted(set(exposure.unknown)))}"
                              f" could not be read: {reason}")
    return passed(f"Security group {name} does not open {what} to the internet")


_NETWORK_RATIONALE = (
    "A rule admitting the whole internet exposes the service to scanning, brute force "
    "and exploitation; administrative access should come from known networks or a "
    "bastion/Session Manager."
)


@check(
    id="aws.network.ssh_open_to_internet",
    title="No security group allows SSH (22) from the internet",
    severity="high",
    resource_type=SECURITY_GROUP,
    rationale=_NETWORK_RATIONALE,
    remediation="Restrict the rule's source to known address ranges, or use Session "
    "Manager instead of inbound SSH.",
)
def ssh_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return open_to_internet_verdict(payload, "SSH (22)", lambda e: e.port_open("tcp", 22))


@check(
    id="aws.network.rdp_open_to_internet",
    title="No security group allows RDP (3389) from the internet",
    severity="high",
    resource_type=SECURITY_GROUP,
    rationale=_NETWORK_RATIONALE,
    remediation="Restrict the rule's source to known address ranges, or use Fleet Manager "
    "/ a bastion instead of inbound RDP.",
)
def rdp_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return open_to_internet_verdict(payload, "RDP (3389)", lambda e: sorted(
        set(e.port_open("tcp", 3389)) | set(e.port_open("udp", 3389))))


@check(
    id="aws.network.all_ports_open_to_internet",
    title="No security group allows all ports from the internet",
    severity="critical",
    resource_type=SECURITY_GROUP,
    rationale="Opening every port exposes whatever listens on the instance, including "
    "services never meant to be reachable.",
    remediation="Replace the rule with rules for the specific ports the service needs.",
)
def all_ports_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return open_to_internet_verdict(payload, "all ports", lambda e: sorted(
        set(e.all_ports_open("tcp")) | set(e.all_ports_open("udp"))))


@check(
    id="aws.ec2.volume_encrypted",
    title="EBS volumes are encrypted",
    severity="medium",
    resource_type=VOLUME,
    rationale="An unencrypted volume, and every snapshot taken of it, holds its data in "
    "clear at rest.",
    remediation="Copy a snapshot of the volume with encryption on and replace the volume; "
    "turn on EBS encryption by default.",
)
def volume_encrypted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if require(payload, "Encrypted"):
        key = payload.get("KmsKeyId")
        return passed("Volume is encrypted" + (f" with {key}" if key else ""))
    return failed("Volume is not encrypted")


@check(
    id="aws.ec2.instance_imdsv2",
    title="EC2 instances require IMDSv2",
    severity="high",
    resource_type=INSTANCE,
    rationale="IMDSv1 answers any GET request, so one SSRF bug in an application hands "
    "out the instance role's credentials; IMDSv2 requires a session token.",
    remediation="Set HttpTokens=required in the instance's metadata options (and in launch "
    "templates).",
)
def instance_imdsv2(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    state = (payload.get("State") or {}).get("Name")
    if state in ("terminated", "shutting-down"):
        return not_applicable(f"Instance is {state}")
    options = require(payload, "MetadataOptions")
    if options.get("HttpEndpoint") == "disabled":
        return passed("The instance metadata service is disabled")
    required = payload.get("IMDSv2Required")
    if required is None:  # older evidence, or normalisation kept the raw field
        required = options.get("HttpTokens") == "required"
    if required:
        return passed("IMDSv2 (session tokens) is required")
    return failed("IMDSv1 is allowed (HttpTokens is not 'required')")
