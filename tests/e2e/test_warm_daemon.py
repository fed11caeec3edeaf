"""The daemon process with its default crawl start (`warm`): its crawls are forked from one warm
parent that lives across runs, and nothing of it outlives the daemon."""

from __future__ import annotations

import signal

from tests.helpers import alive, events, json_lines, rows, until_empty, wait_for


def test_a_daemon_forks_its_crawls_from_one_warm_parent_across_runs_and_leaves_nothing_behind(
    base_env, db, daemon_factory
):
    env = {**base_env, "SCHEDULER_INTERVAL_HOURS": "0.001", "SCHEDULER_SPIDERS": "ok,empty"}
    d = daemon_factory(env).start()
    # Each job's crawl may be a run of its own (issue 20): two crawls of each job span several runs.
    completed = lambda: rows(db, "SELECT count(*) FROM spider_runs WHERE status = 'completed'")[0][0]  # noqa: E731
    wait_for(lambda: completed() >= 4, timeout=90, what="two completed crawls of each job")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    logs = json_lines(d.output())
    started = events(logs, "spider_started")
    assert len(started) >= 4 and {e["start"] for e in started} == {"warm"}
    [parent] = events(logs, "warm_parent_started")  # one parent, kept between runs (its linger is 60 s)
    assert parent["mode"] == "warm"
    assert events(logs, "crawl_start_cold") == [] and events(logs, "warm_parent_died") == []
    ok_crawls = rows(db, "SELECT DISTINCT status, items_scraped > 0 FROM spider_runs WHERE job = 'ok'")
    assert ok_crawls == [("completed", True)]
    assert until_empty(lambda: [parent["pid"]] if alive(parent["pid"]) else [], timeout=5) == []
