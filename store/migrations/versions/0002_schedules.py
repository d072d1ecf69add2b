"""Daemon tables: schedule leases, the claim log and control states for notifications.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("spec", sa.String(200), nullable=False),
        sa.Column("next_due", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(255)),
        sa.Column("claimed_at", UTCDateTime()),
        sa.Column("claimed_due", UTCDateTime()),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("run_id", sa.String(36)),
        sa.Column("takeovers", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_run_id", sa.String(36)),
        sa.Column("last_status", sa.String(20)),
        sa.Column("last_finished_at", UTCDateTime()),
    )
    op.create_table(
        "schedule_claims",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("takeover", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(20)),
        sa.Column("finished_at", UTCDateTime()),
    )
    op.create_index("ix_schedule_claims_name_due", "schedule_claims", ["name", "due_at"])
    op.create_table(
        "control_states",
        sa.Column("control", sa.String(50), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("detail", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("control_states")
    op.drop_index("ix_schedule_claims_name_due", "schedule_claims")
    op.drop_table("schedule_claims")
    op.drop_table("schedules")
