"""Snapshots of the findings in force at past instants, for bounded time travel.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

* ``findings_snapshots`` — one row per snapshot: its instant S (the newest observation
  it holds) and its row count.
* ``findings_snapshot_rows`` — per snapshot, ``findings_in_force``'s columns: each
  finding key's latest sealed version observed by S (see ``store.snapshots``).
* ``findings_snapshot_state`` — the count of sealed runs the snapshots account for,
  compared with ``runs`` by every reader.

Derived data, not evidence: ``verify`` does not read them. The upgrade builds them from
the existing history (one ordered pass over ``findings``).
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "findings_snapshots",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
    )
    op.create_index("ix_findings_snapshots_at", "findings_snapshots", ["at"])
    op.create_table(
        "findings_snapshot_rows",
        sa.Column("snapshot_id", ROWID, primary_key=True),
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("finding_id", ROWID, nullable=False),
        sa.Column("check_id", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("service", sa.String(100), nullable=False),
        sa.Column("resource_id", sa.Text, nullable=False),
        sa.Column("status", sa.String(20)),
        sa.Column("controls", sa.Text, nullable=False),
        sa.Column("evidence_hash", sa.String(64)),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "findings_snapshot_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("runs_applied", sa.Integer, nullable=False),
    )
    from store.snapshots import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("findings_snapshot_state")
    op.drop_table("findings_snapshot_rows")
    op.drop_index("ix_findings_snapshots_at", "findings_snapshots")
    op.drop_table("findings_snapshots")
