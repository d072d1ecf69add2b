"""Trust: signed runs and retention entries, recorded keys, time-stamp tokens, sealed views.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

* ``runs.signature`` / ``runs.key_id`` — the Ed25519 signature of the run's digest,
  set in the same UPDATE that seals the run (the runs guard allows no later change).
* ``retention_log.signature`` / ``key_id`` — each removal is signed too.
* ``signing_keys`` — every public key that signed something, recorded when first used
  (append-only). Verification against these is a self-check; trust comes from the
  keys an auditor keeps (``verify --trusted-keys``).
* ``run_timestamps`` — RFC 3161 time-stamp tokens over run digests (append-only).
* the views of :mod:`store.views` are dropped (they were recreated here, reading rows of
  sealed runs only, until migration 0005 took over creating them: their definitions
  describe the head schema).
"""

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime
from store.views import drop_views

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("signing_keys", "run_timestamps")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    drop_views(op)
    # Plain ADD COLUMN on both engines: nullable columns need no table rebuild on SQLite,
    # so its append-only triggers stay as they are.
    op.add_column("runs", sa.Column("signature", sa.Text))
    op.add_column("runs", sa.Column("key_id", sa.String(16)))
    op.add_column("retention_log", sa.Column("signature", sa.Text))
    op.add_column("retention_log", sa.Column("key_id", sa.String(16)))
    op.create_table(
        "signing_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("algorithm", sa.String(20), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("first_used_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "run_timestamps",
        sa.Column("id", ROWID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("tsa", sa.Text, nullable=False),
        sa.Column("gen_time", UTCDateTime(), nullable=False),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_run_timestamps_run", "run_timestamps", ["run_id"])
    for table in APPEND_ONLY:
        if pg:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION annexa_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION annexa_append_only()"
            )
        else:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'annexa: {table} is append-only'); END"
                )


def downgrade() -> None:
    raise NotImplementedError("the evidence store is append-only; restore from backup instead")
