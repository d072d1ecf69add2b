"""Tamper evidence: each run's digest over its sorted manifest, chained per source.

A run's digest is ``sha256(prev_digest, run header, manifest)`` where the manifest is
every row the run wrote — evidence versions, finding versions, unit outcomes — as
``(kind, key, content hash, timestamp)`` lines sorted by key (an evidence line also
carries the source's as-of time when not NULL, and a unit with a ``source_as_of`` is a
``V`` line: migration 0007; a row without one hashes exactly as before, so older seals
verify).
Content hashes are recomputed from the stored bodies, so rewriting a body, a row, or a run's header
breaks the digest of the run that wrote it; deleting or re-ordering runs breaks the
chain. ``verify`` walks every source's chain and names the first run that breaks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, String, exists, func, or_, select, type_coerce

from core.records import sha256_hex
from core.signing import RETENTION_DOMAIN, RUN_DOMAIN, PublicKey
from store.keys import stored_keys
from store.retention import entry_message, removable_hashes
from store.schema import (
    blobs,
    evidence,
    findings,
    retention_log,
    run_units,
    runs,
)

GENESIS = "0" * 64
# Datetimes make orjson raise, as they make json.dumps raise: a finding's fields are text.
_FINDING_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def ts(value: datetime | None) -> str:
    """A timestamp as it enters a digest: UTC, microseconds, fixed width."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: The columns of a run its header, and so its digest, covers.
RUN_HEADER_FIELDS = (
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
)


def finding_hash(row: dict[str, Any]) -> str:
    """Content hash of a finding version (every column that carries meaning)."""
    # A literal, not a comprehension over the names: this runs for every finding written.
    fields = {
        "check_id": row["check_id"],
        "key": row["key"],
        "status": row["status"],
        "severity": row["severity"],
        "message": row["message"],
        "evidence_hash": row["evidence_hash"],
        "controls": row["controls"],
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"],
    }
    try:
        fast = orjson.dumps(fields, option=_FINDING_OPTIONS)
    except TypeError:
        fast = b"\x7f"  # a value orjson will not write: take json's word for it below
    # For ASCII text orjson writes exactly what json.dumps(ensure_ascii=True) writes,
    # except DEL, which json escapes; anything else goes through json as it always has.
    if fast.isascii() and b"\x7f" not in fast:
        return hashlib.sha256(fast).hexdigest()
    return sha256_hex(json.dumps(fields, sort_keys=True, separators=(",", ":")))


