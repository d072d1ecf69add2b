"""The built-in formats of the audit package, one :class:`~exports.exporter.Exporter` each.

They run in the order of :data:`BUILTIN` (exports/registry.py): the report embeds the
samples written before it, and OSCAL cites every file written before it. What each
writes is listed in the module docstring of :mod:`exports.package`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from exports.exporter import Exporter, PackageContext, csv_bytes, iso
from exports.isms import ISMS_COLUMNS, RISK_COLUMNS
from exports.oscal_results import oscal_documents
from exports.report import render_report
from exports.soa import SOA_COLUMNS
from store.integrity import ts
from store.schema import EVIDENCE_FIELDS, PLACE_COLUMNS

# Every row says which stored version it is (``id``), which run wrote it, and the
# instant the population was taken at (``as_of``: the end of the period).
EVIDENCE_COLUMNS = [
    "id",
    *EVIDENCE_FIELDS,
    "collected_at",
    "source_updated_at",
    "valid_to",
    "run_id",
    "body_removed",
    "as_of",
]
FINDING_COLUMNS = [
    "id",
    "source",
    "key",
    "check_id",
    *PLACE_COLUMNS,
    "status",
    "effective_status",
    "exception",
    "severity",
    "message",
    "evidence_hash",
    "controls",
    "mapping_digest",
    "finding_hash",
    "observed_at",
    "valid_to",
    "run_id",
    "as_of",
]
CONTROL_COLUMNS = [
    "control",
    "title",
    "theme",
    "applicable",
    "status_at_end",
    "explanation",
    "document",
    "worst",
    "compliant_pct",
    "fail_hours",
    "changes",
    "as_of",
]
#: Where the decisions a package lists were recorded.
DECISIONS_RECORDED_IN = "@decisions runs of the evidence store (see runs.json)"
#: The report cites at most this many evidence bodies inline.
PAYLOAD_BUDGET = 2000


def _json(doc: Any, indent: int) -> bytes:
    return json.dumps(doc, indent=indent, sort_keys=True).encode()


class RunsExporter(Exporter):
    """runs.json (every run relied on, with its manifest lines) and timestamps.json."""

    name = "runs"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        out = {"runs.json": _json(ctx.runs, 1)}
        if ctx.stamps:
            out["timestamps.json"] = _json(ctx.stamps, 1)
        return out

    def manifest(self, ctx: PackageContext, written: Mapping[str, bytes]) -> Mapping[str, Any]:
        keys = ("id", "source", "digest", "prev_digest", "finished_at", "in_period")
        return {"runs": [{k: r[k] for k in keys} for r in ctx.runs]}


class SamplesExporter(Exporter):
    """samples/<id>/: every sample drawn of a population of the period, with that
    population read again from its recorded definition (verify-package checks its
    digest and redraws the sample from the seed)."""

    name = "samples"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        from store.populations import parse_period
        from store.samples import population_rows, recorded_samples

        out: dict[str, bytes] = {}
        with ctx.engine.connect() as conn:
            for s in recorded_samples(conn, ctx.end):
                try:
                    p = parse_period(str(s.population["period"]))
                except ValueError:
                    continue
                first = datetime.combine(p.start, datetime.min.time(), UTC)
                if p.end_instant < ctx.start or first > ctx.end:
                    continue
                rows = population_rows(conn, s.population)
                cols = sorted({k for r in rows for k in r if k != "item_id"})
                drawn = {"id": s.id, "run_id": s.run_id, "drawn_at": iso(s.drawn_at)}
                out[f"samples/{s.id}/sample.json"] = _json({**drawn, **s.payload()}, 1)
                out[f"samples/{s.id}/population.csv"] = csv_bytes(
                    ({**r, **{c: _cell_text(r.get(c)) for c in cols}} for r in rows),
                    ["item_id", *cols],
                )
        return out


def _cell_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


class EvidenceExporter(Exporter):
    """evidence.csv (every version in force during the period) and evidence.jsonl (each
    distinct body once, canonical JSON)."""

    name = "evidence"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        as_of = ts(ctx.end)
        rows = (
            {
                **v,
                "collected_at": ts(v["collected_at"]),
                "source_updated_at": (
                    ts(v["source_updated_at"]) if v.get("source_updated_at") else None
                ),
                "valid_to": ts(v["valid_to"]) if v["valid_to"] else None,
                "as_of": as_of,
            }
            for v in ctx.evidence_versions
        )
        stored = ctx.bodies
        jsonl = "".join(
            json.dumps({"hash": h, "body": stored[h]}, sort_keys=True, ensure_ascii=False) + "\n"
            for h in sorted(stored)
        )
        return {
            "evidence.csv": csv_bytes(rows, EVIDENCE_COLUMNS),
            "evidence.jsonl": jsonl.encode("utf-8"),
        }


class FindingsExporter(Exporter):
    """findings.csv: every finding version in force during the period, with the
    exception that covered it, if any."""

    name = "findings"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        as_of = ts(ctx.end)
        rows = (
            {
                **f,
                "controls": json.dumps(f["controls"]),
                "observed_at": ts(f["observed_at"]),
                "valid_to": ts(f["valid_to"]) if f["valid_to"] else None,
                "as_of": as_of,
            }
            for f in ctx.finding_versions
        )
        return {"findings.csv": csv_bytes(rows, FINDING_COLUMNS)}


class ControlsExporter(Exporter):
    """controls.csv (status at the end and over the period), control_history.csv (status
    intervals) and soa.csv (the Statement of Applicability at the end)."""

    name = "controls"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        as_of = iso(ctx.end)
        history = [
            {"control": cid, "from": iso(a), "to": iso(b), "status": s}
            for cid, tl in ctx.timelines.items()
            for a, b, s in tl.intervals()
        ]
        return {
            "controls.csv": csv_bytes(
                ({**c, "status_at_end": c["status"], "as_of": as_of} for c in ctx.controls),
                CONTROL_COLUMNS,
            ),
            "control_history.csv": csv_bytes(history, ["control", "from", "to", "status"]),
            "soa.csv": csv_bytes(ctx.soa, SOA_COLUMNS),
        }


class DecisionsExporter(Exporter):
    """exceptions.json (in force during the period, as recorded: when recorded and
    revoked, backdated approvals marked) and comments.json (auditor comments and
    evidence requests recorded by the end, each with its signed @decisions run)."""

    name = "decisions"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        from store.comments import comments as recorded_comments

        with ctx.engine.connect() as conn:
            remarks = [
                c.as_dict() | {"recorded_at": iso(c.recorded_at)}
                for c in recorded_comments(conn, ctx.end)
            ]
        exceptions = {"recorded_in": DECISIONS_RECORDED_IN, "exceptions": ctx.exceptions_in_period}
        comments = {"recorded_in": DECISIONS_RECORDED_IN, "comments": remarks}
        return {
            "exceptions.json": _json(exceptions, 2),
            "comments.json": json.dumps(
                comments, indent=2, sort_keys=True, ensure_ascii=False
            ).encode("utf-8"),
        }


class ManualFilesExporter(Exporter):
    """manual/<sha256>/<name>: the manual evidence files in force during the period."""

    name = "manual"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        from store.manual import decode_file

        out: dict[str, bytes] = {}
        for v in ctx.evidence_versions:
            if v["resource_type"] == "manual.file" and v["content_hash"] in ctx.bodies:
                payload = json.loads(ctx.bodies[v["content_hash"]])
                sha = payload["sha256"]
                for name in _manual_names(ctx, sha):
                    out[f"manual/{sha}/{name}"] = decode_file(payload)
        return out


def _manual_names(ctx: PackageContext, sha: str) -> set[str]:
    names = set()
    for v in ctx.evidence_versions:
        if v["resource_type"] == "manual.evidence" and v["content_hash"] in ctx.bodies:
            p = json.loads(ctx.bodies[v["content_hash"]])
            if p["file_sha256"] == sha:
                names.add(safe_entry_name(p["filename"]))
    return names or {"file"}


def safe_entry_name(name: str) -> str:
    """A file name fit to be the last part of a zip entry: no directories (either slash),
    no ``..``, no control characters, never empty — unpacking cannot escape its folder."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    base = "".join("_" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in base).strip()
    if base in ("", ".", ".."):
        return "file"
    return base.replace("..", "_")


