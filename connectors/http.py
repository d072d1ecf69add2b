"""The shared HTTP layer of every REST connector (Okta, GitHub, Graph, Jira, ServiceNow…).

One :class:`HttpClient` per connector run wraps an :class:`httpx.Client` and adds what
every source needs and nobody should re-implement:

* a timeout on every request (connect, read, and a wall-clock deadline per attempt);
* bounded retries with exponential backoff (via **tenacity**) of transport errors,
  ``408``/``429``/``5xx``, and rate-limited ``403`` answers, honouring ``Retry-After``
  (seconds or HTTP-date) and the sources' rate-limit headers (Okta
  ``X-Rate-Limit-Remaining``/``-Reset``, GitHub ``X-RateLimit-Remaining``/``-Reset`` and
  its secondary limits); when a successful answer says the budget is spent, the next
  request waits for the reset instead of being refused;
* paginators for the common styles, each with a page limit and a loop guard:
  :meth:`~HttpClient.paginate_links` (``Link: <…>; rel="next"``),
  :meth:`~HttpClient.paginate_next_url` (``@odata.nextLink``, ``nextLink``, HAL
  ``_links.next.href``), :meth:`~HttpClient.paginate_cursor` (``nextPageToken``…) and
  :meth:`~HttpClient.paginate_offset` (``startAt/maxResults/isLast``, ``sysparm_offset``);
* a response size limit (the body is streamed and reading stops past the limit);
* ``https://`` everywhere, plain ``http://`` only to loopback hosts, TLS verification
  always on (a custom CA bundle may be given), no redirects followed, and next-page
  links that leave the configured origin refused (credentials never travel elsewhere);
* authentication headers produced by a callable at each request, so a token is never
  stored on the client, never logged, and may be refreshed.

Every failure is a :class:`SourceError` (with ``status`` and a ``url`` whose secret query
values are redacted), so a connector catches one exception type per unit::

    with HttpClient("https://acme.okta.com", auth=token_auth("SSWS", token)) as http:
        for user in http.paginate_links("/api/v1/users", params={"limit": 200}):
            ...

Connectors embed :class:`HttpOptions` in their own options so operators can tune
timeouts, retries and the CA bundle per connector instance in ``config.toml``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from importlib.metadata import PackageNotFoundError, version
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from core.net import is_loopback
from core.redaction import REDACTED, register_secret, scrub_text

__all__ = [
    "AuthHeaders",
    "HTTPStatusError",
    "HttpClient",
    "HttpOptions",
    "InsecureURLError",
    "MalformedResponseError",
    "PaginationError",
    "RateLimitedError",
    "Response",
    "ResponseTooLargeError",
    "RetryExhaustedError",
    "SourceError",
    "TransportError",
    "basic_auth",
    "check_url",
    "redact_url",
    "token_auth",
]

log = structlog.get_logger("annexa.http")

#: Produces the authentication headers for one request (called before every attempt).
AuthHeaders = Callable[[], Mapping[str, str]]

#: Statuses retried with backoff (429 also waits for ``Retry-After`` / the reset).
RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

_SECRET_PARAM = re.compile(
    r"(?i)(token|secret|password|passwd|key|sig|signature|code|auth|credential|session)"
)
_SECONDARY_LIMIT = re.compile(r"(?i)(secondary rate limit|abuse detection)")

try:
    _AGENT_VERSION = version("annexa")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _AGENT_VERSION = "0.0.0+source"


# --------------------------------------------------------------------------- errors


class SourceError(Exception):
    """A source system could not be read. Safe to show and store: no secrets inside.

    ``status`` is the HTTP status when there was an answer, ``url`` the request URL with
    secret-looking query values redacted.
    """

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        self.url = redact_url(url) if url else None
        self.status = status
        self.reason = scrub_text(message)
        where = f" ({'HTTP ' + str(status) + ' ' if status else ''}{self.url})" if self.url else ""
        super().__init__(f"{self.reason}{where}")


class InsecureURLError(SourceError, ValueError):
    """A URL that is neither ``https://`` nor ``http://`` to a loopback host."""


