"""Which spiders run and how their crawls count, through the real loop and real crawls."""

from __future__ import annotations

from datetime import timedelta

from daemon.settings.config import Settings
from daemon.jobs.spiders import list_spiders, resolve_spiders
from daemon.records.store import Store
from tests.helpers import SchedulerThread, insert_completed, rows, utcnow, wait_for

TEST_SPIDERS = ["args", "boom", "counted", "crash", "empty", "hang", "ok", "other", "segv", "slow", "slow2"]


def test_with_no_subset_named_every_spider_scrapy_list_reports_is_kept_in_a_stable_order(base_env):
    settings = Settings.from_mapping(base_env)
    assert resolve_spiders(settings, list_spiders(settings)) == TEST_SPIDERS


def _spider_row(db):
    return rows(db, "SELECT status, items_scraped, error_count, finish_reason FROM spider_runs")


def test_a_spider_that_scrapes_nothing_still_succeeds(base_env, db):
    with SchedulerThread(base_env, ["empty"]):
        wait_for(lambda: rows(db, "SELECT count(*) FROM scheduler_state WHERE status <> 'running'")[0][0] == 1,
                 timeout=60, what="the run")  # fmt: skip
    assert _spider_row(db) == [("completed", 0, 0, "finished")]


def test_scheduler_max_spider_errors_lets_a_crawl_with_that_many_errors_pass(base_env, db):
    env = {**base_env, "SCHEDULER_MAX_SPIDER_ERRORS": "1"}
    with SchedulerThread(env, ["boom"]):
        wait_for(lambda: rows(db, "SELECT count(*) FROM scheduler_state WHERE status <> 'running'")[0][0] == 1,
                 timeout=60, what="the run")  # fmt: skip
    assert _spider_row(db) == [("completed", 0, 1, "finished")]  # with the default 0 it fails (other tests)


def test_a_timed_out_crawl_counts_as_a_failure_of_the_spider_and_is_retried_with_backoff(db):
    insert_completed(db, ["ok"], utcnow() - timedelta(hours=8))
    [(run_id,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) "
                           "VALUES (now(), 1, 'failed') RETURNING id")  # fmt: skip
    rows(db, "INSERT INTO spider_runs (run_id, spider, status, failure, started_at, finished_at) "
             "VALUES (%(r)s, 'ok', 'failed', 'timeout', now(), now())", {"r": run_id})  # fmt: skip
    [history] = Store(db).histories(["ok"])
    assert history.consecutive_failures == 1 and history.last_failure_at is not None
