"""What a Conditional Access policy covers and what its grant demands (pure functions).

Shapes and values are those of Microsoft Graph v1.0 metadata (``conditionalAccessPolicy``,
``conditionalAccessConditionSet``, ``conditionalAccessGrantControls``,
``authenticationStrengthPolicy`` and their enumerations). A policy is in force for
*everyone* only when every condition Graph documents is unrestricted:

* users: ``includeUsers`` holds ``All``; exclusions only within what the check's
  parameters approve (break-glass accounts), never roles or guest types;
* applications: ``includeApplications`` holds ``All``, none excluded, no app filter;
* ``clientAppTypes``: ``all`` (or, for MFA, at least ``browser`` and
  ``mobileAppsAndDesktopClients`` — legacy clients cannot do MFA and are judged by the
  legacy-authentication check);
* ``platforms``, ``locations``, ``devices.deviceFilter``, ``authenticationFlows``,
  ``clientApplications`` (workload identities): absent, or ``all``/``All`` included and
  nothing excluded;
* no risk condition (``signInRiskLevels``, ``userRiskLevels``,
  ``servicePrincipalRiskLevels``, ``insiderRiskLevels``): a policy that fires only for
  risky sign-ins leaves every ordinary sign-in on a password.

The grant requires MFA when it cannot be satisfied without it: with operator ``AND``
one of its controls is MFA (``mfa`` or an authentication strength whose
``requirementsSatisfied`` is ``mfa``); with ``OR`` every control is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.identityshared import dig

#: Built-in authentication strengths (Graph ``authenticationStrengthPolicy`` ids): all
#: three satisfy ``mfa``. Custom strengths are judged by their ``requirementsSatisfied``.
BUILT_IN_MFA_STRENGTHS = frozenset(
    {
        "00000000-0000-0000-0000-000000000002",  # Multifactor authentication
        "00000000-0000-0000-0000-000000000003",  # Passwordless MFA
        "00000000-0000-0000-0000-000000000004",  # Phishing-resistant MFA
    }
)
#: Client app types a modern (MFA-capable) sign-in uses.
MODERN_CLIENTS = frozenset({"browser", "mobileAppsAndDesktopClients"})
LEGACY_CLIENTS = frozenset({"exchangeActiveSync", "other"})


def _strings(obj: Any, *path: str) -> list[str]:
    value = dig(obj, *path)
    return sorted(str(v) for v in value) if isinstance(value, list) else []


def _include_exclude(obj: Any, include: str, exclude: str) -> dict[str, list[str]] | None:
    if not isinstance(obj, Mapping):
        return None
    return {"include": _strings(obj, include), "exclude": _strings(obj, exclude)}


def _filter(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, Mapping) or not obj.get("rule"):
        return None
    return {"mode": obj.get("mode"), "rule": obj.get("rule")}


def _guests(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, Mapping):
        return None
    return {
        "types": obj.get("guestOrExternalUserTypes"),
        "tenants": dig(obj, "externalTenants", "membershipKind"),
    }


def _strength(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, Mapping):
        return None
    return {
        "id": obj.get("id"),
        "name": obj.get("displayName"),
        "policy_type": obj.get("policyType"),
        "requirements_satisfied": obj.get("requirementsSatisfied"),
        "allowed_combinations": _strings(obj, "allowedCombinations"),
    }


def policy_summary(policy: Mapping[str, Any]) -> dict[str, Any]:
    """Every condition and grant control that decides who a policy applies to and what it
    demands; object ids are kept so an auditor can see who is excluded."""
    cond = policy.get("conditions") if isinstance(policy.get("conditions"), Mapping) else {}
    users = cond.get("users")
    apps = cond.get("applications")
    grant = policy.get("grantControls")
    insider = cond.get("insiderRiskLevels")
    flows = dig(cond, "authenticationFlows", "transferMethods")
    return {
        "id": str(policy["id"]),
        "name": policy.get("displayName"),
        "state": policy.get("state"),
        "users": {
            "include_users": _strings(users, "includeUsers"),
            "exclude_users": _strings(users, "excludeUsers"),
            "include_groups": _strings(users, "includeGroups"),
            "exclude_groups": _strings(users, "excludeGroups"),
            "include_roles": _strings(users, "includeRoles"),
            "exclude_roles": _strings(users, "excludeRoles"),
            "include_guests": _guests(dig(users, "includeGuestsOrExternalUsers")),
            "exclude_guests": _guests(dig(users, "excludeGuestsOrExternalUsers")),
        },
        "applications": {
            "include": _strings(apps, "includeApplications"),
            "exclude": _strings(apps, "excludeApplications"),
            "user_actions": _strings(apps, "includeUserActions"),
            "authentication_contexts": _strings(
                apps, "includeAuthenticationContextClassReferences"
            ),
            "filter": _filter(dig(apps, "applicationFilter")),
        },
        "client_app_types": _strings(cond, "clientAppTypes"),
        "platforms": _include_exclude(
            cond.get("platforms"), "includePlatforms", "excludePlatforms"
        ),
        "locations": _include_exclude(
            cond.get("locations"), "includeLocations", "excludeLocations"
        ),
        "device_filter": _filter(dig(cond, "devices", "deviceFilter")),
        "sign_in_risk_levels": _strings(cond, "signInRiskLevels"),
        "user_risk_levels": _strings(cond, "userRiskLevels"),
        "service_principal_risk_levels": _strings(cond, "servicePrincipalRiskLevels"),
        "insider_risk_levels": insider if isinstance(insider, str) and insider else None,
        "authentication_flows": flows if isinstance(flows, str) and flows else None,
        "workload_identities": isinstance(cond.get("clientApplications"), Mapping),
        "grant_operator": dig(grant, "operator"),
        "grant_controls": _strings(grant, "builtInControls"),
        "custom_authentication_factors": _strings(grant, "customAuthenticationFactors"),
        "terms_of_use": _strings(grant, "termsOfUse"),
        "authentication_strength": _strength(dig(grant, "authenticationStrength")),
    }


# --------------------------------------------------------------------------- judging


def coverage_gaps(
    p: Mapping[str, Any],
    *,
    max_excluded_users: int,
    approved_exclusions: list[str],
    judge_client_apps: bool = True,
) -> list[str]:
    """Why the policy does not apply to every sign-in of every user (empty: it does).

    ``approved_exclusions`` are object ids (users or groups, e.g. break-glass accounts)
    that may be excluded without limit; besides them at most ``max_excluded_users``
    users. Client app types ``all``, or browsers and modern apps together, count as
    every client (legacy clients cannot do MFA); ``judge_client_apps=False`` leaves
    them to the caller (the legacy-authentication check).
    """
    gaps: list[str] = []
    if p.get("state") != "enabled":
        gaps.append(f"state is {p.get('state')}")
    users = p.get("users") or {}
    if "All" not in users.get("include_users", []):
        gaps.append("not for all users")
    approved = set(approved_exclusions)
    extra_users = [u for u in users.get("exclude_users", []) if u not in approved]
    if len(extra_users) > max_excluded_users:
        gaps.append(f"{len(extra_users)} users excluded (at most {max_excluded_users})")
    groups = [g for g in users.get("exclude_groups", []) if g not in approved]
    if groups:
        gaps.append(f"groups excluded: {', '.join(groups)}")
    if users.get("exclude_roles"):
        gaps.append(f"directory roles excluded: {', '.join(users['exclude_roles'])}")
    if users.get("exclude_guests"):
        gaps.append(f"guests or external users excluded ({users['exclude_guests'].get('types')})")
    apps = p.get("applications") or {}
    if "All" not in apps.get("include", []):
        gaps.append("not for all cloud apps")
    if apps.get("exclude"):
        gaps.append(f"applications excluded: {', '.join(apps['exclude'])}")
    if apps.get("filter"):
        gaps.append(f"application filter ({apps['filter'].get('mode')})")
    clients = set(p.get("client_app_types") or [])
    if judge_client_apps and clients and "all" not in clients and not MODERN_CLIENTS <= clients:
        gaps.append(f"only client apps {', '.join(sorted(clients))}")
    platforms = p.get("platforms")
    if platforms and ("all" not in platforms["include"] or platforms["exclude"]):
        gaps.append(
            f"platforms include {platforms['include'] or 'none'}, "
            f"exclude {platforms['exclude'] or 'none'}"
        )
    locations = p.get("locations")
    if locations and ("All" not in locations["include"] or locations["exclude"]):
        gaps.append(
            f"locations include {locations['include'] or 'none'}, "
            f"exclude {locations['exclude'] or 'none'}"
        )
    if p.get("device_filter"):
        gaps.append(f"device filter ({p['device_filter'].get('mode')})")
    for key, what in (
        ("sign_in_risk_levels", "sign-in risk"),
        ("user_risk_levels", "user risk"),
        ("service_principal_risk_levels", "service principal risk"),
    ):
        if p.get(key):
            gaps.append(f"only at {what} {', '.join(p[key])}")
    if p.get("insider_risk_levels"):
        gaps.append(f"only at insider risk {p['insider_risk_levels']}")
    if p.get("authentication_flows"):
        gaps.append(f"only for authentication flows {p['authentication_flows']}")
    if p.get("workload_identities"):
        gaps.append("for workload identities (service principals), not users")
    return gaps


def strength_is_mfa(strength: Mapping[str, Any] | None) -> bool:
    if not strength:
        return False
    if strength.get("requirements_satisfied") == "mfa":
        return True
    return strength.get("requirements_satisfied") is None and strength.get("id") in (
        BUILT_IN_MFA_STRENGTHS
    )


def grant_weakness(p: Mapping[str, Any]) -> str | None:
    """Why the grant can be satisfied without MFA, or None when it cannot."""
    controls = set(p.get("grant_controls") or [])
    strength = p.get("authentication_strength")
    mfa_controls = [c for c in ("mfa",) if c in controls]
    if strength_is_mfa(strength):
        mfa_controls.append(f"authentication strength {strength.get('name') or strength['id']}")
    others = sorted(controls - {"mfa"})
    others += [f"custom factor {c}" for c in p.get("custom_authentication_factors") or []]
    others += [f"terms of use {t}" for t in p.get("terms_of_use") or []]
    if strength and not strength_is_mfa(strength):
        others.append(
            f"authentication strength {strength.get('name') or strength.get('id')} "
            f"(requirementsSatisfied {strength.get('requirements_satisfied')})"
        )
    if "block" in controls:
        return "blocks access instead"
    if not mfa_controls:
        return "grant does not require MFA"
    if others and p.get("grant_operator") != "AND":
        return f"MFA OR {', '.join(others)}: any one of them alone satisfies the grant"
    return None
