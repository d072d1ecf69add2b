"""Tamper evidence: each run's digest over its sorted manifest, chained per source.

A run's digest is ``sha256(prev_digest, run header, manifest)`` where the manifest is
every row the run wrote — evidence versions, finding versions, unit outcomes — as
``(kind, key, content hash, timestamp)`` lines sorted by key. Content hashes are
recomputed from the stored bodies, so rewriting a body, a row, or a run's header
breaks the digest of the run that wrote it; deleting or re-ordering runs breaks the
chain. ``verify`` walks every source's chain and names the first run that breaks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, String, exists, select, type_coerce

from connectors.records import sha256_hex
from store.retention import retention_log
from store.schema import blobs, evidence, findings, run_units, runs

GENESIS = "0" * 64
# Datetimes make orjson raise, as they make json.dumps raise: a finding's fields are text.
_FINDING_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def ts(value: datetime | None) -> str:
    """A timestamp as it enters a digest: UTC, microseconds, fixed width."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def finding_hash(row: dict[str, Any]) -> str:
    """Content hash of a finding version (every column that carries meaning)."""
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


def run_header(run: dict[str, Any]) -> str:
    header = {
        "id": run["id"],
        "source": run["source"],
        "connector_type": run["connector_type"],
        "status": run["status"],
        "started_at": ts(run["started_at"]),
        "finished_at": ts(run["finished_at"]),
        "agent_version": run["agent_version"],
        "config_digest": run["config_digest"],
        "mapping_digest": run["mapping_digest"],
        "counts": run["counts"],
        "errors": run["errors"],
    }
    return json.dumps(header, sort_keys=True, separators=(",", ":"))


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
    ev_cols = [evidence.c.key, evidence.c.content_hash, evidence.c.collected_at]
    order = (_sorted_by_key(conn, evidence.c.key), evidence.c.id)
    if check_bodies:
        # A body removed by `annexa retention` is acceptable: its removal is logged.
        retained = exists().where(retention_log.c.hash == evidence.c.content_hash)
        ev = (
            select(*ev_cols, blobs.c.body, retained)
            .select_from(evidence.outerjoin(blobs, blobs.c.hash == evidence.c.content_hash))
            .where(evidence.c.run_id == run_id)
            .order_by(*order)
        )
        for key, chash, collected_at, body, was_retained in conn.execute(
            ev, execution_options=_STREAM
        ):
            if chash is not None:
                if body is None and was_retained:
                    pass
                elif body is None:
                    m.problems.append(f"evidence {key}: body {chash[:12]}… is missing")
                elif sha256_hex(body) != chash:
                    m.problems.append(
                        f"evidence {key}: body does not match its hash {chash[:12]}…"
                    )
            m.line(f"E|{key}|{chash or '-'}|{ts(collected_at)}")
    else:
        # Sealing needs the hashes only: the bodies are neither read nor joined.
        stamp, fmt = _stamp(conn, evidence.c.collected_at)
        ev = select(evidence.c.key, evidence.c.content_hash, stamp)
        ev = ev.where(evidence.c.run_id == run_id).order_by(*order)
        m.lines(
            f"E|{key}|{chash or '-'}|{fmt(at)}"
            for key, chash, at in conn.execute(ev, execution_options=_STREAM)
        )
    fi_order = (_sorted_by_key(conn, findings.c.key), findings.c.id)
    if check_bodies:
        fq = select(findings).where(findings.c.run_id == run_id).order_by(*fi_order)
        for row in conn.execute(fq, execution_options=_STREAM).mappings():
            if finding_hash(dict(row)) != row["finding_hash"]:
                m.problems.append(f"finding {row['key']}: row does not match its hash")
            m.line(f"F|{row['key']}|{row['finding_hash']}|{ts(row['observed_at'])}")
    else:
        stamp, fmt = _stamp(conn, findings.c.observed_at)
        fq = (
            select(findings.c.key, findings.c.finding_hash, stamp)
            .where(findings.c.run_id == run_id)
            .order_by(*fi_order)
        )
        m.lines(
            f"F|{key}|{fhash}|{fmt(at)}"
            for key, fhash, at in conn.execute(fq, execution_options=_STREAM)
        )
    uq = (
        select(run_units)
        .where(run_units.c.run_id == run_id)
        .order_by(run_units.c.scope, run_units.c.region, run_units.c.service, run_units.c.id)
    )
    for u in conn.execute(uq).mappings():
        m.line(
            f"U|{u['scope']}/{u['region']}/{u['service']}|{int(bool(u['ok']))}|{u['error'] or ''}"
        )
    return m


def compute_digest(conn: Connection, run: dict[str, Any], prev_digest: str) -> str:
    """The digest of ``run`` as stored now, chained to ``prev_digest``."""
    m = _manifest_lines(conn, run["id"], check_bodies=False)
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
    unsealed: list[str] = field(default_factory=list)

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


def verify(engine: Engine) -> VerifyResult:
    """Recompute every chain from the stored rows; report each run that breaks."""
    result = VerifyResult()
    with engine.connect() as conn:
        sources = [
            r[0] for r in conn.execute(select(runs.c.source).distinct().order_by(runs.c.source))
        ]
        result.sources = len(sources)
        result.unsealed = [
            r[0] for r in conn.execute(select(runs.c.id).where(runs.c.digest.is_(None)))
        ]
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
                for p in m.problems:
                    result.problems.append(ManifestProblem(run["id"], p))
                if _combine(run["prev_digest"] or GENESIS, run, m) != run["digest"]:
                    result.problems.append(
                        ManifestProblem(
                            run["id"],
                            "digest mismatch: rows written by this run or its header were altered",
                        )
                    )
                prev = run["digest"]
    return result
