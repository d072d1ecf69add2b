"""Helpers of the Azure readers and checks: ARM payload inputs, units and the pool.

The helpers every connector shares (``require``, ``EvidenceMissing``, ``run_unit``,
time parsing) come from :mod:`connectors.common`; what is added here is specific to
ARM payloads, and :func:`stream_units`, the bounded pool the cloud connectors need
because they read hundreds of scopes (the Google Cloud connector has the same pool; it
can move to :mod:`connectors.common` once another connector needs it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from connectors.common import ERRORS_KEY, GLOBAL, EvidenceMissing, days_since, parse_time, require
from connectors.common import run_unit as shared_run_unit
from connectors.http import SourceError
from connectors.records import Evidence, Finding, Record

__all__ = [
    "ERRORS_KEY",
    "GLOBAL",
    "EvidenceMissing",
    "Unit",
    "days_since",
    "parse_time",
    "read_partial",
    "require",
    "run_unit",
    "stream_units",
    "with_errors",
]


def props(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ARM resource's ``properties`` (every ARM resource has them)."""
    value = require(payload, "properties")
    if not isinstance(value, Mapping):
        raise EvidenceMissing("properties is not an object")
    return value


def read_partial(errors: dict[str, str], key: str, call: Callable[[], Any]) -> Any:
    """``call()`` for one part of a resource; on a source error record it and give None.

    The resource is still reported and only the checks needing ``key`` become errors.
    """
    try:
        return call()
    except SourceError as exc:
        errors[key] = str(exc)
        return None


def with_errors(payload: dict[str, Any], errors: Mapping[str, str]) -> dict[str, Any]:
    if errors:
        payload[ERRORS_KEY] = dict(errors)
    return payload


def location_of(resource: Mapping[str, Any]) -> str:
    """The evidence region: the resource's location, normalised (``westeurope``)."""
    loc = resource.get("location")
    return str(loc).replace(" ", "").lower() if loc else GLOBAL


def resource_group_of(resource_id: str) -> str | None:
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    if "resourcegroups" in lowered:
        i = lowered.index("resourcegroups")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


# --------------------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    """One service read in one scope (subscription): the granularity of failures."""

    scope: str
    service: str
    read: Callable[[], Iterator[Evidence | Finding]]
    region: str = GLOBAL

    @property
    def name(self) -> str:
        return f"{self.scope}/{self.region}/{self.service}"


def run_unit(unit: Unit, cancelled: Callable[[], bool]) -> Iterator[Record]:
    """The unit's records followed by its ``Coverage``; never raises (see
    :func:`connectors.common.run_unit`)."""
    return shared_run_unit(unit.scope, unit.service, unit.read, cancelled,
                           region=unit.region, source="azure")


_UNIT_DONE = object()


def stream_units(
    units: Iterable[Unit],
    *,
    max_workers: int,
    cancelled: Callable[[], bool],
    buffer: int = 512,
    thread_name: str = "annexa-azure",
) -> Iterator[Record]:
    """Run units on at most ``max_workers`` threads, yielding records as they arrive.

    Units are taken from ``units`` lazily, one as each worker frees up, so a long plan
    (hundreds of subscriptions) is never materialised and ``cancelled()`` stops new
    units promptly. A bounded queue keeps memory flat when the consumer (the store) is
    slower than the workers.
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
            for record in run_unit(unit, cancelled):
                if not put(record):
                    return
        finally:
            put(_UNIT_DONE)

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name)

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
