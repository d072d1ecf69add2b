"""AWS units: one service read in one account and one region, run by the kit.

The unit machinery (records then one ``Coverage``, the error rule, the bounded pool
:func:`connectors.kit.stream_jobs`) is :mod:`connectors.kit`'s; what is AWS's here is
the unit's shape (account, region, reader), the reader specs and the region breaker.

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

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from botocore.exceptions import ConnectionError as BotoConnectionError
from urllib3.exceptions import NameResolutionError

from connectors.aws.common import AWS_SOURCE
from connectors.aws.session import Account
from connectors.kit import GLOBAL, run_unit
from core.records import Evidence, Finding, Record

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


@dataclass(frozen=True)
class Unit:
    """An AWS unit; a :class:`connectors.kit.Job` that releases its account when done."""

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
            yield from run_account_unit(self, cancelled)
        finally:
            self.account.release()


def run_account_unit(unit: Unit, cancelled: Callable[[], bool]) -> Iterator[Record]:
    """The kit's :func:`~connectors.kit.run_unit` for an AWS unit, behind the breaker.

    A region already found unreachable in this run is reported at once; a failure that
    shows the region unreachable trips the breaker for the units still to come.
    """
    breaker = unit.breaker if unit.region != GLOBAL else None
    down = breaker.reason(unit.region) if breaker else None
    if down is not None:
        yield unit.account.coverage(
            unit.region, unit.service, f"skipped: {unit.region} unreachable in this run ({down})"
        )
        return

    def tripped(exc: BaseException, reason: str) -> None:
        if breaker is not None and region_unreachable(exc):
            breaker.trip(unit.region, reason)

    yield from run_unit(
        unit.account.account_id,
        unit.service,
        lambda: unit.read(unit.account, unit.region),
        cancelled,
        region=unit.region,
        source="aws",
        errors=AWS_SOURCE,
        on_failure=tripped,
    )


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
