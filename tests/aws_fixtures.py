"""Fixtures for AWS tests: a real moto server on 127.0.0.1, and a fault-injecting proxy.

* ``moto_server`` (session): ``ThreadedMotoServer`` on a free loopback port.
* ``aws_env``: resets moto, isolates the AWS environment (no profile, config file,
  proxy or stray credentials of the machine) and points boto3 at moto with the
  standard ``AWS_ENDPOINT_URL`` alone — S3 Control included: with a custom endpoint
  the connector keeps the account id out of the host name. Yields the endpoint URL.
* ``aws_fault_proxy``: like ``aws_env``, but the HTTP proxy is a small local server
  that forwards to moto and answers chosen requests with an error instead (throttling,
  AccessDenied…). Real boto3 retry and error parsing run against real HTTP answers;
  the connector's code is not patched.
* ``aws_module_env``: ``aws_env`` set up once for a module (one planted estate read by
  many tests).
* ``aws_offline_env``: the isolated environment with fake credentials and no proxy,
  for unreachable-endpoint tests.
* ``access_analyzer`` (session): the local fake of the operations moto lacks
  (:mod:`annexa_demo.aws.fakes`: Access Analyzer, GuardDuty malware protection plans,
  Macie jobs, DNS Firewall associations, conformance packs, restore testing), reached
  through the standard per-service endpoint variables (``AWS_ENDPOINT_URL_GUARDDUTY``…)
  and listed in ``NO_PROXY`` (its own port only) so that the fault proxy does not see
  it; it forwards every other request of those services to moto. ``aws_env`` resets it
  with moto.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from annexa_demo.aws.fakes import ENDPOINT_VARIABLES, MotoGapsFake

_PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


@pytest.fixture(scope="session")
def access_analyzer(moto_server: str) -> Iterator[MotoGapsFake]:
    """The fake of moto's missing operations for the whole session (forwarding to moto)."""
    fake = MotoGapsFake(upstream=moto_server)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def _use_analyzer(mp: pytest.MonkeyPatch, fake: MotoGapsFake) -> None:
    for name in ENDPOINT_VARIABLES:
        mp.setenv(name, fake.url)
    for name in ("NO_PROXY", "no_proxy"):  # this port only: 127.0.0.1 stays proxied
        mp.setenv(name, fake.netloc)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 for the whole session; yields its URL."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        # Otherwise ~1,300 default AMIs/snapshots appear as the account's own.
        mp.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        _, port = server.get_host_and_port()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


def _reset_moto(url: str) -> None:
    # http.client ignores proxy environment variables, unlike urllib.
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", "/moto-api/reset")
        response = conn.getresponse()
        response.read()
        assert response.status == 200, f"moto reset failed: HTTP {response.status}"
    finally:
        conn.close()


def _isolated_aws_env(mp: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No profile, stray credentials, per-service endpoint or proxy of the machine.
    for name in list(os.environ):
        if (name.startswith("AWS_") and name != "AWS_CA_BUNDLE") or name in _PROXY_VARS:
            mp.delenv(name, raising=False)
    mp.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # AWS_CA_BUNDLE / REQUESTS_CA_BUNDLE (set machine-wide to the system bundle) only
    # matter for https; every endpoint here is plain http on loopback.


def _use_proxy(mp: pytest.MonkeyPatch, proxy_url: str) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        mp.setenv(name, proxy_url)
    for name in ("NO_PROXY", "no_proxy"):  # 127.0.0.1 must not bypass the proxy
        mp.delenv(name, raising=False)


@pytest.fixture
def aws_offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, no endpoint, no proxy, no machine AWS configuration."""
    _isolated_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def aws_env(
    moto_server: str,
    access_analyzer: MotoGapsFake,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> str:
    """A reset moto server reached through the standard AWS env vars; yields its URL."""
    _reset_moto(moto_server)
    access_analyzer.reset()
    _isolated_aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    _use_analyzer(monkeypatch, access_analyzer)
    return moto_server


@pytest.fixture(scope="module")
def aws_module_env(
    moto_server: str, access_analyzer: MotoGapsFake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``aws_env`` for a whole module: one estate planted once, read by many tests.

    Use it only in modules whose tests do not reset moto (no ``aws_env`` there).
    """
    _reset_moto(moto_server)
    access_analyzer.reset()
    with pytest.MonkeyPatch.context() as mp:
        _isolated_aws_env(mp, tmp_path_factory.mktemp("aws"))
        mp.setenv("AWS_ENDPOINT_URL", moto_server)
        _use_analyzer(mp, access_analyzer)
        yield moto_server


# --- fault-injecting proxy ---------------------------------------------------------------


@dataclass(frozen=True)
class SeenRequest:
    """What the proxy understood of one AWS request."""

    method: str
    url: str
    service: str  # signing service from the Authorization header (s3control: "s3control")
    operation: str  # "ListUsers", "GetBucketEncryption"… ("" when unknown)
    bucket: str  # S3 bucket in the path, else ""
    region: str = ""  # from the request signature
    account: str = ""  # the moto account of the signing access key
    body: str = ""


@dataclass
class Fault:
    match: Callable[[SeenRequest], bool]
    status: int
    body: bytes
    content_type: str
    hits: int = 0


def _scope(headers: dict[str, str]) -> list[str]:
    """[access key, date, region, service, "aws4_request"] of a SigV4 signature."""
    auth = headers.get("authorization", "")
    if "Credential=" not in auth:
        return []
    return auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")


def _service(headers: dict[str, str], path: str) -> str:
    if path.startswith("/v20180820/"):
        return "s3control"
    scope = _scope(headers)
    return scope[3] if len(scope) >= 4 else ""


def _account(headers: dict[str, str]) -> str:
    """The account moto (in this process) attributes the request's access key to."""
    from moto.iam.models import get_account_id_from

    scope = _scope(headers)
    return str(get_account_id_from(scope[0])) if scope else ""


_S3_SUBRESOURCES = {
    "encryption": "GetBucketEncryption",
    "publicAccessBlock": "GetPublicAccessBlock",
    "location": "GetBucketLocation",
}


def _operation(
    method: str, service: str, headers: dict[str, str], path: str, query: str, body: bytes
) -> str:
    target = headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    params = parse_qs(query, keep_blank_values=True)
    if "x-id" in params:
        return params["x-id"][0]
    if body and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return action[0]
    if service == "s3" and method == "GET":
        for key, op in _S3_SUBRESOURCES.items():
            if key in params:
                return op
        if path in ("", "/"):
            return "ListBuckets"
    return ""


_JSON = ("cloudtrail", "kms", "logs", "config", "organizations")
_REST_JSON = ("guardduty", "securityhub", "backup", "access-analyzer")


def _error_body(service: str, code: str, message: str) -> tuple[bytes, str]:
    """The error document each protocol family uses."""
    if service in ("iam", "sts", "rds", "elasticloadbalancing"):
        xml = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>fault-proxy</RequestId></ErrorResponse>"
        )
        return xml.encode(), "text/xml"
    if service == "ec2":
        xml = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
            "</Error></Errors><RequestID>fault-proxy</RequestID></Response>"
        )
        return xml.encode(), "text/xml"
    if service in _JSON or service in _REST_JSON:
        return json.dumps({"__type": code, "message": message}).encode(), (
            "application/x-amz-json-1.1"
        )
    xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"  # S3, S3 Control
    return xml.encode(), "application/xml"


