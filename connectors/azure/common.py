"""Helpers of the Azure readers and checks: ARM payload inputs, units and the pool.

The helpers every connector shares (``require``, ``EvidenceMissing``, ``run_unit``,
time parsing) come from :mod:`connectors.common`; what is added here is specific to
ARM payloads, and :func:`stream_units`, the bounded pool the cloud connectors need
because they read hundreds of scopes (the Google Cloud connector has the same pool; it
can move to :mod:`connectors.common` once another connector needs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from connectors.common import ERRORS_KEY, GLOBAL, EvidenceMissing, Unit, require
from connectors.common import stream_units as _stream_units
from connectors.http import SourceError
from core.records import Record
from core.times import days_since, parse_time

__all__ = [
    "ERRORS_KEY",
    "GLOBAL",
    "EvidenceMissing",
    "Unit",
    "days_since",
    "parse_time",
    "read_partial",
    "require",
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


def stream_units(
    units: Iterable[Unit], *, max_workers: int, cancelled: Callable[[], bool]
) -> Iterator[Record]:
    """The shared bounded pool (:func:`connectors.common.stream_units`) for azure units."""
    return _stream_units(units, max_workers=max_workers, cancelled=cancelled, source="azure")
