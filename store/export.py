"""The audit package: everything an auditor needs for a period, verifiable offline.

``audit.zip`` contents::

    manifest.json          format, period, SHA-256 and size of every other file, the runs
                           relied on with their digests, and ``manifest_digest`` over all
                           of that (print it; compare it with what the auditee sent)
    runs.json              every run relied on: header fields + digest + prev_digest;
                           runs that finished inside the period also carry their full
                           manifest lines, so their digests and chain are recomputed
    evidence.csv           population: every evidence version in force during the period
    evidence.jsonl         one line per distinct body: {"hash", "body"} (canonical JSON)
    findings.csv           population: every finding version in force during the period,
                           with the exception that covered it, if any
    controls.csv           per control: status at the end, worst status, % compliant, hours
                           failing, changes
    control_history.csv    per control: status intervals over the period
    soa.csv                Statement of Applicability at the end of the period
    isms.csv               ISMS clauses 4-10: readiness at the end of the period
    risks.csv              the risk register at the end of the period (store/risks.py)
    exceptions.json        the exceptions in force during the period, as recorded (when
                           recorded and revoked; backdated approvals marked)
    comments.json          auditor comments and evidence requests recorded by the end of
                           the period, each with its signed @decisions run
    manual/<sha256>/<name> manual evidence files in force during the period
    oscal/                 OSCAL 1.2.1: assessment-results.json importing assessment-plan.json
                           → ssp.json (the SoA) → profile.json → catalog.json (Annex A)
    report.html            self-contained report (no network); report.pdf with --pdf

``verify-package`` checks, offline: every file's hash and size, no unlisted file, the
manifest digest, each in-period run's digest recomputed from its manifest lines and
its chain link to the previous run, every evidence body against its hash, every
finding row against its finding hash, every evidence/finding version against the
manifest lines of the run that wrote it, and manual files against their hashes.
Given the database too, every listed run digest is compared with the stored one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Connection, Engine, select

from core.csvsafe import neutralise, restore
from core.records import canonical_json, sha256_hex, utcnow
from core.signing import PACKAGE_DOMAIN, RUN_DOMAIN, PublicKey, Signer
from store.exceptions import ExceptionRule, exception_for
from store.integrity import (
    GENESIS,
    _combine,
    _Manifest,
    _sorted_by_key,
    finding_hash,
    ts,
)
from store.isms import ISMS_COLUMNS, RISK_COLUMNS, package_parts
from store.keys import stored_keys
from store.oscal import check_chain
from store.oscal_results import oscal_documents
from store.queries import (
    _confirmed_at,
    bodies,
    evidence_in_period,
    findings_in_period,
    last_ok_units,
)
from store.report import render_report
from store.schema import evidence, findings, run_units, runs
from store.status import control_statuses
from store.timelines import Timeline, compliance_series, control_timelines
from store.timestamps import tokens

FORMAT = "annexa-audit-package/2"
MANIFEST = "manifest.json"


class ExportError(RuntimeError):
    """The package cannot be built faithfully (e.g. a run it relies on does not verify)."""


@dataclass
class PackageSummary:
    path: Path
    files: int
    size: int
    runs: int
    evidence_versions: int
    finding_versions: int
    manifest_digest: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "files": self.files,
            "bytes": self.size,
            "runs": self.runs,
            "evidence_versions": self.evidence_versions,
            "finding_versions": self.finding_versions,
            "manifest_digest": self.manifest_digest,
        }


def _iso(t: datetime | None) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t else ""


def _csv(rows: Iterable[Mapping[str, Any]], cols: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else neutralise(r.get(c)) for c in cols])
    return buf.getvalue().encode("utf-8")


def run_manifest_lines(conn: Connection, run_id: str) -> list[str]:
    """The lines a run's digest is computed over (same order as store.integrity)."""
    lines: list[str] = []
    eq = (
        select(evidence.c.key, evidence.c.content_hash, evidence.c.collected_at)
        .where(evidence.c.run_id == run_id)
        .order_by(_sorted_by_key(conn, evidence.c.key), evidence.c.id)
    )
    for key, chash, collected_at in conn.execute(eq):
        lines.append(f"E|{key}|{chash or '-'}|{ts(collected_at)}")
    fq = (
        select(findings.c.key, findings.c.finding_hash, findings.c.observed_at)
        .where(findings.c.run_id == run_id)
        .order_by(_sorted_by_key(conn, findings.c.key), findings.c.id)
    )
    for key, fhash, observed_at in conn.execute(fq):
        lines.append(f"F|{key}|{fhash}|{ts(observed_at)}")
    uq = (
        select(run_units)
        .where(run_units.c.run_id == run_id)
        .order_by(run_units.c.scope, run_units.c.region, run_units.c.service, run_units.c.id)
    )
    for u in conn.execute(uq).mappings():
        lines.append(
            f"U|{u['scope']}/{u['region']}/{u['service']}|{int(bool(u['ok']))}|{u['error'] or ''}"
        )
    return lines


