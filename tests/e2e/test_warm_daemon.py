"""The daemon process with its default crawl start (`warm`): its crawls are forked from one warm
parent that lives across runs, and nothing of it outlives the daemon."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import free_port
from tests.helpers import alive, events, json_lines, process_tree, rows, until_empty, wait_for


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


def test_a_daemon_waiting_for_postgres_warms_its_crawl_parent_meanwhile_and_the_catch_up_forks_from_it(
    pg_server, database, base_env, daemon_factory
):
    """The container and PostgreSQL start together (or the PC wakes): the catch-up is due the moment
    PostgreSQL answers, and its first crawl forks from the parent started while the daemon waited."""
    pg_server.stop("fast")
    try:
        d = daemon_factory({**base_env, "SCHEDULER_SPIDERS": "ok", "DB_WAIT_TIMEOUT_SECONDS": "120"}).start()
        wait_for(lambda: '"database_unavailable"' in d.output(), timeout=30, what="waiting for PostgreSQL")
        parents = wait_for(lambda: [pid for pid in process_tree(d.proc.pid) if "daemon.engines.warm_parent" in
                                    Path(f"/proc/{pid}/cmdline").read_text(errors="replace")], timeout=10,
                           what="the warm parent, started while waiting")  # fmt: skip
    finally:
        pg_server.start()
    conn = pg_server.connect(database)
    try:
        wait_for(lambda: rows(conn, "SELECT count(*) FROM spider_runs WHERE status = 'completed'")[0][0] >= 1,
                 timeout=90, what="the catch-up's crawl")  # fmt: skip
    finally:
        conn.close()
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    logs = json_lines(d.output())
    assert [e["pid"] for e in events(logs, "warm_parent_started")] == parents  # that one parent, no other
    assert {e["start"] for e in events(logs, "spider_started")} == {"warm"} and not events(logs, "crawl_start_cold")
    assert until_empty(lambda: [p for p in parents if alive(p)], timeout=5) == []  # gone with the daemon


def test_a_daemon_stopped_while_waiting_for_postgres_leaves_no_warm_parent_behind(base_env, daemon_factory):
    d = daemon_factory({**base_env, "DB_PORT": str(free_port()), "DB_WAIT_TIMEOUT_SECONDS": "120",
                        "SCHEDULER_SPIDERS": "ok"}).start()  # fmt: skip
    wait_for(lambda: '"database_unavailable"' in d.output(), timeout=30, what="waiting for PostgreSQL")
    parents = wait_for(lambda: list(process_tree(d.proc.pid)), timeout=10, what="the warm parent")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    assert until_empty(lambda: [p for p in parents if alive(p)], timeout=5) == []
