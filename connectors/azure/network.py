"""Network security groups and virtual networks: exposure to the internet, segregation.

One unit per subscription (service ``network``), two listings (a failure fails the
unit): ``GET .../Microsoft.Network/networkSecurityGroups`` (every NSG with its rules)
and ``GET .../Microsoft.Network/virtualNetworks`` (every VNet with its subnets).

Resource types (id = ARM id):

* ``azure.network.nsg``: the ARM resource without the six built-in
  ``defaultSecurityRules`` (identical in every NSG; none allows internet traffic in);
* ``azure.network.vnet``: the VNet's ``addressSpace`` and its subnets as ``{"name",
  "addressPrefix(es)", "networkSecurityGroup": <id> | null, "delegations": [service],
  "purpose"}`` (the subnets' NIC lists change with every VM and are left out).

The checks evaluate the inbound rules as Azure does, with the shared set arithmetic of
:mod:`connectors.exposure`: in priority order, the first rule matching a packet decides,
so a ``Deny`` shadows every later rule for the sources and ports it covers. Ports are
the union of ``destinationPortRange(s)``; sources the union of
``sourceAddressPrefix(es)`` (CIDRs of either family, ``*``/``Any``, the ``Internet`` and
``AzureCloud`` service tags as the internet; ``sourceApplicationSecurityGroups`` and
other service tags — VirtualNetwork, AzureLoadBalancer, a Microsoft service's own
addresses — as not); protocols by name or number. The built-in rules (dropped from the
evidence) allow nothing from the internet, and ``DenyAllInBound`` ends every list. Check
names are those of the AWS and Google Cloud checks of the same family
(``*.network.ssh_open_to_internet``…).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors import exposure, exposure_checks
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .arm import Arm, arm_resource, evidence
from .common import props

SERVICE = "network"
NSG = "azure.network.nsg"
VNET = "azure.network.vnet"
API_VERSION = "2023-09-01"

ACTIONS = (
    "Microsoft.Network/networkSecurityGroups/read",
    "Microsoft.Network/virtualNetworks/read",
)


#: Service tags and words that stand for the internet. ``AzureCloud`` (and its regional
#: ``AzureCloud.<region>``) is every Azure datacenter address, which any Azure customer
#: can rent: internet-wide for exposure. ``0.0.0.0`` and ``::`` are taken as "any", as
#: the unspecified address conventionally means.
ANY_WORDS = frozenset({"*", "any", "0.0.0.0", "::"})  # noqa: S104 - data
INTERNET_TAGS = frozenset({"internet", "azurecloud"})


def _source_name(name: str) -> exposure.Addresses:
    """Addresses of a source that is not an address: a word or a service tag."""
    key = name.strip().lower()
    if key in ANY_WORDS:
        return exposure.ANY
    if key in INTERNET_TAGS or key.startswith("azurecloud."):
        return exposure.PUBLIC
    # VirtualNetwork, AzureLoadBalancer and service tags of Microsoft services
    # (Storage, Sql.WestEurope, AzureFrontDoor.Backend…): not the open internet.
    return exposure.NOWHERE


def _subnet(subnet: Mapping[str, Any]) -> dict[str, Any]:
    p = subnet.get("properties") or {}
    out: dict[str, Any] = {"name": subnet.get("name")}
    for key in ("addressPrefix", "addressPrefixes", "purpose"):
        if p.get(key):
            out[key] = p[key]
    out["networkSecurityGroup"] = (p.get("networkSecurityGroup") or {}).get("id")
    out["delegations"] = sorted(str((d.get("properties") or {}).get("serviceName"))
                                for d in p.get("delegations") or [])
    return out


def vnet_payload(vnet: Mapping[str, Any]) -> dict[str, Any]:
    p = vnet.get("properties") or {}
    payload = {k: vnet[k] for k in ("id", "name", "type", "location", "tags") if k in vnet}
    payload["properties"] = {
        "addressSpace": p.get("addressSpace"),
        "subnets": sorted((_subnet(s) for s in p.get("subnets") or []),
                          key=lambda s: str(s["name"])),
    }
    return payload


def nsg_evidence(subscription: str, nsg: Mapping[str, Any]) -> Evidence:
    """An NSG's evidence from its ARM body (or a Resource Graph row shaped as one)."""
    return evidence(subscription, NSG, nsg, arm_resource(nsg, drop=("defaultSecurityRules",)))


