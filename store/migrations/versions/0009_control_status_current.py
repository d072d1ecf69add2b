"""The findings in force now, materialised for the current control status.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

* ``findings_in_force`` — per (source, finding key) its latest sealed version, so the
  console's overview and control pages read the findings in force instead of walking
  every key's history (see ``store.current``); ``seen_at`` is the observation capped by
  the as-of of the evidence judged (``evidence.source_updated_at``, migration 0007). Derived data, not evidence: ``verify``
  does not read it, and it is rebuilt from ``findings`` whenever it is behind.
* ``findings_in_force_state`` — the count of sealed runs applied, compared with
  ``runs`` by every reader.

The upgrade fills both from the existing history (one point-in-time walk).
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "findings_in_force",
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
        "findings_in_force_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("runs_applied", sa.Integer, nullable=False),
    )
    from store.current import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("findings_in_force_state")
    op.drop_table("findings_in_force")
