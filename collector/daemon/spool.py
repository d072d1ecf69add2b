"""The local spool: no record is lost while the database is unreachable.

Design (chosen over "spool only what is left after a failed flush"): every daemon run
writes a *journal* — one JSON line per record, in the order the writer received it,
with its original timestamps — to ``<spool_dir>/<run_id>.jsonl``, and deletes it once
the run is sealed in the database. Why a full journal rather than only the records
after the failure: a run closes (tombstones) the items of its clean units that it did
*not* see, and which keys a run saw before the outage lives only in a temporary table
of the connection that just died. Replaying the whole journal rebuilds that set, so
closing stays correct; records already committed before the outage are recognised as
unchanged by the change-only writer and are not written twice. The cost is local disk
I/O proportional to the run's records (payloads are already normalised and redacted),
and the file lives only for the run's duration.

Markers in the journal: ``B`` after each committed batch (with the writer's counts
so far), ``O`` when the database became unreachable, ``Z`` with the final status.

Replay (:func:`replay`), once the database answers again:

* the original run is still ``running`` → it is *resumed*: same run id, same
  ``started_at``, every journalled record fed again, then sealed with its final
  status and digest — the run id an auditor saw in the logs stays valid;
* the original run was meanwhile sealed (another replica reaped it) → the records are
  written as a new run whose ``started_at`` is the original's and whose errors name
  the original run id (only if the journal shows an outage; a journal of a crash with
  the database up holds nothing the database lacks beyond an unfinished tail);
* no original row → a new run with the original id.

Either way the records keep their original ``collected_at``/``observed_at``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from core.records import Coverage, Evidence, Finding, utcnow
from core.signing import Signer
from store.leases import REAPED_PREFIX, touch_run
from store.schema import runs
from store.writer import RunSummary, RunWriter

VERSION = 1
NEVER_FLUSH = 10**12


def _iso(t: datetime) -> str:
    return t.isoformat()


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


#: The fields of a Finding journaled as they are, under their own names (the journal's
#: writer and its replay both read this list, so they cannot drift apart).
_FINDING_AS_IS = (
    "check_id",
    "scope",
    "region",
    "resource_type",
    "resource_id",
    "status",
    "severity",
    "message",
    "evidence_hash",
)


class Journal:
    """Append-only JSON-lines journal of one run (see module docstring)."""

    def __init__(self, directory: Path, header: dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / f"{header['run_id']}.jsonl"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # Held while this process writes: a replayer that cannot take it knows the run's
        # agent is alive; the kernel drops it when the agent dies, even by SIGKILL.
        fcntl.flock(fd, fcntl.LOCK_EX)
        # Line-buffered: every record reaches the kernel at once, so a SIGKILLed agent
        # loses nothing it had read; fsync only at outage and end (durability vs speed).
        self._f = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        self._write({"t": "H", "v": VERSION, **header})
        self.outage = False

    def _write(self, obj: dict[str, Any]) -> None:
        self._f.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")

    def evidence(self, ev: Evidence, body: str) -> None:
        self._write(
            {
                "t": "E",
                "scope": ev.scope,
                "region": ev.region,
                "resource_type": ev.resource_type,
                "resource_id": ev.resource_id,
                "body": body,
                "at": _iso(ev.collected_at),
                **({"su": _iso(ev.source_updated_at)} if ev.source_updated_at else {}),
            }
        )

    def finding(self, f: Finding) -> None:
        self._write(
            {
                "t": "F",
                **{name: getattr(f, name) for name in _FINDING_AS_IS},
                "at": _iso(f.observed_at),
                "controls": list(f.controls),
            }
        )

    def coverage(self, c: Coverage, at: datetime) -> None:
        self._write(
            {
                "t": "C",
                "scope": c.scope,
                "region": c.region,
                "service": c.service,
                "ok": c.ok,
                "error": c.error,
                "at": _iso(at),
            }
        )

    def error(self, message: str) -> None:
        self._write({"t": "X", "error": message})

    def committed(self, counts: dict[str, Any]) -> None:
        self._write({"t": "B", "counts": counts})
        self._f.flush()

    def mark_outage(self) -> None:
        self.outage = True
        self._write({"t": "O", "at": _iso(utcnow())})
        self.sync()

    def end(self, status: str) -> None:
        self._write({"t": "Z", "status": status, "at": _iso(utcnow())})
        self.sync()

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def pending(directory: Path) -> list[Path]:
    """Journals awaiting replay, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))


