"""An index on the findings in force's observation time; the table compacted on PostgreSQL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

* ``ix_findings_in_force_observed`` — ``store.current.trusted`` asks every status
  page for the newest observation in the table; without it that is a scan of the whole
  table (on PostgreSQL, of every page it ever grew to: see below), with it one probe.
* PostgreSQL: ``findings_in_force`` is rewritten. Each seal deletes and re-inserts the
  rows its run supersedes, so the table churns by the changed findings of every run;
  where autovacuum lags or is off, the dead versions stay and every scan of the table
  reads them (a year of hourly runs over 6,000 findings left 19,687 pages, 155 MB,
  for 6,000 rows: 260 ms per scan). ``TRUNCATE`` gives it a new, compact file inside the
  migration's transaction (``VACUUM FULL`` cannot run in one). SQLite reuses the pages
  of deleted rows itself.

Derived data, not evidence: the rows are copied unchanged.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _compact("findings_in_force")
    op.create_index("ix_findings_in_force_observed", "findings_in_force", ["observed_at"])


def _compact(table: str) -> None:
    """Rewrite ``table`` into a new file with the same rows (PostgreSQL)."""
    op.execute(sa.text(f"CREATE TEMPORARY TABLE compact_copy AS SELECT * FROM {table}"))
    op.execute(sa.text(f"TRUNCATE {table}"))
    op.execute(sa.text(f"INSERT INTO {table} SELECT * FROM compact_copy"))
    op.execute(sa.text("DROP TABLE compact_copy"))
    op.execute(sa.text(f"ANALYZE {table}"))


def downgrade() -> None:
    op.drop_index("ix_findings_in_force_observed", table_name="findings_in_force")
