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
    <plugin files>         what each format registered in ``annexa.exporters`` writes

Each group of files is written by one format (:mod:`exports.formats`, registered in
:mod:`exports.registry`); this module gathers what they share once for the period,
runs them in order, lists every file in the manifest with the format that wrote it,
signs the manifest and writes the zip.

``verify-package`` (:mod:`exports.verify`) checks, offline: every file's hash and size,
no unlisted file, the manifest digest, each in-period run's digest recomputed from its
manifest lines and its chain link to the previous run, every evidence body against its hash, every
finding row against its finding hash, every evidence/finding version against the
manifest lines of the run that wrote it, and manual files against their hashes.
Given the database too, every listed run digest is compared with the stored one.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from core.records import canonical_json, sha256_hex, utcnow
from core.signing import PACKAGE_DOMAIN, PublicKey, Signer
from exports.exporter import MANIFEST, Exporter, ExportError, PackageContext, check_path, iso
from exports.registry import exporters as registered_exporters
from exports.soa import soa_table
from store.exceptions import ExceptionRule, exception_for
from store.integrity import digest_from_lines, run_header_fields, run_manifest_lines, ts
from store.keys import stored_keys
from store.queries import (
    bodies,
    confirmed_at,
    evidence_in_period,
    findings_in_period,
    last_ok_units,
)
from store.schema import runs
from store.status import control_statuses
from store.timelines import control_timelines
from store.timestamps import tokens

FORMAT = "annexa-audit-package/2"
TITLE = "ISO/IEC 27001:2022 audit package"
#: Manifest fields the package itself writes: no format may add one of these.
_PACKAGE_FIELDS = frozenset(
    {"format", "generated_at", "period", "agent_version", "mapping_digest", "files",
     "signing_keys", "manifest_digest", "signature"}
)


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


#: What a run's entry adds to its header: its seal.
_SEAL_FIELDS = (
    "digest",
    "prev_digest",
    "signature",
    "key_id",
)


def _run_json(run: Mapping[str, Any]) -> dict[str, Any]:
    return run_header_fields(run) | {k: run[k] for k in _SEAL_FIELDS}


