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
share the same check names for "SSH/RDP/all ports open to the internet"; they are
declared by :mod:`connectors.exposure_checks` and judged by the set arithmetic of
:mod:`connectors.exposure` over every rule of the group.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors import exposure, exposure_checks
from connectors.aws.common import MISSING, actions, paginate, read_partial, without
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import ERRORS_KEY, EvidenceMissing, require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

SERVICE = "ec2"
EBS_ENCRYPTION_BY_DEFAULT = "aws.ec2.ebs_encryption_by_default"
SECURITY_GROUP = "aws.ec2.security_group"
VOLUME = "aws.ec2.volume"
INSTANCE = "aws.ec2.instance"

ACTIONS = actions(
    "ec2:DescribeRegions", "ec2:GetEbsEncryptionByDefault", "ec2:DescribeSecurityGroups",
    "ec2:GetManagedPrefixListEntries", "ec2:DescribeVolumes", "ec2:DescribeInstances",
)

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


@check("aws.ec2.ebs_default_encryption")
def ebs_default_encryption(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if require(payload, "EbsEncryptionByDefault"):
        return passed("EBS encryption by default is on")
    return failed("EBS encryption by default is off")


def _protocol(permission: Mapping[str, Any]) -> int | None:
    raw = str(permission.get("IpProtocol", "")).strip().lower()
    return None if raw == "-1" else exposure.parse_protocol(raw)  # EC2 says -1 for "all"


def _rule_name(index: int, permission: Mapping[str, Any]) -> str:
    protocol = str(permission.get("IpProtocol"))
    if protocol == "-1":
        return f"#{index} (all traffic)"
    low, high = permission.get("FromPort"), permission.get("ToPort")
    ports = "" if low in (None, -1) else f" {low}" if low == high else f" {low}-{high}"
    return f"#{index} ({protocol}{ports})"


def ingress_rules(payload: Mapping[str, Any]) -> list[exposure.Rule]:
    """The group's ingress rules as :class:`connectors.exposure.Rule`: allow-only,
    evaluated together (a security group has no order and no deny). Sources are the
    rule's IPv4 and IPv6 ranges and the entries of the managed prefix lists it names;
    a prefix list whose entries could not be read makes the verdict an error."""
    entries = payload.get("PrefixListEntries") or {}
    out = []
    for index, permission in enumerate(require(payload, "IpPermissions"), start=1):
        values = [r.get("CidrIp") for r in permission.get("IpRanges") or []]
        values += [r.get("CidrIpv6") for r in permission.get("Ipv6Ranges") or []]
        for ref in permission.get("PrefixListIds") or []:
            pl = str(ref.get("PrefixListId"))
            if pl not in entries:
                reason = (payload.get(ERRORS_KEY) or {}).get("PrefixListEntries", "not read")
                raise EvidenceMissing(f"entries of prefix list {pl} could not be read: "
                                      f"{reason}")
            values += entries[pl]
        protocol = _protocol(permission)
        low, high = permission.get("FromPort"), permission.get("ToPort")
        ports = (exposure.ALL_PORTS if protocol not in exposure.PORT_PROTOCOLS
                 or low in (None, -1) else exposure.Intervals.of((int(low), int(high))))
        out.append(exposure.Rule(name=_rule_name(index, permission), priority=0, allow=True,
                                 protocol=protocol, ports=ports,
                                 sources=exposure.parse_sources(v for v in values if v)))
    return out


def _sources_of(payload: Mapping[str, Any], names: Sequence[str]) -> str:
    rules = {r.name: r for r in ingress_rules(payload)}
    joined = exposure.NOWHERE
    for name in names:
        if name in rules:
            joined = joined | rules[name].sources
    return joined.describe()


exposure_checks.register(
    prefix="aws", resource_type=SECURITY_GROUP, subject="security group",
    rules_of=ingress_rules, sources_of=_sources_of,
    admin_access="Session Manager (or a bastion)",
    restrict="restrict the rule's source ranges and prefix lists")


@check("aws.ec2.volume_encrypted")
def volume_encrypted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if require(payload, "Encrypted"):
        key = payload.get("KmsKeyId")
        return passed("Volume is encrypted" + (f" with {key}" if key else ""))
    return failed("Volume is not encrypted")


@check("aws.ec2.instance_imdsv2")
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
