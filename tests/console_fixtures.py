"""A demo-like store for the console tests, built by the real run engine, and the console
served by a real uvicorn on 127.0.0.1.

The estate is the Jira fake of ``tests.test_jira`` (pytest-httpserver, a real socket):
its planted problems make A.8.32 fail. One change ticket's summary carries hostile
markup (``<script>``, ``"><img onerror>``), and is edited between two runs so that the
ticket has two evidence versions to diff. Runs are signed with a key from the config
file, as in production. ``Estate.before`` is an instant before any run (every control
without evidence then); ``Estate.between`` is between the two runs.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from collector.config import LoadedConnector, load_settings
from collector.console import build
from collector.console.auth import Access, hash_token, load_access
from collector.runner import run_connector
from connectors.jira import JiraConnector
from core.signing import Signer, write_private_key
from mappings.loader import MappingIndex, load_mappings
from store.engine import make_engine
from store.migrate import upgrade
from tests import test_jira as tj

HOSTILE = 'Firewall <script>alert("xss")</script> "><img src=x onerror=alert(2)> change'
EDITED = "Firewall rule change (rolled back)"
AUDITOR_TOKEN = "auditor-token-0123456789abcdef0123"
VIEWER_TOKEN = "viewer-token-0123456789abcdef01234"
ADMIN_TOKEN = "admin-token-0123456789abcdef012345"


@dataclass
class Estate:
    db_url: str
    config: Path
    auth: Path
    index: MappingIndex
    before: datetime
    between: datetime
    jira: tj.FakeJira
    tmp: Path


def _run(settings: Any, index: MappingIndex) -> None:
    opts = settings.model.connectors[0]
    lc = LoadedConnector(opts, JiraConnector, JiraConnector.Options.model_validate(opts.options))
    summary = run_connector(settings, lc, make_engine(settings.database_url), index)
    assert summary.status == "succeeded", summary.errors


def _access_file(tmp: Path) -> Path:
    path = tmp / "console-access.toml"
    path.write_text(
        'session_secret = { env = "ANNEXA_TEST_CONSOLE_SECRET" }\n'
        "login_attempts = 3\n"
        "[[tokens]]\n"
        'user = "alice"\nrole = "auditor"\ntoken = { env = "ANNEXA_TEST_AUDITOR_TOKEN" }\n'
        "[[tokens]]\n"
        f'user = "victor"\nrole = "viewer"\nsha256 = "{hash_token(VIEWER_TOKEN)}"\n'
        "[[tokens]]\n"
        f'user = "ada"\nrole = "admin"\nsha256 = "{hash_token(ADMIN_TOKEN)}"\n'
    )
    return path


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    tmp = tmp_path_factory.mktemp("console")
    yield from build_estate(tmp, f"sqlite:///{tmp / 'annexa.db'}")


@pytest.fixture(scope="module")
def pg_estate(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str) -> Iterator[Estate]:
    """The same estate in a PostgreSQL database of its own, dropped afterwards."""
    import uuid

    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = f"annexa_test_console_{uuid.uuid4().hex[:10]}"
    admin = make_url(pg_admin_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(pg_admin_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield from build_estate(tmp_path_factory.mktemp("console-pg"),
                                url.render_as_string(hide_password=False))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def build_estate(tmp: Path, db_url: str) -> Iterator[Estate]:
    """The estate in the database at ``db_url`` (two signed Jira runs; see the module doc)."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.no_handler_status_code = 418
    server.start()
    saved = dict(os.environ)
    os.environ["ANNEXA_TEST_JIRA_TOKEN"] = tj.TOKEN
    os.environ["ANNEXA_TEST_AUDITOR_TOKEN"] = AUDITOR_TOKEN
    os.environ["ANNEXA_TEST_CONSOLE_SECRET"] = "console-session-secret-for-tests-only"
    os.environ.pop("ANNEXA_DATABASE_URL", None)
    try:
        jira = tj.FakeJira(server)
        tj.plant(jira)
        jira.issues["CHG-2"].summary = HOSTILE
        key = tmp / "signing.pem"
        write_private_key(Signer.generate(), key)
        opts = tj.options(jira).model_dump(mode="json")
        import json

        config = tmp / "annexa.toml"
        config.write_text(
            f'[database]\nurl = "{db_url}"\n\n[signing]\nkey = {{ file = "{key}" }}\n\n'
            '[log]\nformat = "json"\nlevel = "warning"\n\n'
            '[[connectors]]\ntype = "jira"\nname = "jira-prod"\n'
            f"options = {_toml_inline(json.loads(json.dumps(opts)))}\n"
        )
        settings = load_settings(config)
        index = load_mappings(settings.mapping_dirs)
        upgrade(make_engine(db_url))
        before = datetime.now(UTC)
        time.sleep(0.01)
        _run(settings, index)
        time.sleep(0.01)
        between = datetime.now(UTC)
        time.sleep(0.01)
        jira.issues["CHG-2"].summary = EDITED
        _run(settings, index)
        yield Estate(db_url, config, _access_file(tmp), index, before, between, jira, tmp)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.clear()
        if server.is_running():
            server.stop()


def _toml_inline(value: Any) -> str:
    """A JSON-able value as a TOML inline value (the config file is TOML)."""
    import json

    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {_toml_inline(v)}" for k, v in value.items()
                          if v is not None)
        return "{ " + items + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_inline(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


class LiveConsole:
    """The console app on a real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", server_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveConsole:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the console did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def serve(
    estate: Estate, *, comments: bool, access: Access | None = None, oidc: Any = None
) -> LiveConsole:
    """The console over the estate's store, as ``annexa serve`` builds it."""
    from collector.console.auth import open_access

    os.environ["ANNEXA_TEST_AUDITOR_TOKEN"] = AUDITOR_TOKEN
    os.environ["ANNEXA_TEST_CONSOLE_SECRET"] = "console-session-secret-for-tests-only"
    settings = load_settings(estate.config)
    engine = make_engine(estate.db_url, readonly=not comments)
    if access is None:
        access = load_access(estate.auth) if comments else open_access()
    return LiveConsole(
        build(settings, engine, estate.index, access, comments=comments, oidc=oidc)
    )