def run_header_fields(run: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`RUN_HEADER_FIELDS` of ``run``, its times as they enter the digest."""
    header = {k: run[k] for k in RUN_HEADER_FIELDS}
    header["started_at"] = ts(run["started_at"])
    header["finished_at"] = ts(run["finished_at"])
    return header


def run_header(run: Mapping[str, Any]) -> str:
    """The signed run header: its :func:`run_header_fields` as canonical JSON."""
    return json.dumps(run_header_fields(run), sort_keys=True, separators=(",", ":"))


def _sorted_by_key(conn: Connection, column: Any) -> Any:
    # PostgreSQL sorts text by locale unless told otherwise; the digest needs bytes order.
    return column.collate("C") if conn.dialect.name == "postgresql" else column


@dataclass
class ManifestProblem:
    run_id: str
    reason: str


@dataclass
class _Manifest:
    hasher: Any = field(default_factory=hashlib.sha256)
    problems: list[str] = field(default_factory=list)
    #: Rows per table ("evidence", "findings", "run_units") and their greatest id.
    rows: dict[str, int] = field(default_factory=dict)
    max_id: dict[str, int] = field(default_factory=dict)

    def count(self, table: str, row_id: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + 1
        if row_id > self.max_id.get(table, 0):
            self.max_id[table] = row_id

    def line(self, text: str) -> None:
        self.hasher.update(text.encode("utf-8"))
        self.hasher.update(b"\n")

    def lines(self, texts: Iterable[str]) -> None:
        """``line`` for each of ``texts``, hashed a few thousand at a time (same digest)."""
        chunk: list[str] = []
        for t in texts:
            chunk.append(t)
            if len(chunk) == 4096:
                self.hasher.update(("\n".join(chunk) + "\n").encode("utf-8"))
                chunk = []
        if chunk:
            self.hasher.update(("\n".join(chunk) + "\n").encode("utf-8"))


_SQLITE_STAMP = re.compile(r"[1-9]\d{3}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")


def _stamp(conn: Connection, column: Any) -> tuple[Any, Callable[[Any], str]]:
    """The column to select for a manifest timestamp, and how to write it in a line.

    SQLite keeps SQLAlchemy's text form, ``2026-03-01 12:00:00.123456``: parsing it into
    a datetime only to format it again was half the cost of sealing a large run. The
    text is rewritten to what ``ts`` makes of the parsed value; anything else (a row
    written by other means) is parsed as before, so the line never differs.
    """
    if conn.dialect.name != "sqlite":
        return column, ts
    parse = column.type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)

    def fmt(raw: Any) -> str:
        if type(raw) is str and len(raw) == 26 and _SQLITE_STAMP.fullmatch(raw):
            return f"{raw[:10]}T{raw[11:]}Z"
        return ts(parse(raw) if parse is not None and raw is not None else raw)

    return type_coerce(column, String).label(column.name), fmt


# Manifests are read in chunks (a server-side cursor on PostgreSQL), so sealing or
# verifying a run of any size needs the same memory.
_STREAM = {"yield_per": 2000}


def _manifest_lines(conn: Connection, run_id: str, check_bodies: bool) -> _Manifest:
    m = _Manifest()
    ev_cols = [
        evidence.c.key,
        evidence.c.content_hash,
        evidence.c.collected_at,
        evidence.c.source_updated_at,
    ]
    order = (_sorted_by_key(conn, evidence.c.key), evidence.c.id)
    if check_bodies:
        # A body removed by `annexa retention` is acceptable: its removal is logged.
        retained = exists().where(retention_log.c.hash == evidence.c.content_hash)
        ev = (
            select(*ev_cols, blobs.c.body, retained, evidence.c.id)
            .select_from(evidence.outerjoin(blobs, blobs.c.hash == evidence.c.content_hash))
            .where(evidence.c.run_id == run_id)
            .order_by(*order)
        )
        for key, chash, collected_at, as_of, body, was_retained, row_id in conn.execute(
            ev, execution_options=_STREAM
        ):
            m.count("evidence", row_id)
            if chash is not None:
                if body is None and was_retained:
                    pass
                elif body is None:
                    m.problems.append(f"evidence {key}: body {chash[:12]}… is missing")
                elif sha256_hex(body) != chash:
                    m.problems.append(f"evidence {key}: body does not match its hash {chash[:12]}…")
            m.line(f"E|{key}|{chash or '-'}|{ts(collected_at)}{as_of_suffix(ts, as_of)}")
    else:
        # Sealing needs the hashes only: the bodies are neither read nor joined.
        stamp, fmt = _stamp(conn, evidence.c.collected_at)
        as_of_stamp, as_of_fmt = _stamp(conn, evidence.c.source_updated_at)
        ev = select(evidence.c.key, evidence.c.content_hash, stamp, as_of_stamp, evidence.c.id)
        ev = ev.where(evidence.c.run_id == run_id).order_by(*order)

        def ev_lines() -> Iterator[str]:
            for key, chash, at, as_of, row_id in conn.execute(ev, execution_options=_STREAM):
                m.count("evidence", row_id)
                yield f"E|{key}|{chash or '-'}|{fmt(at)}{as_of_suffix(as_of_fmt, as_of)}"

        m.lines(ev_lines())
    fi_order = (_sorted_by_key(conn, findings.c.key), findings.c.id)
    if check_bodies:
        fq = select(findings).where(findings.c.run_id == run_id).order_by(*fi_order)
        for row in conn.execute(fq, execution_options=_STREAM).mappings():
            m.count("findings", row["id"])
            if finding_hash(dict(row)) != row["finding_hash"]:
                m.problems.append(f"finding {row['key']}: row does not match its hash")
            m.line(f"F|{row['key']}|{row['finding_hash']}|{ts(row['observed_at'])}")
    else:
        stamp, fmt = _stamp(conn, findings.c.observed_at)
        fq = (
            select(findings.c.key, findings.c.finding_hash, stamp, findings.c.id)
            .where(findings.c.run_id == run_id)
            .order_by(*fi_order)
        )

        def fi_lines() -> Iterator[str]:
            for key, fhash, at, row_id in conn.execute(fq, execution_options=_STREAM):
                m.count("findings", row_id)
                yield f"F|{key}|{fhash}|{fmt(at)}"

        m.lines(fi_lines())
    uq = (
        select(run_units)
        .where(run_units.c.run_id == run_id)
        .order_by(run_units.c.scope, run_units.c.region, run_units.c.service, run_units.c.id)
    )
    for u in conn.execute(uq).mappings():
        m.count("run_units", u["id"])
        m.line(unit_line(u))
    return m


def as_of_suffix(fmt: Callable[[Any], str], value: Any) -> str:
    """A manifest line's as-of suffix: nothing when NULL (every row sealed before
    migration 0007), so those lines, and the digests over them, are unchanged."""
    return "" if value is None else f"|as-of={fmt(value)}"


def unit_line(u: Mapping[str, Any]) -> str:
    """A ``run_units`` row's manifest line. A unit read from an inventory (``source_as_of``
    set, migration 0007) is a ``V`` line with the as-of *before* the free-text error, so
    no error text can make a ``U`` line (as-of NULL) hash like it; a ``U`` line is
    exactly what it was before 0007."""
    unit = f"{u['scope']}/{u['region']}/{u['service']}|{int(bool(u['ok']))}"
    if u["source_as_of"] is None:
        return f"U|{unit}|{u['error'] or ''}"
    return f"V|{unit}|{ts(u['source_as_of'])}|{u['error'] or ''}"


def compute_digest(conn: Connection, run: dict[str, Any], prev_digest: str) -> str:
    """The digest of ``run`` as stored now, chained to ``prev_digest``."""
    m = _manifest_lines(conn, run["id"], check_bodies=False)
    return _combine(prev_digest, run, m)


def seal_manifest(conn: Connection, run_id: str) -> _Manifest:
    """The manifest a seal is computed over, with its row counts and greatest ids.

    The seal writes those into the run's ``counts`` (``rows``, ``max_id``), inside the
    signed header: a row added under the run id after sealing is then named by
    ``verify`` (its id is above the sealed maximum), not only detected.
    """
    return _manifest_lines(conn, run_id, check_bodies=False)


def digest_of(prev_digest: str, run: dict[str, Any], m: _Manifest) -> str:
    return _combine(prev_digest, run, m)


def _combine(prev_digest: str, run: dict[str, Any], m: _Manifest) -> str:
    outer = hashlib.sha256()
    outer.update(prev_digest.encode())
    outer.update(b"\n")
    outer.update(run_header(run).encode("utf-8"))
    outer.update(b"\n")
    outer.update(m.hasher.hexdigest().encode())
    return outer.hexdigest()


def last_digest(conn: Connection, source: str, exclude_run: str | None = None) -> str:
    """Digest of the latest sealed run of ``source`` (the chain's current head)."""
    q = (
        select(runs.c.digest)
        .where(runs.c.source == source, runs.c.digest.is_not(None))
        .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
        .limit(1)
    )
    if exclude_run is not None:
        q = q.where(runs.c.id != exclude_run)
    found = conn.execute(q).scalar()
    return found or GENESIS


@dataclass
class VerifyResult:
    runs_checked: int = 0
    sources: int = 0
    problems: list[ManifestProblem] = field(default_factory=list)
    #: Runs still ``running``: (run id, source, heartbeat, rows, live).
    unsealed: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)
    #: Sealed runs without a signature (a problem only with trusted keys).
    unsigned: int = 0
    signed: int = 0
    keys_used: set[str] = field(default_factory=set)
    retention_checked: int = 0
    timestamps_checked: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken_run(self) -> str | None:
        return self.problems[0].run_id if self.problems else None