class TransportError(SourceError):
    """The connection failed or timed out on every attempt."""


class HTTPStatusError(SourceError):
    """The source answered with an error status that is not worth retrying (4xx…)."""


class RetryExhaustedError(SourceError):
    """A retryable status (429/5xx) persisted through every attempt."""


class RateLimitedError(RetryExhaustedError):
    """The source is throttling and asks for a longer wait than allowed (or forever)."""


class MalformedResponseError(SourceError):
    """The body is not the JSON (or shape) the caller expected."""


class ResponseTooLargeError(SourceError):
    """The body exceeds :attr:`HttpOptions.max_response_mb`."""


class PaginationError(SourceError):
    """A paginator looped (repeated cursor or URL), ran past ``max_pages``, or was sent
    to another origin."""


# --------------------------------------------------------------------------- options


class HttpOptions(BaseModel):
    """Tunables of the HTTP layer; embed as ``http`` in a connector's options.

    Defaults suit production. Tests shrink the waits (``retry_min_wait``,
    ``retry_max_wait``, ``max_retry_after``, ``secondary_rate_limit_wait``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(30.0, gt=0, description="read/write/pool timeout, seconds")
    connect_timeout: float = Field(10.0, gt=0, description="connect timeout, seconds")
    request_deadline: float = Field(
        300.0, gt=0, description="wall-clock limit of one attempt, body included, seconds"
    )
    total_deadline: float = Field(
        900.0,
        gt=0,
        description="wall-clock limit of one request across all its attempts and waits, seconds",
    )
    listing_deadline: float = Field(
        3600.0, gt=0, description="wall-clock limit of one paginated listing, seconds"
    )
    max_attempts: int = Field(5, ge=1, le=20, description="attempts per request")
    retry_min_wait: float = Field(1.0, ge=0, description="first backoff wait, seconds")
    retry_max_wait: float = Field(30.0, ge=0, description="longest backoff wait, seconds")
    max_retry_after: float = Field(
        300.0, ge=0, description="longest server-requested wait honoured, seconds"
    )
    secondary_rate_limit_wait: float = Field(
        60.0, ge=0, description="wait after a GitHub secondary rate limit without Retry-After"
    )
    max_response_mb: float = Field(50.0, gt=0, description="largest body read, MiB")
    max_pages: int = Field(10_000, ge=1, description="pages followed by one paginator")
    ca_bundle: str | None = Field(
        None, description="PEM file of CAs trusted in addition to the system trust store"
    )


# --------------------------------------------------------------------------- helpers


def check_url(url: str) -> str:
    """Return ``url`` if it may be called: ``https://``, or ``http://`` to loopback.

    Raises :class:`InsecureURLError` (also a ``ValueError``, so pydantic validators may
    call it to reject a config value).
    """
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InsecureURLError(f"URL must be https://host[:port][/path], got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise InsecureURLError(
            "plain http:// is allowed only for loopback hosts (127.0.0.1, ::1, localhost); "
            f"use https:// for {parts.hostname}"
        )
    return str(url)


def redact_url(url: str | httpx.URL) -> str:
    """``url`` without user info and with secret-looking query values redacted."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = [
        (k, REDACTED if _SECRET_PARAM.search(k) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=",:/"), ""))


def basic_auth(user: str, password: str) -> AuthHeaders:
    """Auth callable sending HTTP Basic ``user:password``; the encoded pair is registered
    with the log redactor like any token."""
    pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return token_auth("Basic", pair)


def token_auth(scheme: str, token: str, header: str = "Authorization") -> AuthHeaders:
    """Auth callable sending ``{header}: {scheme} {token}`` (``SSWS``, ``Bearer``…).

    The token is registered with the log redactor and is only held by the closure.
    """
    register_secret(token)
    value = f"{scheme} {token}" if scheme else token

    def headers() -> Mapping[str, str]:
        return {header: value}

    return headers


def _origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    u = httpx.URL(str(url))
    return (u.scheme, u.host.lower(), u.port)


