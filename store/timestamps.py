"""Stored RFC 3161 tokens over run digests (``run_timestamps``, append-only).

Requesting a token is the collector's job (:mod:`core.timestamping`); the store keeps
the tokens, lists the runs still without one, and checks them for ``verify``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, exists, insert, select

from store.schema import run_timestamps, runs


def record_token(
    conn: Connection,
    *,
    run_id: str,
    digest: str,
    tsa: str,
    gen_time: datetime,
    token: str,
    recorded_at: datetime,
) -> None:
    conn.execute(
        insert(run_timestamps).values(
            run_id=run_id,
            digest=digest,
            tsa=tsa,
            gen_time=gen_time,
            token=token,
            recorded_at=recorded_at,
        )
    )


def unstamped(conn: Connection, limit: int = 100) -> list[tuple[str, str]]:
    """(run id, digest) of sealed runs without a token yet, oldest first."""
    stamped = exists().where(run_timestamps.c.run_id == runs.c.id)
    q = (
        select(runs.c.id, runs.c.digest)
        .where(runs.c.digest.is_not(None), ~stamped)
        .order_by(runs.c.finished_at, runs.c.id)
        .limit(limit)
    )
    return [(r.id, r.digest) for r in conn.execute(q)]


def tokens(conn: Connection, run_ids: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every stored token with its run's digest and seal time."""
    q = (
        select(
            run_timestamps,
            runs.c.digest.label("run_digest"),
            runs.c.finished_at.label("run_finished_at"),
        )
        .select_from(run_timestamps.outerjoin(runs, runs.c.id == run_timestamps.c.run_id))
        .order_by(run_timestamps.c.id)
    )
    if run_ids is not None:
        q = q.where(run_timestamps.c.run_id.in_(run_ids))
    for row in conn.execute(q).mappings():
        yield dict(row)