def _sealed_runs(conn: Connection, source: str) -> Iterator[dict[str, Any]]:
    q = (
        select(runs)
        .where(runs.c.source == source, runs.c.digest.is_not(None))
        .order_by(runs.c.finished_at, runs.c.id)
    )
    for row in conn.execute(q).mappings():
        yield dict(row)


_ROW_TABLES = {"evidence": evidence, "findings": findings, "run_units": run_units}
#: How many offending rows are named per run and table before the rest are counted.
NAMED_ROWS = 20


def _row_label(table: str, row: Any) -> str:
    key = getattr(row, "key", None)
    if key is None:
        key = f"{row.scope}/{row.region}/{row.service}"
    return f"{table} row {row.id} ({key})"


def _outside_sealed_runs(conn: Connection, result: VerifyResult, live_ok: set[str]) -> None:
    """Rows whose run is unknown (orphans) or not sealed: never evidence, always named."""
    sealed_ids = select(runs.c.id).where(runs.c.digest.is_not(None))
    known_ids = select(runs.c.id)
    for name, table in _ROW_TABLES.items():
        cols = [table.c.id, table.c.run_id]
        cols.append(table.c.key if "key" in table.c else table.c.scope)
        if "key" not in table.c:
            cols += [table.c.region, table.c.service]
        orphans = conn.execute(
            select(*cols).where(table.c.run_id.not_in(known_ids)).order_by(table.c.id)
        ).all()
        by_run: dict[str, list[Any]] = {}
        for row in orphans:
            by_run.setdefault(row.run_id, []).append(row)
        for run_id, rows in by_run.items():
            named = ", ".join(_row_label(name, r) for r in rows[:NAMED_ROWS])
            more = f" and {len(rows) - NAMED_ROWS} more" if len(rows) > NAMED_ROWS else ""
            result.problems.append(
                ManifestProblem(
                    run_id,
                    f"{len(rows)} {name} row(s) under a run id that is not in runs "
                    f"(orphans, counted by no digest): {named}{more}",
                )
            )
        unsealed = conn.execute(
            select(table.c.run_id, func.count())
            .where(table.c.run_id.in_(known_ids), table.c.run_id.not_in(sealed_ids))
            .group_by(table.c.run_id)
        ).all()
        for run_id, n in unsealed:
            if run_id in live_ok:
                continue
            sample = conn.execute(
                select(*cols).where(table.c.run_id == run_id).order_by(table.c.id).limit(3)
            ).all()
            named = ", ".join(_row_label(name, r) for r in sample)
            result.problems.append(
                ManifestProblem(
                    run_id,
                    f"{n} {name} row(s) of a run that is not sealed (no digest covers them; "
                    f"they count for no control): {named}{' …' if n > 3 else ''}",
                )
            )


