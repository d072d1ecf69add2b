"""Cloud Logging: are the project's logs exported by a sink?

One unit per project (service ``logging``): ``GET logging.googleapis.com/v2/projects/<id>/
sinks`` (the listing; a failure fails the unit). Aggregated sinks of folders and the
organisation with ``includeChildren`` also export the project's logs, so the sinks of
every ancestor are read too (once per run per ancestor; a failure is recorded under
``_errors.inheritedSinks``).

Resource type ``gcp.logging.sinks`` (id = ``projects/<id>/sinks``, region ``global``)::

    {"parent": "projects/<id>",
     "sinks": [{"name", "destination", "filter", "disabled", "includeChildren",
                "exclusions": [{"name", "filter", "disabled"}]}],
     "inheritedSinks": [{"from": "organizations/N", "name", "destination", "filter",
                         "disabled", "includeChildren": true, "exclusions": [...]}]}

``writerIdentity`` (a Google-managed service account) and timestamps are left out.
The built-in ``_Required`` and ``_Default`` sinks route to the project's own log buckets
and are not exports.

For every sink that exports all logs or all audit logs, the destination's immutability
is read once per run (``destinations``, keyed by destination; a failure is recorded in
the entry's ``error``): a Cloud Storage bucket's ``retentionPolicy`` (``GET storage/v1/
b/<bucket>``) or a log bucket's ``locked``/``retentionDays`` (``GET logging/v2/
projects/…/locations/…/buckets/…``); BigQuery, Pub/Sub and project destinations are
``{"kind": …}`` (no lock exists for them)::

    "destinations": {"storage.googleapis.com/b": {"kind": "gcs", "locked": true,
                                                  "retentionDays": 400}}
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from connectors.http import SourceError
from connectors.kit import EvidenceMissing, require, with_errors
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

from .context import GcpContext, Project, evidence

SERVICE = "logging"
SINKS = "gcp.logging.sinks"

PERMISSIONS = ("logging.sinks.list", "storage.buckets.get", "logging.buckets.get")

BUILT_IN = frozenset({"_Required", "_Default"})


def _sink(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": s.get("name"),
        "destination": s.get("destination"),
        "filter": s.get("filter") or "",
        "disabled": bool(s.get("disabled", False)),
        "includeChildren": bool(s.get("includeChildren", False)),
        "exclusions": sorted(
            ({"name": e.get("name"), "filter": e.get("filter") or "",
              "disabled": bool(e.get("disabled", False))} for e in s.get("exclusions") or []),
            key=lambda e: str(e["name"])),
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
    destinations = {
        str(s["destination"]): ctx.hierarchy.memo.get(
            f"sink-destination:{s['destination']}",
            lambda d=str(s["destination"]): destination_lock(ctx, d))
        for s in own + inherited if exports(s, audit_suffices=True)}
    payload = {"parent": project.resource, "sinks": own, "inheritedSinks": inherited,
               "destinations": dict(sorted(destinations.items()))}
    yield evidence(project.id, SINKS, f"{project.resource}/sinks", with_errors(payload, errors))


def destination_lock(ctx: GcpContext, destination: str) -> dict[str, Any]:
    """Whether a sink destination keeps what it receives immutable (never raises: a
    failure is the entry's ``error``)."""
    service, _, rest = destination.partition("/")
    try:
        if service == "storage.googleapis.com":
            bucket = ctx.api("storage").get_json(f"/storage/v1/b/{quote(rest, safe='')}")
            policy = bucket.get("retentionPolicy") or {}
            seconds = int(policy.get("retentionPeriod") or 0)
            return {"kind": "gcs", "locked": policy.get("isLocked") is True,
                    "retentionDays": seconds // 86400}
        if service == "logging.googleapis.com" and "/buckets/" in rest:
            bucket = ctx.api("logging").get_json(f"/v2/{rest}")
            return {"kind": "logBucket", "locked": bucket.get("locked") is True,
                    "retentionDays": int(bucket.get("retentionDays") or 30)}
    except SourceError as exc:
        return {"kind": service, "error": str(exc)}
    return {"kind": service.split(".", 1)[0]}  # bigquery, pubsub, a project: no lock


#: The audit log streams (``cloudaudit.googleapis.com/<stream>``) a sink must carry to
#: export "all audit logs".
AUDIT_STREAMS = frozenset({"activity", "data_access", "system_event", "policy"})
_AUDIT_ALL = re.compile(
    r'^(logName\s*:\s*"?cloudaudit\.googleapis\.com"?'
    r'|protoPayload\.@type\s*=\s*"type\.googleapis\.com/google\.cloud\.audit\.AuditLog")$')
_AUDIT_ONE = re.compile(
    r'^(LOG_ID\("cloudaudit\.googleapis\.com/(?P<a>[a-z_]+)"\)'
    r'|logName\s*[:=]\s*"[^"]*/logs/cloudaudit\.googleapis\.com%2F(?P<b>[a-z_]+)")$')


def _unwrap(text: str) -> str:
    """``text`` without parentheses that enclose all of it."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 and i < len(text) - 1:
                return text  # the first "(" closes before the end: not one group
        text = text[1:-1].strip()
    return text


def audit_streams(flt: str) -> set[str]:
    """The audit streams a filter selects *entirely*, when it is a disjunction
    (``OR``) of audit-log selectors; anything else (``AND``, ``NOT``, other terms)
    selects an unknown part and gives the empty set."""
    streams: set[str] = set()
    for term in re.split(r"\s+OR\s+", _unwrap(flt)):
        term = _unwrap(term)
        if _AUDIT_ALL.match(term):
            streams |= AUDIT_STREAMS
            continue
        one = _AUDIT_ONE.match(term)
        if not one or re.search(r"\b(AND|NOT)\b|-", term.split('"')[0]):
            return set()
        streams.add(one.group("a") or one.group("b"))
    return streams


def active_exclusions(sink: Mapping[str, Any]) -> list[str]:
    return [str(e.get("name")) for e in sink.get("exclusions") or [] if not e.get("disabled")]


def exports(sink: Mapping[str, Any], audit_suffices: bool) -> bool:
    """Whether an enabled export sink carries every log entry (or, with
    ``audit_suffices``, every audit log entry). An enabled exclusion drops entries the
    filter selected ("log entries that match any of these exclusion filters will not
    be exported"), so a sink with one does not export everything."""
    if sink.get("disabled") or sink.get("name") in BUILT_IN or not sink.get("destination"):
        return False
    if active_exclusions(sink):
        return False
    flt = str(sink.get("filter") or "").strip()
    if not flt:
        return True
    return audit_suffices and audit_streams(flt) >= AUDIT_STREAMS


@check("gcp.logging.sink_all_logs")
def sink_all_logs(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    suffice = bool(params["audit_logs_suffice"])
    sinks = list(require(payload, "sinks"))
    inherited = list(payload.get("inheritedSinks") or [])
    for sink in sinks:
        if exports(sink, suffice):
            return passed(f"Sink {sink['name']} exports to {sink['destination']}")
    for sink in inherited:
        if exports(sink, suffice):
            return passed(f"Aggregated sink {sink['name']} of {sink['from']} exports to "
                          f"{sink['destination']}")
    unread = (payload.get("_errors") or {}).get("inheritedSinks")
    if unread:
        raise EvidenceMissing(f"no project sink exports all logs, and an ancestor's sinks "
                              f"could not be read: {unread}")
    excluded = [f"{s['name']} (exclusions: {', '.join(active_exclusions(s))})"
                for s in sinks + inherited
                if active_exclusions(s) and not s.get("disabled") and s.get("name")
                not in BUILT_IN]
    if excluded:
        return failed("No enabled sink exports all logs; these drop entries by exclusion: "
                      + "; ".join(excluded))
    return failed("No enabled sink exports all logs (own or aggregated)")


@check("gcp.logging.sink_destination_locked")
def sink_destination_locked(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    minimum = int(params["min_retention_days"])
    destinations = require(payload, "destinations")
    if not destinations:
        return failed("No enabled sink exports all logs or all audit logs")
    unknown, weak = [], []
    for dest, lock in destinations.items():
        if "error" in lock:
            unknown.append(f"{dest}: {lock['error']}")
        elif lock.get("locked") and int(lock.get("retentionDays") or 0) >= minimum:
            return passed(f"Logs are exported to {dest}, locked for "
                          f"{lock['retentionDays']} days")
        elif lock["kind"] in ("gcs", "logBucket"):
            state = "locked" if lock.get("locked") else "not locked"
            weak.append(f"{dest} ({state}, {lock.get('retentionDays')} days)")
        else:
            weak.append(f"{dest} ({lock['kind']}: cannot be locked)")
    if unknown:
        raise EvidenceMissing("destination locks could not be read: " + "; ".join(unknown))
    return failed(f"No export destination is locked for {minimum} days: " + "; ".join(weak))