def read(path: Path) -> Iterator[dict[str, Any]]:
    """The journal's lines; a torn last line (the agent died mid-write) is skipped."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return


@dataclass
class _Scan:
    header: dict[str, Any]
    end_status: str | None
    outage: bool
    last_commit: int  # index of the last "B" line, -1 if none
    counts: dict[str, Any]


def _scan(path: Path) -> _Scan | None:
    header = None
    end = None
    outage = False
    last_commit = -1
    counts: dict[str, Any] = {}
    for i, obj in enumerate(read(path)):
        t = obj.get("t")
        if i == 0:
            if t != "H" or obj.get("v") != VERSION:
                return None
            header = obj
        elif t == "B":
            last_commit, counts = i, obj.get("counts", {})
        elif t == "O":
            outage = True
        elif t == "Z":
            end = obj["status"]
    if header is None:
        return None
    return _Scan(header, end, outage, last_commit, counts)


class ReplayWriter(RunWriter):
    """A RunWriter that can continue a run already in the database (``resume``) and
    keep a coverage record's original time."""

    def resume(self) -> str:
        """``start()`` without inserting the run row (it exists and is ``running``).

        Mirrors ``RunWriter.start``'s connection set-up; keep the two in step.
        """
        self._conn = self.engine.connect()
        self._prepare_connection(self._conn)
        return self.run_id

    def add_coverage_at(self, c: Coverage, at: datetime, *, stored: bool = False) -> None:
        """Like ``add_coverage`` with the original time; ``stored``: already in the
        database (committed before the outage), so only counted."""
        row = self._unit_row(c, at)  # taken even when stored: the unit's as-of is spent
        if not stored:
            self._units.append(row)
        if c.ok:
            self.counts.units_ok += 1
        else:
            self.counts.units_error += 1
            self.errors.append(f"{c.unit}: {c.error}")


@dataclass(frozen=True)
class ReplayResult:
    original_run_id: str
    summary: RunSummary | None
    mode: str  # "resumed", "new-run", "already-sealed", "discarded", "busy", "foreign"


def _run_state(engine: Engine, run_id: str) -> tuple[str | None, str | None]:
    with engine.connect() as conn:
        row = conn.execute(select(runs.c.status, runs.c.errors).where(runs.c.id == run_id)).first()
    return (row.status, row.errors) if row else (None, None)


def _claim_for_resume(engine: Engine, run_id: str) -> bool:
    """Refresh the run's heartbeat if it is still running: the reaper then leaves it."""
    with engine.begin() as conn:
        return touch_run(conn, run_id)


def database_id(url: Any) -> str:
    """Which database a journal belongs to: a digest of its URL without the password."""
    from store.engine import redacted_url

    return hashlib.sha256(redacted_url(url).encode()).hexdigest()[:16]


class _Held:
    """An exclusive, non-blocking flock on a journal for the time of its replay."""

    def __init__(self, path: Path) -> None:
        self.fd: int | None = None
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def replay(
    engine: Engine,
    path: Path,
    *,
    batch_size: int = 1000,
    unfinished_error: str = "the agent stopped before the run finished; sealed as aborted "
    "from its local spool at restart",
    on_run: Any = None,
    signer: Signer | None = None,
    database: str | None = None,
) -> ReplayResult:
    """Write a journal's records to the database (see module docstring); delete it.

    ``on_run(run_id)`` is called with the id being written before records are fed (the
    daemon heartbeats it). Raises the database error if the database is still down.
    A journal still held by a live agent is left alone (``busy``); one written for
    another database than ``database`` (see :func:`database_id`) too (``foreign``).
    """
    held = _Held(path)
    if held.fd is None:
        return ReplayResult(path.stem, None, "busy")
    try:
        return _replay(
            engine, path, batch_size=batch_size, unfinished_error=unfinished_error,
            on_run=on_run, signer=signer, database=database,
        )
    finally:
        held.release()