def _after_seal(conn: Connection, run: Mapping[str, Any], m: _Manifest) -> list[str]:
    """Rows under a sealed run beyond what its signed header says it sealed."""
    try:
        counts = json.loads(run["counts"] or "{}")
    except ValueError:
        return ["counts in the run header are not JSON"]
    sealed_rows, sealed_max = counts.get("rows"), counts.get("max_id")
    if not isinstance(sealed_rows, dict) or not isinstance(sealed_max, dict):
        return []  # sealed before row counts were recorded (schema 0003)
    out = []
    for name, table in _ROW_TABLES.items():
        have, had = m.rows.get(name, 0), int(sealed_rows.get(name, 0))
        if have == had and m.max_id.get(name, 0) <= int(sealed_max.get(name, 0)):
            continue
        cols = [table.c.id, table.c.key if "key" in table.c else table.c.scope]
        if "key" not in table.c:
            cols += [table.c.region, table.c.service]
        late = conn.execute(
            select(*cols)
            .where(table.c.run_id == run["id"], table.c.id > int(sealed_max.get(name, 0)))
            .order_by(table.c.id)
            .limit(NAMED_ROWS)
        ).all()
        named = ", ".join(_row_label(name, r) for r in late) or "ids within the sealed range"
        out.append(
            f"{name}: {have} row(s) where the signed header sealed {had}; rows its digest "
            f"does not cover: {named}"
        )
    return out


def _judged_elsewhere(conn: Connection, run_id: str) -> list[str]:
    """Finding rows whose ``evidence_id`` names a version other than the one judged.

    ``evidence_id`` (migration 0005) is outside the finding hash, so that no digest
    changed; it must therefore agree with what the hash does cover: the evidence row it
    names has the finding's ``evidence_hash`` and source.
    """
    e = evidence.alias("e")
    q = (
        select(findings.c.id, findings.c.key, findings.c.evidence_id)
        .select_from(findings.outerjoin(e, e.c.id == findings.c.evidence_id))
        .where(
            findings.c.run_id == run_id,
            findings.c.evidence_id.is_not(None),
            or_(
                e.c.id.is_(None),
                e.c.source != findings.c.source,
                e.c.content_hash.is_distinct_from(findings.c.evidence_hash),
            ),
        )
        .order_by(findings.c.id)
        .limit(NAMED_ROWS)
    )
    return [
        f"finding {key} (row {fid}): evidence_id {eid} is not a version of its source with "
        "the evidence hash the finding was judged on"
        for fid, key, eid in conn.execute(q)
    ]


