"""Fixtures and helpers of the daemon tests (import them explicitly).

* ``PacedConnector`` (type ``paced``): a real connector plugin, registered for
  subprocess daemons through an entry point in a throw-away ``.dist-info`` on
  ``PYTHONPATH`` (exactly how a third-party package registers one). It yields
  ``records`` disks at ``delay`` seconds apart, each carrying the time it was
  collected, plus one user whose MFA is read from ``mfa_file`` (so a test flips a
  control between pass and fail by writing a file).
* ``TcpProxy``: a TCP proxy on 127.0.0.1 in front of PostgreSQL that a test closes
  (refusing new connections and cutting open ones) and reopens on the same port.
* ``DaemonProcess``: ``annexa daemon --config …`` as a subprocess, with helpers to
  wait for its endpoints and stop it by signal.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.checks import CheckSpec
from core.connector import CollectContext, Connector, ConnectorOptions, SecretRef
from core.records import Coverage, Evidence, Record
from tests.fakes import FAKE_REGISTRY, write_fake_mapping

if TYPE_CHECKING:
    from collector.config import Settings

REPO = Path(__file__).resolve().parents[1]
ANNEXA = Path(sys.executable).parent / "annexa"


class PacedOptions(ConnectorOptions):
    scope: str = "acct-1"
    records: int = 3
    delay: float = 0.0
    mfa_file: str | None = None
    token: SecretRef | None = None
    #: Put the collection time in each disk's payload (every run then changes them all).
    stamp: bool = True
    #: Block this long before the first record, deaf to cancellation (a hung API call).
    stall: float = 0.0


class PacedConnector(Connector):
    type = "paced"
    prefix = "fake"
    Options = PacedOptions

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        return list(FAKE_REGISTRY)

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        o: PacedOptions = self.options  # type: ignore[assignment]
        if o.stall:
            time.sleep(o.stall)
        if o.token is not None:
            tok = o.token.get()
            # A careless connector: the secret reaches a log line, an error and a payload.
            ctx.log.info("authenticating", token=tok, detail=f"using {tok}")
            yield Evidence(
                o.scope,
                "global",
                "fake.user.account",
                "svc-token",
                {"name": "svc-token", "mfa": True, "api_token": tok},
            )
        for i in range(o.records):
            if ctx.cancelled():
                return
            if i and o.delay:
                time.sleep(o.delay)
            now = datetime.now(UTC)
            payload = {"id": f"d{i}", "encrypted": True}
            if o.stamp:
                payload["seen"] = now.isoformat()
            yield Evidence(
                o.scope,
                "eu-1",
                "fake.disk.volume",
                f"d{i}",
                payload,
                collected_at=now,
            )
        yield Coverage(o.scope, "eu-1", "disk", ok=True)
        mfa = True
        if o.mfa_file and Path(o.mfa_file).exists():
            mfa = Path(o.mfa_file).read_text().strip() != "fail"
        yield Evidence(
            o.scope, "global", "fake.user.account", "alice", {"name": "alice", "mfa": mfa}
        )
        yield Coverage(o.scope, "global", "user", ok=True)


def connector_plugin(root: Path, kind: str, target: str) -> Path:
    """``root`` made a directory for PYTHONPATH whose distribution ``annexa-<kind>-test``
    registers ``target`` (``module:Class``) as ``kind`` under ``annexa.connectors``, as an
    installed plugin would."""
    info = root / f"annexa_{kind}_test-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: annexa-{kind}-test\nVersion: 0.0.0\n"
    )
    (info / "entry_points.txt").write_text(f"[annexa.connectors]\n{kind} = {target}\n")
    return root


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for PYTHONPATH registering ``paced`` under ``annexa.connectors``."""
    return connector_plugin(
        tmp_path_factory.mktemp("plugin"), "paced", "tests.daemon_fixtures:PacedConnector"
    )


