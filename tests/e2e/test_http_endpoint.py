"""The HTTP endpoint of a real daemon: /healthz, /metrics, /jobs, /jobs/{id}."""

from __future__ import annotations

import json
import signal

import pytest

from tests.conftest import free_port
from tests.helpers import get, metric, wait_for

pytestmark = pytest.mark.e2e


def test_the_endpoint_answers_health_metrics_and_jobs(pg_server, base_env, db, daemon_factory):
    port = free_port()
    env = {**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_HTTP_PORT": str(port), "SCHEDULER_TICK_SECONDS": "1"}
    d = daemon_factory(env).start()
    wait_for(lambda: '"run_completed"' in d.output(), timeout=60, what="a run")
    wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=10, what="healthy")
    # The housekeeping jobs run right after the catch-up run, once no spider is due.
    job_metric = 'scheduler_job_runs_total{job="history_retention",status="completed"}'
    wait_for(lambda: metric(get(port, "/metrics")[1], job_metric) == 1.0, timeout=30, what="the jobs")
    status, body = get(port, "/metrics")
    assert status == 200
    assert metric(body, 'scheduler_runs_total{status="completed"}') == 1.0
    assert metric(body, 'scheduler_spider_runs_total{job="ok",spider="ok",status="completed"}') == 1.0
    assert metric(body, 'scheduler_items_scraped_total{job="ok",spider="ok"}') == 15.0
    assert metric(body, 'scheduler_last_success_timestamp_seconds{job="ok",spider="ok"}') > 0
    assert metric(body, "scheduler_run_duration_seconds_count") == 1.0
    assert 3 * 3600 < metric(body, "scheduler_seconds_until_next_due") <= 4 * 3600
    assert metric(body, "scheduler_is_running") == 0.0
    assert metric(body, 'scheduler_job_runs_total{job="history_retention",status="completed"}') == 1.0
    status, body = get(port, "/jobs")
    view = json.loads(body)
    assert status == 200 and view["is_running"] is False
    assert [j["id"] for j in view["jobs"]] == ["spiders", "history_retention", "overdue_check", "cache_cleanup"]
    assert all(j["next_due"] and j["next_due"].endswith("+00:00") for j in view["jobs"]), view
    status, body = get(port, "/jobs/spiders")
    assert status == 200 and json.loads(body)["last_status"] == "completed"
    status, body = get(port, "/jobs/nosuch")
    assert status == 404 and json.loads(body)["error"] == "unknown job: nosuch"
    # The database goes away: the heartbeat stops and /healthz says so.
    db.close()
    pg_server.stop("fast")
    try:
        wait_for(lambda: get(port, "/healthz")[0] == 503, timeout=30, what="503 while the database is down")
    finally:
        pg_server.start()
    wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=30, what="healthy again")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_the_endpoint_is_off_by_default(base_env, daemon_factory):
    d = daemon_factory({**base_env, "SCHEDULER_SPIDERS": "ok"}).start()
    wait_for(lambda: '"run_completed"' in d.output(), timeout=60, what="a run")
    assert '"http_listening"' not in d.output()
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_metrics_show_a_run_in_progress_and_the_failures_after_it(base_env, daemon_factory):
    port = free_port()
    env = {**base_env, "SCHEDULER_SPIDERS": "slow,boom", "SLOW_SECONDS": "4", "SCHEDULER_HTTP_PORT": str(port),
           "SCHEDULER_TICK_SECONDS": "1"}  # fmt: skip
    d = daemon_factory(env).start()
    wait_for(lambda: metric(get(port, "/metrics")[1] or "", "scheduler_is_running") == 1.0, timeout=60,
             what="is_running = 1 during the run")  # fmt: skip
    assert json.loads(get(port, "/jobs")[1])["is_running"] is True
    wait_for(lambda: '"run_failed"' in d.output(), timeout=60, what="the run to end (boom fails)")
    body = get(port, "/metrics")[1]
    assert metric(body, "scheduler_is_running") == 0.0
    assert metric(body, 'scheduler_runs_total{status="failed"}') == 1.0
    assert metric(body, 'scheduler_spider_runs_total{job="boom",spider="boom",status="failed"}') == 1.0
    assert metric(body, 'scheduler_spider_runs_total{job="slow",spider="slow",status="completed"}') == 1.0
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
