"""OSCAL 1.2.1 assessment results of a period, and the package's whole OSCAL chain.

Mapping (why): OSCAL's assessment results hold *observations* (what was seen, of which
subject, by whom, with what evidence) and *findings* (a verdict on a control objective,
citing observations). One period is one ``result`` (start and end = the period):

* **observations, one per resource** seen during the period (evidence versions in
  force, or a verdict in force at the end): ``subjects`` is the resource (an inventory
  item of the result, or, for a recorded document, the file itself as a back-matter
  resource); ``origins`` are the connector instance (a tool of the assessment plan) and
  the runs that read it (tasks of the result, carrying each run's digest and chain
  link); ``relevant-evidence`` is each version's body (its SHA-256, and its place in the
  package: ``evidence.jsonl``, ``manual/<sha256>/<name>``); the check verdicts in force
  at the end are ``verdict`` properties with their messages.
* **findings, one per applicable control**: the control's status at the end of the
  period and the worst during it, the reasons (every failing and erroring resource with
  its check and message, exceptions named), and ``related-observations`` — every failing
  and erroring resource, the documents recorded for it, and passing resources up to
  :data:`PASSING_CITED`. The target is the control's assessment objective in the catalog;
  ``implementation-statement-uuid`` is its requirement in the SSP (the SoA).

Every back-matter resource is referenced by an observation; every href is relative to
``oscal/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from exports.oscal import (
    FOLDER,
    PLAN,
    PLATFORM,
    RESULTS,
    chain_documents,
    dumps,
    implementation_uuid,
    iso,
    metadata,
    objective_id,
    prop,
    token,
    tool_uuid,
    uid,
)

if TYPE_CHECKING:
    from exports.exporter import PackageContext

SATISFIED = frozenset({"pass", "not_applicable"})
#: Passing resources cited per control finding (failing and erroring ones: all of them).
PASSING_CITED = 200
MANUAL_SOURCE = "@manual"
#: Sources whose items are decisions about the ISMS, not observations of it.
NOT_OBSERVED = frozenset({"@decisions"})


def _reason(status: str) -> str:
    return {"pass": "pass", "fail": "fail"}.get(status, "other")


def _implementation(status: str) -> str:
    return {
        "pass": "implemented",
        "not_applicable": "not-applicable",
        "excepted": "alternative",
        "fail": "partial",
    }.get(status, "planned")


def run_task(run_id: str) -> str:
    return uid("run", run_id)


def body_resource(content_hash: str) -> str:
    return uid("evidence-body", content_hash)


def file_resource(path: str) -> str:
    return uid("file", path)


def evidence_key(f: Mapping[str, Any]) -> str:
    """The evidence key of a finding's own resource (``Evidence.key``)."""
    return f"{f['resource_type']}|{f['scope']}|{f['region']}|{f['resource_id']}"


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not value or value == "-":
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class _Resources:
    """The back-matter: only what an observation cites gets in."""

    def __init__(self, manual_files: Mapping[str, list[str]]) -> None:
        self.manual_files = manual_files
        self.used: dict[str, dict[str, Any]] = {}

    def body(self, content_hash: str) -> str:
        rid = body_resource(content_hash)
        self.used.setdefault(
            rid,
            {
                "uuid": rid,
                "title": f"Evidence body {content_hash[:16]}",
                "description": "The body as read (canonical JSON): the line of evidence.jsonl "
                f"whose hash is {content_hash}, the SHA-256 of the body.",
                "props": [prop("content-hash", content_hash)],
                "rlinks": [{"href": "../evidence.jsonl", "media-type": "application/jsonl"}],
            },
        )
        return rid

    def files(self, sha256: str) -> list[str]:
        out = []
        for path in self.manual_files.get(sha256, []):
            rid = file_resource(path)
            self.used.setdefault(
                rid,
                {
                    "uuid": rid,
                    "title": path.rsplit("/", 1)[-1],
                    "description": "A document recorded with `annexa evidence add`.",
                    "rlinks": [
                        {
                            "href": f"../{path}",
                            "hashes": [{"algorithm": "SHA-256", "value": sha256}],
                        }
                    ],
                },
            )
            out.append(rid)
        return out


