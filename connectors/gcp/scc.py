"""Security Command Center: which SCC services are on, and the project's open findings.

One unit per project (service ``scc``):

* ``GET securitycentermanagement.googleapis.com/v1/projects/<id>/locations/global/
  securityCenterServices`` (the listing; a failure fails the unit). Each service
  reports its ``effectiveEnablementState``, which resolves ``INHERITED`` from the
  folder or organisation where SCC was activated, so one read per project answers "is
  SCC on here?" whatever level it was turned on at (service ids: security-health-
  analytics, event-threat-detection, container-threat-detection, vm-threat-detection,
  web-security-scanner);
* ``GET securitycenter.googleapis.com/v1/projects/<id>/sources/-/findings?filter=
  state="ACTIVE"`` — every active finding of every source (partial: a failure is
  recorded in the findings evidence and only the SLA check becomes an error).

Resource types (region ``global``):

``gcp.scc.services`` (id = ``projects/<id>/locations/global/securityCenterServices``)::

    {"parent": "projects/<id>",
     "services": [{"service": "security-health-analytics",
                   "intendedEnablementState", "effectiveEnablementState"}]}

``gcp.scc.findings`` (id = ``projects/<id>/sources/-/findings``)::

    {"parent": "projects/<id>",
     "findings": [{"name": "<source>/<finding id>", "category", "severity",
                   "findingClass", "createTime", "resourceName", "mute"}]}

``eventTime`` (last detection) moves on every scan and is left out; a finding's age is
judged from ``createTime``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.kit import read_partial, require, with_errors
from connectors.sla import OpenItem, sla_verdict
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence

SERVICE = "scc"
SERVICES = "gcp.scc.services"
FINDINGS = "gcp.scc.findings"

PERMISSIONS = ("securitycentermanagement.securityCenterServices.list",
               "securitycenter.findings.list")


def _finding(result: Mapping[str, Any]) -> dict[str, Any]:
    f = result.get("finding") or {}
    name = str(f.get("name") or "")
    return {"name": "/".join(name.split("/")[-3::2]) if "/findings/" in name else name,
            "category": f.get("category"), "severity": f.get("severity"),
            "findingClass": f.get("findingClass"), "createTime": f.get("createTime"),
            "resourceName": f.get("resourceName"), "mute": f.get("mute")}


def list_findings(ctx: GcpContext, project: Project) -> list[dict[str, Any]]:
    results = ctx.items("securitycenter", f"/v1/{project.resource}/sources/-/findings",
                        "listFindingsResults", {"filter": 'state="ACTIVE"', "pageSize": 1000})
    return sorted((_finding(r) for r in results), key=lambda f: str(f["name"]))


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    parent = f"{project.resource}/locations/global"
    services = [
        {
            "service": str(s.get("name", "")).rsplit("/", 1)[-1],
            "intendedEnablementState": s.get("intendedEnablementState"),
            "effectiveEnablementState": s.get("effectiveEnablementState"),
        }
        for s in ctx.items("scc", f"/v1/{parent}/securityCenterServices",
                           "securityCenterServices", {"pageSize": 100})
    ]
    yield evidence(project.id, SERVICES, f"{parent}/securityCenterServices",
                   {"parent": project.resource,
                    "services": sorted(services, key=lambda s: s["service"])})
    errors: dict[str, str] = {}
    findings = read_partial(errors, "findings", lambda: list_findings(ctx, project))
    payload: dict[str, Any] = {"parent": project.resource}
    if findings is not None:
        payload["findings"] = findings
    yield evidence(project.id, FINDINGS, f"{project.resource}/sources/-/findings",
                   with_errors(payload, errors))


@check(
    id="gcp.scc.enabled",
    title="Security Command Center is on for the project",
    severity="high",
    resource_type=SERVICES,
    rationale="Security Command Center's detectors (Security Health Analytics, Event "
    "Threat Detection…) find misconfigurations, vulnerabilities and threats across the "
    "project; without them nobody is told.",
    remediation="Activate Security Command Center for the organisation (or the project) "
    "and enable the required services.",
    parameters={"required_services": ["security-health-analytics"]},
)
def scc_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    states = {s["service"]: str(s.get("effectiveEnablementState") or "")
              for s in require(payload, "services")}
    if not states:
        return failed("Security Command Center reports no services for the project")
    off = [f"{name} ({states.get(name) or 'absent'})" for name in params["required_services"]
           if states.get(name) != "ENABLED"]
    if off:
        return failed("Security Command Center services not enabled: " + ", ".join(off))
    return passed("Security Command Center services enabled: "
                  + ", ".join(map(str, params["required_services"])))


@check(
    id="gcp.scc.findings_within_sla",
    title="Security Command Center findings are remediated within the SLA of their severity",
    severity="high",
    resource_type=FINDINGS,
    rationale="Active vulnerability and misconfiguration findings are the project's known "
    "technical weaknesses; vulnerability management means fixing them within a time "
    "set by their severity. Muted findings count unless include_muted is false: muting "
    "hides a finding, it does not fix it.",
    remediation="Remediate the listed findings (or record a risk acceptance and mark them "
    "inactive); agree remediation times by severity.",
    parameters={"max_age_days": {"CRITICAL": 15, "HIGH": 30, "MEDIUM": 90, "LOW": 180},
                "finding_classes": ["VULNERABILITY", "MISCONFIGURATION"],
                "include_muted": True},
)
def findings_within_sla(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    classes = {str(c).upper() for c in params["finding_classes"]}
    items = [OpenItem(f"{f.get('category')} on {str(f.get('resourceName')).rsplit('/', 1)[-1]}",
                      str(f.get("severity") or "unknown"), f.get("createTime"))
             for f in require(payload, "findings")
             if str(f.get("findingClass") or "").upper() in classes
             and (params["include_muted"] or f.get("mute") != "MUTED")]
    return sla_verdict(items, params["max_age_days"], "Security Command Center findings")


@check(
    id="gcp.scc.vm_threat_detection_enabled",
    title="Virtual Machine Threat Detection scans the project's VMs for malware",
    severity="high",
    resource_type=SERVICES,
    rationale="Protection against malware needs detection on the machines: VM Threat "
    "Detection scans Compute Engine memory for malware, cryptominers and kernel "
    "rootkits without an agent.",
    remediation="Enable Virtual Machine Threat Detection in Security Command Center (at the "
    "organisation, folder or project).",
    parameters={"services": ["vm-threat-detection"]},
)
def vm_threat_detection_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]
                                ) -> Verdict:
    states = {s["service"]: str(s.get("effectiveEnablementState") or "")
              for s in require(payload, "services")}
    off = [f"{name} ({states.get(name) or 'absent'})" for name in params["services"]
           if states.get(name) != "ENABLED"]
    if off:
        return failed("Malware detection not enabled: " + ", ".join(off))
    return passed("Malware detection enabled: " + ", ".join(map(str, params["services"])))
