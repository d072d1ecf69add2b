"""Room in each page of the findings in force for its rows' next versions (PostgreSQL).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

A seal now updates the rows its run supersedes in place (``store.current._patch``, an
upsert) instead of deleting and re-inserting them. On PostgreSQL an updated row's new
version goes to the same page when there is room; the space of the old version is then
reclaimed by page pruning when the page is next read, without ``VACUUM``. Inserted rows
went to the end of the file instead, which grew by the churn of every seal where
autovacuum lags or is off (migration 0011 compacted it once). ``fillfactor = 70`` keeps
30 % of each page free for those versions; the table is rewritten so that the pages it
already has get that room too (``TRUNCATE`` and re-insert, as 0011 does, inside the
migration's transaction). SQLite has no fillfactor and reuses freed space itself.

Derived data, not evidence: the rows are copied unchanged.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(sa.text(f"ALTER TABLE findings_in_force SET (fillfactor = {FILLFACTOR})"))
    op.execute(sa.text("CREATE TEMPORARY TABLE compact_copy AS SELECT * FROM findings_in_force"))
    op.execute(sa.text("TRUNCATE findings_in_force"))
    op.execute(sa.text("INSERT INTO findings_in_force SELECT * FROM compact_copy"))
    op.execute(sa.text("DROP TABLE compact_copy"))
    op.execute(sa.text("ANALYZE findings_in_force"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("ALTER TABLE findings_in_force RESET (fillfactor)"))
