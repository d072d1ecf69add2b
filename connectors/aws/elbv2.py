"""Elastic Load Balancing v2 (application and network load balancers) listeners.

Regional units (service ``elbv2``): ``DescribeLoadBalancers`` page by page; for each,
``DescribeListeners`` (partial). Resource type ``aws.elbv2.load_balancer`` (id = load
balancer ARN): ``{"LoadBalancer": {...}, "Listeners": [...], "WebACL": {"Name", "ARN"} |
null}`` — ``WebACL`` (``wafv2:GetWebACLForResource``, partial) only on internet-facing
application load balancers. Gateway load balancers
(GENEVE) carry no client traffic to encrypt and are ``not_applicable``. Classic load
balancers are not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import MISSING, actions, paginate, read_partial
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require, with_errors
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

SERVICE = "elbv2"
LOAD_BALANCER = "aws.elbv2.load_balancer"

ACTIONS = actions(
    "wafv2:GetWebACLForResource",
    renamed={
        "elbv2:DescribeLoadBalancers": "elasticloadbalancing:DescribeLoadBalancers",
        "elbv2:DescribeListeners": "elasticloadbalancing:DescribeListeners",
    },
)

#: AWS predefined policies whose minimum protocol is TLS 1.2 or 1.3
#: (``ELBSecurityPolicy-TLS13-1-2-2021-06``, ``…-TLS-1-2-Ext-2018-06``,
#: ``…-FS-1-2-Res-2020-10``, ``…-TLS13-1-3-2021-06``, FIPS variants…).
MODERN_POLICY = re.compile(r"^ELBSecurityPolicy-(TLS13-1-[23]|TLS-1-[23]|FS-1-[23])-")
_TLS = ("HTTPS", "TLS")
#: QUIC always carries TLS 1.3 end to end (the load balancer passes it through).
_ENCRYPTED_PASSTHROUGH = ("QUIC", "TCP_QUIC")


def public_application(lb: Mapping[str, Any]) -> bool:
    """An internet-facing application load balancer. ``Scheme`` and ``Type`` are optional
    members of the answer; absent, they are CreateLoadBalancer's documented defaults
    (``internet-facing``, ``application``)."""
    return (lb.get("Type") or "application") == "application" and (
        lb.get("Scheme") or "internet-facing") == "internet-facing"


def web_acl(account: Account, region: str, arn: str) -> dict[str, Any] | None:
    """The AWS WAF (v2) web ACL protecting the load balancer, or None."""
    acl = account.client("wafv2", region).get_web_acl_for_resource(ResourceArn=arn).get(
        "WebACL")
    return {"Name": acl.get("Name"), "ARN": acl.get("ARN")} if acl else None


def listener_entries(client: Any, arn: str) -> list[dict[str, Any]]:
    return list(paginate(client, "describe_listeners", "Listeners", LoadBalancerArn=arn))


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("elbv2", region)
    for lb in paginate(client, "describe_load_balancers", "LoadBalancers",
                       PaginationConfig={"PageSize": 400}):
        errors: dict[str, str] = {}
        payload: dict[str, Any] = {"LoadBalancer": lb}
        arn = lb["LoadBalancerArn"]
        listeners = read_partial(errors, "Listeners",
                                 lambda arn=arn: listener_entries(client, arn))
        if listeners is not MISSING:
            payload["Listeners"] = listeners
        if public_application(lb):
            acl = read_partial(errors, "WebACL", lambda arn=arn: web_acl(account, region, arn))
            if acl is not MISSING:
                payload["WebACL"] = acl
        yield account.evidence(LOAD_BALANCER, lb["LoadBalancerArn"], region,
                               with_errors(payload, errors))


READERS = (ReaderSpec(SERVICE, read, regional=True),)


def _redirects_to_https(listener: Mapping[str, Any]) -> bool:
    actions = listener.get("DefaultActions") or []
    return bool(actions) and all(
        a.get("Type") == "redirect"
        and (a.get("RedirectConfig") or {}).get("Protocol") == "HTTPS"
        for a in actions
    )


def _gateway(payload: Mapping[str, Any]) -> bool:
    return (payload.get("LoadBalancer") or {}).get("Type") == "gateway"


def _label(listener: Mapping[str, Any]) -> str:
    return f"{listener.get('Protocol')}:{listener.get('Port')}"


@check("aws.elbv2.listeners_tls_only")
def listeners_tls_only(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if _gateway(payload):
        return not_applicable("Gateway load balancer")
    listeners = require(payload, "Listeners")
    if not listeners:
        return not_applicable("Load balancer has no listener")
    plain = []
    for listener in listeners:
        protocol = listener.get("Protocol")
        if protocol in _TLS or protocol in _ENCRYPTED_PASSTHROUGH:
            continue
        if protocol == "HTTP" and _redirects_to_https(listener):
            continue
        if protocol in ("TCP", "UDP", "TCP_UDP") and params["allow_tcp_passthrough"]:
            continue
        plain.append(_label(listener))
    if plain:
        return failed("Plaintext listeners: " + ", ".join(plain))
    return passed("Every listener is TLS (or QUIC) or redirects to HTTPS")


@check("aws.elbv2.listeners_modern_tls_policy")
def listeners_modern_tls_policy(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if _gateway(payload):
        return not_applicable("Gateway load balancer")
    tls = [x for x in require(payload, "Listeners") if x.get("Protocol") in _TLS]
    if not tls:
        return not_applicable("Load balancer has no HTTPS/TLS listener")
    allowed = set(params["allowed_policies"])
    weak = [
        f"{_label(x)} ({x.get('SslPolicy')})"
        for x in tls
        if not (MODERN_POLICY.match(str(x.get("SslPolicy") or "")) or x.get("SslPolicy")
                in allowed)
    ]
    if weak:
        return failed("Listeners allowing TLS before 1.2: " + ", ".join(weak))
    return passed("TLS listeners use TLS 1.2+ policies: " + ", ".join(
        f"{_label(x)} ({x.get('SslPolicy')})" for x in tls))


@check("aws.elbv2.public_alb_waf")
def public_alb_waf(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    lb = payload.get("LoadBalancer") or {}
    if not public_application(lb):
        return not_applicable(f"{lb.get('Scheme', '?')} {lb.get('Type', '?')} load balancer")
    acl = require(payload, "WebACL")
    if acl is None:
        return failed("No AWS WAF web ACL protects this internet-facing load balancer")
    return passed(f"Protected by web ACL {acl.get('Name')}")