#: A daemon that heartbeats and hands over fast, with no jitter: test runs start on time.
FAST_DAEMON = {"port": 0, "host": "127.0.0.1", "heartbeat": 0.5, "lease": 2, "jitter": 0,
               "grace_period": 2}


def paced_settings(db_url: str, spool_dir: Path, *, schedule: str = "every 1s",
                   options: dict[str, Any] | None = None, config_path: Path | None = None,
                   **daemon: Any) -> Settings:
    """In-process settings for a daemon with one ``paced`` connector ``p1`` on
    ``schedule`` (two records unless ``options`` say otherwise): :data:`FAST_DAEMON`
    spooling under ``spool_dir``, with ``daemon`` on top."""
    from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings

    options = options or {"records": 2}
    cfg = ConnectorConfig(type="paced", name="p1", schedule=schedule, options=options)
    model = AnnexaConfig(
        database={"url": db_url},
        connectors=[cfg],
        daemon={**FAST_DAEMON, "spool_dir": str(spool_dir), **daemon},
    )
    settings = Settings(model, config_path)
    settings.connectors = [LoadedConnector(cfg, PacedConnector, PacedOptions(**options))]
    return settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def paced(schedule: str, name: str = "p1", **options: Any) -> dict[str, Any]:
    """A ``connectors`` entry for ``write_config``: the paced connector on ``schedule``."""
    return {"type": "paced", "name": name, "schedule": schedule, "options": options}


def config_head(db_url: str, level: str = "debug") -> list[str]:
    """A daemon config's first lines: [database] at ``db_url``, [mappings] of the ``maps``
    folder beside it (see ``write_fake_mapping``), and JSON [log] lines at ``level``."""
    mappings = ["[mappings]", 'paths = ["maps"]']
    log = ["[log]", 'format = "json"', f"level = {json.dumps(level)}"]
    return ["[database]", f"url = {json.dumps(db_url)}", *mappings, *log]


def write_config(
    path: Path,
    db_url: str,
    *,
    connectors: list[dict[str, Any]],
    daemon: dict[str, Any] | None = None,
    notifications: str = "",
) -> Path:
    """A config file with the fake mapping, ``connectors`` and a [daemon] table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_fake_mapping(path.parent / "maps")
    d = {
        "port": 0,
        "heartbeat": 0.5,
        "lease": 2,
        "grace_period": 3,
        "jitter": 0,
        "stale_heartbeats": 4,
        "batch_size": 5,
        "spool_dir": str(path.parent / "spool"),
        **(daemon or {}),
    }
    lines = [*config_head(db_url), "[daemon]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in d.items()]
    lines.append(notifications)
    for c in connectors:
        lines.append("[[connectors]]")
        opts = c.get("options", {})
        for k in ("type", "name", "schedule"):
            if k in c:
                lines.append(f"{k} = {json.dumps(c[k])}")
        lines.append("[connectors.options]")
        for k, v in opts.items():
            if isinstance(v, dict):
                inner = ", ".join(f"{ik} = {json.dumps(iv)}" for ik, iv in v.items())
                lines.append(f"{k} = {{ {inner} }}")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class DaemonProcess:
    """``annexa daemon`` in a subprocess; stderr (JSON logs) captured to a file."""

    def __init__(
        self,
        config: Path,
        plugin: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        name: str = "d",
    ) -> None:
        self.port = port or free_port()
        self.log_path = config.parent / f"{name}-{self.port}.log"
        full_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(plugin), str(REPO)]),
            **(env or {}),
        }
        full_env.pop("ANNEXA_CONFIG", None)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(ANNEXA), "daemon", "--config", str(config), "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=config.parent,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.logs()}")
            try:
                return http_get(self.url + "/healthz", timeout=0.5)[0] == 200
            except OSError:
                return False

        wait_for(up, timeout, "the daemon's /healthz", interval=0.1)

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.url + path)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"event": line, "_raw": True})
        return out


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Collects started daemons and stops every one at the end of the test."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.stop()


class TcpProxy:
    """127.0.0.1:<port> → target; ``close()`` makes the target unreachable, ``open()``
    restores it on the same port."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Refuse new connections and cut every open one (the database "goes away")."""
        if self._server is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not on Linux
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def pg_proxy() -> Iterator[Callable[[int], TcpProxy]]:
    made: list[TcpProxy] = []

    def make(target_port: int = 5432) -> TcpProxy:
        p = TcpProxy(target_port)
        p.open()
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


