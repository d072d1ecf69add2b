"""Open Dependabot, code-scanning and secret-scanning alerts of the organisation, judged
against SLAs by severity.

API calls (pagination through ``Link`` headers):

* ``GET /orgs/{org}/dependabot/alerts?state=open`` — every severity GitHub documents
  (``critical``, ``high``, ``medium``, ``low``), each with its own SLA parameter;
* ``GET /orgs/{org}/code-scanning/alerts?state=open`` — judged by the rule's
  ``security_severity_level`` (``critical``…``low``); alerts of non-security rules
  (only a ``severity`` of ``error``/``warning``/``note``) are code quality, not
  vulnerabilities, and are not judged;
* ``GET /orgs/{org}/secret-scanning/alerts?state=open``.

One evidence per open alert (resource id ``owner/repo#number``); a fixed or dismissed
alert drops out of the listing and its record is closed when the unit was read fully.
The ``secret`` field of a secret-scanning alert (the leaked value) is never kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from connectors.http import HttpClient, MalformedResponseError
from connectors.identityshared import dig
from connectors.kit import GLOBAL, EvidenceMissing, require
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence
from core.times import day_precision, days_since

DEPENDABOT_TYPE = "github.dependabot.alert"
CODE_ALERT_TYPE = "github.codescanning.alert"
SECRET_ALERT_TYPE = "github.secretscanning.alert"  # noqa: S105 - a resource type

#: Severities GitHub documents for advisories and code-scanning security severities.
SEVERITIES = ("critical", "high", "medium", "low")


def _alert_id(alert: Mapping[str, Any], path: str) -> tuple[str, str]:
    repo = dig(alert, "repository", "full_name")
    number = alert.get("number")
    if not repo or number is None:
        raise MalformedResponseError(f"an alert without repository or number in {path}")
    return str(repo), f"{repo}#{number}"


def _alert_payload(alert: Mapping[str, Any], repo: str, **details: Any) -> dict[str, Any]:
    """What every alert records (which one, its state, when it was raised and where to see
    it) with the ``details`` of its kind."""
    return {
        "repository": repo,
        "number": alert.get("number"),
        "state": alert.get("state"),
        **details,
        "created_at": alert.get("created_at"),
        "html_url": alert.get("html_url"),
    }


def dependabot_payload(alert: Mapping[str, Any], repo: str) -> dict[str, Any]:
    pkg = dig(alert, "dependency", "package") or dig(alert, "security_vulnerability", "package")
    severity = dig(alert, "security_advisory", "severity") or dig(
        alert, "security_vulnerability", "severity"
    )
    return _alert_payload(
        alert,
        repo,
        severity=severity,
        ghsa_id=dig(alert, "security_advisory", "ghsa_id"),
        cve_id=dig(alert, "security_advisory", "cve_id"),
        package=f"{dig(pkg, 'ecosystem')}:{dig(pkg, 'name')}" if pkg else None,
        manifest_path=dig(alert, "dependency", "manifest_path"),
        first_patched_version=dig(
            alert, "security_vulnerability", "first_patched_version", "identifier"
        ),
    )


def secret_alert_payload(alert: Mapping[str, Any], repo: str) -> dict[str, Any]:
    """Metadata only. Key names avoid 'secret', which the store treats as a secret value."""
    return _alert_payload(
        alert,
        repo,
        kind=alert.get("secret_type"),
        kind_name=alert.get("secret_type_display_name"),
        validity=alert.get("validity"),
        publicly_leaked=alert.get("publicly_leaked"),
        push_protection_bypassed=alert.get("push_protection_bypassed"),
    )


def code_alert_payload(alert: Mapping[str, Any], repo: str) -> dict[str, Any]:
    return _alert_payload(
        alert,
        repo,
        security_severity=dig(alert, "rule", "security_severity_level"),
        rule_severity=dig(alert, "rule", "severity"),
        rule=dig(alert, "rule", "id") or dig(alert, "rule", "name"),
        tool=dig(alert, "tool", "name"),
        path=dig(alert, "most_recent_instance", "location", "path"),
    )


def _read_alerts(
    http: HttpClient,
    org: str,
    feature: str,
    resource_type: str,
    payload_of: Callable[[Mapping[str, Any], str], dict[str, Any]],
) -> Iterator[Evidence]:
    """One evidence per open alert of the organisation's ``feature`` (the path segment:
    ``dependabot``, ``code-scanning``, ``secret-scanning``)."""
    path = f"/orgs/{quote(org, safe='')}/{feature}/alerts"
    for alert in http.paginate_links(path, params={"state": "open", "per_page": 100}):
        if not isinstance(alert, Mapping):
            raise MalformedResponseError(f"an alert that is not an object in {path}")
        repo, rid = _alert_id(alert, path)
        yield Evidence(org, GLOBAL, resource_type, rid, payload_of(alert, repo))


def read_dependabot_alerts(http: HttpClient, org: str) -> Iterator[Evidence]:
    return _read_alerts(http, org, "dependabot", DEPENDABOT_TYPE, dependabot_payload)


def read_code_alerts(http: HttpClient, org: str) -> Iterator[Evidence]:
    return _read_alerts(http, org, "code-scanning", CODE_ALERT_TYPE, code_alert_payload)


def read_secret_alerts(http: HttpClient, org: str) -> Iterator[Evidence]:
    return _read_alerts(http, org, "secret-scanning", SECRET_ALERT_TYPE, secret_alert_payload)


# --------------------------------------------------------------------------- checks


def _within_sla(
    payload: Mapping[str, Any], params: Mapping[str, Any], severity: Any, what: str
) -> Verdict:
    label = f"{severity} {what} {payload.get('repository')}#{payload.get('number')}"
    if payload.get("state") != "open":
        return not_applicable(f"{label} is {payload.get('state')}")
    if severity not in SEVERITIES:
        raise EvidenceMissing(f"{label}: severity {severity!r} is not one GitHub documents")
    sla = params[f"sla_days_{severity}"]
    age = days_since(require(payload, "created_at"))
    if age > sla:
        return failed(
            f"{label} open since {day_precision(payload['created_at'])}: {int(age)} days, SLA {sla}"
        )
    return passed(f"{label} open {int(age)} days, within the {sla}-day SLA")


@check("github.dependabot.alerts_within_sla")
def dependabot_within_sla(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    what = f"Dependabot alert ({payload.get('package')}, {payload.get('ghsa_id')})"
    return _within_sla(payload, params, payload.get("severity"), what)


@check("github.codescanning.alerts_within_sla")
def code_alert_within_sla(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    severity = payload.get("security_severity")
    what = f"code-scanning alert ({payload.get('tool')} {payload.get('rule')})"
    if severity is None:
        return not_applicable(
            f"{what} {payload.get('repository')}#{payload.get('number')} comes from a "
            f"non-security rule (severity {payload.get('rule_severity')}): code quality"
        )
    return _within_sla(payload, params, severity, what)


@check("github.secretscanning.alerts_within_sla")
def secret_alert_within_sla(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    label = f"{payload.get('kind_name') or payload.get('kind')} alert "
    label += f"{payload.get('repository')}#{payload.get('number')}"
    if payload.get("state") != "open":
        return not_applicable(f"{label} is {payload.get('state')}")
    age = days_since(require(payload, "created_at"))
    if age > params["sla_days"]:
        return failed(f"{label} open for {int(age)} days (SLA {params['sla_days']})")
    return passed(f"{label} open for {int(age)} days, within the SLA")
