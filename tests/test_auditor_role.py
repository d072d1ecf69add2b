"""The auditor role: SELECT on every documented view, refused every write and DDL.

PostgreSQL only (SQLite has no roles). The role logs in for real over a socket with
psycopg; the server uses trust authentication, so no password is needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from collector.commands.auditor import grant_auditor
from mappings.loader import load_mappings
from store.engine import make_engine
from store.migrate import upgrade
from store.views import READABLE_TABLES, VIEWS
from tests.conftest import SKIP_PG
from tests.test_auditor_history import build_history

pytestmark = pytest.mark.skipif(SKIP_PG, reason="ANNEXA_TEST_SKIP_POSTGRES=1")


@pytest.fixture
def role(postgres_url: str) -> Iterator[str]:
    """A cluster-wide role name, dropped (with its grants) before its database is."""
    name = f"auditor_{uuid.uuid4().hex[:10]}"
    yield name
    db = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(db, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')


def test_auditor_can_read_every_view_and_write_nothing(
    postgres_url: str, role: str, tmp_path: Path
) -> None:
    engine = make_engine(postgres_url)
    upgrade(engine)
    build_history(engine, load_mappings(), tmp_path)
    done = grant_auditor(engine, role)
    assert any("created role" in d for d in done)
    grant_auditor(engine, role)  # idempotent
    engine.dispose()

    url = make_url(postgres_url).set(drivername="postgresql", username=role)
    with psycopg.connect(url.render_as_string(False), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == role
        for view in (*VIEWS, *READABLE_TABLES):
            conn.execute(f"SELECT * FROM {view} LIMIT 5").fetchall()
        statuses = dict(conn.execute(
            "SELECT control, status FROM control_status_unadjusted"
        ).fetchall())
        assert len(statuses) == 93 and statuses["A.8.24"] == "pass"
        assert conn.execute("SELECT count(*) FROM findings_current").fetchone()[0] == 2
        assert conn.execute(
            "SELECT count(*) FROM manual_evidence_current WHERE control = 'A.5.2'"
        ).fetchone()[0] == 1

        # Even with the session default switched off, privileges refuse every write.
        conn.execute("SET default_transaction_read_only = off")
        refused = [
            "SELECT * FROM blobs LIMIT 1",
            "SELECT * FROM findings LIMIT 1",
            "INSERT INTO runs (id, source, connector_type, status, started_at, agent_version, "
            "config_digest, mapping_digest) VALUES ('x', 'x', 'x', 'running', now(), 'x', "
            "'x', 'x')",
            "INSERT INTO retention_log (hash, size, cutoff, keep, removed_at, removed_by, "
            "token) VALUES ('x', 1, now(), '1d', now(), 'x', 1)",
            "UPDATE runs SET status = 'failed'",
            "DELETE FROM runs",
            "DELETE FROM blobs",
            "UPDATE annex_a_controls SET title = 'x'",
            "DELETE FROM findings_current",
            "TRUNCATE evidence",
            "CREATE TABLE public.auditor_notes (x int)",
            "CREATE VIEW public.auditor_view AS SELECT 1",
            "DROP VIEW control_status_unadjusted",
            "ALTER TABLE runs ADD COLUMN x int",
            "CREATE INDEX ix_auditor ON runs (source)",
            "GRANT SELECT ON blobs TO PUBLIC",
        ]
        for sql in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
