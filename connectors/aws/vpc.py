"""VPCs: flow logs, and whether the default VPC is in use.

Regional units (service ``vpc``, read with the EC2 API). The region's flow logs are
read first (they are few) and indexed by the resource they log; then each VPC is
yielded with the flow logs attached to it. The default VPC also carries the network
interfaces in it (``DescribeNetworkInterfaces`` filtered on its id: id, type,
description and requester only — they say what uses it). A failed call fails the unit.

Resource type ``aws.vpc.vpc`` (id = VPC ARN): ``{"Vpc": {...}, "FlowLogs": [...],
"NetworkInterfaces": [...]}`` (the last only on the default VPC).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import actions, paginate
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

SERVICE = "vpc"
VPC = "aws.vpc.vpc"

ACTIONS = actions("ec2:DescribeVpcs", "ec2:DescribeFlowLogs", "ec2:DescribeNetworkInterfaces")
_INTERFACE_FIELDS = ("NetworkInterfaceId", "InterfaceType", "Description", "RequesterId",
                     "RequesterManaged")

_FLOW_LOG_FIELDS = (
    "FlowLogId",
    "FlowLogStatus",
    "DeliverLogsStatus",
    "TrafficType",
    "LogDestinationType",
    "LogDestination",
    "LogGroupName",
    "MaxAggregationInterval",
)


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("ec2", region)
    by_resource: dict[str, list[dict[str, Any]]] = {}
    for flow_log in paginate(client, "describe_flow_logs", "FlowLogs",
                             PaginationConfig={"PageSize": 1000}):
        entry = {k: flow_log[k] for k in _FLOW_LOG_FIELDS if k in flow_log}
        by_resource.setdefault(flow_log.get("ResourceId", ""), []).append(entry)
    for vpc in paginate(client, "describe_vpcs", "Vpcs", PaginationConfig={"PageSize": 1000}):
        arn = account.arn("ec2", region, f"vpc/{vpc['VpcId']}")
        payload: dict[str, Any] = {"Vpc": vpc, "FlowLogs": by_resource.get(vpc["VpcId"], [])}
        if vpc.get("IsDefault"):
            payload["NetworkInterfaces"] = [
                {k: eni[k] for k in _INTERFACE_FIELDS if k in eni}
                for eni in paginate(client, "describe_network_interfaces", "NetworkInterfaces",
                                    Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
            ]
        yield account.evidence(VPC, arn, region, payload)


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.vpc.flow_logs_enabled")
def flow_logs_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    logs = [f for f in require(payload, "FlowLogs") if f.get("FlowLogStatus") == "ACTIVE"]
    if params["require_all_traffic"]:
        logs = [f for f in logs if f.get("TrafficType") == "ALL"]
    if logs:
        what = ", ".join(f"{f.get('FlowLogId')} ({f.get('TrafficType')})" for f in logs)
        return passed(f"Active flow logs: {what}")
    return failed("No active flow log" + (" of all traffic" if params["require_all_traffic"]
                                          else "") + " records this VPC")


@check("aws.vpc.default_vpc_unused")
def default_vpc_unused(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    vpc = require(payload, "Vpc")
    if not vpc.get("IsDefault"):
        return not_applicable("Not the default VPC")
    interfaces = require(payload, "NetworkInterfaces")
    if interfaces:
        used = ", ".join(f"{i.get('NetworkInterfaceId')} ({i.get('InterfaceType') or 'interface'}"
                         f"{': ' + i['Description'] if i.get('Description') else ''})"
                         for i in interfaces[:10])
        more = f" and {len(interfaces) - 10} more" if len(interfaces) > 10 else ""
        return failed(f"The default VPC has {len(interfaces)} network interface(s): "
                      f"{used}{more}")
    return passed("The default VPC has no network interface")
