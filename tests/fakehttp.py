"""The shared skeleton of every vendor fake: a threaded HTTP server on 127.0.0.1 with
routing, a request log, scripted faults (429 + ``Retry-After``, 5xx, malformed bodies),
auth checking and auth-failure injection, and paging helpers.

Why: each REST connector test used to carry its own server plumbing (serve, log, fault
queue, auth check, 418 for unknown paths) around the part that matters — the vendor's
documented response shapes. A fake now subclasses :class:`FakeHTTP`, registers its
routes and says how a request is authorised; the connector under test talks to it with
its real client over a real socket (tests/harness.py drives the run engine).

Dispatch order, the same for every fake so tests read alike:

1. the request is logged (:attr:`FakeHTTP.log`, and its key in :attr:`FakeHTTP.requests`);
2. an injected auth failure (:meth:`FakeHTTP.fail_auth`) or a failed
   :meth:`FakeHTTP.authorised` answers :meth:`FakeHTTP.unauthorised` (401 by default);
3. a scripted fault for the request's key (:meth:`FakeHTTP.fault`,
   :meth:`FakeHTTP.throttle`) is popped and served;
4. the first route whose method and full-path pattern match answers;
5. anything else is a 418 (outside every client's retry set, so a missing route fails
   the test loudly instead of being retried as a 5xx).

Built on pytest-httpserver's werkzeug server (threaded here: connectors read with
worker pools). Use it as a context manager or call :meth:`FakeHTTP.stop`. Given a
server (e.g. the ``httpserver`` fixture, to share it with other handlers such as a
token endpoint), the fake serves on it and leaves its lifecycle to the owner.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from connectors.http import HttpOptions

#: Retries without waiting, few attempts, short timeouts: what connector tests pass as
#: ``http`` options (a ``Retry-After`` above ``max_retry_after`` is not waited for).
FAST_HTTP = HttpOptions(
    max_attempts=4,
    retry_min_wait=0.0,
    retry_max_wait=0.01,
    max_retry_after=2,
    timeout=10,
    connect_timeout=2,
)

#: A scripted answer: status, body, headers.
Answer = tuple[int, str, dict[str, str]]
Handler = Callable[[Request, "re.Match[str]"], Response]
T = TypeVar("T")


@dataclass(frozen=True)
class Logged:
    """One request as the fake received it."""

    method: str
    path: str
    args: dict[str, str]
    headers: dict[str, str]
    key: str


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON answer (``application/json``)."""
    return Response(
        json.dumps(body), status=status, headers=dict(headers or {}),
        content_type="application/json",
    )


class FakeHTTP:
    """Base of a vendor fake. Subclasses add routes (:meth:`route`) and override
    :meth:`authorised` / :meth:`unauthorised` / :meth:`key` as the vendor behaves."""

    def __init__(self, server: HTTPServer | None = None) -> None:
        self._own = server is None
        self.server = server or HTTPServer(host="127.0.0.1", port=0, threaded=True)
        if self._own:
            self.server.start()
        self.server.no_handler_status_code = 418
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.faults: dict[str, list[Answer]] = defaultdict(list)
        self.log: list[Logged] = []
        self.requests: list[str] = []
        self._auth_failures = 0
        self._lock = threading.Lock()
        self.server.expect_request(re.compile(r"^/.*")).respond_with_handler(
            lambda request: self.handle(request)
        )

    # -- lifecycle

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return self.server.url_for("").rstrip("/")

    def stop(self) -> None:
        if self._own and self.server.is_running():
            self.server.clear()
            self.server.stop()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a subclass says

    def route(self, pattern: str, handler: Handler, method: str = "GET") -> None:
        """Serve requests whose whole path matches ``pattern`` with ``handler``."""
        self.routes.append((method.upper(), re.compile(pattern), handler))

    def key(self, request: Request) -> str:
        """What faults are keyed by and :attr:`requests` records: the path by default."""
        return request.path

    def authorised(self, request: Request) -> bool:
        """Whether the request carries the vendor's credentials (default: anything goes)."""
        return True

    def unauthorised(self, request: Request) -> Response:
        """The vendor's answer to bad credentials (override for its documented body)."""
        return json_response({"error": "unauthorised"}, 401)

    # -- what a test scripts

    def fault(self, key: str, *answers: Answer) -> None:
        """Serve ``answers`` (in order) to the next requests with ``key``, before routing."""
        with self._lock:
            self.faults[key].extend(answers)

    def throttle(
        self, key: str, times: int = 1, *, retry_after: str = "0", body: str = "{}"
    ) -> None:
        """The next ``times`` requests with ``key`` get 429 with ``Retry-After``
        (seconds, or an HTTP-date string)."""
        self.fault(key, *[(429, body, {"Retry-After": retry_after})] * times)

    def fail_auth(self, times: int = 1) -> None:
        """The next ``times`` requests, whatever their key, are refused as unauthorised
        (a revoked token, an expired session)."""
        with self._lock:
            self._auth_failures += times

    def count(self, prefix: str) -> int:
        """Requests whose key starts with ``prefix``."""
        with self._lock:
            return sum(1 for k in self.requests if k.startswith(prefix))

    # -- serving

    def handle(self, request: Request) -> Response:
        """Answer one request (a test may wrap it, e.g. to translate credentials)."""
        key = self.key(request)
        with self._lock:
            self.requests.append(key)
            self.log.append(
                Logged(request.method, request.path, dict(request.args),
                       dict(request.headers), key)
            )
            forced = self._auth_failures > 0
            if forced:
                self._auth_failures -= 1
        if forced or not self.authorised(request):
            return self.unauthorised(request)
        with self._lock:
            answer = self.faults[key].pop(0) if self.faults.get(key) else None
        if answer is not None:
            status, body, headers = answer
            return Response(body, status=status, headers=headers,
                            content_type="application/json")
        for method, pattern, handler in self.routes:
            if request.method == method and (m := pattern.fullmatch(request.path)):
                return handler(request, m)
        return json_response({"error": f"fake: no route for {request.method} {request.path}"},
                             418)


# -- paging helpers (each style as the vendors document it)


def offset_page(items: Sequence[T], start: int, size: int) -> tuple[list[T], bool]:
    """``items[start:start+size]`` and whether it is the last page (``startAt`` /
    ``sysparm_offset`` / ``$skip`` style)."""
    chunk = list(items[start : start + size])
    return chunk, start + size >= len(items)


def encode_token(offset: int) -> str:
    """An opaque page token (``nextPageToken`` / ``pageToken`` / cursor style)."""
    return base64.b64encode(str(offset).encode()).decode()


def decode_token(token: str | None) -> int:
    """The offset an :func:`encode_token` token stands for (0 for none)."""
    return int(base64.b64decode(token).decode()) if token else 0


def token_page(items: Sequence[T], token: str | None, size: int) -> tuple[list[T], str | None]:
    """A page and the token of the next one (None on the last page)."""
    start = decode_token(token)
    chunk, last = offset_page(items, start, size)
    return chunk, None if last else encode_token(start + size)


def link_header(url: str, params: Mapping[str, Any], page: int, last: int) -> str:
    """An RFC 8288 ``Link`` header with ``rel="next"``/``rel="last"`` (GitHub, Okta),
    for 1-based ``page`` of ``last`` pages; empty on the last page."""
    if page >= last:
        return ""
    nxt = urlencode({**params, "page": page + 1})
    end = urlencode({**params, "page": last})
    return f'<{url}?{nxt}>; rel="next", <{url}?{end}>; rel="last"'
