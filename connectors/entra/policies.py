"""How the Entra tenant enforces MFA: security defaults or Conditional Access.

API calls:

* ``GET /policies/identitySecurityDefaultsEnforcementPolicy`` — ``isEnabled``;
* ``GET /identity/conditionalAccess/policies`` — every policy (``@odata.nextLink``
  paging). Tenants without Entra ID P1 cannot have Conditional Access; their answer
  (403) is recorded, and judged only if security defaults are off.

One evidence per tenant (``entra.tenant.authentication``) carries the security-defaults
flag and each policy with every condition that decides whom it applies to (users,
applications, client apps, platforms, locations, devices, risk levels, flows) and its
grant controls and authentication strength — see
:mod:`connectors.entra.conditional_access`, which also judges them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from connectors.entra.conditional_access import (
    LEGACY_CLIENTS,
    coverage_gaps,
    grant_weakness,
    policy_summary,
)
from connectors.http import HttpClient, MalformedResponseError, SourceError
from connectors.kit import ERRORS_KEY, GLOBAL, EvidenceMissing, require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

TENANT_TYPE = "entra.tenant.authentication"
TENANT_ID = "authentication-policies"


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


def _gaps(p: Mapping[str, Any], params: Mapping[str, Any], *, judge_client_apps: bool) -> list:
    return coverage_gaps(
        p,
        max_excluded_users=params["max_excluded_users"],
        approved_exclusions=list(params["approved_exclusions"]),
        judge_client_apps=judge_client_apps,
    )


def _policies(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    try:
        return list(require(payload, "conditional_access_policies"))
    except EvidenceMissing as exc:
        raise EvidenceMissing(f"security defaults are off and {exc}") from None


def _exclusions(p: Mapping[str, Any]) -> str:
    users = p.get("users") or {}
    n = sum(len(users.get(k) or []) for k in ("exclude_users", "exclude_groups"))
    return f" ({n} excluded user(s)/group(s))" if n else ""


def _why_not(p: Mapping[str, Any], reasons: list[str]) -> str:
    return f"{p.get('name')!r}: {'; '.join(reasons)}"


def _meeting(
    policies: list[Mapping[str, Any]],
    shortfalls: Callable[[Mapping[str, Any]], list[str] | None],
) -> tuple[list[Mapping[str, Any]], list[str]]:
    """``(good, near)``: the policies of the kind a check looks for that meet all its
    conditions, and why each other one of that kind falls short. ``shortfalls(p)`` is
    ``None`` for a policy of another kind, else the conditions it misses."""
    good, near = [], []
    for p in policies:
        reasons = shortfalls(p)
        if reasons is None:
            continue
        if reasons:
            near.append(_why_not(p, reasons))
        else:
            good.append(p)
    return good, near


def _named(p: Mapping[str, Any]) -> str:
    return f"{p.get('name')}{_exclusions(p)}"


def _judged(
    policies: list[Mapping[str, Any]],
    shortfalls: Callable[[Mapping[str, Any]], list[str] | None],
    *,
    meets: str,
    kind: str,
    none_meets: str,
    named: Callable[[Mapping[str, Any]], str] = _named,
) -> Verdict:
    """``passed`` naming the policies that meet all of a check's conditions (``meets``:
    what they do), else ``failed`` saying ``none_meets`` and why each policy of the
    check's ``kind`` falls short (see :func:`_meeting`)."""
    good, near = _meeting(policies, shortfalls)
    if good:
        return passed(f"{meets}: {', '.join(named(p) for p in good)}")
    detail = f"; {kind} policies that fall short: {' | '.join(near)}" if near else ""
    return failed(f"{none_meets}{detail}")


@check("entra.tenant.mfa_enforced")
def tenant_mfa_enforced(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("security_defaults_enabled") is True:
        return passed("security defaults are enabled: every user must register and use MFA")
    policies = _policies(payload)

    def shortfalls(p: Mapping[str, Any]) -> list[str] | None:
        weak = grant_weakness(p)
        if weak in ("blocks access instead", "grant does not require MFA"):
            return None  # not an MFA policy at all
        return [*_gaps(p, params, judge_client_apps=True), *([weak] if weak else [])]

    return _judged(
        policies,
        shortfalls,
        meets="Conditional Access requires MFA for every sign-in of all users",
        kind="MFA",
        none_meets="security defaults are off and no enabled Conditional Access policy "
        f"requires MFA for every sign-in of all users to all cloud apps ({len(policies)} "
        "policies)",
    )


@check("entra.tenant.legacy_auth_blocked")
def tenant_legacy_auth_blocked(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("security_defaults_enabled") is True:
        return passed("security defaults are enabled: legacy authentication is blocked")
    policies = _policies(payload)

    def shortfalls(p: Mapping[str, Any]) -> list[str] | None:
        if "block" not in (p.get("grant_controls") or []):
            return None
        clients = set(p.get("client_app_types") or [])
        reasons = _gaps(p, params, judge_client_apps=False)
        if "all" not in clients and not LEGACY_CLIENTS <= clients:
            reasons.append(f"client apps {', '.join(sorted(clients)) or 'none'}")
        return reasons

    return _judged(
        policies,
        shortfalls,
        meets="legacy authentication is blocked by",
        kind="blocking",
        none_meets="security defaults are off and no enabled Conditional Access policy "
        "blocks Exchange ActiveSync and other legacy clients for all users and apps",
    )


#: Grant controls that require a managed device (Graph ``conditionalAccessGrantControl``).
DEVICE_CONTROLS = ("compliantDevice", "domainJoinedDevice")


def _remote_only(p: Mapping[str, Any]) -> bool:
    """A policy for every location except the trusted ones: it governs exactly the
    sign-ins from outside the organisation's networks, i.e. remote working."""
    loc = p.get("locations") or {}
    return "All" in (loc.get("include") or []) and set(loc.get("exclude") or []) <= {
        "AllTrusted"}


@check("entra.tenant.managed_device_required")
def tenant_managed_device_required(
    payload: Mapping[str, Any], params: Mapping[str, Any]
) -> Verdict:
    policies = list(require(payload, "conditional_access_policies"))

    def shortfalls(p: Mapping[str, Any]) -> list[str] | None:
        controls = set(p.get("grant_controls") or [])
        device = sorted(controls & set(DEVICE_CONTROLS))
        if not device:
            return None
        reasons = [r for r in _gaps(p, params, judge_client_apps=True)
                   if not (r.startswith("locations include") and _remote_only(p))]
        others = sorted(controls - set(DEVICE_CONTROLS))
        others += [f"authentication strength {p['authentication_strength'].get('name')}"
                   for _ in [0] if p.get("authentication_strength")]
        others += [f"custom factor {c}" for c in p.get("custom_authentication_factors") or []]
        if others and p.get("grant_operator") != "AND":
            reasons.append(f"{' or '.join(device)} OR {', '.join(others)}: any one alone "
                           "satisfies the grant")
        return reasons

    def named(p: Mapping[str, Any]) -> str:
        where = " (outside trusted locations)" if p.get("locations") else ""
        return f"{p.get('name')}{where}{_exclusions(p)}"

    return _judged(
        policies,
        shortfalls,
        meets="Conditional Access requires a compliant or joined device",
        kind="device",
        none_meets="no enabled Conditional Access policy requires a compliant or joined "
        f"device for all users and apps ({len(policies)} policies)",
        named=named,
    )
