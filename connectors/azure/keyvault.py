"""Key Vault: soft delete, purge protection and audit logging of every vault.

One unit per subscription (service ``keyvault``): ``GET .../Microsoft.KeyVault/vaults``
(the listing; a failure fails the unit), then per vault ``GET <vault id>/providers/
Microsoft.Insights/diagnosticSettings`` (partial: recorded under ``_errors``).

Resource type ``azure.keyvault.vault`` (id = ARM id): the ARM resource with
``properties.accessPolicies`` replaced by their count (object ids and permission lists
change independently of the settings judged here) and ``diagnosticSettings``::

    [{"name", "workspaceId", "storageAccountId", "eventHubAuthorizationRuleId",
      "logs": [{"category" | "categoryGroup", "enabled"}]}]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.kit import read_partial, require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

from .arm import Arm, arm_resource, evidence
from .common import props
from .monitor import DIAGNOSTIC_API, transform_setting

SERVICE = "keyvault"
VAULT = "azure.keyvault.vault"
API_VERSION = "2023-07-01"

ACTIONS = (
    "Microsoft.KeyVault/vaults/read",
    "Microsoft.Insights/diagnosticSettings/read",
)


def vault_payload(arm: Arm, vault: Mapping[str, Any]) -> dict[str, Any]:
    payload = arm_resource(vault, drop=("accessPolicies",))
    policies = (vault.get("properties") or {}).get("accessPolicies")
    if policies is not None:
        payload["properties"]["accessPolicyCount"] = len(policies)
    errors: dict[str, str] = {}
    path = f"{vault['id']}/providers/Microsoft.Insights/diagnosticSettings"
    settings = read_partial(
        errors, "diagnosticSettings",
        lambda: [transform_setting(s) for s in arm.list(path, DIAGNOSTIC_API)],
    )
    if settings is not None:
        payload["diagnosticSettings"] = sorted(settings, key=lambda s: str(s["name"]))
    return with_errors(payload, errors)


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.KeyVault/vaults"
    for vault in arm.list(path, API_VERSION):
        yield evidence(subscription, VAULT, vault, vault_payload(arm, vault))


# --- checks --------------------------------------------------------------------------


@check("azure.keyvault.soft_delete_enabled")
def soft_delete_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    p = props(payload)
    if p.get("enableSoftDelete") is not True:
        return failed("Soft delete is not enabled")
    days = p.get("softDeleteRetentionInDays", 90)  # ARM's default
    if isinstance(days, int) and days < int(params["min_retention_days"]):
        return failed(f"Soft delete keeps deleted objects only {days} days")
    return passed(f"Soft delete is enabled ({days} days)")


@check("azure.keyvault.purge_protection_enabled")
def purge_protection_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if props(payload).get("enablePurgeProtection") is True:
        return passed("Purge protection is enabled")
    return failed("Purge protection is not enabled")


def _audit_logged(setting: Mapping[str, Any]) -> bool:
    if not any(setting.get(k) for k in ("workspaceId", "storageAccountId",
                                        "eventHubAuthorizationRuleId")):
        return False
    for log in setting.get("logs") or []:
        if not log.get("enabled"):
            continue
        if str(log.get("category", "")).lower() == "auditevent":
            return True
        if str(log.get("categoryGroup", "")).lower() in ("audit", "alllogs"):
            return True
    return False


@check("azure.keyvault.logging_enabled")
def logging_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    settings = require(payload, "diagnosticSettings")
    for s in settings:
        if _audit_logged(s):
            return passed(f"Diagnostic setting {s.get('name')} sends AuditEvent logs")
    return failed("No diagnostic setting sends the vault's AuditEvent logs to a destination")