def _replay(
    engine: Engine,
    path: Path,
    *,
    batch_size: int,
    unfinished_error: str,
    on_run: Any,
    signer: Signer | None,
    database: str | None,
) -> ReplayResult:
    scan = _scan(path)
    if scan is None:
        path.unlink(missing_ok=True)
        return ReplayResult(path.stem, None, "discarded")
    h = scan.header
    if database is not None and h.get("database") not in (None, database):
        return ReplayResult(h["run_id"], None, "foreign")
    orig = h["run_id"]
    status = scan.end_status or "aborted"
    state, errors = _run_state(engine, orig)
    if state == "running" and _claim_for_resume(engine, orig):
        mode, run_id = "resumed", orig
    elif state is None:
        mode, run_id = "new-run", orig  # the run row never made it to the database
    else:
        # Sealed meanwhile (possibly between the two reads above): re-read why.
        state, errors = _run_state(engine, orig)
        reaped = REAPED_PREFIX in (errors or "")
        if state == status and not reaped:
            # Sealed by its own writer just before the connection dropped.
            path.unlink(missing_ok=True)
            return ReplayResult(orig, None, "already-sealed")
        if not scan.outage:
            # A crash with the database up: what the run committed is there; its
            # unfinished tail belongs to a run that was (rightly) sealed as aborted.
            path.unlink(missing_ok=True)
            return ReplayResult(orig, None, "discarded")
        mode, run_id = "new-run", str(uuid.uuid4())
    writer = ReplayWriter(
        engine,
        source=h["source"],
        connector_type=h["connector_type"],
        config_digest=h["config_digest"],
        mapping_digest=h["mapping_digest"],
        agent_version=h["agent_version"],
        batch_size=batch_size,
        run_id=run_id,
        signer=signer,
    )
    writer.started_at = _dt(h["started_at"])
    if on_run is not None:
        on_run(run_id)
    if mode == "resumed":
        writer.resume()
        writer.counts.evidence_written = int(scan.counts.get("evidence_written", 0))
        writer.counts.findings_written = int(scan.counts.get("findings_written", 0))
    else:
        writer.start()
        if run_id != orig:
            writer.add_error(
                f"records of run {orig} (started {h['started_at']}), written from the local "
                "spool after a database outage; that run was sealed meanwhile"
            )
    try:
        for i, obj in enumerate(read(path)):
            t = obj.get("t")
            stored = mode == "resumed" and i < scan.last_commit
            if t == "E":
                writer.add_evidence(
                    Evidence(
                        obj["scope"],
                        obj["region"],
                        obj["resource_type"],
                        obj["resource_id"],
                        json.loads(obj["body"]),
                        collected_at=_dt(obj["at"]),
                        source_updated_at=_dt(obj["su"]) if obj.get("su") else None,
                    ),
                    # The journaled body itself: normalising it again could differ from
                    # the hash the run's findings already cite.
                    body=obj["body"].encode("utf-8"),
                )
            elif t == "F":
                writer.add_finding(
                    Finding(
                        **{name: obj[name] for name in _FINDING_AS_IS},
                        observed_at=_dt(obj["at"]),
                        controls=tuple(obj["controls"]),
                    )
                )
            elif t == "C":
                writer.add_coverage_at(
                    Coverage(obj["scope"], obj["region"], obj["service"], obj["ok"], obj["error"]),
                    _dt(obj["at"]),
                    stored=stored,
                )
            elif t == "X":
                writer.add_error(obj["error"])
        if scan.end_status is None:
            writer.add_error(unfinished_error)
        summary = writer.finish(status)
    except BaseException:
        writer.close()
        raise
    path.unlink(missing_ok=True)
    return ReplayResult(orig, summary, mode)