def _signature_problem(
    run: Mapping[str, Any],
    trusted: Mapping[str, PublicKey] | None,
    recorded: Mapping[str, PublicKey],
    result: VerifyResult,
) -> str | None:
    signature, kid = run.get("signature"), run.get("key_id")
    if not signature:
        result.unsigned += 1
        return "not signed (sealed without a signing key)" if trusted is not None else None
    result.signed += 1
    result.keys_used.add(str(kid))
    keys = trusted if trusted is not None else recorded
    key = keys.get(str(kid))
    if key is None:
        where = "the trusted keys" if trusted is not None else "the store's signing_keys"
        return f"signed with key {kid}, which is not among {where}"
    if not key.verify(RUN_DOMAIN, str(run["digest"]), signature):
        return f"signature by key {kid} does not match the run's digest (forged or altered)"
    return None


def _verify_retention(
    conn: Connection,
    result: VerifyResult,
    trusted: Mapping[str, PublicKey] | None,
    recorded: Mapping[str, PublicKey],
    keep: timedelta | None,
) -> None:
    """Every removal must be signed and must have removed only what its rule allowed.

    A body may go only when no version of a sealed run used it at or after the entry's
    cutoff, and (with ``keep``, the configured minimum) the cutoff is at least that far
    before the removal. A forged entry therefore cannot delete a body still in force.
    """
    entries = list(conn.execute(select(retention_log).order_by(retention_log.c.id)).mappings())
    allowed: dict[datetime, set[str]] = {}
    for e in entries:
        result.retention_checked += 1
        label = f"retention#{e['id']}"
        what = f"removal of body {e['hash'][:12]}… on {ts(e['removed_at'])}"
        if e["cutoff"] not in allowed:
            allowed[e["cutoff"]] = removable_hashes(conn, e["cutoff"])
        if e["hash"] not in allowed[e["cutoff"]]:
            result.problems.append(
                ManifestProblem(
                    label,
                    f"{what}: the body was still in force at or after the entry's cutoff "
                    f"{ts(e['cutoff'])} (a forged retention entry)",
                )
            )
        if keep is not None and e["cutoff"] > e["removed_at"] - keep:
            result.problems.append(
                ManifestProblem(
                    label,
                    f"{what}: cutoff {ts(e['cutoff'])} keeps less than the configured "
                    f"minimum retention ({keep.days} days)",
                )
            )
        if not e["signature"]:
            if trusted is not None:
                result.problems.append(ManifestProblem(label, f"{what}: not signed"))
            continue
        keys = trusted if trusted is not None else recorded
        key = keys.get(str(e["key_id"]))
        if key is None or not key.verify(RETENTION_DOMAIN, entry_message(e), e["signature"]):
            reason = "an unknown key" if key is None else "a signature that does not match"
            result.problems.append(ManifestProblem(label, f"{what}: {reason} ({e['key_id']})"))


def _verify_timestamps(conn: Connection, result: VerifyResult, roots: list[Any]) -> None:
    """Each RFC 3161 token must vouch, under a trusted TSA root, for its run's digest, at
    a time no earlier than the run was sealed."""
    from core.timestamping import TimestampError, run_message, verify_token
    from store.timestamps import tokens

    for t in tokens(conn):
        result.timestamps_checked += 1
        if t["run_digest"] is None or t["run_digest"] != t["digest"]:
            result.problems.append(
                ManifestProblem(t["run_id"], "time stamp covers a digest the run does not have")
            )
            continue
        try:
            when = verify_token(t["token"], run_message(t["digest"]), roots)
        except TimestampError as exc:
            result.problems.append(
                ManifestProblem(t["run_id"], f"time stamp by {t['tsa']} does not verify: {exc}")
            )
            continue
        if when - t["run_finished_at"] > timedelta(days=1):
            result.warnings.append(
                f"run {t['run_id']} was sealed {ts(t['run_finished_at'])} but time-stamped "
                f"only {ts(when)}: the token proves it existed then, not earlier"
            )
        if when + timedelta(minutes=5) < t["run_finished_at"]:
            result.problems.append(
                ManifestProblem(
                    t["run_id"],
                    f"time stamp {ts(when)} is earlier than the run's seal "
                    f"{ts(t['run_finished_at'])} (the run was altered or back-dated)",
                )
            )


