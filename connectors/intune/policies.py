"""Intune compliance policies: does each platform in the fleet have an assigned policy
requiring a passcode and a screen lock?

``intune.device.screen_lock`` judges each device against *its* compliance policy; this
check judges the policy itself, because a device is "compliant" with a policy that asks
for nothing. API (Graph v1.0, ``DeviceManagementConfiguration.Read.All``):
``GET /deviceManagement/deviceCompliancePolicies?$expand=assignments`` (``@odata.nextLink``
paging). The policy types and their passcode properties are those of the Graph CSDL:
``windows10CompliancePolicy`` / ``macOSCompliancePolicy`` / ``androidCompliancePolicy`` /
``androidWorkProfileCompliancePolicy`` (``passwordRequired``,
``passwordMinutesOfInactivityBeforeLock``) and ``iosCompliancePolicy``
(``passcodeRequired``, ``passcodeMinutesOfInactivityBeforeLock``).

One evidence per tenant (``intune.tenant.compliance_policies``), with the platforms of
the managed devices read in the same run, so only platforms actually in use are judged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.http import HttpClient
from connectors.kit import ERRORS_KEY, GLOBAL, require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

POLICY_TYPE = "intune.tenant.compliance_policies"
POLICY_ID = "compliance-policies"

#: OData type → (platform, passcode-required property, inactivity-lock property).
POLICY_KINDS: dict[str, tuple[str, str, str]] = {
    "windows10CompliancePolicy": (
        "windows", "passwordRequired", "passwordMinutesOfInactivityBeforeLock"
    ),
    "macOSCompliancePolicy": ("macos", "passwordRequired", "passwordMinutesOfInactivityBeforeLock"),
    "iosCompliancePolicy": ("ios", "passcodeRequired", "passcodeMinutesOfInactivityBeforeLock"),
    "androidCompliancePolicy": (
        "android", "passwordRequired", "passwordMinutesOfInactivityBeforeLock"
    ),
    "androidWorkProfileCompliancePolicy": (
        "android", "passwordRequired", "passwordMinutesOfInactivityBeforeLock"
    ),
}  # fmt: skip


def policy_summary(p: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(p.get("@odata.type") or "").rsplit(".", 1)[-1]
    platform, required, lock = POLICY_KINDS.get(kind, (None, "", ""))
    return {
        "id": p.get("id"),
        "name": p.get("displayName"),
        "type": kind or None,
        "platform": platform,
        "passcode_required": p.get(required) if required else None,
        "lock_minutes": p.get(lock) if lock else None,
        "assigned": bool(p.get("assignments")),
    }


def read_policies(
    http: HttpClient,
    scope: str,
    device_platforms: Mapping[str, int] | None,
    devices_error: str | None,
) -> Iterator[Evidence]:
    policies = [
        policy_summary(p)
        for p in http.paginate_next_url(
            "/deviceManagement/deviceCompliancePolicies", params={"$expand": "assignments"}
        )
        if isinstance(p, Mapping)
    ]
    payload: dict[str, Any] = {"policies": sorted(policies, key=lambda p: str(p["id"]))}
    if device_platforms is not None:
        payload["device_platforms"] = dict(sorted(device_platforms.items()))
    else:
        payload[ERRORS_KEY] = {"device_platforms": devices_error or "devices were not read"}
    yield Evidence(scope, GLOBAL, POLICY_TYPE, POLICY_ID, payload)


@check("intune.tenant.passcode_policy")
def passcode_policy(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    in_use = require(payload, "device_platforms")
    judged = sorted(p for p in in_use if p in {k[0] for k in POLICY_KINDS.values()})
    limit = params["max_lock_minutes"]
    good: dict[str, str] = {}
    for pol in require(payload, "policies"):
        lock = pol.get("lock_minutes")
        if (
            pol.get("platform") in judged
            and pol.get("assigned")
            and pol.get("passcode_required") is True
            and isinstance(lock, int)
            and 0 < lock <= limit
        ):
            good.setdefault(pol["platform"], f"{pol.get('name')} (lock after {lock} min)")
    missing = [p for p in judged if p not in good]
    if missing:
        return failed(
            f"no assigned compliance policy requires a passcode and a lock within {limit} "
            f"minutes for: {', '.join(missing)} (devices: "
            + ", ".join(f"{p} {in_use[p]}" for p in missing)
            + ")"
        )
    if not judged:
        return passed("no managed device of a platform with passcode compliance settings")
    return passed("; ".join(f"{p}: {good[p]}" for p in judged))
