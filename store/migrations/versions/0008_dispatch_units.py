"""Units of runs spread over daemon replicas (``[daemon] distribute = true``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

* ``dispatch_units`` — one row per unit of a distributed run: its state
  (pending/running/done/failed/timed_out), attempts, the replica that finished it and
  its counts. Operational, like the other daemon tables: no digest covers it. The
  queue that hands units to replicas is procrastinate's own schema (applied by the
  daemon at start, not by this migration: it is versioned by procrastinate).
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dispatch_units",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("service", sa.String(100), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("replica", sa.String(255)),
        sa.Column("deadline_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("counts", sa.Text),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint(
            "run_id", "scope", "region", "service", name="uq_dispatch_units_unit"
        ),
    )
    op.create_index("ix_dispatch_units_state", "dispatch_units", ["state", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_dispatch_units_state", "dispatch_units")
    op.drop_table("dispatch_units")
