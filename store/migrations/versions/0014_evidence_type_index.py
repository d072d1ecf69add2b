"""An index on the evidence's resource type.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

``ix_evidence_type`` — the risk register reads the ticket risks of every source by their
resource type's suffix (``*.risk.ticket``, ``store.risks``). Without an index that is a
scan of every evidence version ever stored (190 ms on a year of hourly runs over 10,000
resources, growing with the history); with it, the distinct types are found one index
probe each and only the tickets' versions are read.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_evidence_type", "evidence", ["resource_type"])


def downgrade() -> None:
    op.drop_index("ix_evidence_type", table_name="evidence")
