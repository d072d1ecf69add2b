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


@check("gcp.scc.enabled")
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


@check("gcp.scc.findings_within_sla")
def findings_within_sla(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    classes = {str(c).upper() for c in params["finding_classes"]}
    items = [OpenItem(f"{f.get('category')} on {str(f.get('resourceName')).rsplit('/', 1)[-1]}",
                      str(f.get("severity") or "unknown"), f.get("createTime"))
             for f in require(payload, "findings")
             if str(f.get("findingClass") or "").upper() in classes
             and (params["include_muted"] or f.get("mute") != "MUTED")]
    return sla_verdict(items, params["max_age_days"], "Security Command Center findings")


@check("gcp.scc.vm_threat_detection_enabled")
def vm_threat_detection_enabled(payload: Mapping[str, Any], params: Mapping[str, Any]
                                ) -> Verdict:
    states = {s["service"]: str(s.get("effectiveEnablementState") or "")
              for s in require(payload, "services")}
    off = [f"{name} ({states.get(name) or 'absent'})" for name in params["services"]
           if states.get(name) != "ENABLED"]
    if off:
        return failed("Malware detection not enabled: " + ", ".join(off))
    return passed("Malware detection enabled: " + ", ".join(map(str, params["services"])))