@dataclass
class FaultProxy:
    """An HTTP proxy in front of moto that can answer chosen requests with errors."""

    upstream: str
    url: str = ""
    seen: list[SeenRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(
        self,
        *,
        service: str,
        code: str,
        status: int = 400,
        operation: str | None = None,
        bucket: str | None = None,
        account: str | None = None,
        region: str | None = None,
        body_contains: str | None = None,
        message: str = "injected by the test fault proxy",
    ) -> Fault:
        """Answer matching requests with ``code`` (every time, including retries)."""

        def match(req: SeenRequest) -> bool:
            return (
                req.service == service
                and (operation is None or req.operation == operation)
                and (bucket is None or req.bucket == bucket)
                and (account is None or req.account == account)
                and (region is None or req.region == region)
                and (body_contains is None or body_contains in req.body)
            )

        body, content_type = _error_body(service, code, message)
        fault = Fault(match, status, body, content_type)
        self.faults.append(fault)
        return fault

    def count(self, *, service: str, operation: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.seen
                if r.service == service and (operation is None or r.operation == operation)
            )

    # called from the server's threads
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        parts = urlsplit(handler.path)
        path = parts.path or "/"
        service = _service(headers, path)
        bucket = path.lstrip("/").split("/", 1)[0] if service == "s3" else ""
        scope = _scope(headers)
        req = SeenRequest(
            method=handler.command,
            url=handler.path,
            service=service,
            operation=_operation(handler.command, service, headers, path, parts.query, body),
            bucket=bucket,
            region=scope[2] if len(scope) > 2 else "",
            account=_account(headers),
            body=body.decode("utf-8", "replace"),
        )
        with self._lock:
            self.seen.append(req)
            fault = next((f for f in self.faults if f.match(req)), None)
            if fault is not None:
                fault.hits += 1
        if fault is not None:
            reply = {"Content-Type": fault.content_type}
            if req.service in _REST_JSON:
                reply["x-amzn-ErrorType"] = json.loads(fault.body)["__type"]
            self._reply(handler, fault.status, reply, fault.body)
            return
        up = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        try:
            forward = {
                k: v
                for k, v in handler.headers.items()
                if k.lower() not in ("proxy-connection", "connection")
            }
            # moto is a proxy too: the absolute URL keeps the original host for routing.
            conn.request(handler.command, handler.path, body=body or None, headers=forward)
            response = conn.getresponse()
            data = response.read()
            out = {
                k: v
                for k, v in response.getheaders()
                if k.lower() not in ("transfer-encoding", "connection", "content-length")
            }
            self._reply(handler, response.status, out, data)
        finally:
            conn.close()

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        handler.send_response(status)
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            proxy._handle(self)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


def serve_proxy(proxy: FaultProxy) -> ThreadingHTTPServer:
    """Serve ``proxy`` on a free loopback port and set its ``url``; the caller shuts the
    returned server down."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def aws_fault_proxy(
    aws_env: str, access_analyzer: MotoGapsFake, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """``aws_env`` with every AWS request passing through a :class:`FaultProxy`."""
    proxy = FaultProxy(upstream=aws_env)
    server = serve_proxy(proxy)
    _use_proxy(monkeypatch, proxy.url)
    _use_analyzer(monkeypatch, access_analyzer)
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