def _observation(
    source: str,
    key: str,
    versions: list[Mapping[str, Any]],
    verdicts: list[Mapping[str, Any]],
    *,
    start: datetime,
    end: datetime,
    resources: _Resources,
    payloads: Mapping[str, Mapping[str, Any]],
    inventory: list[dict[str, Any]],
) -> dict[str, Any]:
    head = versions[-1] if versions else verdicts[0]
    rtype, rid = head["resource_type"], head["resource_id"]
    manual = source == MANUAL_SOURCE
    evidence: list[dict[str, Any]] = []
    documents: list[str] = []
    for v in versions:
        h = v["content_hash"]
        entry: dict[str, Any] = {
            "description": f"Version read {iso(v['collected_at'])} by run {v['run_id']} "
            f"(SHA-256 {h}).",
            "props": [prop("content-hash", h), prop("run-id", v["run_id"])],
        }
        if v.get("source_updated_at"):
            # Read from a provider's inventory: the data is as of its snapshot time.
            entry["props"].append(prop("source-as-of", iso(v["source_updated_at"])))
        if v.get("body_removed"):
            entry["description"] += " Its body was removed by retention; its hash stays."
        else:
            entry["href"] = f"#{resources.body(h)}"
        evidence.append(entry)
        payload = payloads.get(h) or {}
        sha = rid if rtype == "manual.file" else payload.get("file_sha256")
        if manual and sha:
            for fid in resources.files(str(sha)):
                if fid not in documents:
                    documents.append(fid)
    for fid in documents:
        evidence.append({"href": f"#{fid}", "description": "The recorded document itself."})
    if documents:
        subjects = [{"subject-uuid": documents[0], "type": "resource", "title": rid}]
    else:
        item = uid("inventory-item", source, key)
        inventory.append(
            {
                "uuid": item,
                "description": f"{rtype} {rid} in {head['scope']}/{head['region']}, "
                f"read by connector instance {source}.",
                "props": [
                    prop("resource-type", rtype),
                    prop("resource-id", rid),
                    prop("scope", head["scope"]),
                    prop("region", head["region"]),
                    prop("source", source),
                ],
            }
        )
        subjects = [
            {
                "subject-uuid": item,
                "type": "inventory-item",
                "title": f"{rtype} {rid}",
                "props": [prop("resource-type", rtype), prop("resource-id", rid)],
            }
        ]
    run_ids = list(
        dict.fromkeys([*(v["run_id"] for v in versions), *(f["run_id"] for f in verdicts)])
    )
    collected = max([*(v["collected_at"] for v in versions), *(f["observed_at"] for f in verdicts)])
    props = [
        prop("resource-type", rtype),
        prop("resource-id", rid),
        prop("scope", head["scope"]),
        prop("region", head["region"]),
        prop("source", source),
    ]
    lines = []
    for f in verdicts:
        status = f.get("effective_status") or f["status"]
        props.append(
            prop(
                "verdict", status, **{"class": token(f["check_id"]), "remarks": f["message"] or "-"}
            )
        )
        lines.append(f"{f['check_id']}: {status} — {f['message']}")
    obs: dict[str, Any] = {
        "uuid": observation_uuid(source, key, start, end),
        "title": f"{rtype} {rid}",
        "description": (
            f"{rtype} {rid} ({head['scope']}/{head['region']}), read by {source}: "
            + (
                f"{len(versions)} version(s) in force during the period."
                if versions
                else "known from its verdicts only (no evidence of it in force during the period)."
            )
            + (
                "\n\nVerdicts in force at the end of the period:\n\n"
                + "\n".join(f"- {line}" for line in lines)
                if lines
                else ""
            )
        ),
        "props": props,
        "methods": ["EXAMINE"] if manual else ["TEST"],
        "origins": [
            {
                "actors": [{"type": "tool", "actor-uuid": tool_uuid(source)}],
                "related-tasks": [{"task-uuid": run_task(r)} for r in run_ids],
            }
        ],
        "subjects": subjects,
        "collected": iso(collected),
    }
    if evidence:
        obs["relevant-evidence"] = evidence
    until = (
        _parse((payloads.get(versions[-1]["content_hash"]) or {}).get("valid_until"))
        if versions and rtype == "manual.evidence"
        else None
    )
    if until is not None:
        obs["expires"] = iso(until)
    return obs


def observation_uuid(source: str, key: str, start: datetime, end: datetime) -> str:
    return uid("observation", source, key, iso(start), iso(end))


