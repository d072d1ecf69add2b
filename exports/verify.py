"""Offline verification of an audit package (``annexa verify-package``): hashes, the
manifest digest and signature, every run digest and chain link recomputed, every row
against the run that wrote it, OSCAL imports, samples redrawn; and, given the database,
every run digest compared with the stored one.

Verification needs no exporter: every file a format writes is covered by the manifest
(hash and size), and the files whose content can be checked further are checked here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from core.csvsafe import restore
from core.records import sha256_hex
from core.signing import PACKAGE_DOMAIN, RUN_DOMAIN, PublicKey
from exports.exporter import MANIFEST
from exports.oscal import check_chain
from exports.package import FORMAT, manifest_digest
from store.integrity import digest_from_lines, finding_hash, run_manifest_lines
from store.schema import runs


def _csv_as_of(text_value: str | None) -> str:
    """The manifest suffix of an evidence.csv row's ``source_updated_at`` (already in the
    manifest's form; empty, or absent in a package made before migration 0007: none)."""
    return f"|as-of={text_value}" if text_value else ""


def _run_from_json(d: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for k in ("started_at", "finished_at"):
        v = d[k]
        out[k] = None if v in (None, "-") else _parse_ts(v)
    return out


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
    for n, row in _well_formed(data, "evidence.csv", res):
        h = row["content_hash"]
        if h not in bodies_by_hash and row["body_removed"] != "True":
            res.add("evidence.csv", f"line {n}: body {h[:12]}… missing from evidence.jsonl")
        manifest_line = (
            f"E|{row['key']}|{h}|{row['collected_at']}"
            f"{_csv_as_of(row.get('source_updated_at'))}"
        )
        _check_in_manifest(res, "evidence.csv", n, row, lines_by_run, manifest_line)
    for n, row in _well_formed(data, "findings.csv", res):
        fh = finding_hash(
            {**row, "evidence_hash": row["evidence_hash"] or None, "status": row["status"] or None}
        )
        if fh != row["finding_hash"]:
            res.add(
                "findings.csv",
                f"line {n}: {row['key']}: row does not match its finding hash (altered)",
            )
        manifest_line = f"F|{row['key']}|{row['finding_hash']}|{row['observed_at']}"
        _check_in_manifest(res, "findings.csv", n, row, lines_by_run, manifest_line)
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


def _well_formed(
    data: Mapping[str, bytes], name: str, res: PackageCheck
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of each row of the CSV file ``name``; a malformed row (too
    many or too few fields) is reported and skipped."""
    for n, row in enumerate(_read_csv(data, name), 2):
        if None in row.values() or None in row:
            res.add(name, f"line {n}: malformed row")
            continue
        yield n, row


def _check_in_manifest(
    res: PackageCheck,
    name: str,
    n: int,
    row: Mapping[str, Any],
    lines_by_run: Mapping[str, set[str]],
    manifest_line: str,
) -> None:
    """Report the row unless its run is among the package's and that run's signed
    manifest holds ``manifest_line`` (what the row claims the run wrote)."""
    lines = lines_by_run.get(row["run_id"])
    if lines is None:
        res.add(
            name,
            f"line {n}: {row['key']}: run {row['run_id']} is not "
            "among the package's runs (no digest covers the row)",
        )
    elif manifest_line not in lines:
        res.add(name, f"line {n}: {row['key']} is not in the manifest of run {row['run_id']}")


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
