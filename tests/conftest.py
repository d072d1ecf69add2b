"""Shared fixtures: a fresh database per test on SQLite *and* PostgreSQL.

PostgreSQL tests are on by default and fail (never skip). Which server, decided once per
session when the first PostgreSQL test needs it:

* ``ANNEXA_TEST_POSTGRES_URL`` when set (CI sets it): that server; unreachable is one
  error at that point, ending the session, not one failure per test.
* otherwise the machine's server on 127.0.0.1:5432 when one answers;
* otherwise a throwaway PostgreSQL started with ``pgserver`` (PostgreSQL in a wheel, in
  the ``test`` extra) in a temporary directory, stopped and deleted at the end.

A developer may still set ``ANNEXA_TEST_SKIP_POSTGRES=1``; CI never does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from store.engine import make_engine
from store.migrate import upgrade
from tests import clock

pytest_plugins = ["tests.aws_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    # Before collection, so module-level fixtures already see the shifted clock.
    clock.start()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # xdist workers inherit COLUMNS=80 / LINES=24 from their launcher: the CLI would
        # take every piped table and message for an 80-column terminal. Tests that want a
        # width set one themselves; otherwise output is judged as piped, as serially.
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    clock.stop()


@pytest.fixture(autouse=True)
def _own_spool(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test journals its CLI runs into a spool directory of its own (not ~/.local)."""
    monkeypatch.setenv("ANNEXA_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))

CONFIGURED_PG_URL = os.environ.get("ANNEXA_TEST_POSTGRES_URL")
#: The machine's server. (The variable only lets tests/test_pg_fallback.py pretend that
#: nothing listens there.)
MACHINE_PG_URL = os.environ.get(
    "ANNEXA_TEST_MACHINE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SKIP_PG = os.environ.get("ANNEXA_TEST_SKIP_POSTGRES") == "1"
ENGINES = ["sqlite"] if SKIP_PG else ["sqlite", "postgresql"]


def _pg_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _answers(url: str) -> str | None:
    """None when ``url`` accepts a connection, else the reason."""
    try:
        with psycopg.connect(_pg_conninfo(url), autocommit=True, connect_timeout=5):
            return None
    except psycopg.OperationalError as exc:
        return " ".join(str(exc).split())


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """The admin URL of the PostgreSQL server of this session (see the module doc)."""
    if CONFIGURED_PG_URL:
        reason = _answers(CONFIGURED_PG_URL)
        if reason is not None:
            pytest.exit(
                f"PostgreSQL at ANNEXA_TEST_POSTGRES_URL="
                f"{make_url(CONFIGURED_PG_URL).render_as_string()} is unreachable: {reason}",
                returncode=1,
            )
        yield CONFIGURED_PG_URL
        return
    if _answers(MACHINE_PG_URL) is None:
        yield MACHINE_PG_URL
        return
    try:
        import pgserver
    except ImportError:
        pytest.exit(
            "no PostgreSQL for the tests: nothing answers on 127.0.0.1:5432, "
            "ANNEXA_TEST_POSTGRES_URL is not set and pgserver is not installed "
            "(pip install -e '.[test]'); or set ANNEXA_TEST_SKIP_POSTGRES=1 locally",
            returncode=1,
        )
    # Not under pytest's 0700 temp root: as root, pgserver runs PostgreSQL as a user
    # of its own, which must reach the data directory.
    import tempfile

    server = pgserver.get_server(tempfile.mkdtemp(prefix="annexa-pg-"), cleanup_mode="delete")
    print(f"\nthrowaway PostgreSQL (pgserver) for this session: {server.get_uri()}")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(pg_admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    name = f"annexa_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_conninfo(pg_admin_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(pg_admin_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL per engine: a temp SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'annexa.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on ``db_url``."""
    eng = make_engine(db_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()
