"""Cloud-service governance: project ownership and environment labels, folder placement,
and production/non-production separation (Shared VPC included).

One unit per project (service ``governance``): the project as discovery found it
(``projects:search`` / ``projects.get``: labels and parent, no extra call), and
``GET compute.googleapis.com/compute/v1/projects/<id>/getXpnHost`` — the Shared VPC host
project whose network the project uses, if any (a failure fails the unit; a project
whose Compute Engine API is disabled uses no VPC and has none). The host's labels are
read with ``projects.get``, once per run per host.

Resource type ``gcp.governance.project`` (id = ``projects/<id>``, region ``global``)::

    {"projectId", "number", "displayName", "parent": "folders/N" | "organizations/N",
     "labels": {...},
     "sharedVpcHost": null | {"projectId", "labels": {...}}}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connectors.http import SourceError
from connectors.kit import require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence

SERVICE = "governance"
PROJECT = "gcp.governance.project"

PERMISSIONS = ("compute.projects.get",)


def _api_disabled(exc: SourceError) -> bool:
    text = str(exc)
    return exc.status == 403 and ("has not been used" in text or "SERVICE_DISABLED" in text
                                  or "is disabled" in text)


def shared_vpc_host(ctx: GcpContext, project: Project) -> dict[str, Any] | None:
    try:
        host = ctx.api("compute").get_json(f"/compute/v1/projects/{project.id}/getXpnHost")
    except SourceError as exc:
        if _api_disabled(exc):  # no Compute Engine API: the project uses no VPC at all
            return None
        raise
    host_id = host.get("name") if isinstance(host, dict) else None
    if not host_id or host_id == project.id:
        return None
    doc = ctx.hierarchy.memo.get(f"project-doc:{host_id}",
                                 lambda: ctx.rm.get_project(str(host_id)))
    return {"projectId": host_id, "labels": dict(doc.get("labels") or {})}


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    payload: dict[str, Any] = {
        "projectId": project.id, "number": project.number,
        "displayName": project.display_name, "parent": project.parent,
        "labels": dict(sorted(project.labels.items())),
        "sharedVpcHost": shared_vpc_host(ctx, project),
    }
    yield evidence(project.id, PROJECT, project.resource, payload)


# --- checks --------------------------------------------------------------------------


@check("gcp.governance.project_labelled")
def project_labelled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    labels = require(payload, "labels")
    missing = [str(k) for k in params["required_labels"] if not str(labels.get(k) or "")]
    if missing:
        return failed("Project labels missing or empty: " + ", ".join(missing))
    return passed("Project is labelled " + ", ".join(
        f"{k}={labels[k]}" for k in params["required_labels"]))


@check("gcp.governance.project_in_folder")
def project_in_folder(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    parent = str(require(payload, "parent") or "")
    if parent.startswith("folders/"):
        return passed(f"The project sits in {parent}")
    if parent.startswith("organizations/"):
        return failed(f"The project sits directly under {parent}")
    return failed("The project belongs to no organisation")


def environment_class(value: str | None, production: Sequence[str]) -> str | None:
    if not value:
        return None
    return "production" if value.lower() in {p.lower() for p in production} \
        else "non-production"


@check("gcp.governance.environments_separated")
def environments_separated(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    label, prod = str(params["label"]), params["production_values"]
    mine = environment_class(require(payload, "labels").get(label), prod)
    if mine is None:
        return failed(f"No '{label}' label: separation cannot be shown")
    host = require(payload, "sharedVpcHost")
    if host is None:
        return passed(f"A {mine} project with its own network")
    theirs = environment_class((host.get("labels") or {}).get(label), prod)
    if theirs != mine:
        return failed(f"A {mine} project on the Shared VPC of {host['projectId']} "
                      f"({theirs or 'unlabelled'})")
    return passed(f"A {mine} project on the {theirs} Shared VPC of {host['projectId']}")
