"""The loop's heartbeat: a file it touches on every tick, which the container healthcheck reads.

A process that exists but no longer loops (frozen, deadlocked, SIGSTOPped) stops touching it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def max_age_seconds(tick_seconds: float) -> float:
    """How old the heartbeat may get before the daemon counts as stuck: three ticks and a little slack."""
    return 3 * tick_seconds + 5


def beat(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, None)


def age_seconds(path: Path) -> float | None:
    """Seconds since the last beat by the wall clock, or None when there never was one."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
