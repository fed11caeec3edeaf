"""Each crawl's log: everything it printed, in a file of its own under the state directory, and its
last lines kept with its row in PostgreSQL (`spider_runs.log_tail`), so the page and `python -m
daemon logs` show them even when the file is gone or the daemon runs on another machine.

The file is `SCHEDULER_STATE_DIR/logs/<job>/<UTC start>-<pid>.log`, created without following a
symbolic link (daemon/system/statedir.py), capped at FILE_MAX_BYTES (a line says where it was cut); the
tail is the last TAIL_LINES lines, at most TAIL_MAX_BYTES. history_retention removes files as old
as the history it deletes. The text comes from crawled sites: whoever shows it escapes it.
"""

from __future__ import annotations

import collections
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

import structlog

from daemon.system import statedir
from daemon.jobs.crawl import TAIL_LINES, TAIL_MAX_BYTES

log = structlog.get_logger("daemon.crawllog")

FILE_MAX_BYTES = 5 * 2**20
CUT_NOTE = "[persistent-scheduler: the rest of this crawl's output is not kept in this file; see the daemon's log]\n"


def logs_directory(state_dir: Path) -> Path:
    return state_dir / "logs"


class CrawlLog:
    """The log of one crawl, written by its two output readers (stdout, stderr) at once."""

    def __init__(self, state_dir: Path, job: str, started: datetime, pid: int) -> None:
        self.path: Path | None = None
        self._fh = None
        self._written = 0
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        directory = logs_directory(state_dir) / job
        path = directory / f"{started.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{pid}.log"
        try:
            statedir.make_directory(logs_directory(state_dir), follow_symlink=False)
            statedir.make_directory(directory, follow_symlink=False)
            fd = statedir.open_own(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        except statedir.RefusedFile as refused:
            statedir.refuse(path, refused.reason)
            return
        except OSError as exc:  # disk full, read-only: the crawl runs anyway, its tail still kept
            log.warning("crawl_log_unavailable", file=str(path), error=exc.strerror or type(exc).__name__)
            return
        self.path = path
        self._fh = os.fdopen(fd, "w", encoding="utf-8", errors="replace")

    def write(self, line: str) -> None:
        """One line the crawl printed (with or without its newline)."""
        text = line if line.endswith("\n") else line + "\n"
        with self._lock:
            self._tail.append(text)
            if self._fh is None:
                return
            try:
                if self._written + len(text) > FILE_MAX_BYTES:
                    self._fh.write(CUT_NOTE)
                    self._fh.close()
                    self._fh = None
                    return
                self._fh.write(text)
                self._written += len(text)
            except OSError:
                self._fh = None  # the file stopped taking writes; the tail goes on

    def close(self) -> str:
        """Close the file; the tail, at most TAIL_MAX_BYTES (whole lines, newest kept)."""
        with self._lock:
            if self._fh is not None:
                try:
                    self._fh.close()
                except OSError:
                    pass
                self._fh = None
            lines, size = [], 0
            for text in reversed(self._tail):
                size += len(text.encode("utf-8", "replace"))
                if size > TAIL_MAX_BYTES and lines:
                    break
                lines.append(text[-TAIL_MAX_BYTES:])
            return "".join(reversed(lines))


def remove_older_than(state_dir: Path, cutoff: datetime) -> int:
    """Crawl log files last written before `cutoff` (history_retention): how many were removed.
    Never follows a symbolic link; removes only regular files of this user."""
    root = logs_directory(state_dir)
    removed = 0
    if not root.is_dir() or root.is_symlink():
        return 0
    limit = cutoff.timestamp()
    for job_dir in root.iterdir():
        if job_dir.is_symlink() or not job_dir.is_dir():
            continue
        for path in job_dir.iterdir():
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if statedir.not_ours(info) is None and info.st_mtime < limit:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


# ----------------------------------------------------------------- python -m daemon logs



def local_file(state_dir: Path, job: str, pid: int | None, started: datetime) -> Path | None:
    """This machine's log file of the crawl of `job` with `pid` that started at `started` (its row's
    time, a moment before the file's own stamp), or None (gone, another machine, or not ours)."""
    directory = logs_directory(state_dir) / job
    if pid is None or directory.is_symlink() or not directory.is_dir():
        return None
    best: tuple[float, Path] | None = None
    for path in directory.glob(f"*-{pid}.log"):
        try:
            stamp = datetime.strptime(path.name.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            info = os.lstat(path)
        except (ValueError, OSError):
            continue
        gap = abs((stamp - started).total_seconds())
        if statedir.not_ours(info) is None and gap < 120 and (best is None or gap < best[0]):
            best = (gap, path)
    return best[1] if best else None
