"""Amazon CloudFront distributions: viewer TLS policy and AWS WAF protection.

One global unit per account (service ``cloudfront``): ``ListDistributions`` page by page
(``DistributionList.Items``; the listing gives every field judged). Resource type
``aws.cloudfront.distribution`` (id = distribution ARN)::

    {"Id", "ARN", "DomainName", "Aliases": [...], "Enabled", "WebACLId",
     "ViewerCertificate": {...}, "ViewerProtocolPolicies": [...]}

``WebACLId`` is a WAF (v2) web ACL ARN or a WAF Classic id ("" = none).
``MinimumProtocolVersion`` values are CloudFront's (``SSLv3 | TLSv1 | TLSv1_2016 |
TLSv1.1_2016 | TLSv1.2_2018 | TLSv1.2_2019 | TLSv1.2_2021 | TLSv1.2_2025 |
TLSv1.3_2025``, botocore cloudfront 2020-05-31); with CloudFront's default certificate
(``*.cloudfront.net``) viewers may use TLS 1.0 whatever the setting says.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import actions, pages
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import GLOBAL, require
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

SERVICE = "cloudfront"
DISTRIBUTION = "aws.cloudfront.distribution"

ACTIONS = actions("cloudfront:ListDistributions")

MODERN = ("TLSv1.2_2018", "TLSv1.2_2019", "TLSv1.2_2021", "TLSv1.2_2025", "TLSv1.3_2025")


def transform(item: Mapping[str, Any]) -> dict[str, Any]:
    behaviours = [item.get("DefaultCacheBehavior") or {}]
    behaviours += list((item.get("CacheBehaviors") or {}).get("Items") or [])
    return {
        "Id": item.get("Id"), "ARN": item.get("ARN"), "DomainName": item.get("DomainName"),
        "Aliases": list((item.get("Aliases") or {}).get("Items") or []),
        "Enabled": item.get("Enabled"), "WebACLId": item.get("WebACLId") or "",
        "ViewerCertificate": item.get("ViewerCertificate") or {},
        "ViewerProtocolPolicies": sorted({str(b.get("ViewerProtocolPolicy"))
                                          for b in behaviours if b}),
    }


def read(account: Account, region: str = GLOBAL) -> Iterator[Evidence]:
    client = account.client("cloudfront", "us-east-1")
    for page in pages(client, "list_distributions", ("DistributionList.Items",)):
        for item in (page.get("DistributionList") or {}).get("Items") or []:
            arn = item.get("ARN") or f"arn:{account.partition}:cloudfront::" \
                                      f"{account.account_id}:distribution/{item['Id']}"
            yield account.evidence(DISTRIBUTION, arn, GLOBAL, transform(item))


READERS = (ReaderSpec(SERVICE, read, regional=False),)


def _name(payload: Mapping[str, Any]) -> str:
    aliases = payload.get("Aliases") or []
    return str(aliases[0] if aliases else payload.get("DomainName") or payload.get("Id"))


@check("aws.cloudfront.distribution_waf")
def distribution_waf(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("Enabled") is False:
        return not_applicable(f"Distribution {_name(payload)} is disabled")
    acl = require(payload, "WebACLId")
    if not acl:
        return failed(f"No AWS WAF web ACL protects distribution {_name(payload)}")
    return passed(f"Distribution {_name(payload)} is protected by {acl}")


@check("aws.cloudfront.distribution_min_tls")
def distribution_min_tls(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("Enabled") is False:
        return not_applicable(f"Distribution {_name(payload)} is disabled")
    cert = require(payload, "ViewerCertificate")
    problems = []
    if cert.get("CloudFrontDefaultCertificate"):
        problems.append("the default *.cloudfront.net certificate allows TLS 1.0")
    elif cert.get("MinimumProtocolVersion") not in MODERN:
        problems.append(f"security policy {cert.get('MinimumProtocolVersion')} allows TLS "
                        "before 1.2")
    plain = [p for p in require(payload, "ViewerProtocolPolicies") if p == "allow-all"]
    if plain:
        problems.append("a cache behaviour allows plain HTTP (allow-all)")
    if problems:
        return failed(f"Distribution {_name(payload)}: " + "; ".join(problems))
    return passed(f"Distribution {_name(payload)} requires {cert.get('MinimumProtocolVersion')}"
                  " over HTTPS")
