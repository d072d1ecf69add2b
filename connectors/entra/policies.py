"""How the Entra tenant enforces MFA: security defaults or Conditional Access.

API calls:

* ``GET /policies/identitySecurityDefaultsEnforcementPolicy`` — ``isEnabled``;
* ``GET /identity/conditionalAccess/policies`` — every policy (``@odata.nextLink``
  paging). Tenants without Entra ID P1 cannot have Conditional Access; their answer
  (403) is recorded, and judged only if security defaults are off.

One evidence per tenant (``entra.tenant.authentication``) carries the security-defaults
flag and each policy reduced to what decides MFA and legacy authentication: state,
users/applications included and excluded (as counts and the ``All`` markers), client
app types, grant controls and authentication strength.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.checks import Verdict, check, failed, passed
from connectors.common import ERRORS_KEY, GLOBAL, EvidenceMissing, require
from connectors.http import HttpClient, MalformedResponseError, SourceError
from connectors.records import Evidence

TENANT_TYPE = "entra.tenant.authentication"
TENANT_ID = "authentication-policies"

_LEGACY_CLIENTS = frozenset({"exchangeActiveSync", "other"})


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _list(obj: Any, *path: str) -> list[Any]:
    value = _get(obj, *path)
    return list(value) if isinstance(value, list) else []


def policy_summary(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a Conditional Access policy that decide MFA and legacy auth."""
    users = _get(policy, "conditions", "users") or {}
    apps = _get(policy, "conditions", "applications") or {}
    strength = _get(policy, "grantControls", "authenticationStrength")
    return {
        "id": str(policy["id"]),
        "name": policy.get("displayName"),
        "state": policy.get("state"),
        "all_users": "All" in _list(users, "includeUsers"),
        "include_users_count": len(_list(users, "includeUsers")),
        "include_groups_count": len(_list(users, "includeGroups")),
        "include_roles_count": len(_list(users, "includeRoles")),
        "exclude_users_count": len(_list(users, "excludeUsers")),
        "exclude_groups_count": len(_list(users, "excludeGroups")),
        "exclude_roles_count": len(_list(users, "excludeRoles")),
        "all_applications": "All" in _list(apps, "includeApplications"),
        "exclude_applications_count": len(_list(apps, "excludeApplications")),
        "client_app_types": sorted(str(c) for c in _list(policy, "conditions", "clientAppTypes")),
        "grant_operator": _get(policy, "grantControls", "operator"),
        "grant_controls": sorted(str(c) for c in _list(policy, "grantControls", "builtInControls")),
        "authentication_strength": (
            strength.get("displayName") or strength.get("id")
            if isinstance(strength, Mapping)
            else None
        ),
    }


def read_tenant_policies(http: HttpClient, scope: str) -> Iterator[Evidence]:
    """Security defaults (must be readable: the unit fails otherwise) and CA policies
    (a refusal is recorded in the payload, so only checks that need them error)."""
    defaults = http.get_json("/policies/identitySecurityDefaultsEnforcementPolicy")
    if not isinstance(defaults, Mapping) or not isinstance(defaults.get("isEnabled"), bool):
        raise MalformedResponseError(
            "identitySecurityDefaultsEnforcementPolicy has no boolean isEnabled"
        )
    payload: dict[str, Any] = {"security_defaults_enabled": defaults["isEnabled"]}
    try:
        policies = []
        for p in http.paginate_next_url("/identity/conditionalAccess/policies"):
            if not isinstance(p, Mapping) or not p.get("id"):
                raise MalformedResponseError("a conditional access policy without an id")
            policies.append(policy_summary(p))
        policies.sort(key=lambda p: (str(p["name"]), p["id"]))
        payload["conditional_access_policies"] = policies
    except SourceError as exc:
        payload[ERRORS_KEY] = {"conditional_access_policies": str(exc)}
    yield Evidence(scope, GLOBAL, TENANT_TYPE, TENANT_ID, payload)


# --------------------------------------------------------------------------- checks


