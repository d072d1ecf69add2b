"""Writes past the append-only triggers, as the database's owner (or an attacker with the
file or a superuser login) can: the tampering that verification must name."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from sqlalchemy.engine import make_url


def tamper(db_url: str, *statements: str, params: tuple[Any, ...] = ()) -> int:
    """Run ``statements`` (``%s`` placeholders, each bound to ``params``) around the
    triggers: on SQLite by dropping every trigger, on PostgreSQL in replica mode, where
    triggers do not fire. Returns how many rows they changed."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        con = sqlite3.connect(url.database or "")
        try:
            triggers = con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for (name,) in triggers.fetchall():
                con.execute(f"DROP TRIGGER {name}")
            for statement in statements:
                con.execute(statement.replace("%s", "?") if params else statement, params)
            con.commit()
            return con.total_changes
        finally:
            con.close()
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    changed = 0
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("SET session_replication_role = replica")
        for statement in statements:
            changed += con.execute(statement, params or None).rowcount  # type: ignore[arg-type]
    return changed