def _link_header_next(resp: Response, body: Any) -> str | None:
    """The ``rel="next"`` URL of the ``Link`` header (``body`` is not looked at)."""
    url = resp.links.get("next", {}).get("url")
    return str(url) if url else None


def _lookup(body: Any, path: str) -> Any:
    """``body["a"]["b"]`` for ``path="a.b"``; keys containing dots are tried whole first."""
    if isinstance(body, Mapping) and path in body:
        return body[path]
    cur = body
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _server_now(headers: httpx.Headers) -> float:
    """The server's clock (its ``Date`` header) or ours: resets are in server time."""
    date = headers.get("date")
    if date:
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            pass
    return time.time()


def _rate_limit_reset_wait(headers: httpx.Headers, now: float) -> float | None:
    """Seconds until the rate-limit window resets when the budget is spent, else None.

    Okta: ``X-Rate-Limit-Remaining``/``X-Rate-Limit-Reset``; GitHub:
    ``X-RateLimit-Remaining``/``X-RateLimit-Reset`` (both epoch seconds).
    """
    for remaining_h, reset_h in (
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("x-rate-limit-remaining", "x-rate-limit-reset"),
    ):
        remaining, reset = headers.get(remaining_h), headers.get(reset_h)
        if remaining is None or reset is None:
            continue
        try:
            if int(remaining) > 0:
                return None
            return max(0.0, float(reset) - now) + 1.0
        except ValueError:
            return None
    return None


def _error_detail(body: bytes) -> str:
    """A short, scrubbed error message from a JSON error body (GitHub, Okta, Graph…)."""
    try:
        data = json.loads(body[:20_000])
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(data, Mapping):
        return ""
    msg = data.get("message") or data.get("errorSummary") or data.get("error_description")
    err = data.get("error")
    if not msg and isinstance(err, Mapping):
        msg = err.get("message")
    elif not msg and isinstance(err, str):
        msg = err
    return scrub_text(str(msg))[:200] if msg else ""


# --------------------------------------------------------------------------- response


@dataclass(frozen=True)
class Response:
    """A fully read answer (the body is already size-checked)."""

    status_code: int
    url: httpx.URL
    headers: httpx.Headers
    content: bytes
    links: Mapping[str, Mapping[str, str]]
    """Parsed ``Link`` headers keyed by ``rel`` (several ``Link:`` lines are merged)."""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The decoded body; :class:`MalformedResponseError` if it is not JSON."""
        if not self.content.strip():
            raise MalformedResponseError(
                "empty body where JSON was expected", url=str(self.url), status=self.status_code
            )
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError) as exc:
            ctype = self.headers.get("content-type", "unknown")
            where = f" at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else ""
            raise MalformedResponseError(
                f"malformed JSON{where} (content-type {ctype})",
                url=str(self.url),
                status=self.status_code,
            ) from None


class _RetryableStatus(Exception):
    """Internal: an answer worth retrying, with the server's requested delay if any."""

    def __init__(self, response: Response, delay: float | None) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.delay = delay


class _DeadlineExceeded(Exception):
    """Internal: one attempt ran past ``request_deadline`` (treated as a transport error)."""


def _stop_at(end: float) -> Any:
    """A tenacity stop condition: no further attempt once ``end`` (monotonic) passed."""

    def stop(_state: RetryCallState) -> bool:
        return time.monotonic() >= end

    return stop


def _is_retryable(exc: BaseException) -> bool:
    """Throttling, server errors and transient transport failures are retried; a TLS
    certificate that does not verify will not verify on the next attempt either."""
    if isinstance(exc, httpx.TransportError):
        return "CERTIFICATE_VERIFY_FAILED" not in str(exc)
    return isinstance(exc, (_RetryableStatus, _DeadlineExceeded))


