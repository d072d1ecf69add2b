"""Security Command Center: which SCC services are effectively on for the project.

One unit per project (service ``scc``): ``GET securitycentermanagement.googleapis.com/v1/
projects/<id>/locations/global/securityCenterServices`` (the listing; a failure fails
the unit). Each service reports its ``effectiveEnablementState``, which resolves
``INHERITED`` from the folder or organisation where SCC was activated, so one read per
project answers "is SCC on here?" whatever level it was turned on at.

Resource type ``gcp.scc.services`` (id = ``projects/<id>/locations/global/
securityCenterServices``, region ``global``)::

    {"parent": "projects/<id>",
     "services": [{"service": "security-health-analytics",
                   "intendedEnablementState", "effectiveEnablementState"}]}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.checks import Verdict, check, failed, passed
from connectors.records import Evidence

from .common import require
from .context import GcpContext, Project, evidence

SERVICE = "scc"
SERVICES = "gcp.scc.services"

PERMISSIONS = ("securitycentermanagement.securityCenterServices.list",)


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
