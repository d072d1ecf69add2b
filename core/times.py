"""Time as evidence reads and stores it: one parser, one rounding rule, for every source.

Every source sends timestamps in its own dialect (``Z`` or an offset, 3 to 7 fraction
digits, a date alone). Checks compare ages in days, and evidence must not change on
every run for a value that did not change, so parsing and storing time is domain logic
shared by all connectors and analyzers, not a helper of one of them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any


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


def day_or_instant(value: Any, *, end_of_day: bool) -> datetime:
    """A TOML date (whole day: ``end_of_day`` → next midnight UTC) or date-time (UTC).

    Strings in either ISO form are read too; anything else is a :class:`ValueError`.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        d = value + timedelta(days=1) if end_of_day else value
        return datetime.combine(d, time(0), tzinfo=UTC)
    if isinstance(value, str):
        try:
            return day_or_instant(
                datetime.fromisoformat(value.replace("Z", "+00:00")), end_of_day=end_of_day
            )
        except ValueError:
            pass
        try:
            return day_or_instant(date.fromisoformat(value), end_of_day=end_of_day)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date (2027-06-30) or date-time")
