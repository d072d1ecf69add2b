"""The ledger of runs whose units are spread over daemon replicas (``dispatch_units``).

The queue that hands a unit to some replica is procrastinate's; this ledger is what
the run itself knows about its units, in the same database as its records:

* a unit's records and its row turning final (``done``/``failed``) commit in one
  transaction (:meth:`store.writer.RunWriter.commit_unit` calls :func:`finish_unit`),
  so an attempt that finds the row already final writes nothing: a retried unit never
  duplicates a row;
* ``timed_out`` is set by any replica for open units past their ``deadline_at``;
* the run is sealed when no row is ``pending`` or ``running`` (:func:`open_units`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from store.schema import runs
from store.schema_daemon import dispatch_units
from store.sealing import db_now

OPEN = ("pending", "running")
FINAL = ("done", "failed", "timed_out")

Unit = tuple[str, str, str]  # scope, region, service


@dataclass(frozen=True)
class UnitRow:
    run_id: str
    source: str
    unit: Unit
    state: str
    status: str | None
    attempts: int
    replica: str | None
    counts: dict[str, Any]
    error: str | None


def _where(run_id: str, unit: Unit) -> Any:
    scope, region, service = unit
    return (
        (dispatch_units.c.run_id == run_id)
        & (dispatch_units.c.scope == scope)
        & (dispatch_units.c.region == region)
        & (dispatch_units.c.service == service)
    )


def add_units(
    conn: Connection, run_id: str, source: str, units: list[Unit], deadline_at: datetime
) -> None:
    """Record the planned units of ``run_id``, all ``pending``."""
    if not units:
        return
    now = db_now(conn)
    conn.execute(
        insert(dispatch_units),
        [
            {
                "run_id": run_id,
                "source": source,
                "scope": s,
                "region": r,
                "service": v,
                "state": "pending",
                "attempts": 0,
                "deadline_at": deadline_at,
                "updated_at": now,
            }
            for s, r, v in units
        ],
    )


def begin_unit(conn: Connection, run_id: str, unit: Unit, replica: str) -> int | None:
    """Mark an attempt at ``unit`` by ``replica``; its attempt number, or None when the
    unit is already final (done by an earlier attempt, or timed out): nothing to do."""
    row = conn.execute(
        update(dispatch_units)
        .where(_where(run_id, unit), dispatch_units.c.state.in_(OPEN))
        .values(
            state="running",
            attempts=dispatch_units.c.attempts + 1,
            replica=replica,
            updated_at=db_now(conn),
        )
        .returning(dispatch_units.c.attempts)
    ).first()
    return None if row is None else int(row[0])


def finish_unit(
    conn: Connection,
    run_id: str,
    unit: Unit,
    *,
    state: str,
    status: str,
    replica: str,
    counts: dict[str, Any],
    error: str | None = None,
) -> bool:
    """Make ``unit`` final (in the caller's transaction, with its records); False if
    another attempt or the timeout sweep made it final first (the caller rolls back)."""
    assert state in FINAL
    done = conn.execute(
        update(dispatch_units)
        .where(_where(run_id, unit), dispatch_units.c.state.in_(OPEN))
        .values(
            state=state,
            status=status,
            replica=replica,
            counts=json.dumps(counts, sort_keys=True),
            error=error,
            updated_at=db_now(conn),
        )
    )
    return done.rowcount == 1


def open_units(conn: Connection, run_id: str) -> int:
    """How many units of ``run_id`` are still pending or running."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(dispatch_units)
            .where(dispatch_units.c.run_id == run_id, dispatch_units.c.state.in_(OPEN))
        ).scalar_one()
    )


def units_of(conn: Connection, run_id: str) -> list[UnitRow]:
    rows = conn.execute(
        select(dispatch_units)
        .where(dispatch_units.c.run_id == run_id)
        .order_by(dispatch_units.c.id)
    ).mappings()
    return [
        UnitRow(
            r["run_id"],
            r["source"],
            (r["scope"], r["region"], r["service"]),
            r["state"],
            r["status"],
            r["attempts"],
            r["replica"],
            json.loads(r["counts"]) if r["counts"] else {},
            r["error"],
        )
        for r in rows
    ]


def expired_units(conn: Connection) -> list[UnitRow]:
    """Open units of running runs whose deadline has passed (by the database's clock)."""
    now = db_now(conn)
    q = (
        select(dispatch_units.c.run_id, dispatch_units.c.scope, dispatch_units.c.region,
               dispatch_units.c.service)
        .join(runs, runs.c.id == dispatch_units.c.run_id)
        .where(
            dispatch_units.c.state.in_(OPEN),
            dispatch_units.c.deadline_at < now,
            runs.c.status == "running",
        )
    )
    out = []
    for run_id, scope, region, service in conn.execute(q):
        out.extend(u for u in units_of(conn, run_id) if u.unit == (scope, region, service))
    return out


def runs_to_seal(conn: Connection) -> list[tuple[str, str]]:
    """(run id, source) of running distributed runs with no open unit left: a replica
    died between committing the last unit and sealing, and any replica seals them."""
    has_open = (
        select(dispatch_units.c.id)
        .where(dispatch_units.c.run_id == runs.c.id, dispatch_units.c.state.in_(OPEN))
        .exists()
    )
    distributed = select(dispatch_units.c.id).where(dispatch_units.c.run_id == runs.c.id).exists()
    return [
        (r, s)
        for r, s in conn.execute(
            select(runs.c.id, runs.c.source).where(
                runs.c.status == "running", distributed, ~has_open
            )
        )
    ]


def open_runs(conn: Connection) -> list[str]:
    """Running runs with units still open: every live replica keeps them heartbeated,
    so a run waiting for a free worker is never reaped as stale."""
    return [
        r
        for (r,) in conn.execute(
            select(dispatch_units.c.run_id)
            .join(runs, runs.c.id == dispatch_units.c.run_id)
            .where(dispatch_units.c.state.in_(OPEN), runs.c.status == "running")
            .distinct()
        )
    ]
