"""VPC networks (Compute Engine API): firewall rules, the default network, flow logs.

One unit per project (service ``network``), three listings (a failure fails the unit):
``GET compute.googleapis.com/compute/v1/projects/<id>/global/firewalls``,
``…/global/networks`` and ``…/aggregated/subnetworks`` (every region in one list).

Resource types:

* ``gcp.network.firewall`` (id = ``<network name>/<rule name>``, region ``global``):
  the firewall rule as returned (``direction``, ``sourceRanges``, ``allowed``,
  ``denied``, ``disabled``, ``priority``, ``logConfig``) and, for an enabled ingress
  allow rule, ``denyRulesBefore``: the enabled ingress deny rules of the same network
  that Google evaluates first (priority lower or equal: at equal priority a deny wins),
  as ``{name, priority, denied, sourceRanges, sourceTags, sourceServiceAccounts,
  targetTags, targetServiceAccounts}``;
* ``gcp.network.vpc`` (id = network name): the network without its subnetwork URL list;
* ``gcp.network.subnet`` (id = ``<region>/<name>``, region = the subnet's region).

The exposure checks use the shared set arithmetic of :mod:`connectors.exposure`: a
rule's ports are the union of its ``ports`` (none = every port), its protocol a name or
an IANA number (``"tcp"``, ``"6"``, ``"all"``), its sources the union of
``sourceRanges`` of either family (no source at all = every address, as the API
defaults). A deny rule evaluated first shadows the allow rule where it covers the allow
rule's targets (it applies to all instances, or to a superset of its target tags or
service accounts). Hierarchical and network firewall policies are not read here: a deny
there may make a verdict stricter than reality, never more lenient. Check names are
those of the AWS and Azure checks of the same family.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors import exposure, exposure_checks
from connectors.http import PaginationError
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .common import region_of
from .context import GcpContext, Project, evidence

SERVICE = "network"
FIREWALL = "gcp.network.firewall"
VPC = "gcp.network.vpc"
SUBNET = "gcp.network.subnet"

PERMISSIONS = ("compute.firewalls.list", "compute.networks.list", "compute.subnetworks.list")

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


_DENY_KEPT = ("name", "priority", "denied", "sourceRanges", "sourceTags",
              "sourceServiceAccounts", "targetTags", "targetServiceAccounts")


def _ingress(rule: Mapping[str, Any]) -> bool:
    return not rule.get("disabled") and str(rule.get("direction") or "INGRESS") == "INGRESS"


def _priority(rule: Mapping[str, Any]) -> int:
    return int(rule.get("priority", 1000))  # the API's default


def with_denies(rules: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(id, payload)`` of each rule; enabled ingress allow rules carry the deny rules
    of their network that are evaluated before them."""
    denies: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        if _ingress(rule) and rule.get("denied"):
            denies.setdefault(str(rule.get("network")), []).append(rule)
    for rule in rules:
        payload = dict(rule)
        if _ingress(rule) and rule.get("allowed"):
            before = [d for d in denies.get(str(rule.get("network")), [])
                      if _priority(d) <= _priority(rule)]
            payload["denyRulesBefore"] = sorted(
                ({k: d[k] for k in _DENY_KEPT if k in d} for d in before),
                key=lambda d: (_priority(d), str(d.get("name"))))
        yield f"{_short(rule.get('network'))}/{rule.get('name')}", payload


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    base = f"/compute/v1/projects/{project.id}"
    rules = list(ctx.items("compute", f"{base}/global/firewalls", "items",
                           {"maxResults": 500}))
    yield from firewall_evidence(project, rules)
    for net in ctx.items("compute", f"{base}/global/networks", "items", {"maxResults": 500}):
        yield network_evidence(project, net)
    for subnet in aggregated(ctx, f"{base}/aggregated/subnetworks", "subnetworks"):
        yield subnet_evidence(project, subnet)


# The transforms, shared with the bulk inventory path (connectors/gcp/assetinventory.py),
# which passes when Cloud Asset Inventory last recorded each resource.