class JiraWriteFake:
    """Jira's write API for notifications, with state, on a pytest-httpserver.

    Shapes from the Jira Cloud platform REST API v2 reference (issues, issue comments,
    issue transitions) and its OpenAPI models ``IssueTransition``/``StatusDetails``:
    ``POST /rest/api/2/issue`` → 201 ``{"id", "key", "self"}``;
    ``POST /rest/api/2/issue/{key}/comment`` → 201 comment ``{"id", "body", …}``;
    ``GET /rest/api/2/issue/{key}/transitions`` → ``{"expand": "transitions",
    "transitions": [{"id", "name", "to": {"id", "name", "statusCategory": {"key"}}}]}``
    offering only the transitions valid from the issue's status (a simple workflow:
    To Do --Done--> Done --Reopen--> To Do); ``POST …/transitions`` with
    ``{"transition": {"id"}}`` → 204, 400 for a transition not valid now. Basic auth
    is checked on every request (401 otherwise).
    """

    WORKFLOW = {
        "To Do": [("31", "Done", "Done", "done")],
        "Done": [("41", "Reopen", "To Do", "new")],
    }

    def __init__(self, server: Any, user: str, token: str, prefix: str = "/jira") -> None:
        import base64

        self.auth = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.prefix = prefix
        self.issues: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.base = server.url_for(prefix)
        server.expect_request(re.compile("^" + re.escape(prefix) + "/")).respond_with_handler(
            self.handle
        )

    def handle(self, request: Any) -> Any:
        from werkzeug import Response

        path = request.path[len(self.prefix) :]
        self.calls.append((request.method, path))
        if request.headers.get("Authorization") != self.auth:
            return Response(json.dumps({"errorMessages": ["unauthorized"]}), 401)

        def reply(body: Any, status: int = 200) -> Any:
            return Response(json.dumps(body), status, content_type="application/json")

        if request.method == "POST" and path == "/rest/api/2/issue":
            fields = request.get_json()["fields"]
            key = f"{fields['project']['key']}-{len(self.issues) + 1}"
            self.issues[key] = {"fields": fields, "status": "To Do", "comments": []}
            n = len(self.issues)
            return reply({"id": str(10000 + n), "key": key, "self": f"{self.base}/{n}"}, 201)
        m = re.fullmatch(r"/rest/api/2/issue/([A-Z]+-\d+)/(comment|transitions)", path)
        if not m or m.group(1) not in self.issues:
            return reply({"errorMessages": ["Issue does not exist"]}, 404)
        issue = self.issues[m.group(1)]
        if m.group(2) == "comment" and request.method == "POST":
            body = request.get_json()["body"]
            issue["comments"].append(body)
            return reply({"id": str(len(issue["comments"])), "body": body}, 201)
        options = self.WORKFLOW[issue["status"]]
        if m.group(2) == "transitions" and request.method == "GET":
            return reply(
                {
                    "expand": "transitions",
                    "transitions": [
                        {
                            "id": tid,
                            "name": name,
                            "to": {"id": tid, "name": to, "statusCategory": {"key": cat}},
                        }
                        for tid, name, to, cat in options
                    ],
                }
            )
        if m.group(2) == "transitions" and request.method == "POST":
            wanted = request.get_json()["transition"]["id"]
            for tid, _name, to, _cat in options:
                if tid == wanted:
                    issue["status"] = to
                    return Response(status=204)
            return reply({"errorMessages": ["It is not on the appropriate screen"]}, 400)
        return reply({"errorMessages": ["method not allowed"]}, 405)
