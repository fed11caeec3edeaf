"""Loaded by the `scrapy crawl` subprocesses only (never by the daemon, which must not import
scrapy): a stats collector that writes the crawl's final stats as JSON to SCHEDULER_STATS_FILE,
so the daemon judges success from the stats rather than from the exit code."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from scrapy.statscollectors import MemoryStatsCollector


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
        if not path:
            return
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({str(k): _plain(v) for k, v in stats.items()}, fh)
        os.replace(tmp, path)  # the daemon sees the whole file or none
