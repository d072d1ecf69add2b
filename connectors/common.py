"""Small helpers shared by the connectors and their checks (no I/O of their own).

Every REST connector (Okta, GitHub, Entra ID, Google Workspace…) needs the same few
things beside the HTTP layer, and they must behave identically across sources so that
findings mean the same thing everywhere:

* :func:`run_unit` — read one unit, stream its records, end with its ``Coverage``; a
  failure of the source becomes ``Coverage(ok=False)`` (never an exception);
* :func:`require` / :class:`EvidenceMissing` / :data:`ERRORS_KEY` — a payload records
  which of its fields could not be read, and a check that needs such a field raises,
  so its finding is ``error`` rather than a guessed ``pass``/``fail``;
* :func:`parse_time`, :func:`days_since`, :func:`activity_time` — UTC time handling
  (a last-use timestamp is stored to the day only while it is recent, see
  :func:`activity_time`; verdicts are always judged from full timestamps);
* :class:`Pseudonymiser` — keyed HMAC pseudonyms of personal identifiers;
* :func:`batches` — fixed-size chunks of a stream, for bounded worker pools.
"""

from __future__ import annotations

import hashlib
import hmac
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from connectors.http import SourceError
from core.records import Coverage, Evidence, Finding, Record

log = structlog.get_logger("annexa.connectors")

#: Region of every unit of a global (non-regional) service: identity and SaaS sources.
GLOBAL = "global"
#: Payload key under which partial read failures of one resource are recorded.
ERRORS_KEY = "_errors"


class EvidenceMissing(KeyError):
    """A check's input could not be read; raised so the finding is ``error``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "input missing"


def require(payload: Mapping[str, Any], key: str) -> Any:
    """``payload[key]``, or :class:`EvidenceMissing` saying why it is absent."""
    if key in payload:
        return payload[key]
    reason = (payload.get(ERRORS_KEY) or {}).get(key)
    if reason:
        raise EvidenceMissing(f"{key} could not be read: {reason}")
    raise EvidenceMissing(f"{key} is missing from the evidence")


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


def batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size`` (the last one may be shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_unit(
    scope: str,
    service: str,
    read: Callable[[], Iterator[Evidence | Finding]],
    cancelled: Callable[[], bool],
    *,
    region: str = GLOBAL,
    source: str = "connector",
) -> Iterator[Record]:
    """The unit's records followed by its ``Coverage``; never raises.

    A :class:`~connectors.http.SourceError` (the source could not be read: HTTP error
    after retries, malformed body, pagination loop…) makes the unit ``ok=False`` with
    the error's message; any other exception is a bug, logged with its traceback and
    recorded as ``internal error`` (its message may hold data, so only the type is
    kept). A unit interrupted by cancellation yields no ``Coverage`` (nothing is closed
    by absence).
    """
    try:
        for record in read():
            yield record
            if cancelled():
                return
    except SourceError as exc:
        if cancelled():
            return
        yield Coverage(scope, region, service, ok=False, error=str(exc))
        return
    except Exception as exc:
        log.error("unit crashed", source=source, scope=scope, service=service, exc_info=True)
        yield Coverage(
            scope, region, service, ok=False, error=f"internal error: {type(exc).__name__}"
        )
        return
    if cancelled():
        return
    yield Coverage(scope, region, service, ok=True)


@dataclass(frozen=True)
class Unit:
    """One service read in one scope (subscription, project…): the unit of failure."""

    scope: str
    service: str
    read: Callable[[], Iterator[Evidence | Finding]]
    region: str = GLOBAL

    @property
    def name(self) -> str:
        return f"{self.scope}/{self.region}/{self.service}"


_UNIT_DONE = object()


def stream_units(
    units: Iterable[Unit],
    *,
    max_workers: int,
    cancelled: Callable[[], bool],
    source: str,
    buffer: int = 512,
) -> Iterator[Record]:
    """Run units on at most ``max_workers`` threads, yielding records as they arrive.

    Units are taken from ``units`` lazily, one as each worker frees up, so a long plan
    (hundreds of subscriptions or projects) is never materialised and ``cancelled()``
    stops new units promptly. A bounded queue keeps memory flat when the consumer (the
    store) is slower than the workers.
    """
    out: queue.Queue[object] = queue.Queue(maxsize=buffer)
    stop = threading.Event()
    pending = iter(units)
    pending_lock = threading.Lock()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work(unit: Unit) -> None:
        try:
            for record in run_unit(
                unit.scope, unit.service, unit.read, cancelled, region=unit.region, source=source
            ):
                if not put(record):
                    return
        finally:
            put(_UNIT_DONE)

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"annexa-{source}")

    def schedule_next() -> bool:
        if cancelled() or stop.is_set():
            return False
        with pending_lock:
            unit = next(pending, None)
        if unit is None:
            return False
        pool.submit(work, unit)
        return True

    running = 0
    try:
        while running < max_workers and schedule_next():
            running += 1
        while running:
            item = out.get()
            if item is _UNIT_DONE:
                running -= 1
                if schedule_next():
                    running += 1
                continue
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
