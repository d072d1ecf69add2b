"""Microsoft Defender for Cloud: plans, integrations and open security assessments.

One unit per subscription (service ``security``):

* ``GET .../Microsoft.Security/pricings`` (the listing; a failure fails the unit);
* ``GET .../Microsoft.Security/settings`` (partial, ``_errors.settings``): the
  integrations, e.g. ``WDATP`` (Microsoft Defender for Endpoint on servers);
* ``GET .../Microsoft.Security/assessments?$expand=metadata`` (partial, recorded in the
  assessments evidence): every assessment with its status and severity;
* ``GET .../Microsoft.Security/securityContacts`` (partial, ``_errors.securityContacts``,
  api-version 2023-12-01-preview): who Defender for Cloud e-mails about alerts. Both
  documented shapes are read: ``isEnabled`` + ``notificationsSources[]`` (sourceType
  ``Alert`` / ``AttackPath``) and the 2020-01-01-preview ``alertNotifications``
  {state, minimalSeverity} (security-resource-manager specs, securityContacts examples).

Resource types (region ``global``):

``azure.security.pricings`` (id = ``/subscriptions/<id>/providers/
Microsoft.Security/pricings``)::

    {"subscriptionId": "...",
     "pricings": [{"name": "VirtualMachines", "pricingTier": "Standard",
                   "subPlan": "P2", "deprecated": false,
                   "extensions": [{"name": "...", "isEnabled": "True"}]}, ...],
     "settings": [{"name": "WDATP", "kind": "DataExportSettings", "enabled": true}],
     "securityContacts": [{"name": "default", "emails": "a@x;b@x", "phone": "...",
                           "isEnabled": true, "notificationsByRole": {...},
                           "notificationsSources": [...], "alertNotifications": {...}}]}

``azure.security.assessments`` (id = ``/subscriptions/<id>/providers/
Microsoft.Security/assessments``): the unhealthy ones, and how many there are of each
status (healthy ones change with every resource added and are only counted)::

    {"subscriptionId": "...", "counts": {"Healthy": 12, "Unhealthy": 2, ...},
     "unhealthy": [{"key", "displayName", "severity", "resourceId",
                    "statusChangeDate", "firstEvaluationDate"}]}

``freeTrialRemainingTime`` counts down every second and is dropped (it would store a
new version on every run); ``enablementTime`` stays (it changes only when a plan does).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.kit import GLOBAL, EvidenceMissing, read_partial, require, with_errors
from connectors.sla import OpenItem, sla_verdict
from core.checks import Verdict, check, failed, passed
from core.records import Evidence, utcnow

from .arm import Arm

SERVICE = "security"
PRICINGS = "azure.security.pricings"
ASSESSMENTS = "azure.security.assessments"
API_VERSION = "2024-01-01"
SETTINGS_API = "2022-05-01"
ASSESSMENTS_API = "2021-06-01"
CONTACTS_API = "2023-12-01-preview"

ACTIONS = (
    "Microsoft.Security/pricings/read",
    "Microsoft.Security/settings/read",
    "Microsoft.Security/assessments/read",
    "Microsoft.Security/securityContacts/read",
)

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


def _setting(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": item.get("name"), "kind": item.get("kind"),
            "enabled": (item.get("properties") or {}).get("enabled")}


_CONTACT_KEPT = ("emails", "phone", "isEnabled", "notificationsByRole",
                 "notificationsSources", "alertNotifications")


def _contact(item: Mapping[str, Any]) -> dict[str, Any]:
    p = item.get("properties") or {}
    return {"name": item.get("name"), **{k: p[k] for k in _CONTACT_KEPT if k in p}}


def _assessments(arm: Arm, subscription: str) -> dict[str, Any]:
    path = f"/subscriptions/{subscription}/providers/Microsoft.Security/assessments"
    counts: dict[str, int] = {}
    unhealthy: list[dict[str, Any]] = []
    for a in arm.list(path, ASSESSMENTS_API, {"$expand": "metadata"}):
        p = a.get("properties") or {}
        status = p.get("status") or {}
        code = str(status.get("code") or "Unknown")
        counts[code] = counts.get(code, 0) + 1
        if code != "Unhealthy":
            continue
        unhealthy.append({
            "key": a.get("name"),
            "displayName": p.get("displayName") or (p.get("metadata") or {}).get("displayName"),
            "severity": (p.get("metadata") or {}).get("severity"),
            "resourceId": str((p.get("resourceDetails") or {}).get("id") or a.get("id")).lower(),
            "statusChangeDate": status.get("statusChangeDate"),
            "firstEvaluationDate": status.get("firstEvaluationDate"),
        })
    unhealthy.sort(key=lambda u: (u["resourceId"], str(u["key"])))
    return {"counts": dict(sorted(counts.items())), "unhealthy": unhealthy}


def read(arm: Arm, subscription: str, **_: Any) -> Iterator[Evidence]:
    base = f"/subscriptions/{subscription}/providers/Microsoft.Security"
    path = f"{base}/pricings"
    pricings = sorted((transform(p) for p in arm.list(path, API_VERSION)),
                      key=lambda p: str(p["name"]))
    errors: dict[str, str] = {}
    settings = read_partial(errors, "settings", lambda: sorted(
        (_setting(s) for s in arm.list(f"{base}/settings", SETTINGS_API)),
        key=lambda s: str(s["name"])))
    contacts = read_partial(errors, "securityContacts", lambda: sorted(
        (_contact(c) for c in arm.list(f"{base}/securityContacts", CONTACTS_API)),
        key=lambda c: str(c["name"])))
    payload: dict[str, Any] = {"subscriptionId": subscription, "pricings": pricings}
    if settings is not None:
        payload["settings"] = settings
    if contacts is not None:
        payload["securityContacts"] = contacts
    yield Evidence(
        scope=subscription,
        region=GLOBAL,
        resource_type=PRICINGS,
        resource_id=path.lower(),
        payload=with_errors(payload, errors),
        collected_at=utcnow(),
    )
    errors = {}
    found = read_partial(errors, "assessments", lambda: _assessments(arm, subscription))
    yield Evidence(
        scope=subscription,
        region=GLOBAL,
        resource_type=ASSESSMENTS,
        resource_id=f"{base}/assessments".lower(),
        payload=with_errors({"subscriptionId": subscription, **(found or {})}, errors),
        collected_at=utcnow(),
    )


def _plan(payload: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for p in require(payload, "pricings"):
        if str(p.get("name", "")).lower() == name.lower():
            return p
    return None


def _on(plan: Mapping[str, Any] | None) -> bool:
    return plan is not None and str(plan.get("pricingTier", "")).lower() == "standard"


def _extension_on(plan: Mapping[str, Any] | None, name: str) -> bool:
    return _on(plan) and any(
        str(e.get("name", "")).lower() == name.lower()
        and str(e.get("isEnabled", "")).lower() == "true"
        for e in (plan or {}).get("extensions") or [])


@check("azure.security.defender_plans_enabled")
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


@check("azure.security.assessments_within_sla")
def assessments_within_sla(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    items = [OpenItem(f"'{u.get('displayName')}' on {str(u.get('resourceId')).rsplit('/', 1)[-1]}",
                      str(u.get("severity") or "unknown"),
                      u.get("statusChangeDate") or u.get("firstEvaluationDate"))
             for u in require(payload, "unhealthy")]
    return sla_verdict(items, params["max_age_days"], "Defender for Cloud findings")


@check("azure.security.malware_protection_enabled")
def malware_protection_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]
                               ) -> Verdict:
    servers = _plan(payload, "VirtualMachines")
    if not _on(servers):
        tier = (servers or {}).get("pricingTier") or "not offered"
        return failed(f"Defender for Servers is off ({tier})")
    if "settings" not in payload:
        raise EvidenceMissing("the Defender for Cloud integrations could not be read: "
                              + str((payload.get("_errors") or {}).get("settings")))
    wdatp = {str(s.get("name")): s.get("enabled") for s in payload["settings"]}.get("WDATP")
    if wdatp is not True:
        state = "off" if wdatp is False else "not reported"
        return failed(f"Defender for Servers is on but its Defender for Endpoint "
                      f"integration (WDATP) is {state}")
    if params["require_storage_malware_scanning"] and not _extension_on(
            _plan(payload, "StorageAccounts"), "OnUploadMalwareScanning"):
        return failed("Defender for Storage malware scanning on upload is off")
    return passed(f"Defender for Servers ({servers.get('subPlan') or 'Standard'}) with "
                  "Defender for Endpoint is on")


@check("azure.security.sensitive_data_discovery_enabled")
def sensitive_data_discovery_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]
                                     ) -> Verdict:
    for name in params["plans"]:
        if _extension_on(_plan(payload, str(name)), "SensitiveDataDiscovery"):
            return passed(f"Sensitive data discovery is on ({name})")
    return failed("Sensitive data discovery is off in "
                  + " and ".join(map(str, params["plans"])))


#: Defender for Cloud alert severities, lowest first (``minimalSeverity``).
_SEVERITY_ORDER = ("Low", "Medium", "High")


def _alerts_from(contact: Mapping[str, Any]) -> str | None:
    """The lowest alert severity e-mailed to this contact, or None when it gets no alert
    mails: ``isEnabled`` false turns the contact off; ``notificationsSources`` (current
    API) or ``alertNotifications`` (2020-01-01-preview) say which alerts go out."""
    if contact.get("isEnabled") is False:
        return None
    sources = contact.get("notificationsSources")
    if isinstance(sources, list):
        for source in sources:
            if str(source.get("sourceType", "")).lower() == "alert":
                return str(source.get("minimalSeverity") or "High")
        return None
    legacy = contact.get("alertNotifications")
    if isinstance(legacy, Mapping):
        if str(legacy.get("state", "")).lower() != "on":
            return None
        return str(legacy.get("minimalSeverity") or "High")
    return None


def _recipients(contact: Mapping[str, Any]) -> list[str]:
    """Named addresses, and the roles notified when role notifications are on."""
    out = [e.strip() for e in str(contact.get("emails") or "").replace(",", ";").split(";")
           if e.strip()]
    by_role = contact.get("notificationsByRole") or {}
    if str(by_role.get("state", "")).lower() == "on":
        out += [f"role {r}" for r in by_role.get("roles") or []]
    return out


@check("azure.security.contacts_configured")
def contacts_configured(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    wanted = str(params["minimal_severity"]).capitalize()
    if wanted not in _SEVERITY_ORDER:
        raise ValueError(f"minimal_severity must be one of {', '.join(_SEVERITY_ORDER)}")
    contacts = require(payload, "securityContacts")
    if not contacts:
        return failed("No security contact is configured for Defender for Cloud")
    problems = []
    for contact in contacts:
        name = contact.get("name") or "?"
        severity = _alerts_from(contact)
        recipients = _recipients(contact)
        named = [r for r in recipients if not r.startswith("role ")]
        if severity is None:
            problems.append(f"{name}: alert notifications off")
        elif severity.capitalize() not in _SEVERITY_ORDER:
            problems.append(f"{name}: unknown minimal severity {severity!r}")
        elif _SEVERITY_ORDER.index(severity.capitalize()) > _SEVERITY_ORDER.index(wanted):
            problems.append(f"{name}: only {severity} alerts mailed (need {wanted} and above)")
        elif params["require_named_email"] and not named:
            problems.append(f"{name}: no e-mail address, only {', '.join(recipients) or 'nobody'}")
        elif not recipients:
            problems.append(f"{name}: no recipient")
        else:
            return passed(f"Security contact {name} gets {severity} and higher alerts: "
                          + ", ".join(recipients))
    return failed("No security contact receives alert mails: " + "; ".join(problems))
