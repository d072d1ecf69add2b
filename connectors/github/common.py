"""Helpers shared by the GitHub readers and checks: units, errors in payloads, time, pseudonyms.

(The Okta connector carries the same small helpers; they can move to a shared
``connectors`` module once one exists for non-HTTP helpers.)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

import structlog

from connectors.http import SourceError
from connectors.records import Coverage, Evidence, Finding, Record

log = structlog.get_logger("annexa.connectors.github")

#: GitHub is a global service: every unit is in this region.
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
    """A UTC datetime from an ISO-8601 string (``Z`` allowed), date or datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value:
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def days_since(value: Any, now: datetime | None = None) -> float:
    """Days (fractional) from ``value`` to ``now`` (UTC now by default)."""
    now = now or datetime.now(UTC)
    return (now - parse_time(value)).total_seconds() / 86400


def day_precision(value: Any) -> str | None:
    """``YYYY-MM-DD`` of a timestamp, or None.

    For timestamps that move on every use (last sign-in): kept to the second they would
    store a new evidence version on every run for every active person.
    """
    if value in (None, ""):
        return None
    return parse_time(value).date().isoformat()


class Pseudonymiser:
    """Replaces personal identifiers by ``pseud:<HMAC-SHA256>`` when enabled.

    The key comes from a ``SecretRef``; the same key maps the same person to the same
    pseudonym across runs, so history and sampling still work, and whoever holds the
    key can re-identify (GDPR pseudonymisation, not anonymisation).
    """

    def __init__(self, key: str | None) -> None:
        self._key = key.encode("utf-8") if key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def __call__(self, value: str | None) -> str | None:
        if self._key is None or value is None or value == "":
            return value
        digest = hmac.new(self._key, value.strip().lower().encode("utf-8"), hashlib.sha256)
        return "pseud:" + digest.hexdigest()[:32]


def run_unit(
    scope: str,
    service: str,
    read: Callable[[], Iterator[Evidence | Finding]],
    cancelled: Callable[[], bool],
) -> Iterator[Record]:
    """The unit's records followed by its ``Coverage``; never raises.

    A unit interrupted by cancellation yields no ``Coverage`` (nothing is closed by
    absence).
    """
    try:
        for record in read():
            yield record
            if cancelled():
                return
    except SourceError as exc:
        if cancelled():
            return
        yield Coverage(scope, GLOBAL, service, ok=False, error=str(exc))
        return
    except Exception as exc:
        log.error("github unit crashed", scope=scope, service=service, exc_info=True)
        yield Coverage(
            scope, GLOBAL, service, ok=False, error=f"internal error: {type(exc).__name__}"
        )
        return
    if cancelled():
        return
    yield Coverage(scope, GLOBAL, service, ok=True)
