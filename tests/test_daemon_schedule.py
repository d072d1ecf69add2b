"""Schedule specs and the APScheduler trigger of the daemon (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.daemon.schedule import DueTrigger, ScheduleError, ScheduleSpec, initial_due

pytestmark = pytest.mark.clock


def t(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_interval_is_anchored_at_the_epoch_so_replicas_agree() -> None:
    s = ScheduleSpec.parse("every 6h")
    assert s.next_at_or_after(t(2026, 1, 1, 7)) == t(2026, 1, 1, 12)
    assert s.next_at_or_after(t(2026, 1, 1, 6)) == t(2026, 1, 1, 6)
    assert s.next_after(t(2026, 1, 1, 6)) == t(2026, 1, 1, 12)
    assert s.previous_due(t(2026, 1, 1, 11, 59)) == t(2026, 1, 1, 6)
    five = ScheduleSpec.parse("every 5s")
    assert five.next_after(t(2026, 1, 1, 0, 0, 4, 999999)) == t(2026, 1, 1, 0, 0, 5)


def test_cron_uses_crontab_weekdays_not_apschedulers() -> None:
    # 2026-01-03 is a Saturday; "1-5" is Monday to Friday in crontab.
    weekdays = ScheduleSpec.parse("30 2 * * 1-5")
    assert weekdays.next_at_or_after(t(2026, 1, 3)) == t(2026, 1, 5, 2, 30)
    sunday = ScheduleSpec.parse("0 0 * * 0")
    assert sunday.next_at_or_after(t(2026, 1, 1)) == t(2026, 1, 4)
    assert ScheduleSpec.parse("0 0 * * 7").next_at_or_after(t(2026, 1, 1)) == t(2026, 1, 4)
    assert ScheduleSpec.parse("*/15 * * * *").period == timedelta(minutes=15)


@pytest.mark.parametrize("bad", ["every", "every 0s", "every 5 parsecs", "* * *", "61 * * * *"])
def test_bad_specs_are_refused(bad: str) -> None:
    with pytest.raises(ScheduleError):
        ScheduleSpec.parse(bad)


def test_trigger_jitter_never_fires_before_the_due_time_and_is_bounded() -> None:
    spec = ScheduleSpec.parse("every 1m")
    trig = DueTrigger(spec, jitter=3600)  # clamped to a quarter of the period
    assert trig.jitter == 15
    now = t(2026, 1, 1, 0, 0, 10)
    fires = [trig.get_next_fire_time(None, now) for _ in range(200)]
    assert all(t(2026, 1, 1, 0, 1) <= f <= t(2026, 1, 1, 0, 1, 15) for f in fires)
    assert len(set(fires)) > 1
    # After firing (jittered) at 00:01:07, the next fire is the next grid point, not +1m.
    nxt = DueTrigger(spec).get_next_fire_time(t(2026, 1, 1, 0, 1, 7), t(2026, 1, 1, 0, 1, 7))
    assert nxt == t(2026, 1, 1, 0, 2)


def test_a_collection_overdue_at_start_up_is_due_at_once() -> None:
    spec = ScheduleSpec.parse("every 6h")
    now = t(2026, 1, 1, 13)
    assert initial_due(spec, now, None) == now  # never collected
    assert initial_due(spec, now, t(2026, 1, 1, 5)) <= now  # 06:00 and 12:00 were missed
    assert initial_due(spec, now, t(2026, 1, 1, 12, 0, 3)) == t(2026, 1, 1, 18)