class IsmsExporter(Exporter):
    """isms.csv (clauses 4-10 at the end) and risks.csv (the register at the end)."""

    name = "isms"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        return {
            "isms.csv": csv_bytes(ctx.isms["isms_csv"], ISMS_COLUMNS),
            "risks.csv": csv_bytes(ctx.isms["risks_csv"], RISK_COLUMNS),
        }


class ReportExporter(Exporter):
    """report.html (self-contained, no network) and, given a PDF printer, report.pdf."""

    name = "report"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        from store.timelines import compliance_series

        # Drill-down: findings in force at the end of the period, by control.
        drill: dict[str, list[dict[str, Any]]] = {}
        for f in ctx.findings_at_end:
            for cid in f["controls"]:
                drill.setdefault(cid, []).append(f)
        payloads: dict[str, str] = {}
        for cid in drill:
            for f in drill[cid]:
                h = f["evidence_hash"]
                if h and h in ctx.bodies and h not in payloads and len(payloads) < PAYLOAD_BUDGET:
                    payloads[h] = ctx.bodies[h]
        html = render_report(
            title=ctx.title,
            organisation=ctx.scope.organisation,
            scope_description=ctx.scope.description,
            start=ctx.start,
            end=ctx.end,
            generated_at=ctx.generated,
            controls=ctx.controls,
            series=compliance_series(
                ctx.timelines, ctx.chart_points, applicable=ctx.scope.applicable
            ),
            drill=drill,
            payloads=payloads,
            exceptions=ctx.exceptions_in_period,
            runs=ctx.runs,
            soa=ctx.soa,
            timelines={cid: tl.intervals() for cid, tl in ctx.timelines.items()},
            samples=[
                json.loads(b)
                for p, b in sorted(ctx.files.items())
                if p.startswith("samples/") and p.endswith("/sample.json")
            ],
            soa_meta=ctx.scope.meta(),
            extra_sections=ctx.isms["sections"],
        ).encode("utf-8")
        out = {"report.html": html}
        if ctx.pdf is not None:
            # Printed by the caller's renderer (headless Chromium): the package runs nothing.
            out["report.pdf"] = ctx.pdf(html)
        return out


class OscalExporter(Exporter):
    """oscal/: OSCAL 1.2.1 assessment results importing the assessment plan → SSP (the
    SoA) → profile → catalog (Annex A), citing the package files written before it."""

    name = "oscal"

    def write(self, ctx: PackageContext) -> Mapping[str, bytes]:
        return oscal_documents(ctx)
