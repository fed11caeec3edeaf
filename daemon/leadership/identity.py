"""Who runs a run: an identity written on the run's row, so the next runner can tell a run whose
daemon is certainly dead (same machine, no such process any more) from one it cannot see."""

from __future__ import annotations

import os
import socket
from functools import lru_cache


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@lru_cache(maxsize=1)
def this_process() -> str:
    pid = os.getpid()
    return f"host={socket.gethostname()} boot={_boot_id()} pid={pid} start={_start_time(pid)}"


def _fields(identity: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in identity.split() if "=" in part)


def certainly_dead(owner: str | None) -> bool:
    """True when `owner` ran on this machine (same host name and boot) and that process is gone.

    False when it may be alive: another machine, another container we cannot see into, or an
    identity we cannot read. Only then does the next runner wait out the run's lease.
    """
    if not owner:
        return False
    theirs, ours = _fields(owner), _fields(this_process())
    if theirs.get("host") != ours.get("host") or theirs.get("boot") != ours.get("boot"):
        return False
    if theirs == ours:
        return False  # that is us
    try:
        pid = int(theirs.get("pid", ""))
    except ValueError:
        return False
    return _start_time(pid) != theirs.get("start")
