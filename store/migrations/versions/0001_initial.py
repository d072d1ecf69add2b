"""Initial schema: runs, units, blobs, evidence and findings change logs, append-only triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("evidence", "findings", "blobs", "run_units")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("connector_type", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("heartbeat_at", UTCDateTime()),
        sa.Column("host", sa.String(255)),
        sa.Column("agent_version", sa.String(50), nullable=False),
        sa.Column("config_digest", sa.String(64), nullable=False),
        sa.Column("mapping_digest", sa.String(64), nullable=False),
        sa.Column("counts", sa.Text),
        sa.Column("errors", sa.Text),
        sa.Column("digest", sa.String(64)),
        sa.Column("prev_digest", sa.String(64)),
    )
    op.create_index("ix_runs_source_finished", "runs", ["source", "finished_at"])
    op.create_table(
        "run_units",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("service", sa.String(100), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_run_units_run", "run_units", ["run_id"])
    op.create_table(
        "blobs",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
    )
    op.create_table(
        "evidence",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("service", sa.String(100), nullable=False),
        sa.Column("resource_type", sa.String(200), nullable=False),
        sa.Column("resource_id", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("collected_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_evidence_source_key", "evidence", ["source", "key", "id"])
    op.create_index("ix_evidence_run", "evidence", ["run_id"])
    op.create_index("ix_evidence_collected", "evidence", ["collected_at"])
    op.create_table(
        "findings",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("check_id", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("region", sa.String(100), nullable=False),
        sa.Column("service", sa.String(100), nullable=False),
        sa.Column("resource_type", sa.String(200), nullable=False),
        sa.Column("resource_id", sa.Text, nullable=False),
        sa.Column("status", sa.String(20)),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("evidence_hash", sa.String(64)),
        sa.Column("controls", sa.Text, nullable=False),
        sa.Column("mapping_digest", sa.String(64), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("finding_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_findings_source_key", "findings", ["source", "key", "id"])
    op.create_index("ix_findings_run", "findings", ["run_id"])
    op.create_index("ix_findings_observed", "findings", ["observed_at"])

    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'annexa: {table} is append-only'); END"
            )
    op.execute(
        "CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs "
        "BEGIN SELECT RAISE(ABORT, 'annexa: runs are append-only'); END"
    )
    op.execute(
        "CREATE TRIGGER runs_finished_immutable BEFORE UPDATE ON runs "
        "WHEN OLD.status <> 'running' OR NEW.id <> OLD.id OR NEW.source <> OLD.source "
        "OR NEW.started_at <> OLD.started_at "
        "BEGIN SELECT RAISE(ABORT, 'annexa: a finished run is immutable'); END"
    )


def _postgres_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION annexa_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'annexa: % is append-only', TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION annexa_runs_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'annexa: runs are append-only'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF OLD.status <> 'running' OR NEW.id <> OLD.id OR NEW.source <> OLD.source
               OR NEW.started_at <> OLD.started_at THEN
                RAISE EXCEPTION 'annexa: a finished run is immutable'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION annexa_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION annexa_append_only()"
        )
    op.execute(
        "CREATE TRIGGER runs_guard BEFORE UPDATE OR DELETE ON runs "
        "FOR EACH ROW EXECUTE FUNCTION annexa_runs_guard()"
    )
    op.execute(
        "CREATE TRIGGER runs_no_truncate BEFORE TRUNCATE ON runs "
        "FOR EACH STATEMENT EXECUTE FUNCTION annexa_append_only()"
    )


def downgrade() -> None:
    raise NotImplementedError("the evidence store is append-only; restore from backup instead")
