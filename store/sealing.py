"""Sealing: the one way a run ends — its digest chained to its source's head, signed.

Every path that ends a run goes through :func:`seal_run`: the writer finishing its own
run, a process sealing a run whose agent died (crash recovery), the daemon's reaper and
the journal replay. One implementation means one chain rule, one signature rule, and
one lock: two runs of the same source sealed at the same moment must not both chain
onto the same previous digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, or_, select, text, update

from core.signing import RUN_DOMAIN, Signer
from store.current import apply_run
from store.integrity import digest_of, last_digest, seal_manifest
from store.keys import record_key
from store.schema import canonical_json_text, runs
from store.snapshots import maintain as maintain_snapshots
from store.status_changes import apply_run as apply_status_changes

_ONE_US = timedelta(microseconds=1)


def storable(message: str) -> str:
    """``message`` as a JSON column holds it on every engine: NUL and surrogate code
    points (which PostgreSQL's jsonb refuses) become U+FFFD. The run header is signed
    over the stored text, so the replacement is what is signed."""
    text = str(message).replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)
    return text


class RunNotRunningError(RuntimeError):
    """The run was already sealed (by another process) or does not exist."""


@dataclass(frozen=True)
class Sealed:
    run_id: str
    source: str
    status: str
    digest: str
    prev_digest: str
    key_id: str | None
    started_at: datetime
    finished_at: datetime


def db_now(conn: Connection) -> datetime:
    """The database's current time (UTC); SQLite is local, so the local clock."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value.astimezone(UTC)
    return datetime.now(UTC)


def lock_chain(conn: Connection, source: str, run_id: str) -> None:
    """Serialise seals of one source's chain for the rest of the transaction.

    PostgreSQL: a transaction-level advisory lock per source. SQLite: a no-op write to
    the run's row, which takes the database's write lock before the chain head is read
    (a deferred transaction would read first and race another sealer).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"annexa-chain:{source}"}
        )
    else:
        conn.execute(update(runs).where(runs.c.id == run_id).values(status=runs.c.status))


def seal_run(
    conn: Connection,
    run_id: str,
    *,
    status: str,
    counts: Mapping[str, Any] | None,
    errors: list[str],
    signer: Signer | None,
    stale_before: datetime | None = None,
    finished_at: datetime | None = None,
) -> Sealed | None:
    """Seal ``run_id`` (in the caller's transaction); None if it was not ``running``.

    ``counts`` None: count the run's rows (a run sealed on behalf of a dead agent).
    ``stale_before``: seal only if the run's heartbeat is older than that, re-checked
    under the lock, so a run whose owner just heartbeated is never sealed from under it.
    ``finished_at`` is moved past the source's latest seal when needed, so the chain's
    order (by ``finished_at``) is the order of sealing even across skewed clocks.
    """
    head = conn.execute(select(runs.c.source).where(runs.c.id == run_id)).scalar()
    if head is None:
        return None
    lock_chain(conn, head, run_id)
    row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().one()
    if row["status"] != "running":
        return None
    if stale_before is not None and row["heartbeat_at"] is not None:
        if row["heartbeat_at"] >= stale_before:
            return None
    source = row["source"]
    now = finished_at or db_now(conn)
    latest = conn.execute(
        select(func.max(runs.c.finished_at)).where(runs.c.source == source)
    ).scalar()
    finished = now if latest is None or latest < now else latest + _ONE_US
    manifest = seal_manifest(conn, run_id)
    if counts is None:
        counts = {
            "evidence_written": manifest.rows.get("evidence", 0),
            "findings_written": manifest.rows.get("findings", 0),
            "reaped": True,
        }
    counts = {**counts, "rows": manifest.rows, "max_id": manifest.max_id}
    counts_text = canonical_json_text(counts)
    errors_text = canonical_json_text([storable(e) for e in errors])
    prev = last_digest(conn, source, exclude_run=run_id)
    run = dict(row)
    run.update(status=status, finished_at=finished, counts=counts_text, errors=errors_text)
    digest = digest_of(prev, run, manifest)
    signature = key_id = None
    if signer is not None:
        record_key(conn, signer, finished)
        signature, key_id = signer.sign(RUN_DOMAIN, digest), signer.key_id
    guard = [runs.c.id == run_id, runs.c.status == "running"]
    if stale_before is not None:
        guard.append(or_(runs.c.heartbeat_at.is_(None), runs.c.heartbeat_at < stale_before))
    done = conn.execute(
        update(runs)
        .where(*guard)
        .values(
            status=status,
            finished_at=finished,
            heartbeat_at=finished,
            counts=counts_text,
            errors=errors_text,
            digest=digest,
            prev_digest=prev,
            signature=signature,
            key_id=key_id,
        )
    ).rowcount
    if done != 1:
        return None
    # The findings in force now, their changes per instant and snapshots, kept with the
    # seal (derived; see store.current, store.status_changes, store.snapshots). The
    # changes first: they read the versions in force just before this run.
    apply_status_changes(conn, run_id)
    apply_run(conn, run_id)
    maintain_snapshots(conn, run_id)
    return Sealed(run_id, source, status, digest, prev, key_id, row["started_at"], finished)
