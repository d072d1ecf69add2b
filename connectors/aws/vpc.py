"""VPC flow logs, per VPC.

Regional units (service ``vpc``, read with the EC2 API). The region's flow logs are
read first (they are few) and indexed by the resource they log; then each VPC is
yielded with the flow logs attached to it. A failed call fails the unit.

Resource type ``aws.vpc.vpc`` (id = VPC ARN): ``{"Vpc": {...}, "FlowLogs": [...]}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import paginate, require
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence

SERVICE = "vpc"
VPC = "aws.vpc.vpc"

ACTIONS: dict[str, str | None] = {
    "ec2:DescribeVpcs": "ec2:DescribeVpcs",
    "ec2:DescribeFlowLogs": "ec2:DescribeFlowLogs",
}

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
        payload = {"Vpc": vpc, "FlowLogs": by_resource.get(vpc["VpcId"], [])}
        yield account.evidence(VPC, arn, region, payload)


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check(
    id="aws.vpc.flow_logs_enabled",
    title="VPC flow logs are enabled",
    severity="medium",
    resource_type=VPC,
    rationale="Flow logs record the network connections accepted and rejected in the VPC, "
    "the only record of traffic for investigating an intrusion.",
    remediation="Create a flow log for the VPC (traffic type ALL or REJECT) to CloudWatch "
    "Logs or S3.",
    parameters={"require_all_traffic": False},
)
def flow_logs_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    logs = [f for f in require(payload, "FlowLogs") if f.get("FlowLogStatus") == "ACTIVE"]
    if params["require_all_traffic"]:
        logs = [f for f in logs if f.get("TrafficType") == "ALL"]
    if logs:
        what = ", ".join(f"{f.get('FlowLogId')} ({f.get('TrafficType')})" for f in logs)
        return passed(f"Active flow logs: {what}")
    return failed("No active flow log" + (" of all traffic" if params["require_all_traffic"]
                                          else "") + " records this VPC")
