"""One crawl: its command line, its environment, and the verdict on how it went.

Success is judged from the crawl's stats, not its exit code: `scrapy crawl` exits 0 even when the
spider raised. A crawl fails when it exited non-zero, wrote no stats, finished for any reason other
than 'finished', or logged more errors than allowed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.settings.config import PROJECT_ROOT

# Extra settings every crawl gets: our stats collector, and no telnet console or remote-control
# HTTP server listening (both are on by default in Scrapy).
STATS_COLLECTOR = "daemon.scrapy_stats.JsonFileStatsCollector"
# A crawl's row keeps its output's last lines: at most these many, and these many bytes (whole lines).
TAIL_LINES = 200
TAIL_MAX_BYTES = 16 * 1024


def crawl_command(spider: str, stats_file: Path, extra: Sequence[str] = (), job: str | None = None) -> list[str]:
    """The argv of one crawl. A list, never a shell string: a spider name, and each of a job's
    arguments and settings (`extra`, from jobfile.crawl_arguments), is one argv element. Ours come
    last, so a job can never replace them; SCHEDULER_JOB tells the crawl which job it runs for."""
    return [
        sys.executable, "-m", "scrapy", "crawl", spider, *extra,
        "-s", f"SCHEDULER_JOB={job or spider}",
        "-s", f"STATS_CLASS={STATS_COLLECTOR}",
        "-s", f"SCHEDULER_STATS_FILE={stats_file}",
        "-s", "TELNETCONSOLE_ENABLED=False",
        "-s", "REMOTE_CONTROL_ENABLED=False",
    ]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class CrawlOutcome:
    spider: str
    ok: bool
    failure: str | None  # None | 'error' | 'timeout' | 'too_few_items' | 'cancelled' | 'interrupted'
    message: str
    exit_code: int | None
    finish_reason: str | None
    items_scraped: int | None
    error_count: int | None
    stats: dict[str, Any] | None
    duration_s: float
    pid: int | None = None
    job: str | None = None  # None: the job named after its spider
    log_tail: str | None = None  # its last lines (daemon/engines/crawllog.py)

    @property
    def status(self) -> str:
        return "completed" if self.ok else "failed"

    @property
    def name(self) -> str:
        """The job's name."""
        return self.job or self.spider


def _describe_exit(exit_code: int) -> str:
    if exit_code < 0:
        try:
            return f"killed by signal {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exited with code {exit_code}"


def _int(stats: dict[str, Any] | None, key: str) -> int | None:
    if stats is None:
        return None
    value = stats.get(key, 0)
    return value if isinstance(value, int) else None


def judge(
    spider: str,
    *,
    exit_code: int | None,
    stats: dict[str, Any] | None,
    timed_out: bool,
    interrupted: bool,
    max_errors: int,
    timeout_minutes: float,
    duration_s: float,
    pid: int | None = None,
    interrupt_message: str = "stopped because the daemon was shutting down",
    min_items: int = 0,
    cancelled: bool = False,
    job: str | None = None,
) -> CrawlOutcome:
    finish_reason = stats.get("finish_reason") if stats else None
    items = _int(stats, "item_scraped_count")
    errors = _int(stats, "log_count/ERROR")

    failure: str | None = "error"
    if cancelled:
        failure, message = "cancelled", "cancelled with `python -m daemon cancel`"
    elif interrupted:
        failure, message = "interrupted", interrupt_message
    elif timed_out:
        failure, message = "timeout", f"ran longer than {timeout_minutes:g} minute(s) and was stopped"
    elif exit_code is None or exit_code != 0:
        message = _describe_exit(exit_code) if exit_code is not None else "did not exit"
    elif stats is None:
        message = "wrote no crawl stats (the crawl did not finish normally)"
    elif finish_reason != "finished":
        message = f"finished with finish_reason={finish_reason!r}"
    elif errors is not None and errors > max_errors:
        message = f"logged {errors} error(s); at most {max_errors} allowed"
    elif (items or 0) < min_items:
        # An empty result from a changed site must not reset the clock: not a success, retried.
        failure, message = "too_few_items", f"scraped {items or 0} item(s); at least {min_items} required"
    else:
        failure, message = None, f"scraped {items or 0} item(s)"

    return CrawlOutcome(
        spider=spider,
        ok=failure is None,
        failure=failure,
        message=message,
        exit_code=exit_code,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        items_scraped=items,
        error_count=errors,
        stats=stats,
        duration_s=round(duration_s, 3),
        pid=pid,
        job=job if job != spider else None,
    )


def crawl_environment(base: dict[str, str]) -> dict[str, str]:
    """The crawl's environment: the daemon's, plus our package on the path for the stats collector."""
    env = dict(base)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env
