"""Issue 20's scenario, end to end: three jobs on the local engine at SCHEDULER_CONCURRENCY=2, a
long crawl of one of them under way. A freed slot goes at once to the most overdue due job, so the
quick job keeps its interval and the failing one is retried while the long crawl runs; never two
crawls of one job at once, nothing left running."""

from __future__ import annotations

import re
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, figure
from tests.e2e.test_scrapyd_daemon import cluster_env, nodes  # noqa: F401  (a fixture: two one-slot nodes)
from tests.helpers import held_back, rows, wait_for
from tests.integration.test_monitoring_queries import psql

pytestmark = pytest.mark.e2e

LONG_S = 60  # the long crawl is 100 s; 60 s is long next to a 10 s interval and a 6 s retry
TICK = timedelta(seconds=5)
# Each job's own (interval, retry delay), as the jobs file below says.
CADENCES = {"quick": (timedelta(seconds=10), timedelta(seconds=6)), "long": (timedelta(hours=4), timedelta(seconds=6)),
            "flaky": (timedelta(hours=4), timedelta(seconds=6))}  # fmt: skip

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


def the_design_queries_answer_truthfully(pg_server, database, db) -> None:
    """A run is the crawls one decision started: completed when all of them completed. Several
    runs were under way at once (the long crawl's and the others'); the four queries still answer
    when the last successful run was, the runs of the last 24 h, the counts per status and the gaps."""
    runs = rows(db, "SELECT r.id, r.status, r.last_run_at, r.finished_at, r.spider_count, "
                    "array_agg(s.status ORDER BY s.id) FROM scheduler_state r JOIN spider_runs s ON s.run_id = r.id "
                    "GROUP BY r.id ORDER BY r.id")  # fmt: skip
    for _, status, _, _, count, crawled in runs:
        assert len(crawled) == count and (status == "completed") == all(c == "completed" for c in crawled)
    overlapping = [(a[0], b[0]) for a in runs for b in runs if a[0] < b[0] and b[2] < a[3]]
    assert overlapping, "several runs under way at once"
    out = psql(pg_server, database, "-A", "-F", "|", "-f", str(ROOT / "sql" / "monitoring.sql"))
    blocks = [b.strip().splitlines() for b in re.split(r"\(\d+ rows?\)", out)][:4]
    newest_completed = max(r[2] for r in runs if r[1] == "completed")
    assert blocks[0][1].split("|")[0] == str(rows(db, "SELECT %(t)s::timestamptz::text", {"t": newest_completed})[0][0])
    assert len(blocks[1]) - 1 == len(runs)
    assert dict(line.split("|")[:2] for line in blocks[2][1:]) == {
        status: str(sum(1 for r in runs if r[1] == status)) for status in {r[1] for r in runs}}
    figure("monitoring.sql on the scenario's records:\n" + psql(pg_server, database, "-f", str(ROOT / "sql" / "monitoring.sql")))


def scenario(env: dict[str, str], db, daemon_factory) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The daemon through the long crawl: (every crawl, the quick ones and the flaky ones beside it)."""
    daemon = daemon_factory(env).start()
    wait_for(lambda: any(r[0] == "long" and r[1] != "running" for r in crawls(db)), timeout=LONG_S + 60,
             step=0.5, what="the long crawl's end")  # fmt: skip
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    done = crawls(db)
    quick, flaky = while_long_ran(done)
    never_two_crawls_of_one_job_at_once(done)
    # Until the long crawl's end (the daemon was stopped then): no due job waited beyond a tick
    # while one of the two slots was free.
    [long_end] = [r[4] for r in done if r[0] == "long"]
    held = held_back([r for r in done if r[3] < long_end], CADENCES, slots=2, grace=TICK, until=long_end)
    figure(f"every job on its own clock, {env.get('SCHEDULER_ENGINE', 'local')}: jobs held back {len(held)} {held}")
    assert held == [], held
    return done, quick, flaky


@pytest.mark.timeout(LONG_S + 180)
def test_a_long_crawl_never_holds_the_quick_job_past_its_interval_nor_the_failing_job_past_its_retry(
    base_env, db, tmp_path, daemon_factory, pg_server, database
):
    done, quick, flaky = scenario(scenario_env(base_env, tmp_path), db, daemon_factory)
    assert len([r for r in quick if r[1] == "completed"]) >= 4, done
    assert len(flaky) >= 3 and all(r[2] == "error" for r in flaky), done  # its first crawl and two retries
    assert rows(db, "SELECT count(*) FROM spider_runs WHERE status = 'running'") == [(0,)]
    assert rows(db, "SELECT count(*) FROM scheduler_state WHERE status = 'running'") == [(0,)]
    the_design_queries_answer_truthfully(pg_server, database, db)
    starts = [r[3] for r in done if r[0] == "quick"]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    figure(f"every job on its own clock, local: quick {len(quick)} crawls and flaky {len(flaky)} while long's "
           f"{LONG_S} s crawl ran; quick's worst gap between starts {max(gaps):.1f} s (interval 10 s)")


@pytest.mark.timeout(LONG_S + 180)
def test_the_same_on_two_scrapyd_nodes(base_env, db, tmp_path, daemon_factory, nodes):
    env = {**scenario_env(base_env, tmp_path), **cluster_env(base_env, nodes)}
    done, quick, flaky = scenario(env, db, daemon_factory)
    figure(f"every job on its own clock, two Scrapyd nodes: quick {len(quick)} crawls and flaky {len(flaky)} "
           f"while long's {LONG_S} s crawl ran")
    assert len([r for r in quick if r[1] == "completed"]) >= 4, done
    assert len(flaky) >= 3, done
