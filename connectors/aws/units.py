"""Units of work and the bounded thread pool that runs them.

A *unit* is one service read in one account and one region (``global`` for global
services): the granularity at which a failure is recorded. Every unit ends with exactly
one ``Coverage`` record: ``ok`` when it was read to the end, an error otherwise. A unit
interrupted by cancellation yields no ``Coverage``, so nothing is closed by absence.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from connectors.aws.common import AWS_ERRORS, describe_error
from connectors.aws.session import Account
from connectors.records import Evidence, Finding, Record

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


@dataclass(frozen=True)
class Unit:
    account: Account
    region: str
    service: str
    read: Reader

    @property
    def name(self) -> str:
        return f"{self.account.account_id}/{self.region}/{self.service}"


def run_unit(unit: Unit, cancelled: Callable[[], bool]) -> Iterator[Record]:
    """The unit's records followed by its ``Coverage``; never raises."""
    try:
        for record in unit.read(unit.account, unit.region):
            yield record
            if cancelled():
                return
    except AWS_ERRORS as exc:
        yield unit.account.coverage(unit.region, unit.service, describe_error(exc))
        return
    except Exception as exc:  # a bug in one unit must not stop the run
        log.error("aws unit crashed", unit=unit.name, exc_info=True)
        yield unit.account.coverage(
            unit.region, unit.service, f"internal error: {type(exc).__name__}"
        )
        return
    yield unit.account.coverage(unit.region, unit.service)


_UNIT_DONE = object()


def stream_units(
    units: Iterable[Unit],
    *,
    max_workers: int,
    cancelled: Callable[[], bool],
    buffer: int = 512,
) -> Iterator[Record]:
    """Run units on at most ``max_workers`` threads, yielding records as they arrive.

    Units are scheduled one at a time as workers free up, so ``cancelled()`` stops
    new units promptly; a bounded queue keeps memory flat when the consumer is slower
    than the workers. Closing the generator makes the workers stop at their next record.
    """
    out: queue.Queue[object] = queue.Queue(maxsize=buffer)
    stop = threading.Event()
    pending = iter(units)

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
            for record in run_unit(unit, cancelled):
                if not put(record):
                    return
        finally:
            put(_UNIT_DONE)

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="annexa-aws")

    def schedule_next() -> bool:
        if cancelled() or stop.is_set():
            return False
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
