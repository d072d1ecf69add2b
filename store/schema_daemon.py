"""Tables of the daemon (migration 0002): schedule leases, claim log, control states.

These are operational tables, not evidence: rows are updated in place and none of
them enters a run's digest.

* ``schedules`` — one row per connector instance: when it is next due, which replica
  holds it (``claimed_by``) and until when (``lease_until``). A replica may start a
  collection only by winning the atomic claim in :mod:`store.leases`.
* ``schedule_claims`` — one row per successful claim: which due time it served, by
  whom, for which run; auditors (and the soak benchmark) read schedule adherence here.
* ``control_states`` — the last control status a notification was decided on, so that
  replicas and restarts notify once per change, not once per run.
* ``schedule_missed`` (migration 0006) — due times no run served, one row per slot,
  with the reason; a due time is either in ``schedule_claims`` or here.
* ``notification_outbox`` (migration 0006) — notifications decided and not yet
  delivered; a replica leases a row, sends it and marks it sent (at-least-once).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint

from store.schema import RowId, UTCDateTime, metadata

schedules = Table(
    "schedules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("spec", String(200), nullable=False),
    Column("next_due", UTCDateTime(), nullable=False),
    Column("claimed_by", String(255)),
    Column("claimed_at", UTCDateTime()),
    Column("claimed_due", UTCDateTime()),
    Column("lease_until", UTCDateTime()),
    Column("run_id", String(36)),
    Column("takeovers", Integer, nullable=False, default=0),
    Column("last_run_id", String(36)),
    Column("last_status", String(20)),
    Column("last_finished_at", UTCDateTime()),
)

schedule_claims = Table(
    "schedule_claims",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("claimed_at", UTCDateTime(), nullable=False),
    Column("claimed_by", String(255), nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("takeover", Boolean, nullable=False),
    Column("status", String(20)),
    Column("finished_at", UTCDateTime()),
)
Index("ix_schedule_claims_name_due", schedule_claims.c.name, schedule_claims.c.due_at)

control_states = Table(
    "control_states",
    metadata,
    Column("control", String(50), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("detail", Text),
)

schedule_missed = Table(
    "schedule_missed",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("recorded_by", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    UniqueConstraint("name", "due_at", name="uq_schedule_missed_name_due"),
)

notification_outbox = Table(
    "notification_outbox",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("dedup_key", String(300), nullable=False, unique=True),
    Column("control", String(50), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("lease_by", String(255)),
    Column("lease_until", UTCDateTime()),
    Column("attempts", Integer, nullable=False, default=0),
    Column("sent_at", UTCDateTime()),
    Column("last_error", Text),
)
Index("ix_notification_outbox_pending", notification_outbox.c.sent_at, notification_outbox.c.id)
