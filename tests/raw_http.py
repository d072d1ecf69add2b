"""Answers for the fakes that serve themselves on ``http.server`` (not pytest_httpserver).

Each wrote the same status/Content-Type/Content-Length/body sequence by hand; here it is once,
with a keep-alive base handler for the cloud fakes that answer every method through one
``serve`` and reply with a JSON document.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import SplitResult, parse_qs, urlsplit


def send_bytes(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    content_type: str | None = "application/json",
    headers: Mapping[str, str] | None = None,
) -> None:
    """Write one whole response: ``content_type`` (none when None), Content-Length, ``headers``."""
    handler.send_response(status)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(data)


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: Any,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> None:
    """Write ``body`` as a JSON response (see ``send_bytes``)."""
    send_bytes(handler, status, json.dumps(body).encode(), content_type, headers)


class KeepAliveJsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler whose GET and POST both go to ``serve``; quiet."""

    protocol_version = "HTTP/1.1"
    # One write per answer (headers and body together): no delayed-ACK stalls.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def request_parts(self) -> tuple[SplitResult, dict[str, list[str]], dict[str, str], bytes]:
        """The split URL, its query (blank values kept), lower-cased headers and the body."""
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        return parts, parse_qs(parts.query, keep_blank_values=True), headers, body

    def serve(self, method: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self.serve("GET")

    def do_POST(self) -> None:
        self.serve("POST")


@dataclass(frozen=True)
class Seen:
    """One request a fake saw: method, path, query and the Authorization header sent."""

    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None


class ServedFake:
    """The lifecycle and request log shared by the cloud fakes: a subclass's ``start`` sets
    ``_server``; ``with fake:`` starts and stops it; ``see`` counts (and, with ``record``,
    logs) each request under the fake's lock."""

    _server: ThreadingHTTPServer | None
    _lock: threading.Lock
    record: bool
    requests: list[Seen]
    request_count: int

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def see(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> None:
        with self._lock:
            self.request_count += 1
            if self.record:
                self.requests.append(Seen(method, path, query, headers.get("authorization")))
