"""Helpers of the Google Cloud readers and checks: payload inputs, units and the pool.

The helpers every connector shares (``require``, ``EvidenceMissing``, ``run_unit``,
time parsing) come from :mod:`connectors.common`; :func:`stream_units` is the bounded
pool the cloud connectors need because they read hundreds of scopes (the Azure connector
has the same pool; it can move to :mod:`connectors.common` once another connector needs
it).
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


def region_of(location: Any) -> str:
    """Evidence region from a Google location (``EU``, ``us-central1``, a zone or region
    URL): lower-cased last path segment; ``global`` when there is none."""
    if not location:
        return GLOBAL
    return str(location).rstrip("/").rsplit("/", 1)[-1].lower()


# --------------------------------------------------------------------------- units


def stream_units(
    units: Iterable[Unit], *, max_workers: int, cancelled: Callable[[], bool]
) -> Iterator[Record]:
    """The shared bounded pool (:func:`connectors.common.stream_units`) for gcp units."""
    return _stream_units(units, max_workers=max_workers, cancelled=cancelled, source="gcp")
