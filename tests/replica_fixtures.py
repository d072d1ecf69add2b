"""Fixtures of the replica tests (``[daemon] distribute = true``).

* ``UnitizedConnector`` (type ``unitized``): a real connector plugin that plans its
  units (scope x region x service) and reads each one from a fake HTTP source on
  127.0.0.1 with httpx, sending the reading process's pid. Registered for subprocess
  daemons through an entry point in a throw-away ``.dist-info`` on PYTHONPATH.
* ``GateServer``: that source. It answers each unit with its resources, but holds
  requests at a gate so a test can (1) make sure every replica holds a unit at once
  and (2) keep one replica's unit blocked until that replica is killed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from core.checks import CheckSpec
from core.connector import CollectContext, Connector, ConnectorOptions
from core.records import Coverage, Evidence, Record
from tests.daemon_fixtures import connector_plugin
from tests.fakes import FAKE_REGISTRY


class UnitizedOptions(ConnectorOptions):
    url: str
    scopes: list[str] = ["acct-1"]
    regions: list[str] = ["eu-1"]
    #: Each unit reads this many disks.
    records: int = 3


class UnitizedConnector(Connector):
    type = "unitized"
    prefix = "fake"
    Options = UnitizedOptions
    SERVICES: ClassVar[tuple[str, ...]] = ("disk", "user")

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        return list(FAKE_REGISTRY)

    def plan_units(self, ctx: CollectContext) -> list[tuple[str, str, str]]:
        o: UnitizedOptions = self.options  # type: ignore[assignment]
        return [(s, r, v) for s in o.scopes for r in o.regions for v in self.SERVICES]

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        for scope, region, service in self.plan_units(ctx):
            yield from self.collect_unit(ctx, scope, region, service)

    def collect_unit(
        self, ctx: CollectContext, scope: str, region: str, service: str
    ) -> Iterator[Record]:
        o: UnitizedOptions = self.options  # type: ignore[assignment]
        try:
            r = httpx.get(
                f"{o.url}/{scope}/{region}/{service}",
                params={"n": o.records},
                headers={"x-pid": str(os.getpid())},
                timeout=httpx.Timeout(5.0, read=None),  # the gate holds it as long as needed
            )
            r.raise_for_status()
        except httpx.HTTPError as exc:
            yield Coverage(scope, region, service, ok=False, error=type(exc).__name__)
            return
        for item in r.json():
            if service == "disk":
                yield Evidence(scope, region, "fake.disk.volume", item["id"],
                               {"id": item["id"], "encrypted": True})
            else:
                yield Evidence(scope, region, "fake.user.account", item["id"],
                               {"name": item["id"], "mfa": True})
        yield Coverage(scope, region, service, ok=True)


class GateServer:
    """The fake source. ``expect`` distinct pids must hold a request at once before
    any is answered; afterwards the ``victim`` pid's next request is held until
    ``victim_gone`` is set (the test kills that process first), and the others' wait
    until the victim's is held."""

    def __init__(self, expect: int, victim: int) -> None:
        self.expect = expect
        self.victim = victim
        self.lock = threading.Condition()
        self.holding: set[int] = set()
        self.opened = False
        self.served: list[tuple[int, str]] = []
        self.victim_blocked = threading.Event()
        self.victim_gone = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                pid = int(self.headers.get("x-pid", "0"))
                path, _, query = self.path.partition("?")
                if not gate.admit(pid):
                    return  # the victim: its process is dead, nobody reads an answer
                n = int(query.split("=")[1]) if query.startswith("n=") else 3
                scope, region, service = path.strip("/").split("/")
                body = json.dumps(
                    [{"id": f"{scope}-{region}-{service}-{i}"} for i in range(n)]
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with gate.lock:
                    gate.served.append((pid, path))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def admit(self, pid: int) -> bool:
        with self.lock:
            if not self.opened:
                self.holding.add(pid)
                if len(self.holding) >= self.expect:
                    self.opened = True
                    self.lock.notify_all()
                while not self.opened:
                    self.lock.wait()
                return True
            victim_next = pid == self.victim
        if victim_next:
            self.victim_blocked.set()
            self.victim_gone.wait()
            return False
        # The others wait until the victim holds its second unit, so that it surely
        # gets one (jobs are left: each other replica holds at most one meanwhile).
        self.victim_blocked.wait(600)
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> GateServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.victim_gone.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def unitized_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for PYTHONPATH registering ``unitized`` under ``annexa.connectors``."""
    return connector_plugin(
        tmp_path_factory.mktemp("unitized-plugin"), "unitized",
        "tests.replica_fixtures:UnitizedConnector",
    )
