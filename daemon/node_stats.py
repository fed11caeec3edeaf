"""Loaded by crawls on a Scrapyd node only (STATS_CLASS=daemon.node_stats.NodeStatsCollector): the
final stats are written as JSON next to the crawl's log (`<jobid>.stats.json` beside
`<logs_dir>/<project>/<spider>/<jobid>.log`), where Scrapyd serves them under /logs/.

The path comes from LOG_FILE, which Scrapyd sets for every crawl (after the settings the daemon
sends, so it cannot be replaced); the daemon does not need to know the node's logs_dir. Without a
LOG_FILE ending in `.log` (a node whose logs_dir is empty) there is nowhere the daemon could read
them, nor a log to parse: such a crawl counts as failed (`process_died`). The file is written to a
new temporary name, never through a link or into a file already there, then renamed.
"""

from __future__ import annotations

import logging
from typing import Any

from scrapy.statscollectors import MemoryStatsCollector

from daemon.scrapy_stats import write_stats

logger = logging.getLogger(__name__)
SUFFIX = ".stats.json"


def stats_path(log_file: str | None) -> str | None:
    """Where the stats of the crawl logging to `log_file` go, or None."""
    if not log_file or not log_file.endswith(".log"):
        return None
    return log_file[: -len(".log")] + SUFFIX


class NodeStatsCollector(MemoryStatsCollector):
    def _persist_stats(self, stats: dict[str, Any], *args: Any) -> None:
        super()._persist_stats(stats, *args)
        path = stats_path(self._crawler.settings.get("LOG_FILE"))
        if path is None:
            logger.error("crawl stats not written: no LOG_FILE ending in .log to write them next to")
            return
        write_stats(path, stats)
