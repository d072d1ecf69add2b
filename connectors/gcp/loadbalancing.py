"""External load balancers: Cloud Armor on backends, TLS policies on HTTPS/SSL proxies.

One unit per project (service ``loadbalancing``), aggregated listings of the Compute
Engine API (every region and global in one list; a failure fails the unit):
``…/aggregated/backendServices``, ``…/aggregated/securityPolicies``,
``…/aggregated/targetHttpsProxies``, ``…/global/targetSslProxies`` and
``…/aggregated/sslPolicies``.

Resource types (id = ``<region or global>/<name>``, region = the resource's region):

``gcp.loadbalancing.backend_service``::

    {"name", "loadBalancingScheme", "protocol", "securityPolicy": <name> | null,
     "edgeSecurityPolicy", "armor": null | {"name", "type", "wafRules": n,
     "adaptiveProtection": bool, "defaultAction"}}

``gcp.loadbalancing.target_proxy``::

    {"name", "kind": "https" | "ssl", "sslPolicy": <name> | null,
     "policy": null | {"name", "profile", "minTlsVersion", "customFeatures"}}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.kit import require
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .common import region_of
from .context import GcpContext, Project, evidence
from .network import aggregated

SERVICE = "loadbalancing"
BACKEND = "gcp.loadbalancing.backend_service"
PROXY = "gcp.loadbalancing.target_proxy"

PERMISSIONS = ("compute.backendServices.list", "compute.securityPolicies.list",
               "compute.targetHttpsProxies.list", "compute.targetSslProxies.list",
               "compute.sslPolicies.list")

#: Load-balancing schemes that face the internet.
EXTERNAL = frozenset({"EXTERNAL", "EXTERNAL_MANAGED"})
TLS_ORDER = ("TLS_1_0", "TLS_1_1", "TLS_1_2", "TLS_1_3")
_WAF_EXPR = ("evaluatePreconfiguredWaf(", "evaluatePreconfiguredExpr(")


def _short(url: Any) -> str | None:
    return str(url).rstrip("/").rsplit("/", 1)[-1] if url else None


def _where(item: Mapping[str, Any]) -> str:
    return region_of(item.get("region"))


def armor_summary(policy: Mapping[str, Any]) -> dict[str, Any]:
    rules = policy.get("rules") or []
    waf = [r for r in rules
           if str(r.get("action", "")).startswith("deny") and not r.get("preview")
           and any(x in str(((r.get("match") or {}).get("expr") or {}).get("expression"))
                   for x in _WAF_EXPR)]
    default = [r for r in rules if int(r.get("priority", 0)) == 2147483647]
    adaptive = ((policy.get("adaptiveProtectionConfig") or {})
                .get("layer7DdosDefenseConfig") or {}).get("enable") is True
    return {"name": policy.get("name"), "type": policy.get("type"), "wafRules": len(waf),
            "adaptiveProtection": adaptive,
            "defaultAction": default[0].get("action") if default else None}


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    base = f"/compute/v1/projects/{project.id}"
    armors = {f"{_where(p)}/{p.get('name')}": armor_summary(p)
              for p in aggregated(ctx, f"{base}/aggregated/securityPolicies",
                                  "securityPolicies")}
    for b in aggregated(ctx, f"{base}/aggregated/backendServices", "backendServices"):
        where = _where(b)
        policy = _short(b.get("securityPolicy"))
        key = f"{'global' if '/global/' in str(b.get('securityPolicy')) else where}/{policy}"
        payload = {"name": b.get("name"), "loadBalancingScheme": b.get("loadBalancingScheme"),
                   "protocol": b.get("protocol"), "securityPolicy": policy,
                   "edgeSecurityPolicy": _short(b.get("edgeSecurityPolicy")),
                   "armor": armors.get(key) if policy else None}
        yield evidence(project.id, BACKEND, f"{where}/{b.get('name')}", payload,
                       b.get("region"))
    ssl = {f"{_where(p)}/{p.get('name')}": {
        "name": p.get("name"), "profile": p.get("profile", "COMPATIBLE"),
        "minTlsVersion": p.get("minTlsVersion", "TLS_1_0"),
        "customFeatures": sorted(p.get("customFeatures") or [])}
        for p in aggregated(ctx, f"{base}/aggregated/sslPolicies", "sslPolicies")}
    proxies = [("https", p) for p in aggregated(ctx, f"{base}/aggregated/targetHttpsProxies",
                                                "targetHttpsProxies")]
    proxies += [("ssl", p) for p in ctx.items("compute", f"{base}/global/targetSslProxies",
                                              "items", {"maxResults": 500})]
    for kind, p in proxies:
        where = _where(p)
        name = _short(p.get("sslPolicy"))
        scope = "global" if "/global/" in str(p.get("sslPolicy")) else where
        payload = {"name": p.get("name"), "kind": kind, "sslPolicy": name,
                   "policy": ssl.get(f"{scope}/{name}") if name else None}
        yield evidence(project.id, PROXY, f"{where}/{p.get('name')}", payload, p.get("region"))


@check("gcp.loadbalancing.backend_cloud_armor")
def backend_cloud_armor(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if str(payload.get("loadBalancingScheme")) not in EXTERNAL:
        return not_applicable(f"The backend is {payload.get('loadBalancingScheme')}, not "
                              "internet-facing")
    armor = require(payload, "armor")
    if armor is None:
        return failed("No Cloud Armor security policy is attached")
    if params["require_waf_rules"] and not (armor["wafRules"] or armor["adaptiveProtection"]):
        return failed(f"Cloud Armor policy {armor['name']} has no enforced WAF rule and no "
                      "adaptive protection")
    return passed(f"Cloud Armor policy {armor['name']} ({armor['wafRules']} WAF rules)")


@check("gcp.loadbalancing.ssl_policy_modern")
def ssl_policy_modern(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    wanted = str(params["min_tls_version"])
    if wanted not in TLS_ORDER:
        raise ValueError(f"min_tls_version must be one of {', '.join(TLS_ORDER)}")
    policy = require(payload, "policy")
    if policy is None:
        return failed("No SSL policy: Google's default (COMPATIBLE, TLS 1.0) applies")
    profile, version = str(policy["profile"]), str(policy["minTlsVersion"])
    problems = []
    if profile not in {str(p) for p in params["accepted_profiles"]}:
        problems.append(f"profile {profile}")
    if version not in TLS_ORDER or TLS_ORDER.index(version) < TLS_ORDER.index(wanted):
        problems.append(f"minimum {version}")
    if problems:
        return failed(f"SSL policy {policy['name']} accepts weak TLS: " + ", ".join(problems))
    return passed(f"SSL policy {policy['name']}: {profile}, minimum {version}")
