"""Giving freed memory back to the system after the daemon's few large, passing allocations.

Publishing 10,000 jobs builds their rows and a JSON document of several MiB, freed at once; glibc
keeps what it freed inside its heap (and a freed page in its middle stays resident) until asked to
trim it. The daemon then idles for hours with that memory counted as its own (~5 MiB at 10,000 jobs,
bench/bench.py many_jobs). `release()` asks glibc's `malloc_trim(0)`, which returns every wholly
free page of the heap; it is called after publishing the jobs (daemon/jobs/catalog.py), which is rare.
Elsewhere (musl, macOS, no ctypes) it does nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_looked_up = False


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes  # already loaded by the runner (daemon/engines/local.py): no new cost

        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (ImportError, OSError, AttributeError):  # no ctypes, no symbol (musl)
        return None


def release() -> bool:
    """Return the heap's free pages to the system; True when glibc was asked, False: nothing to ask."""
    global _trim, _looked_up
    if not _looked_up:
        _trim, _looked_up = _malloc_trim(), True
    if _trim is None:
        return False
    _trim(0)
    return True
