"""Auditor interface: catalog table, point-in-time indexes, retention log, SQL views.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

* ``annex_a_controls`` — the 93 controls with the built-in manual/automated flags, so
  that SQL can list controls without any finding (``no_evidence`` / ``manual``).
* ``ix_findings_key_time`` / ``ix_evidence_key_time`` — ``(source, key, time, id)``:
  "latest version of this item at instant T" is one index probe per item.
* ``retention_log`` — append-only record of every evidence body removed by
  ``annexa retention``. The blobs table stays append-only, with one controlled
  exception: a blob row may be deleted only when a retention_log row naming it was
  written in the same transaction (PostgreSQL: same transaction id; SQLite: the row
  names the blob's rowid). A removal can therefore never be silent.
* (the views of :mod:`store.views` were created here until migration 0005; they are
  now created only by the latest migration that changes them, since their definitions
  describe the head schema.)
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _catalog_rows() -> list[dict]:
    """The built-in catalog with its manual/automated flags, read leniently.

    A migration must not fail because a mapping file outside the catalog is being
    edited, so the flags are read straight from the TOML (no check registry needed).
    """
    import tomllib

    from mappings.loader import CATALOG_FILE, builtin_dir

    root = builtin_dir()
    catalog = tomllib.loads((root / CATALOG_FILE).read_text(encoding="utf-8"))["control"]
    automated: set[str] = set()
    for path in sorted(root.rglob("*.toml")):
        if {"catalogs", "crosswalks"} & set(path.relative_to(root).parts[:-1]):
            continue
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for item in doc.get("link", []) if isinstance(doc.get("link"), list) else []:
            if isinstance(item, dict) and isinstance(item.get("control"), str):
                automated.add(item["control"])
    return [
        {
            "id": c["id"],
            "title": c["title"],
            "theme": c["theme"],
            "position": position,
            # Every control declares a documented part (mappings/controls.toml); the
            # manual ones are those no check is linked to (MappingIndex.is_manual).
            "manual": c["id"] not in automated,
            "automated": c["id"] in automated,
        }
        for position, c in enumerate(catalog, start=1)
    ]


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    catalog = op.create_table(
        "annex_a_controls",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("theme", sa.String(20), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("manual", sa.Boolean, nullable=False),
        sa.Column("automated", sa.Boolean, nullable=False),
    )
    op.bulk_insert(catalog, _catalog_rows())

    op.create_index(
        "ix_findings_key_time", "findings", ["source", "key", "observed_at", "id"]
    )
    op.create_index(
        "ix_evidence_key_time", "evidence", ["source", "key", "collected_at", "id"]
    )

    op.create_table(
        "retention_log",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("cutoff", UTCDateTime(), nullable=False),
        sa.Column("keep", sa.String(20), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=False),
        sa.Column("removed_by", sa.String(255), nullable=False),
        # PostgreSQL: the removing transaction's id; SQLite: the removed blob's rowid.
        sa.Column("token", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_retention_log_hash", "retention_log", ["hash"])

    if pg:
        _postgres_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER retention_log_no_{action.lower()} BEFORE {action} ON retention_log "
            "BEGIN SELECT RAISE(ABORT, 'annexa: retention_log is append-only'); END"
        )
    op.execute("DROP TRIGGER blobs_no_delete")
    op.execute(
        "CREATE TRIGGER blobs_no_delete BEFORE DELETE ON blobs "
        "WHEN NOT EXISTS (SELECT 1 FROM retention_log r "
        "WHERE r.hash = OLD.hash AND r.token = OLD.rowid) "
        "BEGIN SELECT RAISE(ABORT, 'annexa: blobs is append-only "
        "(only annexa retention may remove a body, and it logs it)'); END"
    )


def _postgres_triggers() -> None:
    op.execute(
        "CREATE TRIGGER retention_log_append_only BEFORE UPDATE OR DELETE ON retention_log "
        "FOR EACH ROW EXECUTE FUNCTION annexa_append_only()"
    )
    op.execute(
        "CREATE TRIGGER retention_log_no_truncate BEFORE TRUNCATE ON retention_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION annexa_append_only()"
    )
    op.execute(
        """
        CREATE FUNCTION annexa_blobs_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND EXISTS (
                SELECT 1 FROM retention_log r
                WHERE r.hash = OLD.hash AND r.token = txid_current()
            ) THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION 'annexa: blobs is append-only (only annexa retention may remove '
                'a body, and it logs it)' USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute("DROP TRIGGER blobs_append_only ON blobs")
    op.execute(
        "CREATE TRIGGER blobs_append_only BEFORE UPDATE OR DELETE ON blobs "
        "FOR EACH ROW EXECUTE FUNCTION annexa_blobs_guard()"
    )


def downgrade() -> None:
    raise NotImplementedError("the evidence store is append-only; restore from backup instead")
