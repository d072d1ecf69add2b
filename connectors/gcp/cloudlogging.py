"""Cloud Logging: are the project's logs exported by a sink?

One unit per project (service ``logging``): ``GET logging.googleapis.com/v2/projects/<id>/
sinks`` (the listing; a failure fails the unit). Aggregated sinks of folders and the
organisation with ``includeChildren`` also export the project's logs, so the sinks of
every ancestor are read too (once per run per ancestor; a failure is recorded under
``_errors.inheritedSinks``).

Resource type ``gcp.logging.sinks`` (id = ``projects/<id>/sinks``, region ``global``)::

    {"parent": "projects/<id>",
     "sinks": [{"name", "destination", "filter", "disabled", "includeChildren"}],
     "inheritedSinks": [{"from": "organizations/N", "name", "destination", "filter",
                         "disabled", "includeChildren": true}]}

``writerIdentity`` (a Google-managed service account) and timestamps are left out.
The built-in ``_Required`` and ``_Default`` sinks route to the project's own log buckets
and are not exports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.checks import Verdict, check, failed, passed
from connectors.http import SourceError
from connectors.records import Evidence

from .common import EvidenceMissing, require, with_errors
from .context import GcpContext, Project, evidence

SERVICE = "logging"
SINKS = "gcp.logging.sinks"

PERMISSIONS = ("logging.sinks.list",)

BUILT_IN = frozenset({"_Required", "_Default"})


def _sink(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": s.get("name"),
        "destination": s.get("destination"),
        "filter": s.get("filter") or "",
        "disabled": bool(s.get("disabled", False)),
        "includeChildren": bool(s.get("includeChildren", False)),
    }


def list_sinks(ctx: GcpContext, parent: str) -> list[dict[str, Any]]:
    sinks = ctx.items("logging", f"/v2/{parent}/sinks", "sinks", {"pageSize": 200})
    return sorted((_sink(s) for s in sinks), key=lambda s: str(s["name"]))


def read(ctx: GcpContext, project: Project) -> Iterator[Evidence]:
    own = list_sinks(ctx, project.resource)
    errors: dict[str, str] = {}
    inherited: list[dict[str, Any]] = []
    try:
        chain = [project.parent, *ctx.hierarchy.ancestors(project.parent)] \
            if project.parent else []
    except SourceError as exc:
        chain = []
        errors["inheritedSinks"] = f"ancestors: {exc}"
    for node in chain:
        try:
            sinks = ctx.hierarchy.memo.get(f"sinks:{node}", lambda n=node: list_sinks(ctx, n))
        except SourceError as exc:
            errors["inheritedSinks"] = f"sinks of {node}: {exc}"
            continue
        inherited += [{"from": node, **s} for s in sinks if s["includeChildren"]]
    payload = {"parent": project.resource, "sinks": own, "inheritedSinks": inherited}
    yield evidence(project.id, SINKS, f"{project.resource}/sinks", with_errors(payload, errors))


def _exports_everything(sink: Mapping[str, Any], audit_suffices: bool) -> bool:
    if sink.get("disabled") or sink.get("name") in BUILT_IN or not sink.get("destination"):
        return False
    flt = str(sink.get("filter") or "").strip()
    if not flt:
        return True
    return audit_suffices and "cloudaudit.googleapis.com" in flt and "NOT " not in flt.upper()


@check(
    id="gcp.logging.sink_all_logs",
    title="A log sink exports all of the project's logs",
    severity="medium",
    resource_type=SINKS,
    rationale="Logs kept only in the project's own buckets can be deleted with the "
    "project and expire after 30 days by default; an export sink (project or aggregated) "
    "keeps a copy in a store the project's owners do not control.",
    remediation="Create a sink without a filter (or an aggregated sink at the "
    "organisation with includeChildren) to a locked bucket, BigQuery dataset or Pub/Sub.",
    parameters={"audit_logs_suffice": False},
)
def sink_all_logs(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    suffice = bool(params["audit_logs_suffice"])
    for sink in require(payload, "sinks"):
        if _exports_everything(sink, suffice):
            return passed(f"Sink {sink['name']} exports to {sink['destination']}")
    for sink in payload.get("inheritedSinks") or []:
        if _exports_everything(sink, suffice):
            return passed(f"Aggregated sink {sink['name']} of {sink['from']} exports to "
                          f"{sink['destination']}")
    unread = (payload.get("_errors") or {}).get("inheritedSinks")
    if unread:
        raise EvidenceMissing(f"no project sink exports all logs, and an ancestor's sinks "
                              f"could not be read: {unread}")
    return failed("No enabled sink exports all logs (own or aggregated)")
