"""Loaded by the `scrapy crawl` subprocesses only (never by the daemon, which must not import
scrapy): a stats collector that writes the crawl's final stats as JSON to SCHEDULER_STATS_FILE,
so the daemon judges success from the stats rather than from the exit code.

The file is written to a new temporary name, never through a symbolic link or into a file that
is already there (O_CREAT | O_EXCL | O_NOFOLLOW), then renamed over the final name (a rename
replaces a link, never follows it). When the temporary name is taken, no stats are written and the
daemon counts the crawl as failed."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from typing import Any

from scrapy.statscollectors import MemoryStatsCollector

logger = logging.getLogger(__name__)
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class JsonFileStatsCollector(MemoryStatsCollector):
    def _persist_stats(self, stats: dict[str, Any], *args: Any) -> None:
        super()._persist_stats(stats, *args)
        path = self._crawler.settings.get("SCHEDULER_STATS_FILE")
        if path:
            write_stats(path, stats)


def write_stats(path: str, stats: dict[str, Any]) -> None:
    """The stats as JSON at `path`, through a new temporary file (never through a link or into a file
    already there), renamed into place: the daemon sees the whole file or none."""
    tmp = f"{path}.tmp"
    try:
        fd = os.open(tmp, NEW_FILE, 0o600)
    except OSError as exc:
        logger.error("crawl stats not written: cannot create %s as a new file (%s)", tmp, exc.strerror)
        return
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({str(k): _plain(v) for k, v in stats.items()}, fh)
    os.replace(tmp, path)
