"""Local stand-ins for AWS APIs that moto does not implement (IAM Access Analyzer).

Used by ``annexa demo`` and the tests, never by a real collection. The fake speaks the
real wire protocol (REST-JSON, ``GET``/``PUT /analyzer``), so boto3 and the connector
are unchanged: point boto3 at it with the standard per-service endpoint variable
``AWS_ENDPOINT_URL_ACCESSANALYZER``.

The account of a request is the account of its access key, looked up in the moto
server running in this process (as in the demo and the tests); a key moto does not
know belongs to moto's default account. The region is read from the request signature.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_ACCOUNT = "123456789012"


def _signature_scope(headers: Any) -> tuple[str, str]:
    """(access key id, region) from a SigV4 ``Authorization`` header."""
    auth = headers.get("Authorization", "")
    if "Credential=" not in auth:
        return "", "us-east-1"
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    return scope[0], scope[2] if len(scope) > 2 else "us-east-1"


def account_of(access_key: str) -> str:
    """The moto account that issued ``access_key`` (moto in this process), else default."""
    try:
        from moto.iam.models import get_account_id_from
    except ImportError:  # pragma: no cover - moto is present wherever the fake is used
        return DEFAULT_ACCOUNT
    return str(get_account_id_from(access_key)) if access_key else DEFAULT_ACCOUNT


class AccessAnalyzerFake:
    """An in-memory Access Analyzer: ``CreateAnalyzer`` and ``ListAnalyzers``."""

    def __init__(self) -> None:
        self.analyzers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, str]] = []  # (account, region, operation)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- state ---------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.analyzers.clear()
            self.requests.clear()

    def add(self, account: str, region: str, name: str, type_: str = "ACCOUNT",
            status: str = "ACTIVE") -> dict[str, Any]:
        analyzer = {
            "arn": f"arn:aws:access-analyzer:{region}:{account}:analyzer/{name}",
            "name": name,
            "type": type_,
            "createdAt": datetime(2026, 1, 5, tzinfo=UTC).isoformat().replace("+00:00", "Z"),
            "status": status,
            "tags": {},
        }
        with self._lock:
            self.analyzers.setdefault((account, region), []).append(analyzer)
        return analyzer

    # -- HTTP ----------------------------------------------------------------------
    def handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        access_key, region = _signature_scope(handler.headers)
        account = account_of(access_key)
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"{}") if length else {}
        if parts.path.rstrip("/") != "/analyzer":
            return 404, {"__type": "ResourceNotFoundException", "message": "not found"}
        if handler.command == "GET":
            self.requests.append((account, region, "ListAnalyzers"))
            wanted = parse_qs(parts.query).get("type", [None])[0]
            with self._lock:
                found = [a for a in self.analyzers.get((account, region), [])
                         if wanted in (None, a["type"])]
            return 200, {"analyzers": found}
        if handler.command == "PUT":
            self.requests.append((account, region, "CreateAnalyzer"))
            analyzer = self.add(account, region, body["analyzerName"], body.get("type",
                                                                               "ACCOUNT"))
            return 200, {"arn": analyzer["arn"]}
        return 405, {"__type": "ValidationException", "message": "method not allowed"}

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                status, answer = fake.handle(self)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status >= 400:
                    self.send_header("x-amzn-ErrorType", answer.get("__type", "Error"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _any

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def netloc(self) -> str:
        return urlsplit(self.url).netloc


@contextmanager
def access_analyzer_fake() -> Iterator[AccessAnalyzerFake]:
    fake = AccessAnalyzerFake()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
