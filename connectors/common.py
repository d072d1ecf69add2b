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
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog

from connectors.http import SourceError
from connectors.records import Coverage, Evidence, Finding, Record

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


def parse_time(value: Any) -> datetime:
    """A UTC datetime from an ISO-8601 string (``Z`` allowed), date or datetime.

    Fractional seconds of any length (Graph sends 7 digits) are accepted.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            dt = datetime.fromisoformat(_trim_fraction(text))
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _trim_fraction(text: str) -> str:
    """``…T10:00:00.1234567+00:00`` → ``…T10:00:00.123456+00:00`` (Python reads ≤ 6)."""
    head, dot, rest = text.partition(".")
    if not dot:
        raise ValueError(f"not a timestamp: {text!r}")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"


def days_since(value: Any, now: datetime | None = None) -> float:
    """Days (fractional) from ``value`` to ``now`` (UTC now by default).

    A day alone (``YYYY-MM-DD``) is read as the *end* of that day: the least time that
    can have passed. Evidence stores a day alone only for an activity less than a day
    old (:func:`activity_time`), so no verdict with a limit of a day or more depends on
    the hour at which it is judged.
    """
    now = now or datetime.now(UTC)
    if _is_day(value):
        moment = parse_time(value) + timedelta(days=1)
        return max(0.0, (now - moment).total_seconds() / 86400)
    return (now - parse_time(value)).total_seconds() / 86400


def _is_day(value: Any) -> bool:
    if isinstance(value, date) and not isinstance(value, datetime):
        return True
    return isinstance(value, str) and len(value.strip()) == 10


def day_precision(value: Any) -> str | None:
    """``YYYY-MM-DD`` of a timestamp, or None — for messages, never for a verdict."""
    if value in (None, ""):
        return None
    return parse_time(value).date().isoformat()


def full_time(value: Any) -> str | None:
    """A timestamp as evidence stores an event that does not move: UTC, to the second."""
    if value in (None, ""):
        return None
    return parse_time(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def activity_time(value: Any, now: datetime | None = None) -> str | None:
    """A last-activity timestamp (last sign-in, last use) as evidence stores it.

    Such a timestamp moves on every use: stored to the second, every active account
    would write a new evidence version on every run. So while it is less than a day
    old it is stored as its day alone, and once older — when it has stopped moving,
    and when a limit of N days can be near — to the second. Verdicts are then exact at
    any hour (a day alone always means "within the day before collection"; see
    :func:`days_since`), at the cost of one more version when an account goes quiet.
    """
    if value in (None, ""):
        return None
    moment = parse_time(value)
    now = now or datetime.now(UTC)
    if now - moment < timedelta(days=1):
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


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
