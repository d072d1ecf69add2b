"""Network security groups: inbound rules open to the internet on SSH, RDP or every port.

One unit per subscription (service ``network``): ``GET .../Microsoft.Network/
networkSecurityGroups`` returns every NSG with its rules.

Resource type ``azure.network.nsg`` (id = ARM id): the ARM resource without the six
built-in ``defaultSecurityRules`` (identical in every NSG; none allows internet traffic
in).

The checks read the inbound rules in priority order, as Azure does: for the port in
question, the first rule whose source is the whole internet (``*``, ``Internet``,
``0.0.0.0/0``, ``::/0``) and whose protocol and destination ports cover it decides —
an ``Allow`` opens it, a ``Deny`` shadows every later rule. Check names are those of the
AWS and Google Cloud checks of the same family (``*.network.ssh_open_to_internet``…).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence

from .arm import Arm, arm_resource, evidence
from .common import props

SERVICE = "network"
NSG = "azure.network.nsg"
API_VERSION = "2023-09-01"

ACTIONS = ("Microsoft.Network/networkSecurityGroups/read",)

INTERNET_SOURCES = frozenset(
    {"*", "internet", "any", "0.0.0.0", "0.0.0.0/0", "::/0", "::"}  # noqa: S104 - data
)


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.Network/networkSecurityGroups"
    for nsg in arm.list(path, API_VERSION):
        yield evidence(subscription, NSG, nsg, arm_resource(nsg, drop=("defaultSecurityRules",)))


# --- rule evaluation -----------------------------------------------------------------


def _listed(p: Mapping[str, Any], one: str, many: str) -> list[str]:
    values = [str(v) for v in p.get(many) or []]
    if p.get(one):
        values.append(str(p[one]))
    return values


def port_range_covers(spec: str, low: int, high: int) -> bool:
    """Whether a port spec (``*``, ``22``, ``20-30``) covers every port in ``low..high``."""
    spec = spec.strip()
    if spec in ("*", ""):
        return True
    first, _, last = spec.partition("-")
    try:
        start, end = int(first), int(last or first)
    except ValueError:
        return False
    return start <= low and high <= end


def _internet_source(p: Mapping[str, Any]) -> bool:
    return any(s.strip().lower() in INTERNET_SOURCES for s in _listed(
        p, "sourceAddressPrefix", "sourceAddressPrefixes"
    ))


def _protocol_covers(p: Mapping[str, Any], protocol: str) -> bool:
    return str(p.get("protocol") or "*").lower() in ("*", "any", protocol)


def inbound_rules(payload: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rules = props(payload).get("securityRules") or []
    out = []
    for rule in rules:
        p = rule.get("properties") or {}
        if str(p.get("direction", "")).lower() == "inbound":
            out.append((str(rule.get("name") or "?"), p))
    return sorted(out, key=lambda r: int(r[1].get("priority") or 4096))


def deciding_rule(
    payload: Mapping[str, Any], low: int, high: int, protocol: str
) -> tuple[str, str] | None:
    """``(rule name, access)`` of the first internet rule covering ``low..high`` for
    ``protocol`` (``tcp``, ``udp``), or None when no custom rule covers it (the
    built-in ``DenyAllInBound`` then applies)."""
    for name, p in inbound_rules(payload):
        if not _internet_source(p) or not _protocol_covers(p, protocol):
            continue
        ports = _listed(p, "destinationPortRange", "destinationPortRanges")
        if any(port_range_covers(spec, low, high) for spec in ports):
            return name, str(p.get("access") or "")
    return None


def _open_port_verdict(payload: Mapping[str, Any], port: int, label: str) -> Verdict:
    decided = deciding_rule(payload, port, port, "tcp")
    if decided and decided[1].lower() == "allow":
        return failed(f"Rule {decided[0]} allows {label} (TCP {port}) from the internet")
    if decided:
        return passed(f"Rule {decided[0]} denies {label} (TCP {port}) from the internet")
    return passed(f"No rule allows {label} (TCP {port}) from the internet")


# --- checks --------------------------------------------------------------------------


@check(
    id="azure.network.ssh_open_to_internet",
    title="No network security group allows SSH (22) from the internet",
    severity="high",
    resource_type=NSG,
    rationale="SSH reachable from any address is brute-forced and exploited within hours; "
    "administrative access should come through a bastion, VPN or allow-listed ranges.",
    remediation="Remove or restrict the inbound rule allowing TCP 22 from */Internet; use "
    "Azure Bastion or just-in-time VM access.",
)
def ssh_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _open_port_verdict(payload, 22, "SSH")


@check(
    id="azure.network.rdp_open_to_internet",
    title="No network security group allows RDP (3389) from the internet",
    severity="high",
    resource_type=NSG,
    rationale="RDP reachable from any address is a leading ransomware entry point; "
    "administrative access should come through a bastion, VPN or allow-listed ranges.",
    remediation="Remove or restrict the inbound rule allowing TCP 3389 from */Internet; use "
    "Azure Bastion or just-in-time VM access.",
)
def rdp_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _open_port_verdict(payload, 3389, "RDP")


@check(
    id="azure.network.all_ports_open_to_internet",
    title="No network security group allows every port from the internet",
    severity="critical",
    resource_type=NSG,
    rationale="A rule allowing all ports from anywhere exposes every service on the "
    "attached machines, including ones never meant to be reachable.",
    remediation="Replace the rule with rules for the specific ports and sources needed.",
)
def all_ports_open_to_internet(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    for protocol in ("tcp", "udp"):
        decided = deciding_rule(payload, 0, 65535, protocol)
        if decided and decided[1].lower() == "allow":
            return failed(
                f"Rule {decided[0]} allows every {protocol.upper()} port from the internet"
            )
    return passed("No rule allows every port from the internet")
