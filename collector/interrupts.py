"""Ctrl-C and SIGTERM during a writing command: stop reading, keep what was read, seal.

The first signal only asks: the run being collected stops reading at its next record,
stores what it read, and is sealed ``aborted`` with the reason; the command then says
so in one line and exits 130 (SIGINT) or 143 (SIGTERM). A second signal exits at once;
the run it leaves behind is written from its journal and sealed by the next command
(see :func:`collector.runner.recover`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Interrupts:
    """A context in which SIGINT/SIGTERM set :attr:`cancel_event` instead of killing."""

    def __init__(self, what: str = "the run") -> None:
        self.what = what
        self.cancel_event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return _NAMES.get(signal.Signals(self.signum), str(self.signum)) if self.signum else ""

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            # Second signal: leave now. The unsealed run is sealed by the next command.
            os.write(2, b"\ninterrupted again: exiting now; the next annexa command seals "
                        b"the run from its journal\n")
            os._exit(128 + signum)
        self.signum = signum
        self.cancel_event.set()
        os.write(
            2,
            f"\n{_NAMES.get(signal.Signals(signum), signum)}: stopping {self.what}, storing "
            "what was read and sealing it as aborted (press Ctrl-C again to quit at once)\n"
            .encode(),
        )

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        sys.stderr.flush()