def vnet_evidence(subscription: str, vnet: Mapping[str, Any]) -> Evidence:
    return evidence(subscription, VNET, vnet, vnet_payload(vnet))


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    base = f"/subscriptions/{subscription}/providers/Microsoft.Network"
    for nsg in arm.list(f"{base}/networkSecurityGroups", API_VERSION):
        yield nsg_evidence(subscription, nsg)
    for vnet in arm.list(f"{base}/virtualNetworks", API_VERSION):
        yield vnet_evidence(subscription, vnet)


# --- rule evaluation -----------------------------------------------------------------


def _listed(p: Mapping[str, Any], one: str, many: str) -> list[str]:
    values = [str(v) for v in p.get(many) or []]
    if p.get(one) not in (None, ""):
        values.append(str(p[one]))
    return values


def _source(value: str) -> str:
    # The unspecified addresses read as "any" (see ANY_WORDS), not as one host.
    return "*" if value.strip() in ANY_WORDS else value


def inbound_rules(payload: Mapping[str, Any]) -> list[exposure.Rule]:
    """The NSG's inbound custom rules as :class:`connectors.exposure.Rule` (raises
    ValueError on a rule it cannot read)."""
    out = []
    for rule in props(payload).get("securityRules") or []:
        p = rule.get("properties") or {}
        if str(p.get("direction", "")).lower() != "inbound":
            continue
        name = str(rule.get("name") or "?")
        try:
            sources = exposure.parse_sources(
                [_source(v) for v in _listed(p, "sourceAddressPrefix", "sourceAddressPrefixes")],
                _source_name)
            ports = _listed(p, "destinationPortRange", "destinationPortRanges")
            out.append(exposure.Rule(
                name=name, priority=int(p.get("priority") or 4096),
                allow=str(p.get("access") or "").lower() == "allow",
                protocol=exposure.parse_protocol(p.get("protocol")),
                ports=exposure.parse_ports(ports), sources=sources))
        except ValueError as exc:
            raise ValueError(f"rule {name}: {exc}") from None
    return out


def _sources_of(payload: Mapping[str, Any], names: Sequence[str]) -> str:
    by_name = {str(r.get("name")): r.get("properties") or {}
               for r in props(payload).get("securityRules") or []}
    values: list[str] = []
    for n in names:
        values += _listed(by_name.get(n, {}), "sourceAddressPrefix", "sourceAddressPrefixes")
    return ", ".join(dict.fromkeys(values))


# --- checks --------------------------------------------------------------------------

exposure_checks.register(
    prefix="azure", resource_type=NSG, subject="network security group",
    rules_of=inbound_rules, sources_of=_sources_of,
    admin_access="Azure Bastion or just-in-time VM access",
    restrict="restrict the sources of the inbound rule allowing */Internet")


@check("azure.network.subnet_nsg_attached")
def subnet_nsg_attached(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    exempt = {str(n).lower() for n in params["exempt_subnets"]}
    subnets = [s for s in props(payload).get("subnets") or []
               if str(s.get("name", "")).lower() not in exempt]
    if not subnets:
        return not_applicable("The virtual network has no workload subnets")
    bare = [str(s.get("name")) for s in subnets if not s.get("networkSecurityGroup")]
    if bare:
        return failed("Subnets without a network security group: " + ", ".join(bare))
    return passed(f"All {len(subnets)} workload subnets have a network security group")