def _finding(
    c: Mapping[str, Any],
    in_force: list[Mapping[str, Any]],
    manual_obs: list[str],
    obs_of: Mapping[tuple[str, str], str],
    end: datetime,
) -> dict[str, Any]:
    cid, status = c["control"], c["status"]
    bad = [f for f in in_force if f["status"] in ("fail", "error")]
    good = [f for f in in_force if f["status"] not in ("fail", "error")]
    related = list(
        dict.fromkeys(
            [
                *(obs_of[(f["source"], evidence_key(f))] for f in bad),
                *manual_obs,
                *(obs_of[(f["source"], evidence_key(f))] for f in good[:PASSING_CITED]),
            ]
        )
    )
    why = c.get("explanation")
    reasons = [f"Status at {iso(end)}: {status}" + (f" — {why}." if why else ".")]
    for label, wanted in (("Failing", "fail"), ("Erroring", "error")):
        rows = [f for f in bad if f["status"] == wanted]
        if rows:
            lines = [f"{label} resources ({len(rows)}):", ""]
            for f in rows:
                exc = (
                    f" [excepted: {f['exception']}]"
                    if f.get("effective_status") == "excepted"
                    else ""
                )
                lines.append(
                    f"- {f['resource_id']} ({f['source']}, {f['scope']}/"
                    f"{f['region']}) — {f['check_id']}: {f['message']}{exc}"
                )
            reasons.append("\n".join(lines))
    if c.get("document"):
        reasons.append(f"Documented part: {c['document']}.")
    finding: dict[str, Any] = {
        "uuid": uid("finding", cid, iso(end)),
        "title": f"{cid} {c['title']}",
        "description": f"Annexa status of {cid} at {iso(end)}: {status} (worst during the "
        f"period: {c.get('worst', status)}).",
        "props": [
            prop("annexa-status", status),
            prop("worst-in-period", c.get("worst", status)),
            prop("failing-resources", sum(f["status"] == "fail" for f in bad)),
            prop("erroring-resources", sum(f["status"] == "error" for f in bad)),
            prop("other-resources", len(good)),
            prop("other-resources-cited", min(len(good), PASSING_CITED)),
        ],
        "origins": [{"actors": [{"type": "assessment-platform", "actor-uuid": PLATFORM}]}],
        "target": {
            "type": "objective-id",
            "target-id": objective_id(cid),
            "status": {
                "state": "satisfied" if status in SATISFIED else "not-satisfied",
                "reason": _reason(status),
                "remarks": "\n\n".join(reasons),
            },
            "implementation-status": {"state": _implementation(status)},
        },
        "implementation-statement-uuid": implementation_uuid(cid),
    }
    if c.get("compliant_pct") is not None:
        finding["props"].append(prop("compliant-pct", c["compliant_pct"]))
    if related:
        finding["related-observations"] = [{"observation-uuid": u} for u in related]
    return finding