def _for_everyone(p: Mapping[str, Any]) -> bool:
    """Enforced, for all users and all cloud apps (exclusions are reported, not judged:
    break-glass accounts must be excluded)."""
    return (
        p.get("state") == "enabled" and bool(p.get("all_users")) and bool(p.get("all_applications"))
    )


def requires_mfa(p: Mapping[str, Any]) -> bool:
    """The policy's grant cannot be satisfied without MFA."""
    controls = set(p.get("grant_controls") or [])
    if p.get("authentication_strength"):
        return True
    if "mfa" not in controls:
        return False
    # With OR, any other control (compliant device, terms of use…) satisfies the grant alone.
    return controls == {"mfa"} or p.get("grant_operator") == "AND"


def _policies(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(require(payload, "conditional_access_policies"))


def _exclusions(p: Mapping[str, Any]) -> str:
    n = sum(
        int(p.get(k) or 0)
        for k in ("exclude_users_count", "exclude_groups_count", "exclude_roles_count")
    )
    return f" ({n} user/group/role exclusion(s))" if n else ""


@check(
    id="entra.tenant.mfa_enforced",
    title="The Entra tenant requires MFA for all users (security defaults or Conditional Access)",
    severity="critical",
    resource_type=TENANT_TYPE,
    rationale=(
        "Per-user MFA registration is worthless unless sign-in actually demands it; "
        "security defaults or an enabled Conditional Access policy for all users and "
        "all cloud apps is what makes MFA mandatory."
    ),
    remediation=(
        "Enable security defaults, or (with Entra ID P1) create an enabled Conditional "
        "Access policy: Users = All users (exclude only break-glass accounts), Target "
        "resources = All cloud apps, Grant = Require multifactor authentication or an "
        "authentication strength."
    ),
)
def tenant_mfa_enforced(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("security_defaults_enabled") is True:
        return passed("security defaults are enabled: every user must register and use MFA")
    try:
        policies = _policies(payload)
    except EvidenceMissing as exc:
        raise EvidenceMissing(f"security defaults are off and {exc}") from None
    good = [p for p in policies if _for_everyone(p) and requires_mfa(p)]
    if good:
        names = ", ".join(f"{p.get('name')}{_exclusions(p)}" for p in good)
        return passed(f"Conditional Access requires MFA for all users and apps: {names}")
    report_only = [
        str(p.get("name"))
        for p in policies
        if p.get("state") == "enabledForReportingButNotEnforced" and requires_mfa(p)
    ]
    extra = f"; report-only (not enforced): {', '.join(report_only)}" if report_only else ""
    return failed(
        "security defaults are off and no enabled Conditional Access policy requires MFA "
        f"for all users and all cloud apps ({len(policies)} policies){extra}"
    )


@check(
    id="entra.tenant.legacy_auth_blocked",
    title="Legacy authentication is blocked in the Entra tenant",
    severity="high",
    resource_type=TENANT_TYPE,
    rationale=(
        "Legacy protocols (IMAP, POP, SMTP AUTH, Exchange ActiveSync basic auth) cannot "
        "perform MFA, so password spraying through them bypasses every MFA policy."
    ),
    remediation=(
        "Enable security defaults, or create an enabled Conditional Access policy for all "
        "users and all cloud apps with client apps 'Exchange ActiveSync clients' and "
        "'Other clients', granting 'Block access'."
    ),
)
def tenant_legacy_auth_blocked(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("security_defaults_enabled") is True:
        return passed("security defaults are enabled: legacy authentication is blocked")
    try:
        policies = _policies(payload)
    except EvidenceMissing as exc:
        raise EvidenceMissing(f"security defaults are off and {exc}") from None
    good = [
        p
        for p in policies
        if _for_everyone(p)
        and "block" in (p.get("grant_controls") or [])
        and _LEGACY_CLIENTS <= set(p.get("client_app_types") or [])
    ]
    if good:
        names = ", ".join(f"{p.get('name')}{_exclusions(p)}" for p in good)
        return passed(f"legacy authentication is blocked by: {names}")
    return failed(
        "security defaults are off and no enabled Conditional Access policy blocks "
        "Exchange ActiveSync and other legacy clients for all users and apps"
    )