def verify(
    engine: Engine,
    *,
    trusted_keys: Mapping[str, PublicKey] | None = None,
    retention_keep: timedelta | None = None,
    allow_running: timedelta | None = None,
    tsa_roots: list[Any] | None = None,
    check_signatures: bool = True,
) -> VerifyResult:
    """Recompute every chain from the stored rows; report each run and row that breaks.

    Beyond the chains: rows outside sealed runs (orphans, unsealed runs) and rows added
    under a sealed run are named; each run's signature is checked against
    ``trusted_keys`` (or, as a self-check only, the keys the store recorded); each
    retention entry is checked against the evidence it removed and ``retention_keep``.
    ``allow_running``: a run whose heartbeat is younger than this (and not in the
    future) is reported as in progress rather than as a problem.
    ``check_signatures=False`` skips run signatures (benchmarks/trust.py measures their
    cost against it); never use it to judge a store.
    """
    result = VerifyResult()
    with engine.connect() as conn:
        recorded = stored_keys(conn)
        now = datetime.now(UTC)
        live_ok: set[str] = set()
        for r in conn.execute(
            select(runs.c.id, runs.c.source, runs.c.heartbeat_at).where(runs.c.digest.is_(None))
        ):
            result.unsealed.append(r.id)
            beat = r.heartbeat_at
            if (
                allow_running is not None
                and beat is not None
                and now - allow_running <= beat <= now + timedelta(seconds=5)
            ):
                live_ok.add(r.id)
                result.in_progress.append(r.id)
        _outside_sealed_runs(conn, result, live_ok)
        sources = [
            r[0] for r in conn.execute(select(runs.c.source).distinct().order_by(runs.c.source))
        ]
        result.sources = len(sources)
        for source in sources:
            prev = GENESIS
            for run in _sealed_runs(conn, source):
                result.runs_checked += 1
                if run["prev_digest"] != prev:
                    result.problems.append(
                        ManifestProblem(
                            run["id"],
                            "chain broken: prev_digest does not match "
                            "the digest of the run before it (a run was removed "
                            "or altered)",
                        )
                    )
                m = _manifest_lines(conn, run["id"], check_bodies=True)
                m.problems += _judged_elsewhere(conn, run["id"])
                for p in m.problems:
                    result.problems.append(ManifestProblem(run["id"], p))
                if _combine(run["prev_digest"] or GENESIS, run, m) != run["digest"]:
                    result.problems.append(
                        ManifestProblem(
                            run["id"],
                            "digest mismatch: rows written by this run or its header were altered",
                        )
                    )
                for p in _after_seal(conn, run, m):
                    result.problems.append(ManifestProblem(run["id"], p))
                sig = (
                    _signature_problem(run, trusted_keys, recorded, result)
                    if check_signatures
                    else None
                )
                if sig:
                    result.problems.append(ManifestProblem(run["id"], sig))
                prev = run["digest"]
        _verify_retention(conn, result, trusted_keys, recorded, retention_keep)
        if tsa_roots is not None:
            _verify_timestamps(conn, result, tsa_roots)
    if result.unsigned and trusted_keys is None:
        result.warnings.append(
            f"{result.unsigned} run(s) are not signed: configure [signing] key so that a "
            "database writer cannot forge runs (see docs/threat-model.md)"
        )
    if trusted_keys is None and result.signed:
        result.warnings.append(
            "signatures were checked against the keys recorded in the database, which its "
            "writers can add to: pass --trusted-keys with the keys you keep for assurance"
        )
    return result


def run_manifest_lines(conn: Connection, run_id: str) -> list[str]:
    """The lines a run's digest is computed over (same order as store.integrity)."""
    lines: list[str] = []
    eq = (
        select(
            evidence.c.key,
            evidence.c.content_hash,
            evidence.c.collected_at,
            evidence.c.source_updated_at,
        )
        .where(evidence.c.run_id == run_id)
        .order_by(_sorted_by_key(conn, evidence.c.key), evidence.c.id)
    )
    for key, chash, collected_at, as_of in conn.execute(eq):
        lines.append(f"E|{key}|{chash or '-'}|{ts(collected_at)}{as_of_suffix(ts, as_of)}")
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
        lines.append(unit_line(u))
    return lines


def digest_from_lines(run: Mapping[str, Any], lines: Iterable[str]) -> str:
    """A run's digest from its header and manifest lines (what ``verify`` computes)."""
    m = _Manifest()
    for line in lines:
        m.line(line)
    return _combine(run["prev_digest"] or GENESIS, dict(run), m)
