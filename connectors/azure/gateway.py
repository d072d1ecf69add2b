"""Azure Firewall and Application Gateway: threat-intelligence filtering, TLS, WAF.

One unit per subscription (service ``gateway``):

* ``GET .../Microsoft.Network/azureFirewalls`` (a listing: a failure fails the unit),
  and for a firewall managed by a policy, ``GET <firewall policy id>`` (partial,
  ``_errors.policy``; the policy may live in another subscription);
* ``GET .../Microsoft.Network/applicationGateways`` (a listing), and for a gateway with
  a WAF policy, ``GET <policy id>`` (partial, ``_errors.wafPolicy``).

Resource types (id = ARM id):

``azure.gateway.firewall``::

    {"id", "name", "location", "sku", "threatIntelMode", "firewallPolicy": <id> | null,
     "policy": {"id", "threatIntelMode", "sku", "dnsSettings", "intrusionDetection"}}

``azure.gateway.app_gateway``::

    {"id", "name", "location", "sku": {"name", "tier"}, "sslPolicy", "sslProfiles":
     [{"name", "sslPolicy"}], "publicFrontends": [names], "httpsListeners": n,
     "webApplicationFirewallConfiguration", "firewallPolicy": <id> | null,
     "wafPolicy": {"id", "policySettings": {"state", "mode"}, "managedRuleSets"}}

Rule collections, backend pools and certificates are left out: they change often and
are not judged here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.kit import EvidenceMissing, read_partial, require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .arm import Arm, evidence

SERVICE = "gateway"
FIREWALL = "azure.gateway.firewall"
APP_GATEWAY = "azure.gateway.app_gateway"
API_VERSION = "2023-09-01"

ACTIONS = (
    "Microsoft.Network/azureFirewalls/read",
    "Microsoft.Network/firewallPolicies/read",
    "Microsoft.Network/applicationGateways/read",
    "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/read",
)

#: Minimum TLS version of Application Gateway's predefined policies (Microsoft's
#: "Application Gateway TLS policy overview").
PREDEFINED_MIN_TLS = {
    "appgwsslpolicy20150501": "TLSv1_0",
    "appgwsslpolicy20170401": "TLSv1_1",
    "appgwsslpolicy20170401s": "TLSv1_2",
    "appgwsslpolicy20220101": "TLSv1_2",
    "appgwsslpolicy20220101s": "TLSv1_2",
}
TLS_ORDER = ("TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3")


def firewall_payload(arm: Arm, fw: Mapping[str, Any]) -> dict[str, Any]:
    p = fw.get("properties") or {}
    payload: dict[str, Any] = {k: fw[k] for k in ("id", "name", "location", "tags") if k in fw}
    payload.update(sku=p.get("sku"), threatIntelMode=p.get("threatIntelMode"),
                   firewallPolicy=(p.get("firewallPolicy") or {}).get("id"))
    errors: dict[str, str] = {}
    if payload["firewallPolicy"]:
        policy = read_partial(errors, "policy",
                              lambda: arm.get(str(payload["firewallPolicy"]), API_VERSION))
        if policy is not None:
            pp = policy.get("properties") or {}
            payload["policy"] = {"id": policy.get("id"), "sku": pp.get("sku"),
                                 "threatIntelMode": pp.get("threatIntelMode"),
                                 "dnsSettings": pp.get("dnsSettings"),
                                 "intrusionDetection": (pp.get("intrusionDetection") or {})
                                 .get("mode")}
    return with_errors(payload, errors)


def app_gateway_payload(arm: Arm, gw: Mapping[str, Any]) -> dict[str, Any]:
    p = gw.get("properties") or {}
    payload: dict[str, Any] = {k: gw[k] for k in ("id", "name", "location", "tags") if k in gw}
    sku = p.get("sku") or {}
    payload["sku"] = {"name": sku.get("name"), "tier": sku.get("tier")}
    payload["sslPolicy"] = p.get("sslPolicy")
    payload["sslProfiles"] = [{"name": sp.get("name"),
                               "sslPolicy": (sp.get("properties") or {}).get("sslPolicy")}
                              for sp in p.get("sslProfiles") or []]
    payload["publicFrontends"] = sorted(
        str(f.get("name")) for f in p.get("frontendIPConfigurations") or []
        if (f.get("properties") or {}).get("publicIPAddress"))
    payload["httpsListeners"] = sum(
        1 for listener in p.get("httpListeners") or []
        if str((listener.get("properties") or {}).get("protocol", "")).lower() == "https")
    payload["webApplicationFirewallConfiguration"] = p.get("webApplicationFirewallConfiguration")
    payload["firewallPolicy"] = (p.get("firewallPolicy") or {}).get("id")
    errors: dict[str, str] = {}
    if payload["firewallPolicy"]:
        policy = read_partial(errors, "wafPolicy",
                              lambda: arm.get(str(payload["firewallPolicy"]), API_VERSION))
        if policy is not None:
            pp = policy.get("properties") or {}
            settings = pp.get("policySettings") or {}
            payload["wafPolicy"] = {
                "id": policy.get("id"),
                "policySettings": {"state": settings.get("state"), "mode": settings.get("mode")},
                "managedRuleSets": [
                    f"{m.get('ruleSetType')} {m.get('ruleSetVersion')}"
                    for m in (pp.get("managedRules") or {}).get("managedRuleSets") or []],
            }
    return with_errors(payload, errors)


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    base = f"/subscriptions/{subscription}/providers/Microsoft.Network"
    for fw in arm.list(f"{base}/azureFirewalls", API_VERSION):
        yield evidence(subscription, FIREWALL, fw, firewall_payload(arm, fw))
    for gw in arm.list(f"{base}/applicationGateways", API_VERSION):
        yield evidence(subscription, APP_GATEWAY, gw, app_gateway_payload(arm, gw))


# --- checks --------------------------------------------------------------------------


@check("azure.gateway.firewall_threat_intel_deny")
def firewall_threat_intel_deny(payload: Mapping[str, Any], params: Mapping[str, Any]
                               ) -> Verdict:
    accepted = {str(m).lower() for m in params["accepted_modes"]}
    if payload.get("firewallPolicy"):
        policy = require(payload, "policy")
        mode, where = policy.get("threatIntelMode") or "Alert", "its firewall policy"
    else:
        mode, where = payload.get("threatIntelMode") or "Alert", "the firewall"
    # Both the firewall and the policy document "Alert" as the default mode.
    if str(mode).lower() in accepted:
        return passed(f"Threat intelligence mode of {where} is {mode}")
    return failed(f"Threat intelligence mode of {where} is {mode}: known-malicious "
                  "traffic is not blocked")


def min_tls(policy: Mapping[str, Any] | None) -> str | None:
    """The minimum TLS version an Application Gateway SSL policy accepts (None: no policy
    set, whose default depends on the API version the gateway was created with)."""
    if not policy:
        return None
    kind = str(policy.get("policyType") or "").lower()
    if kind == "predefined":
        return PREDEFINED_MIN_TLS.get(str(policy.get("policyName") or "").lower(), "TLSv1_0")
    if policy.get("minProtocolVersion"):
        return str(policy["minProtocolVersion"])
    disabled = {str(v) for v in policy.get("disabledSslProtocols") or []}
    for version in TLS_ORDER:
        if version not in disabled:
            return version
    return None


@check("azure.gateway.app_gateway_tls_policy")
def app_gateway_tls_policy(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    wanted = str(params["min_version"])
    if wanted not in TLS_ORDER:
        raise ValueError(f"min_version must be one of {', '.join(TLS_ORDER)}")
    if not require(payload, "httpsListeners"):
        return not_applicable("The gateway has no HTTPS listener")
    policies = [("gateway", payload.get("sslPolicy"))] + [
        (f"SSL profile {sp.get('name')}", sp.get("sslPolicy"))
        for sp in payload.get("sslProfiles") or []]
    weak = []
    for where, policy in policies:
        version = min_tls(policy)
        if version is None:
            weak.append(f"{where}: no TLS policy set (the 2015 default accepts TLS 1.0)")
        elif version not in TLS_ORDER or TLS_ORDER.index(version) < TLS_ORDER.index(wanted):
            weak.append(f"{where}: minimum {version}")
    if weak:
        return failed(f"TLS below {wanted} is accepted: " + "; ".join(weak))
    return passed(f"Every TLS policy of the gateway requires {wanted} or later")


@check("azure.gateway.app_gateway_waf_enabled")
def app_gateway_waf_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if not require(payload, "publicFrontends"):
        return not_applicable("The gateway has no public frontend")
    if "waf" not in str((payload.get("sku") or {}).get("tier") or "").lower():
        return failed(f"The gateway's tier is {(payload.get('sku') or {}).get('tier')}: no "
                      "web application firewall")
    if payload.get("firewallPolicy"):
        if "wafPolicy" not in payload:
            raise EvidenceMissing("the WAF policy could not be read: "
                                  + str((payload.get("_errors") or {}).get("wafPolicy")))
        settings = payload["wafPolicy"].get("policySettings") or {}
        enabled = str(settings.get("state") or "").lower() == "enabled"
        mode = str(settings.get("mode") or "Detection")
    else:
        legacy = payload.get("webApplicationFirewallConfiguration") or {}
        enabled, mode = legacy.get("enabled") is True, str(legacy.get("firewallMode")
                                                           or "Detection")
    if not enabled:
        return failed("The web application firewall is disabled")
    if params["require_prevention"] and mode.lower() != "prevention":
        return failed(f"The web application firewall is in {mode} mode: attacks are logged, "
                      "not blocked")
    return passed(f"The web application firewall is enabled in {mode} mode")