def _relied_runs(
    conn: Connection, relied: set[str], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Every run finished in the period or relied on by a row of it, each verified
    against its digest and carrying its manifest lines (so every row of the package is
    checked against a digest its signature covers)."""
    in_period_q = select(runs).where(
        runs.c.digest.is_not(None), runs.c.finished_at >= start, runs.c.finished_at <= end
    )
    run_rows = {r["id"]: dict(r) for r in conn.execute(in_period_q).mappings()}
    in_period = set(run_rows)
    missing = sorted(relied - set(run_rows))
    for i in range(0, len(missing), 500):
        for r in conn.execute(select(runs).where(runs.c.id.in_(missing[i : i + 500]))).mappings():
            run_rows[r["id"]] = dict(r)
    out = []
    for run in sorted(
        run_rows.values(), key=lambda r: (r["source"], r["finished_at"] or r["started_at"], r["id"])
    ):
        if run["digest"] is None:
            raise ExportError(
                f"run {run['id']} ({run['source']}) is not sealed yet (still running?); "
                "export a period that ends before it started"
            )
        entry = _run_json(run)
        entry["in_period"] = run["id"] in in_period
        lines = run_manifest_lines(conn, run["id"])
        if digest_from_lines(run, lines) != run["digest"]:
            raise ExportError(
                f"run {run['id']} ({run['source']}) does not match its digest: "
                "run `annexa verify` before exporting"
            )
        entry["manifest"] = lines
        out.append(entry)
    return out


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


def _annotate_findings(
    fi_pop: list[dict[str, Any]],
    rules: list[ExceptionRule],
    units: Mapping[Any, datetime],
    start: datetime,
    end: datetime,
) -> None:
    """The exception that covered each version, its status as judged at the end, and for
    versions in force at the end, when their state was first observed and last
    confirmed: their own observation or a later clean read of their unit (unchanged
    items write no new row)."""
    for f in fi_pop:
        exc = _exception_during(rules, f, start, end)
        f["exception"] = exc.id if exc else None
        at_end = f["valid_to"] is None
        f["effective_status"] = (
            "excepted" if at_end and exception_for(rules, f, end) else f["status"]
        )
        if at_end:
            f["first_observed"] = f["valid_from"]
            f["last_confirmed"] = max(
                t for t in (f["observed_at"], confirmed_at(units, f)) if t is not None
            )


def _controls(
    timelines: Mapping[str, Any], statuses: list[dict[str, Any]], scope: Any
) -> list[dict[str, Any]]:
    """Statuses at the end with applicability and the period's figures per control."""
    for c in statuses:
        tl = timelines[c["control"]].as_dict()
        app = scope.controls[c["control"]]
        c["applicable"] = app.applicable
        c["justification"] = app.justification
        c["worst"] = tl["worst"]
        c["compliant_pct"] = tl["compliant_pct"]
        c["fail_hours"] = round(sum(p["hours"] for p in tl["fail_periods"]), 2)
        c["changes"] = tl["changes"]
    return statuses


def gather(
    engine: Engine,
    index: Any,
    *,
    start: datetime,
    end: datetime,
    freshness: timedelta,
    exceptions: list[ExceptionRule],
    scope: Any,
    agent_version: str,
    chart_points: int = 60,
    pdf: Callable[[bytes], bytes] | None = None,
) -> tuple[PackageContext, dict[str, PublicKey]]:
    """Read once what the formats share for ``[start, end]`` (and the stored keys)."""
    generated = utcnow()
    with engine.connect() as conn:
        ev_pop = evidence_in_period(conn, start, end)
        fi_pop = findings_in_period(conn, start, end)
        relied = {v["run_id"] for v in ev_pop} | {f["run_id"] for f in fi_pop}
        runs_json = _relied_runs(conn, relied, start, end)
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
        stored = bodies(conn, {v["content_hash"] for v in ev_pop})
        units = last_ok_units(conn, end)
    for v in ev_pop:
        v["body_removed"] = v["content_hash"] not in stored
    _annotate_findings(fi_pop, exceptions, units, start, end)
    timelines = control_timelines(engine, index, start, end, freshness, exceptions=exceptions)
    statuses = _controls(
        timelines,
        [
            c.as_dict()
            for c in control_statuses(engine, index, end, freshness, exceptions=exceptions)
        ],
        scope,
    )
    ctx = PackageContext(
        engine=engine,
        index=index,
        scope=scope,
        start=start,
        end=end,
        generated=generated,
        agent_version=agent_version,
        freshness=freshness,
        title=TITLE,
        chart_points=chart_points,
        exceptions=exceptions,
        runs=runs_json,
        stamps=stamps,
        evidence_versions=ev_pop,
        finding_versions=fi_pop,
        bodies=stored,
        timelines=timelines,
        controls=statuses,
        soa=soa_table(statuses, scope, as_of=end),
        # Decisions as recorded (store/decisions.py): each with when it was recorded and
        # revoked, and whether its approval date is earlier than its recording.
        exceptions_in_period=[
            r.as_dict()
            for r in exceptions
            if r.effective_from is None or (r.effective_from <= end and r.effective_until > start)
        ],
        pdf=pdf,
    )
    return ctx, key_rows


def compose(
    ctx: PackageContext, formats: list[Exporter]
) -> tuple[dict[str, bytes], dict[str, str], dict[str, Any]]:
    """Run every format in order: the files, which format wrote each, and the manifest
    entries the formats add. Two formats writing one path, or a format adding a field
    the package or another format owns, is an :class:`ExportError`."""
    files: dict[str, bytes] = {}
    owner: dict[str, str] = {}
    extra: dict[str, Any] = {}
    extra_owner: dict[str, str] = {}
    for fmt in formats:
        ctx.files = files
        written = dict(fmt.write(ctx))
        for path, data in written.items():
            check_path(fmt.name, path)
            if path in owner:
                raise ExportError(
                    f"exporters {owner[path]!r} and {fmt.name!r} both write {path!r}"
                )
            if not isinstance(data, bytes):
                raise ExportError(f"exporter {fmt.name!r} writes {path!r} as {type(data)}, "
                                  "not bytes")
            files[path] = data
            owner[path] = fmt.name
        for key, value in fmt.manifest(ctx, written).items():
            if key in _PACKAGE_FIELDS or key in extra_owner:
                taken = extra_owner.get(key, "the package")
                raise ExportError(
                    f"exporter {fmt.name!r} adds manifest field {key!r}, which {taken} owns"
                )
            extra[key] = value
            extra_owner[key] = fmt.name
    ctx.files = files
    return files, owner, extra


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 over the manifest without its own digest and signature (which covers it)."""
    body = {k: v for k, v in manifest.items() if k not in ("manifest_digest", "signature")}
    return sha256_hex(canonical_json(body))


def _manifest(
    ctx: PackageContext,
    files: Mapping[str, bytes],
    owner: Mapping[str, str],
    extra: Mapping[str, Any],
    key_rows: dict[str, PublicKey],
    signer: Signer | None,
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "generated_at": iso(ctx.generated),
        "period": {"start": iso(ctx.start), "end": iso(ctx.end)},
        "agent_version": ctx.agent_version,
        "mapping_digest": ctx.index.digest,
        "files": [
            {
                "path": p,
                "sha256": hashlib.sha256(b).hexdigest(),
                "size": len(b),
                "exporter": owner[p],
            }
            for p, b in sorted(files.items())
        ],
        **extra,
    }
    used = {r["key_id"] for r in ctx.runs if r.get("key_id")}
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
    return manifest


def _write_zip(out: Path, files: Mapping[str, bytes]) -> None:
    """Entries in a fixed order with a fixed date (same content → same bytes), written
    beside ``out`` and renamed into place (a reader never sees half a package)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in [MANIFEST, *sorted(k for k in files if k != MANIFEST)]:
            info = zipfile.ZipInfo(p, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[p])
    tmp.replace(out)


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
    formats: list[Exporter] | None = None,
) -> PackageSummary:
    """Write the audit package for ``[start, end]`` to ``out`` (a .zip).

    ``formats``: the exporters to run (default: every registered one,
    :func:`exports.registry.exporters`).
    """
    ctx, key_rows = gather(
        engine,
        index,
        start=start,
        end=end,
        freshness=freshness,
        exceptions=exceptions,
        scope=scope,
        agent_version=agent_version,
        chart_points=chart_points,
        pdf=pdf,
    )
    files, owner, extra = compose(ctx, registered_exporters() if formats is None else formats)
    manifest = _manifest(ctx, files, owner, extra, key_rows, signer)
    _write_zip(out, {**files, MANIFEST: json.dumps(manifest, indent=2, sort_keys=True).encode()})
    return PackageSummary(
        path=out,
        files=len(files) + 1,
        size=out.stat().st_size,
        runs=len(ctx.runs),
        evidence_versions=len(ctx.evidence_versions),
        finding_versions=len(ctx.finding_versions),
        manifest_digest=manifest["manifest_digest"],
    )
