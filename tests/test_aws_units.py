"""The bounded pool that runs accounts, regions and services, and the region breaker.

The pool is exercised with small job objects of the test (it runs any job yielding
records and further jobs); the breaker with real boto3 clients failing to connect to a
closed port on 127.0.0.1, so botocore's own connection errors and retries are what trip it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import boto3

from connectors.aws.session import Account, ClientSettings
from connectors.aws.units import RegionBreaker, Unit
from connectors.kit import stream_jobs
from core.records import Coverage, Record


@dataclass
class Gauge:
    """Counts jobs running at once."""

    now: int = 0
    peak: int = 0
    started: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, name: str) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.started.append(name)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


@dataclass(frozen=True)
class Leaf:
    name: str
    gauge: Gauge

    def run(self, cancelled: Callable[[], bool]) -> Iterator[Record]:
        self.gauge.enter(self.name)
        try:
            time.sleep(0.02)
            yield Coverage(scope=self.name.split("/")[0], region="r", service=self.name,
                           ok=True)
        finally:
            self.gauge.leave()


@dataclass(frozen=True)
class Opener:
    """Like opening an account: yields its units as further jobs."""

    name: str
    gauge: Gauge
    units: int

    def run(self, cancelled: Callable[[], bool]) -> Iterator[Record | Leaf]:
        self.gauge.enter(self.name)
        try:
            yield Coverage(scope=self.name, region="global", service="*", ok=True)
            for i in range(self.units):
                yield Leaf(f"{self.name}/{i}", self.gauge)
        finally:
            self.gauge.leave()


def test_pool_is_bounded_and_finishes_an_account_before_opening_many() -> None:
    gauge = Gauge()
    pulled: list[str] = []

    def accounts() -> Iterator[Opener]:
        for a in ("a", "b", "c", "d", "e", "f"):
            pulled.append(a)
            yield Opener(a, gauge, units=8)

    records = list(stream_jobs(accounts(), max_workers=3, cancelled=lambda: False))
    assert gauge.peak <= 3
    assert len([r for r in records if r.service == "*"]) == 6
    assert len(records) == 6 + 6 * 8
    # an opened account's units run before further accounts are opened: while the
    # units of "a" run, no more accounts are open than there are workers
    order = gauge.started
    last_of_a = max(order.index(f"a/{i}") for i in range(8))
    assert len([n for n in order[:last_of_a] if "/" not in n]) <= 3
    assert pulled == ["a", "b", "c", "d", "e", "f"]


def test_source_is_read_lazily_and_cancellation_stops_scheduling() -> None:
    gauge = Gauge()
    pulled: list[str] = []
    cancel = threading.Event()

    def accounts() -> Iterator[Opener]:
        for i in range(1000):
            pulled.append(str(i))
            yield Opener(str(i), gauge, units=2)

    stream = stream_jobs(accounts(), max_workers=2, cancelled=cancel.is_set)
    first = [next(stream) for _ in range(5)]
    assert len(first) == 5 and len(pulled) < 10  # not the whole organisation up front
    cancel.set()
    rest = list(stream)
    assert len(pulled) < 10 and len(first) + len(rest) < 20


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_one_by_one(
    endpoint_url: str, max_attempts: int, region: str, services: tuple[str, ...],
    api_call: Callable[[Account, str], object],
) -> tuple[Account, RegionBreaker, list[str], list[Record]]:
    """Stream a unit per service in ``region`` (one worker, one breaker), each making
    ``api_call`` against ``endpoint_url``: the account, the breaker, the region each unit
    that ran called, and the records."""
    settings = ClientSettings(endpoint_url=endpoint_url, connect_timeout=1,
                              max_attempts=max_attempts)
    account = Account("123456789012", boto3.Session(), settings, "us-east-1")
    breaker = RegionBreaker()
    calls: list[str] = []

    def read(acct: Account, region: str) -> Iterator[Record]:
        calls.append(region)
        api_call(acct, region)
        yield from ()

    units = [Unit(account, region, s, read, breaker) for s in services]
    account.retain(len(units))
    records = list(stream_jobs(units, max_workers=1, cancelled=lambda: False))
    return account, breaker, calls, records


def test_an_unreachable_region_costs_one_connect_timeout(aws_offline_env: None) -> None:
    account, _breaker, calls, records = stream_one_by_one(
        f"http://127.0.0.1:{closed_port()}", 2, "eu-west-1", ("ec2", "vpc", "rds", "kms"),
        lambda acct, region: acct.client("ec2", region).describe_vpcs(),
    )
    # Only the first unit tried to connect (the cost is judged by the calls made, not by
    # wall time, which a loaded machine stretches).
    assert calls == ["eu-west-1"]
    assert [r.ok for r in records] == [False] * 4
    assert "EndpointConnectionError" in records[0].error
    assert all(r.error.startswith("skipped: eu-west-1 unreachable in this run")
               for r in records[1:])
    assert account._users == 0 and not account._clients  # clients released at the end


def test_a_service_missing_from_a_region_does_not_trip_the_breaker(
    aws_offline_env: None,
) -> None:
    """A host name that does not resolve (a service not offered in that region) fails
    only its unit; the region's other services are still read."""
    _account, breaker, calls, records = stream_one_by_one(
        "http://annexa-no-such-host.invalid", 1, "ap-east-2", ("backup", "kms"),
        lambda acct, region: acct.client("backup", region).list_backup_plans(),
    )
    assert calls == ["ap-east-2", "ap-east-2"]
    assert all("EndpointConnectionError" in r.error for r in records)
    assert breaker.reason("ap-east-2") is None
