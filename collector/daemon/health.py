"""``/healthz``, ``/readyz`` and ``/metrics`` over one small threaded HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from collector.daemon.metrics import CONTENT_TYPE, Metrics

log = structlog.get_logger("annexa.daemon")


class HealthServer:
    """Serves the endpoints on ``host:port`` (port 0: any free port, see ``.port``).

    ``ready()`` returns ``(ok, details)``; it must answer quickly (the daemon's check
    uses short connection and statement timeouts).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Callable[[], tuple[bool, dict[str, Any]]],
        metrics: Metrics,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "annexa"
            sys_version = ""

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/readyz":
                    ok, details = outer._ready()
                    body = json.dumps({"ready": ok, **details}, sort_keys=True).encode() + b"\n"
                    self._send(200 if ok else 503, body, "application/json")
                elif path == "/metrics":
                    self._send(200, metrics.render(), CONTENT_TYPE)
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # probes every few seconds would drown the logs

        self._ready_fn = ready
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="annexa-http", daemon=True
        )

    def _ready(self) -> tuple[bool, dict[str, Any]]:
        try:
            return self._ready_fn()
        except Exception as exc:  # noqa: BLE001 - a probe must answer, not crash
            return False, {"error": type(exc).__name__}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
