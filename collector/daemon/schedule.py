"""Schedule specs: ``"every 6h"`` or a five-field cron expression, both in UTC.

Every replica must agree on *when* a collection is due without talking to the others,
so an interval is anchored at the Unix epoch ("every 6h" is due at 00:00, 06:00, 12:00
and 18:00 UTC) rather than at each process's start. Cron expressions use the crontab
convention (0 or 7 = Sunday), translated for APScheduler 3.x, whose numeric weekdays
start on Monday.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from collector.config import parse_duration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVERY = re.compile(r"^\s*every\s+(.+?)\s*$", re.I)
_DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_ONE_US = timedelta(microseconds=1)


def _micros(d: timedelta) -> int:
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


class ScheduleError(ValueError):
    pass


def _crontab_days(field: str) -> list[int]:
    """Expand a crontab day-of-week field into day numbers (0 = Sunday)."""
    names = {n: i for i, n in enumerate(_DOW_NAMES)}

    def num(token: str) -> int:
        t = token.strip().lower()[:3]
        if t in names:
            return names[t]
        if not t.isdigit() or int(t) > 7:
            raise ScheduleError(f"invalid day of week {token!r}")
        return int(t) % 7 if int(t) == 7 else int(t)

    days: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"invalid step in {field!r}")
            step = int(step_text)
        if part == "*":
            lo, hi = 0, 6
        elif "-" in part:
            a, b = part.split("-", 1)
            lo, hi = num(a), num(b)
            if b.strip() == "7":
                hi = 7
        else:
            lo = hi = num(part)
            if step != 1:
                hi = 6
        if lo > hi:
            raise ScheduleError(f"invalid day-of-week range {part!r}")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return sorted(days)


@dataclass(frozen=True)
class ScheduleSpec:
    """A parsed schedule: ``next_at_or_after(t)`` is the first due time ≥ ``t``."""

    text: str
    interval: timedelta | None = None
    cron: CronTrigger | None = None

    @classmethod
    def parse(cls, text: str) -> ScheduleSpec:
        m = _EVERY.match(text)
        if m:
            try:
                interval = parse_duration(m.group(1))
            except ValueError as exc:
                raise ScheduleError(str(exc)) from None
            if interval < timedelta(seconds=1):
                raise ScheduleError("an interval must be at least 1s")
            return cls(text=text.strip(), interval=interval)
        fields = text.split()
        if len(fields) != 5:
            raise ScheduleError(
                f"{text!r} is neither 'every <duration>' (e.g. every 6h) nor a "
                "five-field cron expression (e.g. '0 */6 * * *')"
            )
        minute, hour, dom, month, dow = fields
        if dow != "*":
            dow = ",".join(_DOW_NAMES[d] for d in _crontab_days(dow))
        try:
            trigger = CronTrigger(
                minute=minute, hour=hour, day=dom, month=month, day_of_week=dow, timezone=UTC
            )
        except ValueError as exc:
            raise ScheduleError(f"invalid cron expression {text!r}: {exc}") from None
        return cls(text=" ".join(text.split()), cron=trigger)

    @property
    def period(self) -> timedelta:
        """The interval, or a cron expression's shortest gap seen over its next fires."""
        if self.interval is not None:
            return self.interval
        t = self.next_at_or_after(datetime.now(UTC))
        gaps = []
        for _ in range(8):
            n = self.next_after(t)
            gaps.append(n - t)
            t = n
        return min(gaps)

    def next_at_or_after(self, t: datetime) -> datetime:
        t = t.astimezone(UTC)
        if self.interval is not None:
            step = _micros(self.interval)
            n = -(-_micros(t - EPOCH) // step)
            return EPOCH + timedelta(microseconds=n * step)
        assert self.cron is not None
        nxt = self.cron.get_next_fire_time(None, t)
        if nxt is None:  # pragma: no cover - a cron without end date always has a next fire
            raise ScheduleError(f"{self.text!r} never fires again")
        return nxt.astimezone(UTC)

    def next_after(self, t: datetime) -> datetime:
        """The first due time strictly after ``t``."""
        return self.next_at_or_after(t + _ONE_US)

    def previous_due(self, t: datetime) -> datetime | None:
        """The last due time ≤ ``t`` (None if the spec cannot tell cheaply)."""
        if self.interval is not None:
            step = _micros(self.interval)
            return EPOCH + timedelta(microseconds=(_micros(t - EPOCH) // step) * step)
        return None


def initial_due(spec: ScheduleSpec, now: datetime, last_started: datetime | None) -> datetime:
    """When a schedule seen for the first time is due: at once if never collected or if
    a due time has passed since the last run started (overdue at start-up), else at the
    next due time."""
    if last_started is None:
        return now
    return spec.next_after(last_started)  # in the past when a due time was missed


class DueTrigger(BaseTrigger):
    """An APScheduler trigger firing at each due time of ``spec`` plus a random jitter.

    The jitter is only ever *added*: an attempt never fires before the due time (the
    database claim would refuse it). ``previous_fire_time`` is ignored so that a manual
    early kick never shifts the grid.
    """

    __slots__ = ("jitter", "spec")

    def __init__(self, spec: ScheduleSpec, jitter: float = 0.0) -> None:
        self.spec = spec
        self.jitter = max(0.0, min(jitter, spec.period.total_seconds() / 4))

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        base = now
        if previous_fire_time is not None and previous_fire_time >= now:
            base = previous_fire_time + _ONE_US
        due = self.spec.next_at_or_after(base)
        if previous_fire_time is not None and due <= previous_fire_time:
            due = self.spec.next_after(previous_fire_time)
        if self.jitter:
            due += timedelta(seconds=random.uniform(0, self.jitter))
        return due

    def __str__(self) -> str:
        return f"due[{self.spec.text}, jitter={self.jitter:g}s]"
