"""SQL for auditors: typed JSON columns, the evidence version each finding judged, views.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

* ``runs.counts``, ``runs.errors``, ``findings.controls`` become ``jsonb`` on PostgreSQL
  and ``JSON`` on SQLite. They are inside digests (the run header hashes the counts and
  errors texts, the finding hash the controls text), so nothing may change a text that
  was signed: SQLite keeps the text byte for byte (its JSON is text; the tables are
  rebuilt only to declare the type). PostgreSQL keeps the value, and
  ``store.schema.SignedJSON`` re-makes the text as every writer made it (``json.dumps``
  with sorted keys); before converting, every stored text is checked to come back
  identical, and the upgrade stops, changing nothing, if one would not.
* ``findings.evidence_id`` → ``evidence.id``: the evidence version a verdict was judged
  on, written by the run writer from now on; NULL on rows written before.
* views: ``control_status_current`` is retired for ``control_status_unadjusted``;
  typed validity dates in the manual evidence views; ``exceptions_history`` /
  ``exceptions_current``; ``evidence_id`` in the finding views (see store/views.py).
"""

import json
import re

import sqlalchemy as sa
from alembic import op

from store.schema import canonical_json_text, jsonb_storable
from store.views import create_views, drop_views

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: (table, column) of every signed JSON text.
SIGNED_JSON = (("runs", "counts"), ("runs", "errors"), ("findings", "controls"))
#: How many offending rows an aborted upgrade names.
NAMED = 10


def upgrade() -> None:
    bind = op.get_bind()
    drop_views(op)
    if bind.dialect.name == "postgresql":
        _check_texts_survive_jsonb(bind)
        for table, column in SIGNED_JSON:
            op.execute(
                f"ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb"
            )
        op.add_column(
            "findings", sa.Column("evidence_id", sa.BigInteger, sa.ForeignKey("evidence.id"))
        )
    else:
        _sqlite_in_one_transaction(bind)
        for table in ("runs", "findings"):
            _sqlite_declare_json(bind, table, [c for t, c in SIGNED_JSON if t == table])
        # A nullable column with a NULL default: SQLite adds it, reference included,
        # without another rebuild (alembic would want one for the constraint).
        op.execute("ALTER TABLE findings ADD COLUMN evidence_id INTEGER REFERENCES evidence (id)")
    # The views as of this revision: the freshness columns come with 0007.
    create_views(op, bind.dialect.name, freshness=False)


def _check_texts_survive_jsonb(bind: sa.Connection) -> None:
    """Refuse to convert if any signed text would not read back identical from jsonb."""
    bad: list[str] = []
    # runs: one row per run. Each text must be the canonical form of its value.
    for run_id, counts, errors in bind.exec_driver_sql("SELECT id, counts, errors FROM runs"):
        for name, text in (("counts", counts), ("errors", errors)):
            if text is not None and not _survives(text):
                bad.append(f"run {run_id}: {name}")
    # findings: many rows. jsonb's own output equals json.dumps for the ASCII arrays the
    # writer stores; only rows where it differs are parsed here.
    suspects = bind.exec_driver_sql(
        "SELECT id, controls FROM findings WHERE controls::jsonb::text <> controls"
    )
    for fid, text in suspects:
        if not _survives(text):
            bad.append(f"finding row {fid}: controls")
    if bad:
        more = f" and {len(bad) - NAMED} more" if len(bad) > NAMED else ""
        raise RuntimeError(
            "upgrade stopped, nothing changed: these signed JSON texts would not read back "
            "exactly as they were signed once stored as jsonb, so their digests would no "
            f"longer verify: {', '.join(bad[:NAMED])}{more}"
        )


def _survives(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return canonical_json_text(value) == text and jsonb_storable(value)


def _sqlite_in_one_transaction(bind: sa.Connection) -> None:
    """Make the rebuild all-or-nothing: pysqlite opens a transaction only before DML,
    so the DDL below would otherwise commit statement by statement."""
    raw = bind.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        bind.exec_driver_sql("BEGIN")


def _sqlite_declare_json(bind: sa.Connection, table: str, columns: list[str]) -> None:
    """Rebuild ``table`` with ``columns`` declared JSON (SQLite cannot alter a type).

    SQLite's documented procedure: a new table from the stored definition with only the
    types changed, every row copied as it is (ids, text), the old table dropped (which
    fires no trigger), the new one renamed, its indexes and triggers re-created from
    their stored definitions. Views were dropped first.
    """
    ddl = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    extras = [
        sql
        for (sql,) in bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name",
            (table,),
        )
    ]
    new = f"_annexa_0005_{table}"
    head = re.compile(rf"^CREATE TABLE \"?{table}\"? \(")
    if not head.match(ddl):
        raise RuntimeError(f"unexpected definition of table {table}: {ddl[:80]!r}")
    ddl = head.sub(f"CREATE TABLE {new} (", ddl, count=1)
    for column in columns:
        ddl, n = re.subn(rf'(\b|"){column}("?\s+)TEXT\b', rf"\g<1>{column}\g<2>JSON", ddl)
        if n != 1:
            raise RuntimeError(f"column {table}.{column} not found as TEXT in {table}'s definition")
    count = f"SELECT count(*) FROM {{}}"
    before = bind.exec_driver_sql(count.format(table)).scalar_one()
    bind.exec_driver_sql(ddl)
    bind.exec_driver_sql(f"INSERT INTO {new} SELECT * FROM {table}")
    after = bind.exec_driver_sql(count.format(new)).scalar_one()
    if after != before:
        raise RuntimeError(f"rebuilding {table} copied {after} rows, not {before}")
    bind.exec_driver_sql(f"DROP TABLE {table}")
    bind.exec_driver_sql(f"ALTER TABLE {new} RENAME TO {table}")
    for sql in extras:
        bind.exec_driver_sql(sql)


def downgrade() -> None:
    raise NotImplementedError("the evidence store is append-only; restore from backup instead")
