"""Issue 20's scenario, end to end: three jobs on the local engine at SCHEDULER_CONCURRENCY=2, a
long crawl of one of them under way. A freed slot goes at once to the most overdue due job, so the
quick job keeps its interval and the failing one is retried while the long crawl runs; never two
crawls of one job at once, nothing left running."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import figure
from tests.helpers import rows, wait_for

pytestmark = pytest.mark.e2e

LONG_S = 60  # the long crawl is 100 s; 60 s is long next to a 10 s interval and a 6 s retry

SCENARIO = f"""
[defaults]
every = "4h"
retry_delay = "6s"

[jobs.quick]
spider = "ok"
every = "10s"

[jobs.long]
spider = "slow"
args = {{ seconds = "{LONG_S}" }}

[jobs.flaky]
spider = "boom"
"""


def crawls(db) -> list[tuple]:
    """(job, status, failure, started_at, finished_at) of every crawl, oldest first."""
    return rows(db, "SELECT job, status, failure, started_at, finished_at FROM spider_runs ORDER BY id")


def scenario_env(base_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    jobs = tmp_path / "schedule.toml"
    jobs.write_text(SCENARIO)
    return {**base_env, "SCHEDULER_JOBS_FILE": str(jobs), "SCHEDULER_CONCURRENCY": "2",
            "SCHEDULER_TICK_SECONDS": "5"}  # fmt: skip


def while_long_ran(rows_: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """The quick and the flaky crawls that started while the long crawl ran."""
    [(_, _, _, long_start, long_end)] = [r for r in rows_ if r[0] == "long"]
    during = [r for r in rows_ if r[0] != "long" and long_start <= r[3] and r[4] is not None and r[4] <= long_end]
    return [r for r in during if r[0] == "quick"], [r for r in during if r[0] == "flaky"]


def never_two_crawls_of_one_job_at_once(rows_: list[tuple]) -> None:
    for job in {r[0] for r in rows_}:
        spans = [(r[3], r[4]) for r in rows_ if r[0] == job]
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end is not None and start >= end, (job, spans)


def test_a_long_crawl_never_holds_the_quick_job_past_its_interval_nor_the_failing_job_past_its_retry(
    base_env, db, tmp_path, daemon_factory
):
    daemon = daemon_factory(scenario_env(base_env, tmp_path)).start()
    wait_for(lambda: any(r[0] == "long" and r[1] != "running" for r in crawls(db)), timeout=LONG_S + 60,
             step=0.5, what="the long crawl's end")  # fmt: skip
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    done = crawls(db)
    quick, flaky = while_long_ran(done)
    assert len([r for r in quick if r[1] == "completed"]) >= 4, done
    assert len(flaky) >= 3 and all(r[2] == "error" for r in flaky), done  # its first crawl and two retries
    never_two_crawls_of_one_job_at_once(done)
    assert rows(db, "SELECT count(*) FROM spider_runs WHERE status = 'running'") == [(0,)]
    assert rows(db, "SELECT count(*) FROM scheduler_state WHERE status = 'running'") == [(0,)]
    starts = [r[3] for r in done if r[0] == "quick"]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    figure(f"every job on its own clock, local: quick {len(quick)} crawls and flaky {len(flaky)} while long's "
           f"{LONG_S} s crawl ran; quick's worst gap between starts {max(gaps):.1f} s (interval 10 s)")
