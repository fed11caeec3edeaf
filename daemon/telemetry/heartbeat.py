"""The loop's heartbeat: a file it touches on every tick, which the container healthcheck reads.

A process that exists but no longer loops (frozen, deadlocked, SIGSTOPped) stops touching it. The
file is touched through its own descriptor, never through a symbolic link at its path: a link
there is refused (`state_file_refused`) and its target left alone (see daemon/system/statedir.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from daemon.system import statedir


def max_age_seconds(tick_seconds: float) -> float:
    """How old the heartbeat may get before the daemon counts as stuck: three ticks and a little slack."""
    return 3 * tick_seconds + 5


def beat(path: Path) -> None:
    statedir.make_directory(path.parent)
    try:
        fd = statedir.open_own(path, os.O_WRONLY | os.O_CREAT)
    except statedir.RefusedFile as refused:
        # Not ours to touch: no beat, so the healthcheck reports the daemon unhealthy.
        statedir.refuse(path, refused.reason)
        return
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def age_seconds(path: Path) -> float | None:
    """Seconds since the last beat by the wall clock, or None when there never was one (a file the
    daemon did not write is no beat)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if statedir.not_ours(info) is not None:
        return None
    return time.time() - info.st_mtime
