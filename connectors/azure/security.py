"""Microsoft Defender for Cloud: which plans are on in each subscription.

One unit per subscription (service ``security``): ``GET .../Microsoft.Security/pricings``.

Resource type ``azure.security.pricings`` (id = ``/subscriptions/<id>/providers/
Microsoft.Security/pricings``, region ``global``)::

    {"subscriptionId": "...",
     "pricings": [{"name": "VirtualMachines", "pricingTier": "Standard",
                   "subPlan": "P2", "deprecated": false,
                   "extensions": [{"name": "...", "isEnabled": "True"}]}, ...]}

``freeTrialRemainingTime`` counts down every second and is dropped (it would store a
new version on every run); ``enablementTime`` stays (it changes only when a plan does).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence, utcnow

from .arm import Arm
from .common import GLOBAL, require

SERVICE = "security"
PRICINGS = "azure.security.pricings"
API_VERSION = "2024-01-01"

ACTIONS = ("Microsoft.Security/pricings/read",)

_KEPT = ("pricingTier", "subPlan", "deprecated", "enablementTime", "enforce", "inherited")


def transform(pricing: Mapping[str, Any]) -> dict[str, Any]:
    p = pricing.get("properties") or {}
    out: dict[str, Any] = {"name": pricing.get("name")}
    out.update({k: p[k] for k in _KEPT if k in p})
    if p.get("extensions"):
        out["extensions"] = [
            {"name": e.get("name"), "isEnabled": e.get("isEnabled")} for e in p["extensions"]
        ]
    return out


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.Security/pricings"
    pricings = sorted((transform(p) for p in arm.list(path, API_VERSION)),
                      key=lambda p: str(p["name"]))
    yield Evidence(
        scope=subscription,
        region=GLOBAL,
        resource_type=PRICINGS,
        resource_id=path.lower(),
        payload={"subscriptionId": subscription, "pricings": pricings},
        collected_at=utcnow(),
    )


@check(
    id="azure.security.defender_plans_enabled",
    title="Microsoft Defender for Cloud plans are on for the workloads in use",
    severity="high",
    resource_type=PRICINGS,
    rationale="Defender plans (Standard tier) detect threats and vulnerabilities on "
    "servers, databases, storage, key vaults and the management plane; on the Free tier "
    "only posture recommendations are produced.",
    remediation="In Defender for Cloud → Environment settings, switch the listed plans to "
    "On (Standard) for the subscription.",
    parameters={"required_plans": ["VirtualMachines", "SqlServers", "StorageAccounts",
                                   "KeyVaults", "Arm"]},
)
def defender_plans_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    pricings = {str(p.get("name", "")).lower(): p for p in require(payload, "pricings")}
    off: list[str] = []
    for plan in params["required_plans"]:
        pricing = pricings.get(str(plan).lower())
        if pricing is None:
            off.append(f"{plan} (not offered in this subscription)")
        elif str(pricing.get("pricingTier", "")).lower() != "standard":
            off.append(f"{plan} ({pricing.get('pricingTier') or 'no tier'})")
    if off:
        return failed("Defender plans not on: " + ", ".join(off))
    return passed("Defender plans on: " + ", ".join(map(str, params["required_plans"])))
