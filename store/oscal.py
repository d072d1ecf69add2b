"""OSCAL 1.0.6 assessment-results from a period of Annexa's history.

Mapping (why): OSCAL's assessment results model an assessment as *results* holding
*observations* (what was seen, when, with what evidence) and *findings* (a verdict on
a control objective, citing observations). Annexa's runs are assessment activities,
its evidence versions are observations, its control statuses are findings:

* every run relied on → one ``result`` (start/end = the run's start/finish; props carry
  the run digest and the previous digest of the chain);
* every evidence version in force during the period → one ``observation`` in the
  result of the run that wrote it, with ``collected`` (when the item was read), the
  resource as subject, and ``relevant-evidence`` pointing to a back-matter resource
  whose ``rlinks`` carry the SHA-256 of the evidence body in the package;
* the control verdicts at the end of the period → ``findings`` of a final result,
  each with ``target.status`` (``satisfied`` only for pass / not_applicable),
  the Annexa status as a property, and the observations it relied on.

UUIDs are version-5 UUIDs derived from stable identifiers, so the same history
exported twice yields the same identifiers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

OSCAL_VERSION = "1.0.6"
NS = "https://annexa.dev/ns/oscal"
_ROOT = uuid.uuid5(uuid.NAMESPACE_URL, NS)
SATISFIED = frozenset({"pass", "not_applicable"})


def uid(*parts: object) -> str:
    return str(uuid.uuid5(_ROOT, "|".join(str(p) for p in parts)))


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _prop(name: str, value: object) -> dict[str, str]:
    text = str(value).strip() or "-"
    return {"name": name, "ns": NS, "value": text}


def observation_uuid(v: Mapping[str, Any]) -> str:
    return uid("observation", v["source"], v["key"], v["content_hash"], iso(v["collected_at"]))


def _reason(status: str) -> str:
    if status == "pass":
        return "pass"
    if status == "fail":
        return "fail"
    return "other"


def _implementation(status: str) -> str:
    return {
        "pass": "implemented",
        "not_applicable": "not-applicable",
        "excepted": "alternative",
        "fail": "partial",
    }.get(status, "planned")


def assessment_results(
    *,
    title: str,
    organisation: str,
    start: datetime,
    end: datetime,
    generated_at: datetime,
    agent_version: str,
    runs: Iterable[Mapping[str, Any]],
    evidence_versions: Iterable[Mapping[str, Any]],
    controls: Iterable[Mapping[str, Any]],
    applicable: set[str],
    cited: Mapping[str, list[str]],
    package_files: Mapping[str, str],
) -> dict[str, Any]:
    """The OSCAL document (a dict ready for ``json.dump``).

    ``controls`` are control status dicts at ``end`` (``as_dict`` plus ``worst``);
    ``cited`` maps a control id to the observation UUIDs its findings relied on;
    ``package_files`` maps a package path to its SHA-256 (for back-matter rlinks).
    """
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    hashes: dict[str, str] = {}
    for v in evidence_versions:
        by_run.setdefault(v["run_id"], []).append(v)
        hashes[v["content_hash"]] = uid("evidence-body", v["content_hash"])
    results: list[dict[str, Any]] = []
    for run in runs:
        res: dict[str, Any] = {
            "uuid": uid("result", run["id"]),
            "title": f"Annexa run {run['id']} of {run['source']}",
            "description": (
                f"Collection by connector instance {run['source']} "
                f"({run['connector_type']}), status {run['status']}."
            ),
            "start": iso(run["started_at"]),
            "props": [
                _prop("run-id", run["id"]),
                _prop("source", run["source"]),
                _prop("run-status", run["status"]),
                _prop("run-digest", run["digest"]),
                _prop("prev-digest", run["prev_digest"] or "-"),
            ],
            "reviewed-controls": {"control-selections": [{"include-all": {}}]},
        }
        if run.get("finished_at"):
            res["end"] = iso(run["finished_at"])
        obs = []
        for v in by_run.get(run["id"], []):
            manual = v["source"] == "@manual"
            o: dict[str, Any] = {
                "uuid": observation_uuid(v),
                "title": f"{v['resource_type']} {v['resource_id']}",
                "description": (
                    f"{v['resource_type']} {v['resource_id']} in {v['scope']}/{v['region']}, "
                    f"read by {v['source']}."
                ),
                "props": [
                    _prop("content-hash", v["content_hash"]),
                    _prop("resource-type", v["resource_type"]),
                    _prop("resource-id", v["resource_id"]),
                    _prop("scope", v["scope"]),
                    _prop("region", v["region"]),
                ],
                "methods": ["EXAMINE" if manual else "TEST"],
                "relevant-evidence": [
                    {
                        "href": f"#{hashes[v['content_hash']]}",
                        "description": "Evidence body (canonical JSON) in evidence.jsonl.",
                    }
                ],
                "collected": iso(v["collected_at"]),
            }
            if v.get("valid_to") is not None:
                o["expires"] = iso(v["valid_to"])
            obs.append(o)
        if obs:
            res["observations"] = obs
        results.append(res)

    findings = []
    for c in controls:
        cid = c["control"]
        if cid not in applicable:
            continue
        status = c["status"]
        f: dict[str, Any] = {
            "uuid": uid("finding", cid, iso(end)),
            "title": f"{cid} {c['title']}",
            "description": (
                f"Annexa status of {cid} at {iso(end)}: {status} "
                f"(worst during the period: {c.get('worst', status)})."
            ),
            "props": [
                _prop("annexa-status", status),
                _prop("worst-in-period", c.get("worst", status)),
            ],
            "target": {
                "type": "objective-id",
                "target-id": cid,
                "status": {
                    "state": "satisfied" if status in SATISFIED else "not-satisfied",
                    "reason": _reason(status),
                },
                "implementation-status": {"state": _implementation(status)},
            },
        }
        if status == "excepted":
            f["target"]["status"]["remarks"] = (
                "Failures covered by approved exceptions: "
                + "; ".join(c.get("excepted_resources", [])[:20])
            )
        rel = cited.get(cid, [])
        if rel:
            f["related-observations"] = [{"observation-uuid": u} for u in rel]
        findings.append(f)
    excluded = sorted(set(c["control"] for c in controls) - applicable)
    selection: dict[str, Any] = {
        "description": "Annex A controls applicable per the Statement of Applicability.",
        "include-all": {},
    }
    if excluded:
        selection["exclude-controls"] = [{"control-id": x} for x in excluded]
    final: dict[str, Any] = {
        "uuid": uid("verdicts", iso(start), iso(end)),
        "title": "Control verdicts at the end of the period",
        "description": (
            f"Status of every applicable ISO/IEC 27001:2022 Annex A control at {iso(end)}, "
            "computed by Annexa from the findings, exceptions and manual evidence in force."
        ),
        "start": iso(start),
        "end": iso(end),
        "reviewed-controls": {"control-selections": [selection]},
    }
    if findings:
        final["findings"] = findings
    results.append(final)

    resources = [
        {
            "uuid": uid("plan"),
            "title": "Annexa continuous assessment",
            "description": (
                "No separate assessment plan: connectors collect evidence on a schedule and "
                "checks judge it; the mapping digest identifies the checks-to-controls mapping."
            ),
        }
    ]
    for h, rid in sorted(hashes.items()):
        resources.append(
            {
                "uuid": rid,
                "title": f"Evidence body {h[:16]}",
                "rlinks": [
                    {
                        "href": "evidence.jsonl",
                        "media-type": "application/jsonl",
                        "hashes": [{"algorithm": "SHA-256", "value": h}],
                    }
                ],
            }
        )
    for path, sha in sorted(package_files.items()):
        resources.append(
            {
                "uuid": uid("file", path),
                "title": path,
                "rlinks": [{"href": path, "hashes": [{"algorithm": "SHA-256", "value": sha}]}],
            }
        )
    metadata: dict[str, Any] = {
        "title": title,
        "last-modified": iso(generated_at),
        "version": agent_version,
        "oscal-version": OSCAL_VERSION,
        "props": [_prop("period-start", iso(start)), _prop("period-end", iso(end))],
    }
    if organisation:
        metadata["parties"] = [
            {"uuid": uid("party", organisation), "type": "organization", "name": organisation}
        ]
    return {
        "assessment-results": {
            "uuid": uid("assessment-results", iso(start), iso(end), iso(generated_at)),
            "metadata": metadata,
            "import-ap": {"href": f"#{uid('plan')}"},
            "results": results,
            "back-matter": {"resources": resources},
        }
    }
