"""The connector kit: the one implementation of what every connector needs beside its
own API client, so that a unit, a unit error and a missing input mean the same thing
in every source (AWS, Azure, Google Cloud, Okta, Entra ID, Workspace, GitHub, Jira,
ServiceNow, HR, devices, KnowBe4, policies…).

* **Units** — :class:`Unit` (one service read in one scope and region: the unit of
  failure), :func:`run_unit` (its records, then exactly one ``Coverage``; never raises)
  and :func:`stream_units` / :func:`stream_jobs` (the one bounded thread pool).
* **Unit errors** — :func:`unit_error`, the one rule for what a stored error may say
  (below). A connector declares which exceptions are failures of its source and how to
  describe them with :class:`SourceErrors` (the default: :class:`~connectors.http.SourceError`
  and its message; AWS adds botocore's errors in :mod:`connectors.aws.common`).
* **Missing evidence** — :func:`require` / :class:`EvidenceMissing` / :data:`ERRORS_KEY`
  / :func:`with_errors` / :func:`read_partial`: a payload records which of its fields
  could not be read, and a check needing such a field raises, so its finding is
  ``error`` rather than a guessed ``pass``/``fail``.
* **People** — :class:`Pseudonymiser` and :class:`PseudonymiseOptions` (the
  ``pseudonymise`` / ``pseudonymise_key`` options every identity-reading connector has).
* **Clients** — :func:`run_client` (a source's HTTP client for one run, cancelled with it).
* **Options** — :data:`SourceURL` (a source's base URL, checked and without a trailing
  slash).
* :data:`GLOBAL`, :func:`batches`.

What a unit error may keep (the rule, implemented once in :func:`unit_error`):

1. A failure of the source (an exception of the connector's :class:`SourceErrors`)
   keeps the connector's own description of it: for HTTP sources the
   :class:`~connectors.http.SourceError` message (reason, status, URL with secrets
   redacted — the HTTP layer keeps only the error *field* of a JSON error body, never the
   body), for AWS the operation and error code (never AWS's message text).
2. Any other exception is a bug: it keeps ``internal error: <exception class>: <detail>``
   where the detail is the first line of the exception's text.
3. Whatever is kept is passed through :func:`core.redaction.scrub_text` (registered
   secrets, token shapes, passwords in URLs), has e-mail addresses masked and is cut to
   :data:`MAX_ERROR_CHARS` characters. No response body, traceback or payload is ever
   stored; the traceback goes to the log only (which is scrubbed too).
"""

from __future__ import annotations

import hashlib
import hmac
import queue
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, Self

import structlog
from pydantic import AfterValidator, Field, model_validator

from connectors.http import AuthHeaders, HttpClient, HttpOptions, SourceError, check_url
from core.connector import CollectContext, ConnectorOptions, SecretRef
from core.records import Coverage, Evidence, Finding, Record
from core.redaction import scrub_text

log = structlog.get_logger("annexa.connectors")

#: Region of every unit of a global (non-regional) service: identity and SaaS sources,
#: global cloud services.
GLOBAL = "global"
#: Payload key under which partial read failures of one resource are recorded.
ERRORS_KEY = "_errors"
#: Longest unit error message stored (the rest is cut, marked by ``…``).
MAX_ERROR_CHARS = 2000
#: Longest detail kept of an unexpected exception's text.
MAX_DETAIL_CHARS = 120

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
EMAIL_MASK = "[e-mail]"


# --------------------------------------------------------------------------- evidence


class EvidenceMissing(KeyError):
    """A check's input could not be read; raised so the finding is ``error``.

    Never pass or fail on what could not be read.
    """

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message plain
        return str(self.args[0]) if self.args else "input missing"


def require(payload: Mapping[str, Any], key: str, *, label: str | None = None) -> Any:
    """``payload[key]``, or :class:`EvidenceMissing` saying why it is absent.

    The reason is looked up in the payload's :data:`ERRORS_KEY` under ``label`` (when
    one read fills several keys) or ``key``.
    """
    if key in payload:
        return payload[key]
    errors = payload.get(ERRORS_KEY) or {}
    what = label or key
    reason = errors.get(what) or errors.get(key)
    if reason:
        raise EvidenceMissing(f"{what} could not be read: {reason}")
    raise EvidenceMissing(f"{what} is missing from the evidence")


def with_errors(payload: dict[str, Any], errors: Mapping[str, str]) -> dict[str, Any]:
    """``payload`` with ``errors`` under :data:`ERRORS_KEY` when there are any."""
    if errors:
        payload[ERRORS_KEY] = dict(errors)
    return payload


