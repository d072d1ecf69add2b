"""Shared fixtures: a fresh database per test on SQLite *and* PostgreSQL.

PostgreSQL tests are on by default and fail (never skip) when the server named by
``ANNEXA_TEST_POSTGRES_URL`` (default: postgres@127.0.0.1:5432, trust auth) cannot be
reached. A developer without PostgreSQL may set ``ANNEXA_TEST_SKIP_POSTGRES=1``;
CI never does.
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


def pytest_unconfigure(config: pytest.Config) -> None:
    clock.stop()


@pytest.fixture(autouse=True)
def _own_spool(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test journals its CLI runs into a spool directory of its own (not ~/.local)."""
    monkeypatch.setenv("ANNEXA_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))

PG_ADMIN_URL = os.environ.get(
    "ANNEXA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SKIP_PG = os.environ.get("ANNEXA_TEST_SKIP_POSTGRES") == "1"
ENGINES = ["sqlite"] if SKIP_PG else ["sqlite", "postgresql"]


def _pg_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    name = f"annexa_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_conninfo(PG_ADMIN_URL)
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is unreachable at {make_url(PG_ADMIN_URL).render_as_string()}: {exc}\n"
            "Start it, point ANNEXA_TEST_POSTGRES_URL at one, or (locally only) set "
            "ANNEXA_TEST_SKIP_POSTGRES=1."
        )
    with conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
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
