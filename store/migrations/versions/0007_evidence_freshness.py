"""Inventory freshness: when the source vouches for an evidence version's data.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

* ``evidence.source_updated_at`` — ``Evidence.source_updated_at``: for evidence read
  from a provider's bulk inventory (Cloud Asset Inventory, AWS Config, Azure Resource
  Graph), the time up to which the provider vouches for the record (the listing's
  snapshot time); NULL for a direct read and on every row written before.
* ``run_units.source_as_of`` — the oldest of those times among the evidence a run read
  in the unit: a clean read of an inventory confirms the unit's items only as of then.

Both nullable, no default, no rewrite of existing rows. Neither is in a content hash;
both enter the run's manifest only when not NULL, so every run sealed before (all NULL)
keeps its digest. The views are re-created to show them (store/views.py).
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime
from store.views import create_views, drop_views

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    drop_views(op)
    # A nullable column without default: an in-place ALTER on both engines (no rebuild of
    # the append-only tables, whose triggers stay as they are).
    op.add_column("evidence", sa.Column("source_updated_at", UTCDateTime()))
    op.add_column("run_units", sa.Column("source_as_of", UTCDateTime()))
    create_views(op, bind.dialect.name)


def downgrade() -> None:
    bind = op.get_bind()
    drop_views(op)
    op.drop_column("run_units", "source_as_of")
    op.drop_column("evidence", "source_updated_at")
    create_views(op, bind.dialect.name, freshness=False)