def firewall_evidence(project: Project, rules: list[dict[str, Any]],
                      updated: Mapping[str, datetime | None] | None = None
                      ) -> Iterator[Evidence]:
    """Evidence of a project's firewall rules (``updated``: by rule selfLink)."""
    for rid, payload in with_denies(rules):
        yield evidence(project.id, FIREWALL, rid, payload,
                       source_updated_at=(updated or {}).get(str(payload.get("selfLink"))))


def network_evidence(project: Project, net: Mapping[str, Any],
                     updated: datetime | None = None) -> Evidence:
    payload = {k: v for k, v in net.items() if k != "subnetworks"}
    payload["subnetworkCount"] = len(net.get("subnetworks") or [])
    return evidence(project.id, VPC, str(net.get("name")), payload,
                    source_updated_at=updated)


def subnet_evidence(project: Project, subnet: Mapping[str, Any],
                    updated: datetime | None = None) -> Evidence:
    region = region_of(subnet.get("region"))
    return evidence(project.id, SUBNET, f"{region}/{subnet.get('name')}", dict(subnet),
                    region, source_updated_at=updated)


# --- firewall evaluation ---------------------------------------------------------------


def _sources(rule: Mapping[str, Any]) -> exposure.Addresses:
    ranges = rule.get("sourceRanges") or []
    if not ranges and not rule.get("sourceTags") and not rule.get("sourceServiceAccounts"):
        return exposure.ANY  # no source given: the rule applies to every source
    return exposure.parse_sources(ranges)


def _entries(rule: Mapping[str, Any], key: str, allow: bool) -> list[exposure.Rule]:
    name = str(rule.get("name") or "?")
    try:
        sources = _sources(rule)
        return [exposure.Rule(name=name, priority=_priority(rule), allow=allow,
                              protocol=exposure.parse_protocol(e.get("IPProtocol")),
                              ports=exposure.parse_ports(e.get("ports")), sources=sources)
                for e in rule.get(key) or []]
    except ValueError as exc:
        raise ValueError(f"rule {name}: {exc}") from None


def _covers_targets(deny: Mapping[str, Any], allow: Mapping[str, Any]) -> bool:
    """Whether ``deny`` applies to every instance ``allow`` applies to."""
    d_tags, d_sas = set(deny.get("targetTags") or []), set(deny.get("targetServiceAccounts")
                                                            or [])
    if not d_tags and not d_sas:
        return True
    a_tags, a_sas = set(allow.get("targetTags") or []), set(allow.get("targetServiceAccounts")
                                                            or [])
    return bool(a_tags and a_tags <= d_tags) or bool(a_sas and a_sas <= d_sas)


def effective_rules(payload: Mapping[str, Any]) -> list[exposure.Rule]:
    """The rule's allow entries with the deny rules that are evaluated before them."""
    if not _ingress(payload):
        return []
    rules = _entries(payload, "allowed", True)
    for deny in payload.get("denyRulesBefore") or []:
        if _covers_targets(deny, payload):
            rules += _entries(deny, "denied", False)
    return rules


def _sources_of(payload: Mapping[str, Any], names: Sequence[str]) -> str:
    return ", ".join(payload.get("sourceRanges") or ["every source"])


exposure_checks.register(
    prefix="gcp", resource_type=FIREWALL, subject="firewall rule",
    rules_of=effective_rules, sources_of=_sources_of,
    admin_access="IAP TCP forwarding (35.235.240.0/20), a bastion",
    restrict="restrict the rule's source ranges")


@check("gcp.network.default_network_absent")
def default_network_absent(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("name") == "default":
        return failed("The project has the auto-created 'default' network")
    return passed(f"Network {payload.get('name')} is not the default network")


@check("gcp.network.flow_logs_enabled")
def flow_logs_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if str(payload.get("purpose") or "") not in VM_PURPOSES:
        return not_applicable(f"Subnet purpose {payload.get('purpose')} carries no VM traffic")
    enabled = (payload.get("logConfig") or {}).get("enable")
    if enabled is None:
        enabled = payload.get("enableFlowLogs")
    if enabled:
        return passed("Flow logs are on")
    return failed("Flow logs are off")
