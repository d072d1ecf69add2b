"""Sensitive Data Protection (Cloud DLP): is the project's data inspected for leaks?

One unit per project (service ``dlp``), listings of the ``global`` location (a failure
fails the unit):

* ``GET dlp.googleapis.com/v2/projects/<id>/locations/global/jobTriggers`` — scheduled
  inspection jobs;
* ``GET dlp.googleapis.com/v2/projects/<id>/locations/global/discoveryConfigs`` — data
  profiling (discovery) of the project;
* the discovery configurations of the project's organisation
  (``organizations/N/locations/global/discoveryConfigs``), read once per run; they
  profile every project below (a failure is recorded under
  ``_errors.organizationDiscoveryConfigs``).

Resource type ``gcp.dlp.inspection`` (id = ``projects/<id>/dlp``, region ``global``)::

    {"parent", "jobTriggers": [{"name", "displayName", "status", "schedule",
                                "storage", "lastRunTime", "errors": n}],
     "discoveryConfigs": [{"name", "status", "targets": [kind]}],
     "organizationDiscoveryConfigs": [...]}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.http import SourceError
from connectors.kit import EvidenceMissing, require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence

SERVICE = "dlp"
INSPECTION = "gcp.dlp.inspection"

#: Listing discovery configurations is authorised by dlp.jobTriggers.list as well.
PERMISSIONS = ("dlp.jobTriggers.list",)


def _trigger(t: Mapping[str, Any]) -> dict[str, Any]:
    schedules = [str((tr.get("schedule") or {}).get("recurrencePeriodDuration"))
                 for tr in t.get("triggers") or [] if tr.get("schedule")]
    storage = ((t.get("inspectJob") or {}).get("storageConfig") or {})
    return {"name": str(t.get("name", "")).rsplit("/", 1)[-1],
            "displayName": t.get("displayName"), "status": t.get("status"),
            "schedule": schedules[0] if schedules else None,
            "storage": sorted(k for k in storage if k != "timespanConfig"),
            "lastRunTime": t.get("lastRunTime"), "errors": len(t.get("errors") or [])}


def _config(c: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": str(c.get("name", "")).rsplit("/", 1)[-1], "status": c.get("status"),
            "targets": sorted({k for t in c.get("targets") or [] for k in t})}


def _configs(ctx: GcpContext, parent: str) -> list[dict[str, Any]]:
    return sorted((_config(c) for c in ctx.items(
        "dlp", f"/v2/{parent}/locations/global/discoveryConfigs", "discoveryConfigs",
        {"pageSize": 100})), key=lambda c: str(c["name"]))


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    parent = f"{project.resource}/locations/global"
    triggers = sorted((_trigger(t) for t in ctx.items(
        "dlp", f"/v2/{parent}/jobTriggers", "jobTriggers", {"pageSize": 100})),
        key=lambda t: str(t["name"]))
    payload: dict[str, Any] = {"parent": project.resource, "jobTriggers": triggers,
                               "discoveryConfigs": _configs(ctx, project.resource)}
    errors: dict[str, str] = {}
    try:
        ancestors = ctx.hierarchy.ancestors(project.parent) if project.parent else []
        orgs = [a for a in [project.parent or "", *ancestors]
                if a.startswith("organizations/")]
        payload["organizationDiscoveryConfigs"] = [
            c for org in orgs[:1]
            for c in ctx.hierarchy.memo.get(f"dlp-discovery:{org}",
                                            lambda o=org: _configs(ctx, o))]
    except SourceError as exc:
        errors["organizationDiscoveryConfigs"] = str(exc)
    yield evidence(project.id, INSPECTION, f"{project.resource}/dlp",
                   with_errors(payload, errors))


@check("gcp.dlp.inspection_scheduled")
def inspection_scheduled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    for c in require(payload, "discoveryConfigs"):
        if c.get("status") == "RUNNING":
            return passed(f"Discovery configuration {c['name']} profiles the project")
    for c in payload.get("organizationDiscoveryConfigs") or []:
        if c.get("status") == "RUNNING":
            return passed(f"The organisation's discovery configuration {c['name']} is running")
    for t in require(payload, "jobTriggers"):
        if t.get("status") == "HEALTHY" and t.get("schedule"):
            return passed(f"Job trigger {t.get('displayName') or t['name']} inspects "
                          f"{', '.join(t['storage']) or 'storage'} every {t['schedule']}")
    unread = (payload.get("_errors") or {}).get("organizationDiscoveryConfigs")
    if unread:
        raise EvidenceMissing(f"no project-level inspection, and the organisation's "
                              f"discovery configurations could not be read: {unread}")
    return failed("No running discovery configuration and no healthy scheduled inspection "
                  "job trigger")
