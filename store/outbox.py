"""The notification outbox: at-least-once delivery, each row delivered by one replica.

A notification is *decided* when :func:`store.leases.control_changes` wins a control's
status change; its outbox rows (one per destination) are inserted in that same
transaction, so a decision is never lost between deciding and sending, whichever
process dies. Any replica's notifier then leases the oldest deliverable row
(:func:`lease_next`: a conditional ``UPDATE`` on a free lease, so two replicas never
both hold it), sends it and marks it sent. A notifier killed after sending but
before marking sends again once the lease expires (at-least-once); one killed before
sending sends it once after restart. Rows of one control and destination go out in
order (a Jira comment never overtakes the issue it comments on).

``control_states.detail`` keeps per-control delivery state (the Jira issue key and
whether Annexa resolved it), updated by the notifier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from store.schema_daemon import control_states, notification_outbox
from store.sealing import db_now

ob = notification_outbox


@dataclass(frozen=True)
class OutboxRow:
    id: int
    control: str
    destination: str
    payload: dict[str, Any]
    attempts: int


def dedup_key(control: str, at: datetime, old: str, new: str, destination: str) -> str:
    return f"{control}|{at.isoformat()}|{old}>{new}|{destination}"[:300]


def enqueue(
    conn: Connection,
    *,
    control: str,
    at: datetime,
    old: str,
    new: str,
    rows: list[tuple[str, dict[str, Any]]],
) -> None:
    """Insert one row per ``(destination, payload)`` in the caller's transaction
    (``ON CONFLICT DO NOTHING``: a decision replayed is not queued twice)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(ob).on_conflict_do_nothing(),
        [
            {
                "dedup_key": dedup_key(control, at, old, new, dest),
                "control": control,
                "payload": json.dumps({**payload, "destination": dest}, sort_keys=True),
                "created_at": at,
                "attempts": 0,
            }
            for dest, payload in rows
        ],
    )


def lease_next(engine: Engine, me: str, *, lease: float) -> OutboxRow | None:
    """Lease the oldest deliverable row for ``me``; None when there is nothing to send.

    Deliverable: not sent, lease free (``lease_until`` also holds a retry's back-off),
    and no older unsent row of the same control (changes of one control are announced
    in the order they happened, on every channel).
    """
    earlier = aliased(ob)
    with engine.begin() as conn:
        now = db_now(conn)
        q = (
            select(ob.c.id, ob.c.control, ob.c.payload, ob.c.attempts)
            .where(
                ob.c.sent_at.is_(None),
                or_(ob.c.lease_until.is_(None), ob.c.lease_until < now),
                ~exists().where(
                    earlier.c.control == ob.c.control,
                    earlier.c.id < ob.c.id,
                    earlier.c.sent_at.is_(None),
                ),
            )
            .order_by(ob.c.id)
            .limit(20)
        )
        for row in conn.execute(q).all():
            won = conn.execute(
                update(ob)
                .where(
                    ob.c.id == row.id,
                    ob.c.sent_at.is_(None),
                    or_(ob.c.lease_until.is_(None), ob.c.lease_until < now),
                )
                .values(
                    lease_by=me,
                    lease_until=now + timedelta(seconds=lease),
                    attempts=ob.c.attempts + 1,
                )
            ).rowcount
            if won:
                payload = json.loads(row.payload)
                return OutboxRow(
                    row.id, row.control, payload.get("destination", ""), payload, row.attempts + 1
                )
    return None


def mark_sent(engine: Engine, row_id: int, me: str, *, error: str | None = None) -> bool:
    """Done with a row: delivered, or given up on with ``error`` (a refused request)."""
    with engine.begin() as conn:
        now = db_now(conn)
        return bool(
            conn.execute(
                update(ob)
                .where(ob.c.id == row_id, ob.c.lease_by == me, ob.c.sent_at.is_(None))
                .values(sent_at=now, last_error=error, lease_until=None)
            ).rowcount
        )


def retry_later(engine: Engine, row_id: int, me: str, *, delay: float, error: str) -> None:
    """Delivery failed for now: free the row after ``delay`` seconds."""
    with engine.begin() as conn:
        now = db_now(conn)
        conn.execute(
            update(ob)
            .where(ob.c.id == row_id, ob.c.lease_by == me)
            .values(lease_until=now + timedelta(seconds=delay), last_error=error[:2000])
        )


def pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(ob).where(ob.c.sent_at.is_(None))
        ).scalar_one()


def control_detail(engine: Engine, control: str) -> dict[str, Any]:
    with engine.connect() as conn:
        raw = conn.execute(
            select(control_states.c.detail).where(control_states.c.control == control)
        ).scalar()
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def set_control_detail(engine: Engine, control: str, **values: Any) -> None:
    """Merge ``values`` into the control's delivery state."""
    with engine.begin() as conn:
        row = conn.execute(
            select(control_states.c.detail).where(control_states.c.control == control)
        ).one_or_none()
        if row is None:
            return
        try:
            detail = json.loads(row.detail) if row.detail else {}
        except ValueError:
            detail = {}
        detail.update(values)
        conn.execute(
            update(control_states)
            .where(control_states.c.control == control)
            .values(detail=json.dumps(detail, sort_keys=True))
        )
