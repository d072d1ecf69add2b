"""Daemon accounting: missed schedule slots and the notification outbox.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

* ``schedule_missed`` — one row per due time of a schedule that no run served, with
  the reason, written in the same transaction as the claim that skipped it (so two
  replicas never both record, and a slot is either claimed or recorded missed).
* ``notification_outbox`` — one row per notification decided (a control status
  change), written with the decision; sent and marked by whichever replica's notifier
  leases it first, so delivery is at-least-once and each row is delivered once.

No view reads these tables: the views stay as migration 0005 created them.
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "schedule_missed",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("name", "due_at", name="uq_schedule_missed_name_due"),
    )
    op.create_table(
        "notification_outbox",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("dedup_key", sa.String(300), nullable=False, unique=True),
        sa.Column("control", sa.String(50), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("lease_by", sa.String(255)),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sent_at", UTCDateTime()),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_notification_outbox_pending", "notification_outbox", ["sent_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_notification_outbox_pending", "notification_outbox")
    op.drop_table("notification_outbox")
    op.drop_table("schedule_missed")
