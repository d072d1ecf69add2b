"""Verdicts on durations do not depend on the hour at which they are judged.

Timestamps that move on every use are stored to the day while recent and to the second
once old (``activity_time``); events that do not move are stored to the second
(``full_time``). These tests judge the same facts at several hours of the day, with an
explicit ``now``, and run again under CI's shifted clocks (marker ``clock``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from connectors.okta.users import user_inactive
from core.times import activity_time, days_since, full_time

pytestmark = pytest.mark.clock

HOURS = [0.5, 3, 6, 11.99, 12, 18, 23.83]


def at(day: datetime, hour: float) -> datetime:
    return day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=hour)


@pytest.mark.parametrize("hour", HOURS)
def test_activity_is_the_day_alone_only_while_under_a_day_old(hour):
    now = at(datetime(2027, 1, 1, tzinfo=UTC), hour)
    recent = now - timedelta(hours=23, minutes=59)
    old = now - timedelta(days=1, seconds=1)
    assert activity_time(recent, now) == recent.date().isoformat()
    assert activity_time(old, now) == old.strftime("%Y-%m-%dT%H:%M:%SZ")
    # No churn: a run 30 s later stores the same value while the activity is recent...
    assert activity_time(recent, now + timedelta(seconds=30)) == activity_time(recent, now)
    # ...and once it is old, it is stored to the second and no longer moves.
    assert activity_time(old, now + timedelta(days=3)) == activity_time(old, now)


@pytest.mark.parametrize("hour", HOURS)
def test_a_day_alone_is_read_as_its_end_never_older_than_it_can_be(hour):
    now = at(datetime(2026, 12, 31, tzinfo=UTC), hour)
    stored = activity_time(now - timedelta(hours=min(hour, 23.9) + 0.01), now)
    # Whatever the hour, a stored day alone is "within the last day": under one day old.
    assert days_since(stored, now) < 1
    assert days_since(full_time(now - timedelta(days=1.5)), now) == pytest.approx(1.5, abs=1e-4)


@pytest.mark.parametrize("hour", HOURS)
@pytest.mark.parametrize(
    ("days_ago", "expected"), [(89.6, "pass"), (90.02, "fail"), (90.4, "fail"), (0.3, "pass")]
)
def test_inactivity_near_the_limit_is_judged_the_same_at_every_hour(hour, days_ago, expected):
    now = at(datetime(2027, 1, 1, tzinfo=UTC), hour)
    last = now - timedelta(days=days_ago)
    stored = activity_time(last, now)
    payload = {"id": "00u1", "login": "a@x", "status": "ACTIVE", "last_login": stored}
    # The check judges at collection time; here that is `now`.
    with time_machine.travel(now, tick=False):
        verdict = user_inactive(payload, {"inactive_days": 90})
    assert verdict.status == expected, (hour, days_ago, payload, verdict)
