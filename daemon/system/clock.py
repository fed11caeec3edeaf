"""The clock seam: the only place the daemon reads the wall clock or waits.

`time.sleep` and `Event.wait` run on CLOCK_MONOTONIC, which stops while the machine is suspended,
so nobody waits here for longer than one tick: callers wake, re-read the wall clock and decide
again. Tests replace `SystemClock` with a clock whose wall time they move.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware, in UTC."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait until `event` is set or `seconds` pass; True when the event is set."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for measuring durations."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))

    def monotonic(self) -> float:
        return time.monotonic()


class OffsetClock(SystemClock):
    """Real time shifted by an offset that tests move to simulate clock jumps and suspends.

    Waiting and monotonic time stay real, exactly as they behave across a suspend: the process's
    monotonic clock does not advance while the wall clock leaps ahead.
    """

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    def jump(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return datetime.now(timezone.utc) + offset
