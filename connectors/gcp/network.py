"""VPC networks (Compute Engine API): firewall rules, the default network, flow logs.

One unit per project (service ``network``), three listings (a failure fails the unit):
``GET compute.googleapis.com/compute/v1/projects/<id>/global/firewalls``,
``…/global/networks`` and ``…/aggregated/subnetworks`` (every region in one list).

Resource types:

* ``gcp.network.firewall`` (id = ``<network name>/<rule name>``, region ``global``):
  the firewall rule as returned (``direction``, ``sourceRanges``, ``allowed``,
  ``denied``, ``disabled``, ``priority``, ``logConfig``);
* ``gcp.network.vpc`` (id = network name): the network without its subnetwork URL list;
* ``gcp.network.subnet`` (id = ``<region>/<name>``, region = the subnet's region).

Check names are those of the AWS and Azure checks of the same family.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.checks import Verdict, check, failed, not_applicable, passed
from connectors.http import PaginationError
from connectors.records import Evidence

from .common import region_of
from .context import GcpContext, Project, evidence

SERVICE = "network"
FIREWALL = "gcp.network.firewall"
VPC = "gcp.network.vpc"
SUBNET = "gcp.network.subnet"

PERMISSIONS = ("compute.firewalls.list", "compute.networks.list", "compute.subnetworks.list")

INTERNET_RANGES = frozenset({"0.0.0.0/0", "::/0"})
#: Subnet purposes that carry VM traffic (the others cannot have flow logs).
VM_PURPOSES = frozenset({"PRIVATE", "PRIVATE_RFC_1918", ""})


def aggregated(ctx: GcpContext, path: str, key: str) -> Iterator[dict[str, Any]]:
    """Items of an ``aggregated`` list: ``{"items": {"regions/x": {key: [...]}}}``."""
    http = ctx.api("compute")
    token: str | None = None
    seen: set[str] = set()
    for _ in range(http.options.max_pages):
        params: dict[str, Any] = {"maxResults": 500}
        if token:
            params["pageToken"] = token
        body = http.get_json(path, params=params)
        for scoped in (body.get("items") or {}).values():
            yield from scoped.get(key) or []
        token = body.get("nextPageToken")
        if not token:
            return
        if token in seen:
            raise PaginationError("the source returned the same nextPageToken twice", url=path)
        seen.add(token)
    raise PaginationError(f"more than {http.options.max_pages} pages; stopped", url=path)


def _short(url: Any) -> str:
    return str(url or "").rstrip("/").rsplit("/", 1)[-1]


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    base = f"/compute/v1/projects/{project.id}"
    for rule in ctx.items("compute", f"{base}/global/firewalls", "items", {"maxResults": 500}):
        rid = f"{_short(rule.get('network'))}/{rule.get('name')}"
        yield evidence(project.id, FIREWALL, rid, dict(rule))
    for net in ctx.items("compute", f"{base}/global/networks", "items", {"maxResults": 500}):
        payload = {k: v for k, v in net.items() if k != "subnetworks"}
        payload["subnetworkCount"] = len(net.get("subnetworks") or [])
        yield evidence(project.id, VPC, str(net.get("name")), payload)
    for subnet in aggregated(ctx, f"{base}/aggregated/subnetworks", "subnetworks"):
        region = region_of(subnet.get("region"))
        yield evidence(project.id, SUBNET, f"{region}/{subnet.get('name')}", dict(subnet),
                       region)


# --- firewall evaluation ---------------------------------------------------------------


def _covers(ports: list[str] | None, low: int, high: int) -> bool:
    if not ports:  # no ports listed: every port of the protocol
        return True
    for spec in ports:
        first, _, last = str(spec).partition("-")
        try:
            if int(first) <= low and high <= int(last or first):
                return True
        except ValueError:
            continue
    return False


def opens(rule: Mapping[str, Any], low: int, high: int, protocols: tuple[str, ...]) -> bool:
    """Whether an enabled ingress rule allows ``low..high`` for one of ``protocols`` from
    the whole internet."""
    if rule.get("disabled") or str(rule.get("direction", "INGRESS")) != "INGRESS":
        return False
    if not INTERNET_RANGES & set(rule.get("sourceRanges") or []):
        return False
    for allowed in rule.get("allowed") or []:
        proto = str(allowed.get("IPProtocol", "")).lower()
        if (proto == "all" or proto in protocols) and _covers(allowed.get("ports"), low, high):
            return True
    return False


def _port_verdict(payload: Mapping[str, Any], port: int, label: str) -> Verdict:
    if opens(payload, port, port, ("tcp",)):
        return failed(f"Rule {payload.get('name')} allows {label} (TCP {port}) from "
                      f"{', '.join(sorted(INTERNET_RANGES & set(payload['sourceRanges'])))}")
    return passed(f"Rule does not allow {label} (TCP {port}) from the internet")


@check(
    id="gcp.network.ssh_open_to_internet",
    title="No firewall rule allows SSH (22) from the internet",
    severity="high",
    resource_type=FIREWALL,
    rationale="SSH reachable from any address is brute-forced and exploited within hours; "
    "administrative access should come through IAP, a bastion or allow-listed ranges.",
    remediation="Restrict the rule's source ranges (e.g. to IAP's 35.235.240.0/20) or "
    "delete it.",
)
def ssh_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _port_verdict(payload, 22, "SSH")


@check(
    id="gcp.network.rdp_open_to_internet",
    title="No firewall rule allows RDP (3389) from the internet",
    severity="high",
    resource_type=FIREWALL,
    rationale="RDP reachable from any address is a leading ransomware entry point; "
    "administrative access should come through IAP, a bastion or allow-listed ranges.",
    remediation="Restrict the rule's source ranges (e.g. to IAP's 35.235.240.0/20) or "
    "delete it.",
)
def rdp_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _port_verdict(payload, 3389, "RDP")


@check(
    id="gcp.network.all_ports_open_to_internet",
    title="No firewall rule allows every port from the internet",
    severity="critical",
    resource_type=FIREWALL,
    rationale="A rule allowing all ports from anywhere exposes every service on the "
    "targeted instances, including ones never meant to be reachable.",
    remediation="Replace the rule with rules for the specific ports and sources needed.",
)
def all_ports_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if opens(payload, 0, 65535, ("tcp",)) or opens(payload, 0, 65535, ("udp",)):
        return failed(f"Rule {payload.get('name')} allows every port from the internet")
    return passed("Rule does not allow every port from the internet")


@check(
    id="gcp.network.default_network_absent",
    title="Projects do not keep the auto-created 'default' network",
    severity="medium",
    resource_type=VPC,
    rationale="The default network comes with permissive pre-populated firewall rules "
    "(SSH, RDP and ICMP from anywhere, all internal traffic) and subnets in every region "
    "that nobody designed or reviews.",
    remediation="Create purpose-built VPC networks, move workloads and delete the default "
    "network (and enforce compute.skipDefaultNetworkCreation).",
)
def default_network_absent(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("name") == "default":
        return failed("The project has the auto-created 'default' network")
    return passed(f"Network {payload.get('name')} is not the default network")


@check(
    id="gcp.network.flow_logs_enabled",
    title="VPC subnets record flow logs",
    severity="medium",
    resource_type=SUBNET,
    rationale="Flow logs record the connections to and from VMs, which investigations "
    "and network monitoring rely on.",
    remediation="Turn on flow logs for the subnet (sampling and aggregation as budget "
    "allows).",
)
def flow_logs_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if str(payload.get("purpose") or "") not in VM_PURPOSES:
        return not_applicable(f"Subnet purpose {payload.get('purpose')} carries no VM traffic")
    enabled = (payload.get("logConfig") or {}).get("enable")
    if enabled is None:
        enabled = payload.get("enableFlowLogs")
    if enabled:
        return passed("Flow logs are on")
    return failed("Flow logs are off")
