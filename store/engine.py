"""Engine creation: one place that knows how each database is set up."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.pool import QueuePool

DEFAULT_DATABASE_URL = "sqlite:///annexa.db"


def normalise_url(url: str | URL) -> URL:
    """Use psycopg 3 for ``postgresql://`` URLs (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def redacted_url(url: str | URL) -> str:
    """The URL with any password hidden, fit for logs and error messages."""
    return normalise_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (auditors, the daemon's health check) work while a run writes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_read_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Nothing that writes: no journal-mode switch (that is a write, and fails on a
    # read-only file), only how long to wait for a writer's lock.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class NoDatabaseError(FileNotFoundError):
    """A read was asked of a SQLite database file that does not exist."""


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL (None for other engines and in-memory databases)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    db = parsed.database
    if parsed.query.get("uri") in ("true", "1") and db.startswith("file:"):
        db = db.removeprefix("file:")  # sqlite:///file:/path/x.db?mode=ro&uri=true
    return Path(db)


def _readonly_sqlite(path: Path, **kwargs: Any) -> Engine:
    """Read-only access that never creates, migrates or switches the journal mode.

    ``mode=ro`` first. A copy handed to an auditor may sit in a directory they cannot
    write, where SQLite cannot create the WAL index it needs even to read: the file is
    then opened ``immutable`` (no locks, no side files) — right for a copy that nobody
    writes, which is what an unwritable place means.
    """
    if not path.is_file():
        raise NoDatabaseError(str(path))
    base = f"file:{quote(str(path.resolve()))}?mode=ro"
    uri = base
    try:
        probe = sqlite3.connect(base, uri=True)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            probe.close()
    except sqlite3.OperationalError:
        uri = base + "&immutable=1"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    # A queue of connections, as for a file URL: given "sqlite://" (memory) SQLAlchemy
    # would pick SingletonThreadPool, which keeps five connections and closes other
    # threads' ones beyond, in use or not — a console serving more than five requests
    # at once then failed with "Cannot operate on a closed database".
    kwargs.setdefault("poolclass", QueuePool)
    engine = create_engine("sqlite://", creator=connect, **kwargs)
    event.listen(engine, "connect", _sqlite_read_pragmas)
    return engine


def make_engine(url: str | URL, *, readonly: bool = False, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings Annexa relies on.

    ``readonly``: for commands that only read. On SQLite the file must exist
    (:class:`NoDatabaseError` otherwise) and is opened read-only; PostgreSQL sessions
    are set ``default_transaction_read_only``.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if readonly and path is not None:
            return _readonly_sqlite(path, **kwargs)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if readonly:
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("options", "-c default_transaction_read_only=on")
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("connect_timeout", 10)
    return create_engine(parsed, connect_args=connect_args, **kwargs)