def assessment_results(
    ctx: PackageContext,
    *,
    manual_files: Mapping[str, list[str]],
    payloads: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The assessment-results document of the package's period (a dict ready for json).

    Read from ``ctx``: the finding versions in force at the end (with
    ``effective_status`` and ``exception``), the control statuses at the end (``as_dict``
    plus ``worst``), the runs and evidence versions. ``manual_files``: SHA-256 → package
    paths of the recorded documents; ``payloads``: content hash → payload of the manual
    evidence records.
    """
    start, end, runs = ctx.start, ctx.end, list(ctx.runs)
    organisation, applicable = ctx.scope.organisation, ctx.scope.applicable
    by_resource: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for v in sorted(ctx.evidence_versions, key=lambda v: (v["source"], v["key"], v["valid_from"])):
        if v["source"] not in NOT_OBSERVED:
            by_resource.setdefault((v["source"], v["key"]), []).append(v)
    verdicts: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    by_control: dict[str, list[Mapping[str, Any]]] = {}
    for f in ctx.findings_at_end:
        verdicts.setdefault((f["source"], evidence_key(f)), []).append(f)
        for cid in f["controls"]:
            by_control.setdefault(cid, []).append(f)
    resources = _Resources(manual_files)
    inventory: list[dict[str, Any]] = []
    observations, obs_of = [], {}
    for skey in sorted(by_resource.keys() | verdicts.keys()):
        obs = _observation(
            *skey,
            by_resource.get(skey, []),
            verdicts.get(skey, []),
            start=start,
            end=end,
            resources=resources,
            payloads=payloads,
            inventory=inventory,
        )
        observations.append(obs)
        obs_of[skey] = obs["uuid"]
    manual_by_control: dict[str, list[str]] = {}
    for (src, _key), versions in by_resource.items():
        last = versions[-1]
        if (
            src == MANUAL_SOURCE
            and last["resource_type"] == "manual.evidence"
            and last["valid_to"] is None
        ):
            control = str(last["resource_id"]).split("/", 1)[0]
            manual_by_control.setdefault(control, []).append(obs_of[(src, _key)])
    findings = [
        _finding(
            c,
            by_control.get(c["control"], []),
            manual_by_control.get(c["control"], []),
            obs_of,
            end,
        )
        for c in ctx.controls
        if c["control"] in applicable
    ]
    tasks = [
        {
            "uuid": run_task(r["id"]),
            "type": "action",
            "title": f"Run {r['id']} of {r['source']}",
            "description": f"Collection by connector instance {r['source']} "
            f"({r['connector_type']}): {r['status']}.",
            "props": [
                prop("run-id", r["id"]),
                prop("source", r["source"]),
                prop("run-status", r["status"]),
                prop("run-digest", r["digest"]),
                prop("prev-digest", r["prev_digest"] or "-"),
                prop("signed-by", r.get("key_id") or "not signed"),
                prop("in-period", "yes" if r.get("in_period") else "no"),
            ],
            "timing": {
                "within-date-range": {
                    "start": iso(_parse(r["started_at"]) or start),
                    "end": iso(_parse(r["finished_at"]) or _parse(r["started_at"]) or end),
                }
            },
        }
        for r in runs
    ]
    local: dict[str, Any] = {}
    if inventory:
        local["inventory-items"] = inventory
    if tasks:
        local["tasks"] = tasks
    result: dict[str, Any] = {
        "uuid": uid("result", iso(start), iso(end)),
        "title": f"Annexa assessment {iso(start)} to {iso(end)}",
        "description": (
            f"Evidence collected by {len({r['source'] for r in runs})} connector instance(s) "
            f"in {len(runs)} run(s) relied on for the period, and the status of every "
            f"applicable control at {iso(end)}, computed from the findings, exceptions and "
            "manual evidence in force."
        ),
        "start": iso(start),
        "end": iso(end),
        "props": [
            prop("runs", len(runs)),
            prop("runs-in-period", sum(1 for r in runs if r.get("in_period"))),
        ],
        "reviewed-controls": {"control-selections": [{"include-all": {}}]},
    }
    if local:
        result["local-definitions"] = local
    if observations:
        result["observations"] = observations
    if findings:
        result["findings"] = findings
    extra: dict[str, Any] = {
        "props": [prop("period-start", iso(start)), prop("period-end", iso(end))]
    }
    if organisation:
        extra["parties"] = [
            {"uuid": uid("party", organisation), "type": "organization", "name": organisation}
        ]
    doc: dict[str, Any] = {
        "uuid": uid("assessment-results", iso(start), iso(end), iso(ctx.generated)),
        "metadata": metadata(ctx.title, ctx.generated, ctx.agent_version, **extra),
        "import-ap": {"href": PLAN},
        "results": [result],
    }
    if resources.used:
        doc["back-matter"] = {"resources": list(resources.used.values())}
    return {"assessment-results": doc}


def oscal_documents(ctx: PackageContext) -> dict[str, bytes]:
    """Every OSCAL file of the package, by package path (``oscal/…``); the manual
    documents cited are those the exporters before wrote (``ctx.files``)."""
    manual_files: dict[str, list[str]] = {}
    for path in sorted(ctx.files):
        if path.startswith("manual/"):
            manual_files.setdefault(path.split("/")[1], []).append(path)
    bodies = ctx.bodies
    payloads = {
        v["content_hash"]: json.loads(bodies[v["content_hash"]])
        for v in ctx.evidence_versions
        if v["resource_type"] == "manual.evidence" and v["content_hash"] in bodies
    }
    tools = {r["source"]: r["connector_type"] for r in ctx.runs if r["source"] not in NOT_OBSERVED}
    docs = chain_documents(ctx.index, ctx.scope, tools, ctx.generated, ctx.agent_version)
    docs[RESULTS] = assessment_results(ctx, manual_files=manual_files, payloads=payloads)
    return {f"{FOLDER}/{name}": dumps(doc) for name, doc in docs.items()}
