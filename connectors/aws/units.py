"""Units of work and the one bounded thread pool that runs them all.

A *unit* is one service read in one account and one region (``global`` for global
services): the granularity at which a failure is recorded. Every unit ends with exactly
one ``Coverage`` record: ``ok`` when it was read to the end, an error otherwise. A unit
interrupted by cancellation yields no ``Coverage``, so nothing is closed by absence.

Accounts, regions and services share a single pool of ``max_workers`` threads. Opening
an account (assuming its role, discovering its regions) is itself a job on that pool:
it yields the account's units, which run before the next account is opened, so only a
handful of accounts hold clients at any moment and memory stays flat however large the
organisation.

A region whose endpoints cannot be connected to trips a breaker: the first unit there
pays the connect timeout (and botocore's retries), every later unit of that region in
the same run is reported as an error at once instead of paying it again.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from botocore.exceptions import ConnectionError as BotoConnectionError
from urllib3.exceptions import NameResolutionError

from connectors.aws.common import AWS_ERRORS, describe_error
from connectors.aws.session import GLOBAL, Account
from core.records import Coverage, Evidence, Finding, Record

log = structlog.get_logger("annexa.connectors.aws")

#: A service reader: ``read(account, region)`` yields the unit's evidence.
Reader = Callable[[Account, str], Iterator[Evidence | Finding]]


@dataclass(frozen=True)
class ReaderSpec:
    """A reader and where it runs: once per account (global) or once per region.

    A global reader with ``needs_regions`` reads every region inside its one unit and
    is called as ``read(account, "global", regions=[...])``. (The store lets a ``global``
    unit cover its service in every region, so a service is either global — possibly
    with evidence in many regions — or regional, never both.)
    """

    service: str
    read: Callable[..., Iterator[Evidence | Finding]]
    regional: bool
    needs_regions: bool = False


@dataclass
class RegionBreaker:
    """Regions found unreachable during one run (thread-safe)."""

    _down: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reason(self, region: str) -> str | None:
        with self._lock:
            return self._down.get(region)

    def trip(self, region: str, reason: str) -> None:
        with self._lock:
            self._down.setdefault(region, reason)


class Job(Protocol):
    """Something the pool runs: yields records, and may yield further jobs."""

    @property
    def name(self) -> str: ...

    def run(self, cancelled: Callable[[], bool]) -> Iterator[Record | Job]: ...


@dataclass(frozen=True)
class Unit:
    account: Account
    region: str
    service: str
    read: Reader
    breaker: RegionBreaker | None = None

    @property
    def name(self) -> str:
        return f"{self.account.account_id}/{self.region}/{self.service}"

    def run(self, cancelled: Callable[[], bool]) -> Iterator[Record]:
        try:
            yield from run_unit(self, cancelled)
        finally:
            self.account.release()


def run_unit(unit: Unit, cancelled: Callable[[], bool]) -> Iterator[Record]:
    """The unit's records followed by its ``Coverage``; never raises."""
    breaker = unit.breaker if unit.region != GLOBAL else None
    down = breaker.reason(unit.region) if breaker else None
    if down is not None:
        yield unit.account.coverage(
            unit.region, unit.service, f"skipped: {unit.region} unreachable in this run ({down})"
        )
        return
    try:
        for record in unit.read(unit.account, unit.region):
            yield record
            if cancelled():
                return
    except AWS_ERRORS as exc:
        reason = describe_error(exc)
        if breaker is not None and region_unreachable(exc):
            breaker.trip(unit.region, reason)
        yield unit.account.coverage(unit.region, unit.service, reason)
        return
    except Exception as exc:  # a bug in one unit must not stop the run
        log.error("aws unit crashed", unit=unit.name, exc_info=True)
        yield unit.account.coverage(
            unit.region, unit.service, f"internal error: {type(exc).__name__}"
        )
        return
    yield unit.account.coverage(unit.region, unit.service)


def region_unreachable(exc: BaseException) -> bool:
    """A connection error that says the region's endpoints cannot be reached.

    A host name that does not resolve is not one: it is a service not offered in that
    region (new and opt-in regions lack some), which must not stop the other services.
    """
    if not isinstance(exc, BotoConnectionError):
        return False
    cause = (getattr(exc, "kwargs", None) or {}).get("error")
    if isinstance(cause, NameResolutionError):
        return False
    text = str(cause if cause is not None else exc)
    return not any(s in text for s in ("Name or service not known", "nodename nor servname",
                                       "Failed to resolve"))


_JOB_DONE = object()


@dataclass(frozen=True)
class _Spawned:
    job: Job


def stream_jobs(
    jobs: Iterable[Job],
    *,
    max_workers: int,
    cancelled: Callable[[], bool],
    buffer: int = 512,
) -> Iterator[Record]:
    """Run jobs on at most ``max_workers`` threads, yielding records as they arrive.

    Jobs are scheduled one at a time as workers free up; jobs yielded by a running job
    (an account's units) go before the next job of ``jobs``, which is read lazily.
    ``cancelled()`` stops new jobs promptly; a bounded queue keeps memory flat when
    the consumer is slower than the workers. Closing the generator makes the workers
    stop at their next record.
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
            log.error("aws job crashed", job=job.name, exc_info=True)
        finally:
            put(_JOB_DONE)

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="annexa-aws")

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
    units: Iterable[Unit],
    *,
    max_workers: int,
    cancelled: Callable[[], bool],
    buffer: int = 512,
) -> Iterator[Record]:
    """:func:`stream_jobs` for plain units (kept for callers that have only units)."""
    return stream_jobs(units, max_workers=max_workers, cancelled=cancelled, buffer=buffer)
