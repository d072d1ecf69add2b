"""The findings in force per status as changes per instant, for timelines.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

* ``finding_status_changes`` — signed counts of finding versions starting (+n) and
  being replaced (-n) per instant, source, check, unit, stored controls and status (see
  ``store.status_changes``). A control's status over a period is then read from the
  changes in it instead of from every finding version.
* ``finding_status_changes_state`` — the count of sealed runs the changes account for,
  compared with ``runs`` by every reader.

Derived data, not evidence: ``verify`` does not read them. The upgrade builds them from
the existing history (one ordered pass over ``findings``).
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "finding_status_changes",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("check_id", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("service", sa.String(100), nullable=False),
        sa.Column("controls", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_index("ix_finding_status_changes_at", "finding_status_changes", ["at"])
    op.create_table(
        "finding_status_changes_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("runs_applied", sa.Integer, nullable=False),
    )
    from store.status_changes import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("finding_status_changes_state")
    op.drop_index("ix_finding_status_changes_at", "finding_status_changes")
    op.drop_table("finding_status_changes")
