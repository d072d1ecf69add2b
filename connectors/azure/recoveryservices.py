"""Recovery Services vaults and their backup policies: soft delete, immutability, retention.

One unit per subscription (service ``recoveryservices``): ``GET .../Microsoft.
RecoveryServices/vaults`` then, per vault, ``GET <vault id>/backupPolicies``; both are
listings (a failure fails the unit, so unlisted policies are never taken as deleted).

Resource types (id = ARM id):

* ``azure.recoveryservices.vault``: the ARM resource (``properties.securitySettings``
  holds ``softDeleteSettings`` and ``immutabilitySettings``);
* ``azure.recoveryservices.backup_policy``: the policy resource (``properties.
  retentionPolicy`` for VM/file-share policies, ``subProtectionPolicy[].
  retentionPolicy`` for workload policies such as SQL in VMs).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

from .arm import Arm, arm_resource, evidence
from .common import props

SERVICE = "recoveryservices"
VAULT = "azure.recoveryservices.vault"
POLICY = "azure.recoveryservices.backup_policy"
API_VERSION = "2024-04-01"

ACTIONS = (
    "Microsoft.RecoveryServices/vaults/read",
    "Microsoft.RecoveryServices/vaults/backupPolicies/read",
)

_DAYS = {"days": 1, "weeks": 7, "months": 30, "years": 365}


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.RecoveryServices/vaults"
    for vault in arm.list(path, API_VERSION):
        yield evidence(subscription, VAULT, vault, arm_resource(vault))
        for policy in arm.list(f"{vault['id']}/backupPolicies", API_VERSION):
            policy.setdefault("location", vault.get("location"))
            yield evidence(subscription, POLICY, policy, arm_resource(policy))


# --- retention -------------------------------------------------------------------------


def _duration_days(duration: Mapping[str, Any] | None) -> int | None:
    if not duration:
        return None
    count = duration.get("count")
    unit = str(duration.get("durationType", "")).lower()
    if not isinstance(count, int) or unit not in _DAYS:
        return None
    return count * _DAYS[unit]


def retention_days(retention: Mapping[str, Any] | None) -> int | None:
    """The longest a recovery point of this retention policy is kept, in days."""
    if not retention:
        return None
    if retention.get("retentionDuration"):  # SimpleRetentionPolicy
        return _duration_days(retention["retentionDuration"])
    spans = [
        _duration_days((retention.get(k) or {}).get("retentionDuration"))
        for k in ("dailySchedule", "weeklySchedule", "monthlySchedule", "yearlySchedule")
    ]
    known = [d for d in spans if d is not None]
    return max(known) if known else None


def policy_retention_days(payload: Mapping[str, Any]) -> int | None:
    p = props(payload)
    spans = [retention_days(p.get("retentionPolicy"))]
    spans += [retention_days(sub.get("retentionPolicy"))
              for sub in p.get("subProtectionPolicy") or []
              if str(sub.get("policyType", "Full")).lower() == "full"]
    known = [d for d in spans if d is not None]
    return max(known) if known else None


# --- checks --------------------------------------------------------------------------


@check("azure.recoveryservices.backup_retention")
def backup_retention(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    p = props(payload)
    if not p.get("retentionPolicy") and not p.get("subProtectionPolicy"):
        return not_applicable("Policy has no retention settings (e.g. a snapshot-only "
                              "policy type)")
    days = policy_retention_days(payload)
    minimum = int(params["min_days"])
    if days is None:
        return failed("The policy's retention could not be interpreted")
    if days < minimum:
        return failed(f"Recovery points are kept at most {days} days (< {minimum})")
    return passed(f"Recovery points are kept up to {days} days")


@check("azure.recoveryservices.vault_soft_delete")
def vault_soft_delete(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    settings = (props(payload).get("securitySettings") or {}).get("softDeleteSettings") or {}
    state = str(settings.get("softDeleteState") or "")
    if state.lower() in ("enabled", "alwayson"):
        days = settings.get("softDeleteRetentionPeriodInDays")
        return passed(f"Soft delete is {state}" + (f" ({days} days)" if days else ""))
    return failed(f"Soft delete is {state or 'not configured'}")


@check("azure.recoveryservices.vault_immutability")
def vault_immutability(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    settings = (props(payload).get("securitySettings") or {}).get("immutabilitySettings") or {}
    state = str(settings.get("state") or "Disabled")
    if state.lower() == "locked":
        return passed("Immutability is enabled and locked")
    if state.lower() == "unlocked" and not params["require_locked"]:
        return passed("Immutability is enabled (unlocked)")
    return failed(f"Immutability is {state}")
