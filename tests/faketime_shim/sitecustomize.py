"""Loaded (as sitecustomize) only by the processes the calendar's end-to-end tests start under
libfaketime: Debian's libfaketime 0.9.10 makes time.sleep() fail with EINVAL when monotonic time is
left real (FAKETIME_DONT_FAKE_MONOTONIC=1: its clock_nanosleep wrapper rejects the absolute monotonic
deadline Python passes). The same wait through a condition variable works, so time.sleep is that.
Only the clock is faked; nothing else changes."""

import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