def digest_from_lines(run: Mapping[str, Any], lines: Iterable[str]) -> str:
    """A run's digest from its header and manifest lines (what ``verify`` computes)."""
    m = _Manifest()
    for line in lines:
        m.line(line)
    return _combine(run["prev_digest"] or GENESIS, dict(run), m)


_RUN_FIELDS = (
    "id",
    "source",
    "connector_type",
    "status",
    "started_at",
    "finished_at",
    "agent_version",
    "config_digest",
    "mapping_digest",
    "counts",
    "errors",
    "digest",
    "prev_digest",
    "signature",
    "key_id",
)


def _run_json(run: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: run[k] for k in _RUN_FIELDS}
    out["started_at"] = ts(run["started_at"])
    out["finished_at"] = ts(run["finished_at"])
    return out


def _run_from_json(d: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for k in ("started_at", "finished_at"):
        v = d[k]
        out[k] = None if v in (None, "-") else _parse_ts(v)
    return out


# Every row says which stored version it is (``id``), which run wrote it, and the
# instant the population was taken at (``as_of``: the end of the period).
_EV_CSV = [
    "id",
    "source",
    "key",
    "scope",
    "region",
    "service",
    "resource_type",
    "resource_id",
    "content_hash",
    "collected_at",
    "valid_to",
    "run_id",
    "body_removed",
    "as_of",
]
_FI_CSV = [
    "id",
    "source",
    "key",
    "check_id",
    "scope",
    "region",
    "service",
    "resource_type",
    "resource_id",
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


def _exception_during(
    rules: list[ExceptionRule], f: Mapping[str, Any], start: datetime, end: datetime
) -> ExceptionRule | None:
    """An exception covering failing version ``f`` at some instant of its validity."""
    lo = max(f["valid_from"], start)
    hi = f["valid_to"] or end
    for r in rules:
        if f["status"] == "fail" and r.matches(f):
            s = r.effective_from or lo
            if s < hi and r.effective_until > lo:
                return r
    return None


def build_package(
    engine: Engine,
    index: Any,
    *,
    start: datetime,
    end: datetime,
    out: Path,
    freshness: timedelta,
    exceptions: list[ExceptionRule],
    scope: Any,
    agent_version: str,
    chart_points: int = 60,
    signer: Signer | None = None,
    pdf: Callable[[bytes], bytes] | None = None,
) -> PackageSummary:
    """Write the audit package for ``[start, end]`` to ``out`` (a .zip)."""
    generated = utcnow()
    files: dict[str, bytes] = {}
    with engine.connect() as conn:
        ev_pop = evidence_in_period(conn, start, end)
        fi_pop = findings_in_period(conn, start, end)
        relied = {v["run_id"] for v in ev_pop} | {f["run_id"] for f in fi_pop}
        in_period_q = select(runs).where(
            runs.c.digest.is_not(None), runs.c.finished_at >= start, runs.c.finished_at <= end
        )
        run_rows = {r["id"]: dict(r) for r in conn.execute(in_period_q).mappings()}
        in_period = set(run_rows)
        missing = relied - set(run_rows)
        for i in range(0, len(missing), 500):
            chunk = sorted(missing)[i : i + 500]
            for r in conn.execute(select(runs).where(runs.c.id.in_(chunk))).mappings():
                run_rows[r["id"]] = dict(r)
        runs_json = []
        for run in sorted(
            run_rows.values(),
            key=lambda r: (r["source"], r["finished_at"] or r["started_at"], r["id"]),
        ):
            if run["digest"] is None:
                raise ExportError(
                    f"run {run['id']} ({run['source']}) is not sealed yet (still running?); "
                    "export a period that ends before it started"
                )
            entry = _run_json(run)
            entry["in_period"] = run["id"] in in_period
            # Every run relied on carries its manifest lines, so that every row of the
            # package is checked against a digest its signature covers.
            lines = run_manifest_lines(conn, run["id"])
            if digest_from_lines(run, lines) != run["digest"]:
                raise ExportError(
                    f"run {run['id']} ({run['source']}) does not match its digest: "
                    "run `annexa verify` before exporting"
                )
            entry["manifest"] = lines
            runs_json.append(entry)
        key_rows = {k.id: k for k in stored_keys(conn).values()}
        stamps = [
            {
                "run_id": t["run_id"],
                "digest": t["digest"],
                "tsa": t["tsa"],
                "gen_time": ts(t["gen_time"]),
                "token": t["token"],
            }
            for t in tokens(conn, [r["id"] for r in runs_json])
        ]
        hashes = {v["content_hash"] for v in ev_pop}
        stored = bodies(conn, hashes)
    if stamps:
        files["timestamps.json"] = json.dumps(stamps, indent=1, sort_keys=True).encode()
    with engine.connect() as conn:
        files.update(_sample_files(conn, start, end))
    files["runs.json"] = json.dumps(runs_json, indent=1, sort_keys=True).encode()

    for v in ev_pop:
        v["body_removed"] = v["content_hash"] not in stored
    files["evidence.csv"] = _csv(
        (
            {
                **v,
                "collected_at": ts(v["collected_at"]),
                "valid_to": ts(v["valid_to"]) if v["valid_to"] else None,
                "as_of": ts(end),
            }
            for v in ev_pop
        ),
        _EV_CSV,
    )
    files["evidence.jsonl"] = "".join(
        json.dumps({"hash": h, "body": stored[h]}, sort_keys=True, ensure_ascii=False) + "\n"
        for h in sorted(stored)
    ).encode("utf-8")
    for f in fi_pop:
        exc = _exception_during(exceptions, f, start, end)
        f["exception"] = exc.id if exc else None
        at_end = f["valid_to"] is None
        f["effective_status"] = (
            "excepted" if at_end and exception_for(exceptions, f, end) else f["status"]
        )
    files["findings.csv"] = _csv(
        (
            {
                **f,
                "controls": json.dumps(f["controls"]),
                "observed_at": ts(f["observed_at"]),
                "valid_to": ts(f["valid_to"]) if f["valid_to"] else None,
                "as_of": ts(end),
            }
            for f in fi_pop
        ),
        _FI_CSV,
    )

    timelines: dict[str, Timeline] = control_timelines(
        engine, index, start, end, freshness, exceptions=exceptions
    )
    statuses = [
        c.as_dict() for c in control_statuses(engine, index, end, freshness, exceptions=exceptions)
    ]
    for c in statuses:
        tl = timelines[c["control"]].as_dict()
        app = scope.controls[c["control"]]
        c["applicable"] = app.applicable
        c["justification"] = app.justification
        c["worst"] = tl["worst"]
        c["compliant_pct"] = tl["compliant_pct"]
        c["fail_hours"] = round(sum(p["hours"] for p in tl["fail_periods"]), 2)
        c["changes"] = tl["changes"]
    files["controls.csv"] = _csv(
        ({**c, "status_at_end": c["status"], "as_of": _iso(end)} for c in statuses),
        [
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
        ],
    )
    hist_rows = []
    for cid, tl in timelines.items():
        for a, b, s in tl.intervals():
            hist_rows.append({"control": cid, "from": _iso(a), "to": _iso(b), "status": s})
    files["control_history.csv"] = _csv(hist_rows, ["control", "from", "to", "status"])
    soa_rows = soa_table(statuses, scope, as_of=end)
    files["soa.csv"] = _csv(soa_rows, SOA_COLUMNS)
    # Decisions as recorded (store/decisions.py): each with when it was recorded and
    # revoked, and whether its approval date is earlier than its recording (backdated).
    exc_doc: dict[str, Any] = {
        "recorded_in": "@decisions runs of the evidence store (see runs.json)",
        "exceptions": [
            r.as_dict()
            for r in exceptions
            if r.effective_from is None or (r.effective_from <= end and r.effective_until > start)
        ],
    }
    files["exceptions.json"] = json.dumps(exc_doc, indent=2, sort_keys=True).encode()
    # Auditor comments and evidence requests recorded by the end (store/comments.py).
    from store.comments import comments as recorded_comments

    with engine.connect() as conn:
        remarks = [c.as_dict() | {"recorded_at": _iso(c.recorded_at)}
                   for c in recorded_comments(conn, end)]
    files["comments.json"] = json.dumps(
        {"recorded_in": "@decisions runs of the evidence store (see runs.json)",
         "comments": remarks}, indent=2, sort_keys=True, ensure_ascii=False,
    ).encode("utf-8")

    # Manual files in force during the period, as the files themselves.
    for v in ev_pop:
        if v["resource_type"] == "manual.file" and v["content_hash"] in stored:
            from store.manual import decode_file

            payload = json.loads(stored[v["content_hash"]])
            names = _manual_names(ev_pop, stored, payload["sha256"])
            for name in names:
                files[f"manual/{payload['sha256']}/{name}"] = decode_file(payload)

    # Drill-down: findings in force at the end of the period, by control.
    drill: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        units = last_ok_units(conn, end)
    for f in fi_pop:
        if f["valid_to"] is not None:
            continue
        # When this state was first observed, and last confirmed: its own observation
        # or a later clean read of its unit (unchanged items write no new row).
        f["first_observed"] = f["valid_from"]
        f["last_confirmed"] = max(
            t for t in (f["observed_at"], _confirmed_at(units, f)) if t is not None
        )
        for cid in f["controls"]:
            drill.setdefault(cid, []).append(f)
    payload_budget = 2000
    payloads: dict[str, str] = {}
    for cid in drill:
        for f in drill[cid]:
            h = f["evidence_hash"]
            if h and h in stored and h not in payloads and len(payloads) < payload_budget:
                payloads[h] = stored[h]
    series = compliance_series(timelines, chart_points, applicable=scope.applicable)
    # ISMS clauses, risk register and monthly trends (store/isms.py).
    isms = package_parts(
        engine,
        index,
        start=start,
        end=end,
        timelines=timelines,
        applicable=scope.applicable,
        freshness=freshness,
        exceptions=exceptions,
    )
    files["isms.csv"] = _csv(isms["isms_csv"], ISMS_COLUMNS)
    files["risks.csv"] = _csv(isms["risks_csv"], RISK_COLUMNS)
    title = "ISO/IEC 27001:2022 audit package"
    files["report.html"] = render_report(
        title=title,
        organisation=scope.organisation,
        scope_description=scope.description,
        start=start,
        end=end,
        generated_at=generated,
        controls=statuses,
        series=series,
        drill=drill,
        payloads=payloads,
        exceptions=exc_doc["exceptions"],
        runs=runs_json,
        soa=soa_rows,
        timelines={cid: tl.intervals() for cid, tl in timelines.items()},
        samples=[
            json.loads(b)
            for p, b in sorted(files.items())
            if p.startswith("samples/") and p.endswith("/sample.json")
        ],
        soa_meta=scope.meta(),
        extra_sections=isms["sections"],
    ).encode("utf-8")
    if pdf is not None:
        # Printed by the caller's renderer (headless Chromium): the store runs nothing.
        files["report.pdf"] = pdf(files["report.html"])
    # The OSCAL chain: catalog → profile → SSP → assessment plan → assessment results.
    files.update(
        oscal_documents(
            index=index,
            scope=scope,
            title=title,
            start=start,
            end=end,
            generated=generated,
            agent_version=agent_version,
            runs=runs_json,
            evidence_versions=ev_pop,
            findings_at_end=[f for f in fi_pop if f["valid_to"] is None],
            controls=statuses,
            bodies=stored,
            package_files=files,
        )
    )

    listed = [
        {"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
        for p, b in sorted(files.items())
    ]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "generated_at": _iso(generated),
        "period": {"start": _iso(start), "end": _iso(end)},
        "agent_version": agent_version,
        "mapping_digest": index.digest,
        "files": listed,
        "runs": [
            {k: r[k] for k in ("id", "source", "digest", "prev_digest", "finished_at", "in_period")}
            for r in runs_json
        ],
    }
    used = {r["key_id"] for r in runs_json if r.get("key_id")}
    if signer is not None:
        key_rows.setdefault(signer.key_id, signer.public)
        used.add(signer.key_id)
    manifest["signing_keys"] = [
        {"key_id": k, "algorithm": "ed25519", "public_key": key_rows[k].b64}
        for k in sorted(used)
        if k in key_rows
    ]
    manifest["manifest_digest"] = manifest_digest(manifest)
    if signer is not None:
        manifest["signature"] = {
            "key_id": signer.key_id,
            "value": signer.sign(PACKAGE_DOMAIN, manifest["manifest_digest"]),
        }
    files[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in [MANIFEST, *sorted(k for k in files if k != MANIFEST)]:
            info = zipfile.ZipInfo(p, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[p])
    tmp.replace(out)
    return PackageSummary(
        path=out,
        files=len(files),
        size=out.stat().st_size,
        runs=len(runs_json),
        evidence_versions=len(ev_pop),
        finding_versions=len(fi_pop),
        manifest_digest=manifest["manifest_digest"],
    )


def _sample_files(conn: Connection, start: datetime, end: datetime) -> dict[str, bytes]:
    """Every sample drawn of a population of the period, with that population.

    The population is read again from its recorded definition; verify-package checks
    that it is the population the sample was drawn from (its digest) and recomputes
    the draw from the seed.
    """
    from store.populations import parse_period
    from store.samples import population_rows, recorded_samples

    out: dict[str, bytes] = {}
    for s in recorded_samples(conn, end):
        try:
            p = parse_period(str(s.population["period"]))
        except ValueError:
            continue
        if p.end_instant < start or datetime.combine(p.start, datetime.min.time(), UTC) > end:
            continue
        rows = population_rows(conn, s.population)
        cols = sorted({k for r in rows for k in r if k != "item_id"})
        out[f"samples/{s.id}/sample.json"] = json.dumps(
            {"id": s.id, "run_id": s.run_id, "drawn_at": _iso(s.drawn_at), **s.payload()},
            indent=1,
            sort_keys=True,
        ).encode()
        out[f"samples/{s.id}/population.csv"] = _csv(
            ({**r, **{c: _cell_text(r.get(c)) for c in cols}} for r in rows),
            ["item_id", *cols],
        )
    return out


def _cell_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def _manual_names(ev_pop: list[dict[str, Any]], stored: Mapping[str, str], sha: str) -> set[str]:
    names = set()
    for v in ev_pop:
        if v["resource_type"] == "manual.evidence" and v["content_hash"] in stored:
            p = json.loads(stored[v["content_hash"]])
            if p["file_sha256"] == sha:
                names.add(safe_entry_name(p["filename"]))
    return names or {"file"}


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")


def safe_entry_name(name: str) -> str:
    """A file name fit to be the last part of a zip entry: no directories (either slash),
    no ``..``, no control characters, never empty — unpacking cannot escape its folder."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    base = _UNSAFE_NAME.sub("_", base).strip()
    if base in ("", ".", ".."):
        return "file"
    return base.replace("..", "_")


SOA_COLUMNS = [
    "control",
    "title",
    "theme",
    "applicable",
    "justification",
    "declared",
    "measured",
    "contradiction",
    "owner",
    "implementation",
    "risks",
    "policies",
    "findings",
    "failing",
    "evidence_items",
    "manual_evidence",
    "soa_version",
    "soa_approved_by",
    "soa_approved_on",
    "as_of",
]


def implementation_label(status: str, counts: Mapping[str, int], applicable: bool) -> str:
    """What the measured status says about implementation, in an SoA's words."""
    if not applicable:
        return "excluded"
    if status == "pass":
        return "implemented"
    if status == "excepted":
        return "implemented with approved exceptions"
    if status == "undocumented":
        return "implemented, not documented"
    if status == "fail":
        return "partially implemented" if counts.get("pass") else "not implemented"
    if status == "not_applicable":
        return "implemented (nothing in scope to check)"
    return "not verified"


def soa_table(
    statuses: Iterable[Mapping[str, Any]], scope: Any, *, as_of: datetime | None = None
) -> list[dict[str, Any]]:
    """The Statement of Applicability (ISO/IEC 27001:2022 6.1.3 d): every Annex A
    control and every additional control, the owner's declaration beside Annexa's
    measurement, and where the two disagree."""
    from mappings.soa import contradiction

    meta = scope.meta() if hasattr(scope, "meta") else {}
    stamp = _iso(as_of) if as_of else None
    rows = []
    seen: set[str] = set()
    by_id = {c["control"]: c for c in statuses}
    for cid, app in scope.controls.items():
        c = by_id.get(cid)
        seen.add(cid)
        counts = c["counts"] if c else {}
        measured = c["status"] if c else "not_measured"
        automated = sum(
            v for k, v in counts.items() if k not in ("manual_evidence", "manual_expired")
        )
        rows.append(
            {
                "control": cid,
                "title": c["title"] if c else (app.title or ""),
                "theme": c["theme"] if c else "additional",
                "applicable": "yes" if app.applicable else "no",
                "justification": app.justification,
                "declared": app.status or "",
                "measured": measured,
                "status": measured,
                "contradiction": contradiction(app.status, measured, app.applicable) or "",
                "implementation": app.implementation
                or implementation_label(measured, counts, app.applicable),
                "owner": app.owner or "",
                "risks": ", ".join(app.risks),
                "policies": ", ".join(app.policies),
                "findings": automated,
                "failing": counts.get("fail", 0),
                "evidence_items": c.get("evidence_items", 0) if c else 0,
                "manual_evidence": counts.get("manual_evidence", 0),
                "soa_version": meta.get("version") or "",
                "soa_approved_by": meta.get("approved_by") or "",
                "soa_approved_on": meta.get("approved_on") or "",
                "as_of": stamp,
            }
        )
    for cid, c in by_id.items():
        if cid not in seen:  # a control the recorded SoA did not know (catalog grew)
            rows.append(
                {
                    **{k: "" for k in SOA_COLUMNS},
                    "control": cid,
                    "title": c["title"],
                    "measured": c["status"],
                    "status": c["status"],
                    "as_of": stamp,
                }
            )
    return rows


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 over the manifest without its own digest and signature (which covers it)."""
    body = {k: v for k, v in manifest.items() if k not in ("manifest_digest", "signature")}
    return sha256_hex(canonical_json(body))


# -- verification ---------------------------------------------------------------------------


@dataclass
class PackageProblem:
    file: str
    reason: str


@dataclass
class PackageCheck:
    problems: list[PackageProblem] = field(default_factory=list)
    files: int = 0
    runs_recomputed: int = 0
    evidence_bodies: int = 0
    finding_rows: int = 0
    manifest_digest: str | None = None
    signed_by: str | None = None
    runs_signed: int = 0
    rows_compared: int = 0
    timestamps_verified: int = 0
    samples_verified: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str, reason: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(PackageProblem(file, reason))


def _parse_ts(v: str) -> datetime:
    return datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def verify_package(
    path: Path,
    *,
    engine: Engine | None = None,
    trusted_keys: Mapping[str, PublicKey] | None = None,
    tsa_roots: list[Any] | None = None,
) -> PackageCheck:
    """Check an audit package offline (and against the database when ``engine`` is given).

    With ``trusted_keys``, the manifest and every run it relies on must be signed by one
    of them; without, signatures are checked against the keys the package itself lists
    (which proves only that it is consistent: anyone can list a key of their own).
    """
    res = PackageCheck()
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        res.add(str(path), f"not a readable zip file: {exc}")
        return res
    with zf:
        names = set(zf.namelist())
        if MANIFEST not in names:
            res.add(MANIFEST, "missing")
            return res
        try:
            manifest = json.loads(zf.read(MANIFEST))
        except ValueError as exc:
            res.add(MANIFEST, f"not valid JSON: {exc}")
            return res
        if manifest.get("format") != FORMAT:
            res.add(MANIFEST, f"unknown format {manifest.get('format')!r} (expected {FORMAT})")
            return res
        res.manifest_digest = manifest.get("manifest_digest")
        if manifest_digest(manifest) != manifest.get("manifest_digest"):
            res.add(MANIFEST, "manifest_digest does not match the manifest's content")
        keys = _package_keys(manifest, res) if trusted_keys is None else dict(trusted_keys)
        _verify_manifest_signature(manifest, keys, trusted_keys is not None, res)
        data: dict[str, bytes] = {}
        listed = {f["path"]: f for f in manifest.get("files", [])}
        for p in sorted(names - listed.keys() - {MANIFEST}):
            res.add(p, "file is not listed in the manifest")
        for p, f in sorted(listed.items()):
            if p not in names:
                res.add(p, "listed in the manifest but missing from the package")
                continue
            b = zf.read(p)
            data[p] = b
            res.files += 1
            if len(b) != f["size"] or hashlib.sha256(b).hexdigest() != f["sha256"]:
                res.add(p, "SHA-256 does not match the manifest (file altered)")
    _verify_contents(data, manifest, res, keys, trusted=trusted_keys is not None)
    if tsa_roots is not None:
        _verify_timestamps(data, tsa_roots, res)
    if engine is not None:
        _verify_against_db(engine, data, manifest, res)
    return res


def _verify_timestamps(data: Mapping[str, bytes], roots: list[Any], res: PackageCheck) -> None:
    """Each RFC 3161 token must vouch, under a trusted TSA root, for its run's digest."""
    from core.timestamping import TimestampError, run_message, verify_token

    try:
        digests = {r["id"]: r["digest"] for r in json.loads(data.get("runs.json", b"[]"))}
        stamps = json.loads(data.get("timestamps.json", b"[]"))
    except (ValueError, TypeError, KeyError):
        res.add("timestamps.json", "not valid JSON")
        return
    if not stamps:
        res.add("timestamps.json", "no time stamps in the package (none were taken?)")
    for t in stamps:
        if digests.get(t.get("run_id")) != t.get("digest"):
            res.add("timestamps.json", f"run {t.get('run_id')}: token for another digest")
            continue
        try:
            verify_token(str(t["token"]), run_message(str(t["digest"])), roots)
        except (TimestampError, KeyError) as exc:
            res.add("timestamps.json", f"run {t.get('run_id')}: token does not verify: {exc}")
            continue
        res.timestamps_verified += 1


def _package_keys(manifest: Mapping[str, Any], res: PackageCheck) -> dict[str, PublicKey]:
    keys: dict[str, PublicKey] = {}
    for k in manifest.get("signing_keys", []) or []:
        try:
            key = PublicKey.from_b64(str(k["public_key"]))
        except (KeyError, TypeError, ValueError):
            res.add(MANIFEST, "signing_keys: malformed entry")
            continue
        if key.id != k.get("key_id"):
            res.add(MANIFEST, f"signing_keys: key id {k.get('key_id')} does not match its key")
        keys[key.id] = key
    return keys


def _verify_manifest_signature(
    manifest: Mapping[str, Any], keys: Mapping[str, PublicKey], trusted: bool, res: PackageCheck
) -> None:
    sig = manifest.get("signature")
    if not isinstance(sig, dict):
        if trusted:
            res.add(MANIFEST, "not signed (no signature over the manifest)")
        else:
            res.warnings.append(
                "the package is not signed: its contents are only "
                "self-consistent; ask for a signed export"
            )
        return
    key = keys.get(str(sig.get("key_id")))
    if key is None:
        where = "the trusted keys" if trusted else "the package's signing_keys"
        res.add(MANIFEST, f"signed with key {sig.get('key_id')}, which is not among {where}")
        return
    if not key.verify(PACKAGE_DOMAIN, manifest_digest(manifest), sig.get("value")):
        res.add(
            MANIFEST,
            f"signature by key {key.id} does not match the manifest (the "
            "package was altered after signing, or the signature was forged)",
        )
        return
    res.signed_by = key.id
    if not trusted:
        res.warnings.append(
            f"signature checked against key {key.id} listed in the package itself: pass "
            "--trusted-keys with the keys you were given to rely on it"
        )


def _read_csv(data: Mapping[str, bytes], name: str) -> Iterable[dict[str, Any]]:
    """Rows of a package CSV with every cell as it was before it was neutralised."""
    for row in csv.DictReader(io.StringIO(data.get(name, b"").decode("utf-8"))):
        yield {k: (restore(v) if isinstance(v, str) else v) for k, v in row.items()}


def _verify_contents(
    data: dict[str, bytes],
    manifest: Mapping[str, Any],
    res: PackageCheck,
    keys: Mapping[str, PublicKey],
    *,
    trusted: bool,
) -> None:
    try:
        runs_json = json.loads(data.get("runs.json", b"[]"))
    except ValueError:
        res.add("runs.json", "not valid JSON")
        return
    listed_runs = {r["id"]: r for r in manifest.get("runs", [])}
    lines_by_run: dict[str, set[str]] = {}
    by_source: dict[str, list[dict[str, Any]]] = {}
    if not isinstance(runs_json, list) or not all(
        isinstance(r, dict) and {"id", "digest", "prev_digest", "source"} <= r.keys()
        for r in runs_json
    ):
        res.add("runs.json", "not a list of runs")
        return
    for r in runs_json:
        lr = listed_runs.get(r["id"])
        if lr is None or lr["digest"] != r["digest"] or lr["prev_digest"] != r["prev_digest"]:
            res.add("runs.json", f"run {r['id']}: digest differs from the manifest's")
        _verify_run_signature(r, keys, trusted, res)
        if "manifest" not in r:
            res.add(
                "runs.json",
                f"run {r['id']}: no manifest lines (its rows cannot be checked against its digest)",
            )
        if "manifest" in r:
            try:
                run = _run_from_json(r)
                recomputed = digest_from_lines(run, r["manifest"])
            except (KeyError, TypeError, ValueError):
                res.add("runs.json", f"run {r['id']}: malformed run header")
                continue
            if recomputed != r["digest"]:
                res.add(
                    "runs.json",
                    f"run {r['id']}: recomputed digest does not match (rows or header altered)",
                )
            res.runs_recomputed += 1
            lines_by_run[r["id"]] = set(r["manifest"])
            if r.get("in_period"):
                by_source.setdefault(r["source"], []).append(r)
    for src, rs in by_source.items():
        rs.sort(key=lambda r: (r["finished_at"], r["id"]))
        for a, b in itertools.pairwise(rs):
            if b["prev_digest"] != a["digest"]:
                res.add(
                    "runs.json",
                    f"run {b['id']} ({src}): chain broken "
                    f"(prev_digest is not the digest of run {a['id']})",
                )
    bodies_by_hash: dict[str, str] = {}
    for n, line in enumerate(data.get("evidence.jsonl", b"").decode("utf-8").splitlines(), 1):
        try:
            item = json.loads(line)
        except ValueError:
            res.add("evidence.jsonl", f"line {n}: not valid JSON")
            continue
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("body"), str)
            or not isinstance(item.get("hash"), str)
        ):
            res.add("evidence.jsonl", f"line {n}: malformed entry")
            continue
        if sha256_hex(item["body"]) != item["hash"]:
            res.add(
                "evidence.jsonl", f"line {n}: body does not match its hash {item['hash'][:12]}…"
            )
        bodies_by_hash[item["hash"]] = item["body"]
        res.evidence_bodies += 1
    for n, row in enumerate(_read_csv(data, "evidence.csv"), 2):
        if None in row.values() or None in row:
            res.add("evidence.csv", f"line {n}: malformed row")
            continue
        h = row["content_hash"]
        if h not in bodies_by_hash and row["body_removed"] != "True":
            res.add("evidence.csv", f"line {n}: body {h[:12]}… missing from evidence.jsonl")
        lines = lines_by_run.get(row["run_id"])
        if lines is None:
            res.add(
                "evidence.csv",
                f"line {n}: {row['key']}: run {row['run_id']} is not "
                "among the package's runs (no digest covers the row)",
            )
        elif f"E|{row['key']}|{h}|{row['collected_at']}" not in lines:
            res.add(
                "evidence.csv",
                f"line {n}: {row['key']} is not in the manifest of run {row['run_id']}",
            )
    for n, row in enumerate(_read_csv(data, "findings.csv"), 2):
        if None in row.values() or None in row:
            res.add("findings.csv", f"line {n}: malformed row")
            continue
        fh = finding_hash(
            {**row, "evidence_hash": row["evidence_hash"] or None, "status": row["status"] or None}
        )
        if fh != row["finding_hash"]:
            res.add(
                "findings.csv",
                f"line {n}: {row['key']}: row does not match its finding hash (altered)",
            )
        lines = lines_by_run.get(row["run_id"])
        if lines is None:
            res.add(
                "findings.csv",
                f"line {n}: {row['key']}: run {row['run_id']} is not "
                "among the package's runs (no digest covers the row)",
            )
        elif f"F|{row['key']}|{row['finding_hash']}|{row['observed_at']}" not in lines:
            res.add(
                "findings.csv",
                f"line {n}: {row['key']} is not in the manifest of run {row['run_id']}",
            )
        res.finding_rows += 1
    _verify_samples(data, res)
    for p, b in data.items():
        if p.startswith("manual/"):
            sha = p.split("/")[1]
            if hashlib.sha256(b).hexdigest() != sha:
                res.add(p, "file does not match the SHA-256 it is filed under")
    # The OSCAL chain: each file parses as its model and imports only files it holds.
    for path, reason in check_chain(data):
        res.add(path, reason)


def _verify_samples(data: Mapping[str, bytes], res: PackageCheck) -> None:
    """Each sample's population is the one it was drawn from, and the draw recomputes."""
    from store.samples import draw, population_digest

    for path in sorted(p for p in data if p.startswith("samples/") and p.endswith("/sample.json")):
        folder = path.rsplit("/", 1)[0]
        try:
            s = json.loads(data[path])
            ids = [row["item_id"] for row in _read_csv(data, f"{folder}/population.csv")]
        except (ValueError, KeyError, TypeError):
            res.add(path, "malformed sample or population")
            continue
        if population_digest(ids) != s.get("population_digest"):
            res.add(
                f"{folder}/population.csv",
                "population does not match the digest the "
                "sample was drawn from (items added, removed or changed)",
            )
            continue
        if draw(ids, str(s.get("seed")), int(s.get("size", -1))) != s.get("items"):
            res.add(path, "the items are not the draw of this seed from this population")
            continue
        res.samples_verified += 1


def _verify_run_signature(
    run: Mapping[str, Any], keys: Mapping[str, PublicKey], trusted: bool, res: PackageCheck
) -> None:
    sig, kid = run.get("signature"), run.get("key_id")
    if not sig:
        if trusted:
            res.add("runs.json", f"run {run['id']}: not signed")
        return
    key = keys.get(str(kid))
    if key is None:
        where = "the trusted keys" if trusted else "the package's signing_keys"
        res.add("runs.json", f"run {run['id']}: signed with key {kid}, not among {where}")
    elif not key.verify(RUN_DOMAIN, str(run["digest"]), sig):
        res.add("runs.json", f"run {run['id']}: signature does not match its digest")
    else:
        res.runs_signed += 1


def _verify_against_db(
    engine: Engine, data: Mapping[str, bytes], manifest: Mapping[str, Any], res: PackageCheck
) -> None:
    """Every run of the package against the database: digest, signature, and row by row
    (each run's manifest lines, one per evidence/finding version and unit)."""
    try:
        runs_json = {r["id"]: r for r in json.loads(data.get("runs.json", b"[]"))}
    except (ValueError, TypeError, KeyError):
        return  # already reported
    ids = [r["id"] for r in manifest.get("runs", [])]
    stored: dict[str, Any] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for row in conn.execute(
                select(runs.c.id, runs.c.digest, runs.c.signature).where(runs.c.id.in_(chunk))
            ):
                stored[row.id] = row
        for r in manifest.get("runs", []):
            rid = r["id"]
            if rid not in stored:
                res.add("database", f"run {rid} is not in the database")
                continue
            if stored[rid].digest != r["digest"]:
                res.add("database", f"run {rid}: stored digest differs from the package's")
            packaged = runs_json.get(rid, {})
            if (packaged.get("signature") or None) != (stored[rid].signature or None):
                res.add("database", f"run {rid}: stored signature differs from the package's")
            in_db = set(run_manifest_lines(conn, rid))
            in_pkg = set(packaged.get("manifest") or [])
            res.rows_compared += len(in_pkg)
            for line in sorted(in_pkg - in_db)[:20]:
                res.add("database", f"run {rid}: row {line} is in the package, not the database")
            for line in sorted(in_db - in_pkg)[:20]:
                res.add("database", f"run {rid}: row {line} is in the database, not the package")
