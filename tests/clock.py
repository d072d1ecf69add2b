"""Shifted clocks for the date-sensitive tests (marker ``clock``).

A verdict must not depend on the hour or the date at which it is judged. CI therefore
runs the tests marked ``clock`` again with ``ANNEXA_TEST_CLOCK`` set to instants that
have broken such code before: just after midnight, early morning, just before midnight,
and across 31 December → 1 January (``.ci/run``). The test process travels there as a
whole (time-machine, with the clock ticking on), so fixtures and the product agree on
"now"; ``annexa`` subprocesses follow through libfaketime with the same offset.

Locally: ``ANNEXA_TEST_CLOCK=2027-01-01T00:30:00Z pytest -m clock``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import UTC, datetime
from typing import Any

ENV = "ANNEXA_TEST_CLOCK"

_travel: Any = None
_offset_seconds = 0.0


def target() -> datetime | None:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def start() -> None:
    """Travel to ``ANNEXA_TEST_CLOCK`` (if set) for the rest of the test session."""
    global _travel, _offset_seconds
    moment = target()
    if moment is None or _travel is not None:
        return
    import time_machine

    _travel = time_machine.travel(moment, tick=True)
    # Measured right at the start: the subprocesses' clock must agree with ours to the
    # millisecond, or their rows look written after a later query's "now".
    _offset_seconds = moment.timestamp() - time.time()
    _travel.start()


def stop() -> None:
    global _travel
    if _travel is not None:
        moment = target()
        ended = datetime.now(UTC)
        _travel.stop()
        _travel = None
        if moment is not None and ended.date() != moment.date():
            # Fixtures computed "now" on one date and the product judged on the next: a
            # failure in this pass may be that crossing, not a clock bug. Start earlier.
            print(
                f"\nWARNING: this {ENV}={moment.isoformat()} pass ran into "
                f"{ended.isoformat()}: it crossed midnight, so date-sensitive results of "
                "this pass are not reliable; choose an instant further from midnight",
                file=sys.stderr,
            )


def shifted() -> bool:
    return _travel is not None


def command(argv: list[str]) -> list[str]:
    """``argv`` run at the same shifted clock as the test process (libfaketime)."""
    if _travel is None:
        return argv
    faketime = shutil.which("faketime")
    if faketime is None:
        raise RuntimeError(
            f"{ENV} is set but libfaketime's `faketime` is not installed "
            "(Debian package faketime): subprocesses cannot follow the shifted clock"
        )
    return [faketime, "-f", f"{_offset_seconds:+.6f}s", *argv]


def env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a subprocess run through :func:`command`."""
    out = dict(os.environ if base is None else base)
    if _travel is not None:
        # A faked monotonic clock can stall timed waits for hours (../shared/TESTING.md).
        out["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    return out
