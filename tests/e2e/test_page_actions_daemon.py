"""The page's buttons against a real daemon (issue #23): Debian's chromium clicks Cancel on a
running slow crawl of a real `scrapy crawl`, recorded `cancelled`, then Run now, and the lock
holder starts the crawl within seconds. The same board as the CLI, heard the same way."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import figure, free_port
from tests.e2e.test_page_browser import Watched, browser  # noqa: F401 (fixture)
from tests.helpers import rows, wait_for

pytestmark = pytest.mark.e2e


def test_cancel_a_running_slow_crawl_then_run_now_from_the_page_of_a_real_daemon(browser, base_env, db,  # noqa: F811
                                                                                  daemon_factory, tmp_path):
    jobs = tmp_path / "schedule.toml"
    jobs.write_text('[jobs.long]\nspider = "slow"\nretry_delay = "1h"\n')
    port = free_port()
    env = {**base_env, "SCHEDULER_JOBS_FILE": str(jobs), "SLOW_SECONDS": "60", "SCHEDULER_HTTP_PORT": str(port),
           "SCHEDULER_HTTP_USER": "alice", "SCHEDULER_HTTP_PASSWORD": "s3cret-pw", "SCHEDULER_TICK_SECONDS": "30"}
    d = daemon_factory(env).start()
    wait_for(lambda: rows(db, "SELECT 1 FROM spider_runs WHERE job = 'long' AND pid IS NOT NULL"), timeout=60,
             what="the slow crawl under way")  # fmt: skip
    w = Watched(browser, http_credentials={"username": "alice", "password": "s3cret-pw"})
    w.tab.goto(f"http://127.0.0.1:{port}/jobs/long")
    asked = time.monotonic()
    w.tab.locator('form[action="/jobs/long/cancel"] button').click()
    w.tab.wait_for_url("**/jobs/long?done=*")
    assert w.tab.locator("p.notice").inner_text() == "cancel requested: long"
    wait_for(lambda: rows(db, "SELECT 1 FROM spider_runs WHERE job = 'long' AND status <> 'running'"), timeout=30,
             step=0.05, what="the cancelled crawl recorded")  # fmt: skip
    figure(f"page cancel: crawl recorded {time.monotonic() - asked:.2f} s after the click (slow crawl of 60 s)")
    assert rows(db, "SELECT status, failure FROM spider_runs WHERE job = 'long'") == [("failed", "cancelled")]
    w.tab.goto(f"http://127.0.0.1:{port}/jobs/long")
    asked = time.monotonic()
    w.tab.locator('form[action="/jobs/long/run-now"] button').click()
    w.tab.wait_for_url("**/jobs/long?done=*")
    wait_for(lambda: rows(db, "SELECT count(*) FROM spider_runs WHERE job = 'long'")[0][0] == 2, timeout=15,
             step=0.05, what="the crawl asked for by run now")  # fmt: skip
    figure(f"page run-now: crawl recorded {time.monotonic() - asked:.2f} s after the click (tick 30 s)")
    assert rows(db, "SELECT action, result, source FROM actions ORDER BY id") == [("cancel", "done", "page"),
                                                                                ("run-now", "done", "page")]
    w.close()
    d.signal(signal.SIGTERM)
    d.signal(signal.SIGTERM)  # a second signal: stop the crawl now
    d.wait(timeout=60)