class _wait_for_server(wait_base):
    """Wait what the server asked for (Retry-After / reset), else exponential backoff."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(exc, _RetryableStatus) and exc.delay is not None:
            return exc.delay
        return float(self.fallback(retry_state))


# --------------------------------------------------------------------------- client


class HttpClient:
    """An HTTP client for one source, with retries, limits and paginators.

    :param base_url: the source's API root (``https://acme.okta.com``,
        ``https://api.github.com``, ``https://ghe.example.com/api/v3``); relative request
        paths are joined to it. Checked with :func:`check_url`.
    :param auth: called before every attempt for the authentication headers
        (see :func:`token_auth`); never logged.
    :param options: timeouts, retry bounds, size and page limits, CA bundle.
    :param headers: extra headers sent with every request (``Accept``, API version…).
    :param cancel_event: when set, backoff waits end early and no further attempt is made.
    :param sleep: how to wait (tests record the waits instead of sleeping); by default
        ``time.sleep``, or ``cancel_event.wait`` when an event is given.
    :param transport: an httpx transport (tests only; production uses the default).

    Thread-safe: connectors may share one client across a bounded worker pool.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthHeaders | None = None,
        options: HttpOptions | None = None,
        headers: Mapping[str, str] | None = None,
        cancel_event: threading.Event | None = None,
        sleep: Callable[[float], object] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.options = options or HttpOptions()
        self.base_url = check_url(base_url).rstrip("/")
        self._origin = _origin(self.base_url)
        self._auth = auth
        self._cancel = cancel_event
        if sleep is not None:
            self._sleep: Callable[[float], object] = sleep
        elif cancel_event is not None:
            self._sleep = cancel_event.wait
        else:
            self._sleep = time.sleep
        o = self.options
        verify: ssl.SSLContext | bool = True
        if o.ca_bundle:
            try:
                verify = ssl.create_default_context()
                verify.load_verify_locations(cafile=o.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise SourceError(f"CA bundle {o.ca_bundle} cannot be loaded: {exc}") from None
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(o.timeout, connect=o.connect_timeout),
            verify=verify,
            follow_redirects=False,
            headers={"User-Agent": f"annexa/{_AGENT_VERSION}", **dict(headers or {})},
            transport=transport,
        )
        self._max_bytes = int(o.max_response_mb * 1024 * 1024)
        self._gate_lock = threading.Lock()
        self._not_before = 0.0  # monotonic time before which no request is sent

    # -- lifecycle

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        allow_status: Collection[int] = (),
        sink: BinaryIO | None = None,
    ) -> Response:
        """Send one request with retries; return the answer or raise :class:`SourceError`.

        ``data`` is sent as an ``application/x-www-form-urlencoded`` body (OAuth token
        endpoints); ``json_body`` as JSON. Give at most one of them.

        A ``2xx`` answer, or one whose status is in ``allow_status`` (e.g. ``{404}`` when
        "not found" is a meaningful answer), is returned. Other statuses raise
        :class:`HTTPStatusError`, or :class:`RetryExhaustedError` after the retries.
        Every method is retried: send only idempotent requests (reads, and read-only
        ``POST`` queries such as ``getIamPolicy``).

        ``sink`` (a seekable binary file): a ``2xx`` body is written there instead of
        memory (rewound and truncated on each attempt) and the returned ``content`` is
        empty. For sources that answer with one large document and no paging (BambooHR
        reports): the caller streams it back from the file, so memory stays flat.
        ``max_response_mb`` then does not apply (it guards memory); the deadline does.
        """
        if data is not None and json_body is not None:
            raise ValueError("give json_body or data, not both")
        target = self._resolve(url)
        o = self.options
        end = time.monotonic() + o.total_deadline
        stop = stop_after_attempt(o.max_attempts) | _stop_at(end)
        if self._cancel is not None:
            stop = stop | stop_when_event_set(self._cancel)

        def sleep(seconds: float) -> None:  # a backoff never outlasts the total deadline
            self._sleep(max(0.0, min(seconds, end - time.monotonic())))

        retrying = Retrying(
            stop=stop,
            wait=_wait_for_server(
                wait_exponential_jitter(
                    multiplier=o.retry_min_wait,
                    max=o.retry_max_wait,
                    jitter=min(1.0, o.retry_min_wait),
                )
            ),
            retry=retry_if_exception(_is_retryable),
            sleep=sleep,
            reraise=True,
            before_sleep=self._log_retry,
        )
        try:
            resp = retrying(
                self._attempt, method, target, params, json_body, headers, data, sink, end=end
            )
        except _RetryableStatus as exc:
            r = exc.response
            detail = _error_detail(r.content)
            cls = RateLimitedError if r.status_code in (403, 429) else RetryExhaustedError
            raise cls(
                f"still failing after {retrying.statistics.get('attempt_number', 1)} attempt(s)"
                + (f": {detail}" if detail else ""),
                url=str(r.url),
                status=r.status_code,
            ) from None
        except (httpx.TransportError, _DeadlineExceeded) as exc:
            kind = type(exc).__name__
            detail = str(exc).splitlines()[0][:200] if str(exc) else ""
            if time.monotonic() >= end and "total_deadline" not in detail:
                detail = f"total_deadline={o.total_deadline:g}s passed" + (
                    f" ({detail})" if detail else ""
                )
            raise TransportError(
                f"{kind} after {retrying.statistics.get('attempt_number', 1)} attempt(s)"
                + (f": {detail}" if detail else ""),
                url=str(target),
            ) from None
        except httpx.HTTPError as exc:  # InvalidURL, too many redirects…
            raise TransportError(type(exc).__name__, url=str(target)) from None
        if resp.is_success or resp.status_code in allow_status:
            return resp
        detail = _error_detail(resp.content)
        raise HTTPStatusError(
            detail or httpx.codes.get_reason_phrase(resp.status_code) or "error status",
            url=str(resp.url),
            status=resp.status_code,
        )

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        allow_status: Collection[int] = (),
    ) -> Response:
        """``GET`` with retries (see :meth:`request`)."""
        return self.request("GET", url, params=params, allow_status=allow_status)

    def get_json(self, url: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """``GET`` a ``2xx`` JSON document."""
        return self.get(url, params=params).json()

    # -- paginators

    def paginate_links(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        items_key: str | None = None,
        max_pages: int | None = None,
    ) -> Iterator[Any]:
        """Items of every page, following ``Link: <url>; rel="next"`` (GitHub, Okta).

        Each page's body is a JSON list, or an object holding the list at ``items_key``.
        """
        return self._follow_links(url, params, items_key, max_pages, _link_header_next)

    def paginate_next_url(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        items_key: str | None = "value",
        next_key: str | Sequence[str] = ("@odata.nextLink", "nextLink"),
        max_pages: int | None = None,
    ) -> Iterator[Any]:
        """Items of every page, following a next-page URL in the body.

        ``next_key`` names the field (or dotted path, e.g. ``"_links.next.href"``), or
        several tried in order: Graph ``@odata.nextLink``, ARM ``nextLink``…
        """
        keys = [next_key] if isinstance(next_key, str) else list(next_key)

        def link_in_body(resp: Response, body: Any) -> str | None:
            link = next((v for k in keys if (v := _lookup(body, k))), None)
            if link is not None and not isinstance(link, str):
                raise MalformedResponseError(
                    "next-page link is not a string", url=str(resp.url), status=resp.status_code
                )
            return link

        return self._follow_links(url, params, items_key, max_pages, link_in_body)

    def _follow_links(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        items_key: str | None,
        max_pages: int | None,
        next_link: Callable[[Response, Any], str | None],
    ) -> Iterator[Any]:
        """Items of every page, from ``url`` on to the page ``next_link(resp, body)``
        names, until it names none. ``params`` go with the first request only: a next
        link carries its own query."""
        pages = 0
        started = time.monotonic()
        seen: set[str] = set()
        next_url: str | None = url
        next_params = params
        while next_url is not None:
            pages = self._count_page(pages, max_pages, next_url, started)
            resp = self.get(next_url, params=next_params)
            body = resp.json()
            yield from self._list_of(body, items_key, resp)
            link = next_link(resp, body)
            next_url = self._next_url(link, resp, seen) if link else None
            next_params = None

    def paginate_cursor(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        items_key: str | None,
        cursor_param: str = "pageToken",
        cursor_key: str = "nextPageToken",
        last_key: str | None = "isLast",
        max_pages: int | None = None,
    ) -> Iterator[Any]:
        """Items of every page, passing the body's ``cursor_key`` back as ``cursor_param``.

        Google (``pageToken``/``nextPageToken``), Jira (``nextPageToken``, ``isLast``)…
        Stops when the cursor is absent/empty or ``last_key`` is true.
        """
        pages = 0
        started = time.monotonic()
        seen: set[str] = set()
        query = dict(params or {})
        while True:
            pages = self._count_page(pages, max_pages, url, started)
            resp = self.get(url, params=query)
            body = resp.json()
            yield from self._list_of(body, items_key, resp)
            cursor = _lookup(body, cursor_key)
            if not cursor or (last_key and _lookup(body, last_key) is True):
                return
            cursor = str(cursor)
            if cursor in seen:
                raise PaginationError(
                    f"the source returned the same {cursor_key} twice (pagination loop)",
                    url=str(resp.url),
                )
            seen.add(cursor)
            query[cursor_param] = cursor

    def paginate_offset(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        items_key: str | None = "values",
        start_param: str = "startAt",
        size_param: str = "maxResults",
        page_size: int = 50,
        last_key: str | None = "isLast",
        total_key: str | None = "total",
        start: int = 0,
        max_pages: int | None = None,
    ) -> Iterator[Any]:
        """Items of every page of an offset API.

        Jira: ``startAt``/``maxResults`` with ``isLast``/``total`` (the defaults).
        ServiceNow: ``start_param="sysparm_offset", size_param="sysparm_limit",
        items_key="result", last_key=None, total_key=None``.
        SCIM 2.0 (RFC 7644 §3.4.2.4): ``start_param="startIndex", size_param="count",
        items_key="Resources", total_key="totalResults", last_key=None, start=1``.
        The next offset advances by the number of items received (servers may cap the
        page size). Stops on ``last_key`` true, on reaching ``total``, on an empty page,
        or, when the body says neither, on a page shorter than ``page_size``.
        """
        pages = 0
        started = time.monotonic()
        offset = start
        while True:
            pages = self._count_page(pages, max_pages, url, started)
            query = {**dict(params or {}), start_param: offset, size_param: page_size}
            resp = self.get(url, params=query)
            body = resp.json()
            items = self._list_of(body, items_key, resp)
            yield from items
            if not items:
                return
            offset += len(items)
            is_last = _lookup(body, last_key) if last_key else None
            total = _lookup(body, total_key) if total_key else None
            if is_last is True:
                return
            if isinstance(total, int) and not isinstance(total, bool):
                if offset - start >= total:  # SCIM counts from startIndex=1
                    return
            elif is_last is None and len(items) < page_size:
                return

    def paginate_pages(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        items_key: str | None = None,
        page_param: str = "page",
        size_param: str = "per_page",
        page_size: int = 100,
        first_page: int = 1,
        total_key: str | None = None,
        max_pages: int | None = None,
    ) -> Iterator[Any]:
        """Items of every page of a page-number API (KnowBe4 ``page``/``per_page``; Jamf
        Pro ``page``/``page-size`` from 0 with ``total_key="totalCount"``).

        ``params`` may be a list of pairs, for repeated parameters (Jamf's
        ``section=GENERAL&section=SECURITY``). The last page is the first one with fewer
        than ``page_size`` items (an empty page included), or the one that brings the
        count to the body's ``total_key`` when the API states a total (which saves the
        empty page after a full one). A server that ignores ``page`` would repeat its
        first page forever, so a page identical to the one before it is a
        :class:`PaginationError`, as is running past ``max_pages``.
        """
        pages = 0
        started = time.monotonic()
        number = first_page
        served = 0
        previous: bytes | None = None
        base = list(params.items()) if isinstance(params, Mapping) else list(params or [])
        while True:
            pages = self._count_page(pages, max_pages, url, started)
            query = [*base, (page_param, number), (size_param, page_size)]
            resp = self.get(url, params=query)  # type: ignore[arg-type]
            body = resp.json()
            items = self._list_of(body, items_key, resp)
            if items and resp.content == previous:
                raise PaginationError(
                    f"page {number} repeats the page before it (pagination loop)",
                    url=str(resp.url),
                )
            yield from items
            if len(items) < page_size:
                return
            served += len(items)
            total = _lookup(body, total_key) if total_key else None
            if isinstance(total, int) and not isinstance(total, bool) and served >= total:
                return
            previous = resp.content
            number += 1

    # -- internals

    def _resolve(self, url: str) -> httpx.URL:
        """Absolute URL for ``url``; absolute URLs must stay on the base URL's origin."""
        if "://" not in url:
            return httpx.URL(f"{self.base_url}/{url.lstrip('/')}")
        check_url(url)
        if _origin(url) != self._origin:
            raise PaginationError(
                f"refusing to call {redact_url(url)}: it is not on {self.base_url}", url=url
            )
        return httpx.URL(url)

    def _next_url(self, link: str, resp: Response, seen: set[str]) -> str:
        absolute = str(resp.url.join(link))
        if _origin(absolute) != self._origin:
            raise PaginationError(
                "next-page link points to another origin; not followed", url=absolute
            )
        if absolute in seen or absolute == str(resp.url):
            raise PaginationError(
                "the source returned a next-page link already visited (pagination loop)",
                url=absolute,
            )
        seen.add(absolute)
        return absolute

    def _count_page(
        self, pages: int, max_pages: int | None, url: str, started: float | None = None
    ) -> int:
        """Count a page of a listing; stop it at ``max_pages`` or ``listing_deadline``."""
        limit = max_pages or self.options.max_pages
        if pages >= limit:
            raise PaginationError(f"more than {limit} pages (max_pages); stopped", url=url)
        if started is not None:
            took = time.monotonic() - started
            if took > self.options.listing_deadline:
                raise PaginationError(
                    f"listing_deadline={self.options.listing_deadline:g}s passed after "
                    f"{pages} pages; stopped",
                    url=url,
                )
        return pages + 1

    @staticmethod
    def _list_of(body: Any, items_key: str | None, resp: Response) -> list[Any]:
        items = body if items_key is None else _lookup(body, items_key)
        if items is None and items_key is not None and isinstance(body, Mapping):
            return []  # some APIs omit an empty list
        if not isinstance(items, list):
            where = f"at {items_key!r}" if items_key else "at the top level"
            raise MalformedResponseError(
                f"expected a JSON list {where}, got {type(items).__name__}",
                url=str(resp.url),
                status=resp.status_code,
            )
        return items

    def _gate(self) -> None:
        """Wait while a spent rate-limit budget resets (bounded by ``max_retry_after``)."""
        with self._gate_lock:
            wait = self._not_before - time.monotonic()
        if wait > 0:
            wait = min(wait, self.options.max_retry_after)
            log.info("rate limit budget spent; waiting for reset", seconds=round(wait, 1))
            self._sleep(wait)

    def _note_budget(self, headers: httpx.Headers) -> None:
        wait = _rate_limit_reset_wait(headers, _server_now(headers))
        if wait is not None:
            with self._gate_lock:
                self._not_before = max(self._not_before, time.monotonic() + wait)

    def _attempt(
        self,
        method: str,
        url: httpx.URL,
        params: Mapping[str, Any] | None,
        json_body: Any,
        extra_headers: Mapping[str, str] | None,
        form: Mapping[str, str] | None = None,
        sink: BinaryIO | None = None,
        *,
        end: float | None = None,
    ) -> Response:
        if self._cancel is not None and self._cancel.is_set():
            raise SourceError("cancelled", url=str(url))
        self._gate()
        headers: dict[str, str] = dict(extra_headers or {})
        if self._auth is not None:
            headers.update(self._auth())
        o = self.options
        now = time.monotonic()
        deadline = now + o.request_deadline
        bound = f"request_deadline={o.request_deadline:g}s"
        if end is not None and end < deadline:
            deadline, bound = end, f"total_deadline={o.total_deadline:g}s"
        left = deadline - now
        if left <= 0:
            raise _DeadlineExceeded(f"{bound} passed")
        # No single read or connect may wait past the deadline either: a source that
        # sends nothing at all fails at the deadline, not one read timeout later.
        kwargs: dict[str, Any] = {
            "params": params,
            "headers": headers,
            "timeout": httpx.Timeout(min(o.timeout, left), connect=min(o.connect_timeout, left)),
        }
        if json_body is not None:
            kwargs["json"] = json_body
        if form is not None:
            kwargs["data"] = dict(form)
        with self._client.stream(method, url, **kwargs) as r:
            if sink is not None and r.is_success:
                return self._download(r, sink, deadline)
            length = r.headers.get("content-length")
            if length and length.isdigit() and int(length) > self._max_bytes:
                raise ResponseTooLargeError(
                    f"body of {int(length)} bytes exceeds the {self._max_bytes}-byte limit",
                    url=str(r.url),
                    status=r.status_code,
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in r.iter_bytes():
                size += len(chunk)
                if size > self._max_bytes:
                    raise ResponseTooLargeError(
                        f"body exceeds the {self._max_bytes}-byte limit; reading stopped",
                        url=str(r.url),
                        status=r.status_code,
                    )
                if time.monotonic() > deadline:
                    raise _DeadlineExceeded(f"{bound} passed while reading the body")
                chunks.append(chunk)
            resp = Response(
                status_code=r.status_code,
                url=r.url,
                headers=r.headers,
                content=b"".join(chunks),
                links={k: dict(v) for k, v in r.links.items() if k is not None},
            )
        delay = self._retry_delay(resp)
        if delay is False:
            self._note_budget(resp.headers)
        else:
            if delay is not None and delay > self.options.max_retry_after:
                raise RateLimitedError(
                    f"rate limited; the source asks to wait {delay:.0f}s, more than "
                    f"max_retry_after={self.options.max_retry_after:.0f}s",
                    url=str(resp.url),
                    status=resp.status_code,
                )
            raise _RetryableStatus(resp, delay)
        return resp

    def _download(self, r: httpx.Response, sink: BinaryIO, deadline: float) -> Response:
        """Write a successful streamed body to ``sink`` (see :meth:`request`)."""
        sink.seek(0)
        sink.truncate()
        for chunk in r.iter_bytes():
            if time.monotonic() > deadline:
                raise _DeadlineExceeded(f"{self.options.request_deadline}s deadline")
            sink.write(chunk)
        sink.flush()
        self._note_budget(r.headers)
        return Response(
            status_code=r.status_code,
            url=r.url,
            headers=r.headers,
            content=b"",
            links={k: dict(v) for k, v in r.links.items() if k is not None},
        )

    def _retry_delay(self, resp: Response) -> float | bool | None:
        """``False``: do not retry. Otherwise the server-requested delay, or ``None``
        for plain exponential backoff."""
        status = resp.status_code
        now = _server_now(resp.headers)
        retry_after = _parse_retry_after(resp.headers.get("retry-after"), now)
        if status in RETRY_STATUSES:
            if retry_after is not None:
                return retry_after
            if status == 429:
                return _rate_limit_reset_wait(resp.headers, now)
            return None
        if status == 403:
            # GitHub answers 403 for both its primary and secondary rate limits.
            if retry_after is not None:
                return retry_after
            reset = _rate_limit_reset_wait(resp.headers, now)
            if reset is not None:
                return reset
            if _SECONDARY_LIMIT.search(_error_detail(resp.content)):
                return self.options.secondary_rate_limit_wait
        return False

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _RetryableStatus):
            what = f"HTTP {exc.response.status_code}"
            url = redact_url(exc.response.url)
        else:
            what = type(exc).__name__
            url = None
        log.warning(
            "retrying request",
            reason=what,
            url=url,
            attempt=state.attempt_number,
            wait=round(state.upcoming_sleep, 2),
        )