def read_partial(errors: dict[str, str], key: str, call: Callable[[], Any]) -> Any:
    """``call()`` for one part of a resource; on a source error record it and give None.

    The resource is still reported and only the checks needing ``key`` become errors.
    (AWS has its own, which tells "not configured" error codes from failures.)
    """
    try:
        return call()
    except SourceError as exc:
        errors[key] = bounded(str(exc))
        return None


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class SourceErrors:
    """Which exceptions are failures of a source, and how to describe one safely.

    ``describe`` must say what an operator needs (operation, status, error code) and
    must not copy response bodies; :func:`unit_error` scrubs and bounds its result.
    """

    kinds: tuple[type[BaseException], ...] = (SourceError,)
    describe: Callable[[BaseException], str] = str


#: HTTP sources: :class:`~connectors.http.SourceError` and its message.
HTTP_ERRORS = SourceErrors()


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` scrubbed of secrets, e-mail addresses masked, cut to ``limit`` chars."""
    clean = _EMAIL.sub(EMAIL_MASK, scrub_text(text))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def unit_error(exc: BaseException, errors: SourceErrors = HTTP_ERRORS) -> str:
    """The message stored for a unit that failed with ``exc`` (the rule: module doc)."""
    if isinstance(exc, errors.kinds):
        return bounded(errors.describe(exc))
    first_line = next(iter(str(exc).strip().splitlines()), "")
    detail = bounded(first_line, MAX_DETAIL_CHARS)
    return bounded(f"internal error: {type(exc).__name__}" + (f": {detail}" if detail else ""))


# --------------------------------------------------------------------------- units


def run_unit(
    scope: str,
    service: str,
    read: Callable[[], Iterable[Evidence | Finding]],
    cancelled: Callable[[], bool],
    *,
    region: str = GLOBAL,
    source: str = "connector",
    errors: SourceErrors = HTTP_ERRORS,
    on_failure: Callable[[BaseException, str], None] | None = None,
) -> Iterator[Record]:
    """The unit's records followed by its ``Coverage``; never raises.

    A failure of the source (``errors.kinds``: HTTP error after retries, malformed body,
    pagination loop, AWS client error…) makes the unit ``ok=False``; any other exception
    is a bug, logged with its traceback; both are stored as :func:`unit_error` says.
    ``on_failure(exc, message)`` lets a connector react (AWS trips a region breaker).
    A unit interrupted by cancellation yields no ``Coverage`` (nothing is closed by
    absence).
    """
    try:
        for record in read():
            yield record
            if cancelled():
                return
    except Exception as exc:  # a failed unit must not stop the run
        if cancelled():
            return
        if not isinstance(exc, errors.kinds):
            log.error("unit crashed", source=source, scope=scope, service=service, exc_info=True)
        message = unit_error(exc, errors)
        if on_failure is not None:
            on_failure(exc, message)
        yield Coverage(scope, region, service, ok=False, error=message)
        return
    if cancelled():
        return
    yield Coverage(scope, region, service, ok=True)


class Job(Protocol):
    """Something the pool runs: yields records, and may yield further jobs."""

    @property
    def name(self) -> str: ...

    def run(self, cancelled: Callable[[], bool]) -> Iterator[Record | Job]: ...


@dataclass(frozen=True)
class Unit:
    """One service read in one scope (account, subscription, project, org…)."""

    scope: str
    service: str
    read: Callable[[], Iterable[Evidence | Finding]]
    region: str = GLOBAL
    source: str = "connector"
    errors: SourceErrors = HTTP_ERRORS

    @property
    def name(self) -> str:
        return f"{self.scope}/{self.region}/{self.service}"

    def run(self, cancelled: Callable[[], bool]) -> Iterator[Record]:
        return run_unit(
            self.scope, self.service, self.read, cancelled,
            region=self.region, source=self.source, errors=self.errors,
        )


_JOB_DONE = object()


@dataclass(frozen=True)
class _Spawned:
    job: Job


def stream_jobs(
    jobs: Iterable[Job],
    *,
    max_workers: int,
    cancelled: Callable[[], bool],
    source: str = "connector",
    buffer: int = 512,
) -> Iterator[Record]:
    """Run jobs on at most ``max_workers`` threads, yielding records as they arrive.

    Jobs are scheduled one at a time as workers free up; jobs yielded by a running job
    (an account's units) go before the next job of ``jobs``, which is read lazily, so a
    long plan (hundreds of accounts, subscriptions or projects) is never materialised.
    ``cancelled()`` stops new jobs promptly; a bounded queue keeps memory flat when the
    consumer (the store) is slower than the workers. Closing the generator makes the
    workers stop at their next record.
    """
    out: queue.Queue[object] = queue.Queue(maxsize=buffer)
    stop = threading.Event()
    pending = iter(jobs)
    ready: deque[Job] = deque()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work(job: Job) -> None:
        try:
            for item in job.run(cancelled):
                record = isinstance(item, (Evidence, Finding, Coverage))
                wrapped = item if record else _Spawned(item)  # type: ignore[arg-type]
                if not put(wrapped):
                    return
        except Exception:  # jobs never raise by contract; log and carry on if one does
            log.error("job crashed", source=source, job=job.name, exc_info=True)
        finally:
            put(_JOB_DONE)

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"annexa-{source}")

    def schedule_next() -> bool:
        if cancelled() or stop.is_set():
            return False
        job = ready.popleft() if ready else next(pending, None)
        if job is None:
            return False
        pool.submit(work, job)
        return True

    running = 0
    try:
        while running < max_workers and schedule_next():
            running += 1
        while running:
            item = out.get()
            if item is _JOB_DONE:
                running -= 1
            elif isinstance(item, _Spawned):
                ready.append(item.job)
            else:
                yield item  # type: ignore[misc]
            while running < max_workers and schedule_next():
                running += 1
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def stream_units(
    units: Iterable[Job],
    *,
    max_workers: int,
    cancelled: Callable[[], bool],
    source: str = "connector",
    buffer: int = 512,
) -> Iterator[Record]:
    """:func:`stream_jobs` for plain units (jobs that spawn nothing)."""
    return stream_jobs(
        units, max_workers=max_workers, cancelled=cancelled, source=source, buffer=buffer
    )


def batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size`` (the last one may be shorter), lazily."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------- clients

#: What a JSON API is asked for unless its connector needs a vendor media type.
JSON_HEADERS: Mapping[str, str] = {"Accept": "application/json"}


def run_client(
    base_url: str,
    auth: AuthHeaders | None,
    options: HttpOptions,
    ctx: CollectContext,
    headers: Mapping[str, str] = JSON_HEADERS,
) -> HttpClient:
    """The HTTP client of one collection run: it sends ``headers`` (JSON by default)
    and stops waiting (retries, rate limits) as soon as the run is cancelled."""
    return HttpClient(
        base_url, auth=auth, options=options, headers=headers, cancel_event=ctx.cancel_event
    )


# --------------------------------------------------------------------------- options


def _source_url(value: str) -> str:
    return check_url(value).rstrip("/")


#: An option holding a source's base URL: ``https://`` (``http://`` only to a loopback
#: host, see :func:`connectors.http.check_url`), kept without its trailing slash.
SourceURL = Annotated[str, AfterValidator(_source_url)]


# --------------------------------------------------------------------------- people


class Pseudonymiser:
    """Replaces personal identifiers by ``pseud:<HMAC-SHA256>`` when enabled.

    The key comes from a ``SecretRef``; the same key maps the same person to the same
    pseudonym across runs *and across sources* (values are trimmed and lower-cased
    first), so history, sampling and cross-source matching by e-mail still work, and
    whoever holds the key can re-identify (GDPR pseudonymisation, not anonymisation).
    """

    PREFIX = "pseud:"

    def __init__(self, key: str | None) -> None:
        self._key = key.encode("utf-8") if key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def __call__(self, value: str | None) -> str | None:
        if self._key is None or value is None or value == "":
            return value
        digest = hmac.new(self._key, value.strip().lower().encode("utf-8"), hashlib.sha256)
        return self.PREFIX + digest.hexdigest()[:32]


class PseudonymiseOptions(ConnectorOptions):
    """Options of a connector that reads personal identifiers (logins, e-mail addresses).

    The key alone turns pseudonymisation on, so that every source given the same key
    pseudonymises alike and people still match across sources; ``pseudonymise = true``
    without a key is refused.
    """

    pseudonymise: bool = Field(False, description="HMAC-SHA256 personal identifiers")
    pseudonymise_key: SecretRef | None = Field(
        None, description="the pseudonym key, by reference; the same in every source"
    )

    @model_validator(mode="after")
    def _pseudonymise_needs_key(self) -> Self:
        if self.pseudonymise and self.pseudonymise_key is None:
            raise ValueError("pseudonymise = true needs pseudonymise_key")
        return self

    def pseudonymiser(self) -> Pseudonymiser:
        """The run's pseudonymiser: keyed when ``pseudonymise_key`` is given."""
        return Pseudonymiser(self.pseudonymise_key.get() if self.pseudonymise_key else None)

