"""Route 53 Resolver DNS Firewall: is a firewall rule group associated with each VPC.

Regional units (service ``route53resolver``): ``ListFirewallRuleGroupAssociations``
(all of the region's, page by page), then ``DescribeVpcs`` (EC2): one
``aws.route53resolver.vpc`` evidence per VPC (id = VPC ARN)::

    {"VpcId", "IsDefault", "FirewallRuleGroupAssociations": [{"Id", "Name",
     "FirewallRuleGroupId", "Priority", "Status", "ManagedOwnerName"?}]}

Association statuses are ``COMPLETE | DELETING | UPDATING`` (botocore route53resolver
2018-04-01); only ``COMPLETE`` and ``UPDATING`` associations filter queries.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import actions, paginate
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "route53resolver"
VPC = "aws.route53resolver.vpc"

ACTIONS = actions("route53resolver:ListFirewallRuleGroupAssociations", "ec2:DescribeVpcs")

_FIELDS = ("Id", "Name", "FirewallRuleGroupId", "Priority", "Status", "ManagedOwnerName",
           "MutationProtection")
FILTERING = ("COMPLETE", "UPDATING")


def read(account: Account, region: str) -> Iterator[Evidence]:
    resolver = account.client("route53resolver", region)
    by_vpc: dict[str, list[dict[str, Any]]] = {}
    for association in paginate(resolver, "list_firewall_rule_group_associations",
                                "FirewallRuleGroupAssociations"):
        entry = {k: association[k] for k in _FIELDS if k in association}
        by_vpc.setdefault(str(association.get("VpcId")), []).append(entry)
    ec2 = account.client("ec2", region)
    for vpc in paginate(ec2, "describe_vpcs", "Vpcs", PaginationConfig={"PageSize": 1000}):
        payload = {"VpcId": vpc["VpcId"], "IsDefault": bool(vpc.get("IsDefault")),
                   "FirewallRuleGroupAssociations": by_vpc.get(vpc["VpcId"], [])}
        yield account.evidence(VPC, account.arn("ec2", region, f"vpc/{vpc['VpcId']}"), region,
                               payload)


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.route53resolver.dns_firewall_associated")
def dns_firewall_associated(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    associations = require(payload, "FirewallRuleGroupAssociations")
    active = [a for a in associations if a.get("Status") in FILTERING]
    if not active:
        state = ", ".join(f"{a.get('Name')} {a.get('Status')}" for a in associations)
        return failed(f"No DNS Firewall rule group filters VPC {payload.get('VpcId')}"
                      + (f" ({state})" if state else ""))
    return passed("DNS Firewall rule groups: " + ", ".join(
        f"{a.get('Name') or a.get('FirewallRuleGroupId')} (priority {a.get('Priority')})"
        for a in active))
