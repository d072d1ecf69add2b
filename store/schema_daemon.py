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

from store.schema import UTCDateTime, metadata, row_id_column, source_row_columns, unit_columns

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
    row_id_column(),
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
    row_id_column(),
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
    row_id_column(),
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

#: Migration 0007. One row per unit (scope x region x service) of a run whose units
#: are spread over daemon replicas (``[daemon] distribute = true``, PostgreSQL). The
#: queue itself is procrastinate's; this table is the run's own ledger: a unit's
#: records and its row turning ``done``/``failed`` commit in one transaction, so a
#: retried unit (its replica died) finds it done and writes nothing twice, and the
#: run is sealed exactly when no row is ``pending`` or ``running`` any more.
dispatch_units = Table(
    "dispatch_units",
    metadata,
    *source_row_columns(),
    *unit_columns(),
    #: pending → running → done | failed | timed_out (the last three are final).
    Column("state", String(20), nullable=False),
    #: The unit's drive status (succeeded/partial/failed) once final.
    Column("status", String(20)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("replica", String(255)),
    Column("deadline_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    #: JSON: the unit writer's counts, summed into the run's at the seal.
    Column("counts", Text),
    Column("error", Text),
    UniqueConstraint("run_id", "scope", "region", "service", name="uq_dispatch_units_unit"),
)
Index("ix_dispatch_units_state", dispatch_units.c.state, dispatch_units.c.run_id)
