"""`python -m daemon status` and `python -m daemon run-now`, against a real daemon and Postgres."""

from __future__ import annotations

import json
import signal
import sys
import time

import pytest

from daemon.settings.config import Settings
from daemon.jobs.jobfile import JobDefaults, default_jobs
from daemon.jobs.spiders import list_spiders
from daemon.records.store import Store
from tests.conftest import figure
from tests.helpers import hours, insert_completed, rows, run_cli, utcnow, wait_for

pytestmark = pytest.mark.e2e


def test_status_shows_each_job_and_spider_with_next_due_in_the_configured_time_zone(base_env, db, tmp_path):
    insert_completed(db, ["ok", "other"], utcnow() - hours(1))
    rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status, finished_at) "
             "VALUES (now() - interval '30 minutes', 1, 'failed', now() - interval '29 minutes')")  # fmt: skip
    rows(db, "INSERT INTO spider_runs (run_id, spider, status, failure, started_at, finished_at, message) "
             "SELECT max(id), 'other', 'failed', 'error', now() - interval '30 minutes', "
             "now() - interval '29 minutes', 'logged 2 error(s)' FROM scheduler_state")  # fmt: skip
    env = {**base_env, "SCHEDULER_TIMEZONE": "America/Bogota"}
    done = run_cli([sys.executable, "-m", "daemon", "status", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["is_running"] is False
    job, *housekeeping = report["jobs"]
    assert [j["id"] for j in housekeeping] == ["history_retention", "overdue_check", "cache_cleanup"]
    assert job["id"] == "spiders" and job["last_status"] == "failed" and job["next_due"].endswith("-05:00")
    spiders = {s["spider"]: s for s in report["spiders"]}
    assert spiders["ok"]["last_status"] == "completed" and spiders["ok"]["items"] == 1
    assert spiders["other"]["last_status"] == "failed" and spiders["other"]["failure"] == "error"
    # ok succeeded an hour ago: due in 3 h; other failed 29 min ago: retried 15 min after (now).
    assert spiders["ok"]["next_due"] > spiders["other"]["next_due"]
    table = run_cli([sys.executable, "-m", "daemon", "status"], env, tmp_path)
    assert table.returncode == 0
    header, *lines = table.stdout.splitlines()
    assert header.split()[:3] == ["JOB", "/", "SPIDER"] and "NEXT DUE" in header
    assert any(line.strip().startswith("ok ") for line in lines)
    assert any("failed (error)" in line for line in lines)


def test_run_now_starts_the_named_spider_within_two_seconds(base_env, db, daemon_factory, tmp_path):
    insert_completed(db, ["ok", "other"], utcnow() - hours(1))
    env = {**base_env, "SCHEDULER_SPIDERS": "ok,other", "SCHEDULER_TICK_SECONDS": "30"}
    d = daemon_factory(env).start()
    wait_for(lambda: '"run_not_due"' in d.output(), timeout=30, what="the idle daemon")
    asked = time.monotonic()
    done = run_cli([sys.executable, "-m", "daemon", "run-now", "other"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "run requested" in done.stdout
    wait_for(lambda: rows(db, "SELECT 1 FROM spider_runs WHERE spider = 'other' AND started_at > now() - "
                              "interval '1 minute'"), timeout=10, step=0.02, what="the requested crawl")  # fmt: skip
    figure(f"run-now: crawl recorded {time.monotonic() - asked:.2f} s after the command started (tick 30 s)")
    wait_for(lambda: rows(db, "SELECT count(*) FROM scheduler_state WHERE status = 'completed'")[0][0] == 2,
             timeout=30, what="the requested run")  # fmt: skip
    assert rows(db, "SELECT spider FROM spider_runs WHERE run_id = (SELECT max(id) FROM scheduler_state)") == [
        ("other",)
    ]
    assert rows(db, "SELECT count(*) FROM run_requests WHERE taken_at IS NULL") == [(0,)]
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_run_now_with_an_unknown_spider_is_a_clear_error(base_env, tmp_path):
    done = run_cli([sys.executable, "-m", "daemon", "run-now", "nosuch"], {**base_env, "SCHEDULER_SPIDERS": "ok"},
                   tmp_path)  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "no spider named nosuch" in line and "known: ok" in line


def test_a_run_requested_while_no_daemon_listens_is_taken_by_the_next_one(base_env, db, daemon_factory, tmp_path):
    insert_completed(db, ["ok"], utcnow() - hours(1))
    env = {**base_env, "SCHEDULER_SPIDERS": "ok"}
    assert run_cli([sys.executable, "-m", "daemon", "run-now"], env, tmp_path).returncode == 0
    d = daemon_factory(env).start()
    wait_for(lambda: rows(db, "SELECT count(*) FROM scheduler_state WHERE status = 'completed'")[0][0] == 2,
             timeout=30, what="the requested run")  # fmt: skip
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_status_while_the_daemon_runs_a_crawl_shows_it_running(base_env, db, daemon_factory, tmp_path):
    env = {**base_env, "SCHEDULER_SPIDERS": "slow", "SLOW_SECONDS": "6"}
    d = daemon_factory(env).start()
    wait_for(lambda: rows(db, "SELECT count(*) FROM spider_runs WHERE status = 'running'")[0][0] == 1,
             timeout=60, what="the crawl to be running")  # fmt: skip
    done = run_cli([sys.executable, "-m", "daemon", "status", "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["is_running"] is True and report["jobs"][0]["running"] is True
    assert [(s["spider"], s["running"]) for s in report["spiders"]] == [("slow", True)]
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_status_lists_every_spider_of_the_project_also_one_that_never_ran(base_env, db, tmp_path):
    insert_completed(db, ["ok"], utcnow() - hours(1))
    # Before a daemon published its jobs, those of SCHEDULER_SPIDERS (or of the history) stand in.
    kept = run_cli([sys.executable, "-m", "daemon", "status", "--json"], {**base_env, "SCHEDULER_SPIDERS": "other"},
                   tmp_path)  # fmt: skip
    assert [s["spider"] for s in json.loads(kept.stdout)["spiders"]] == ["other"]
    # status never runs `scrapy list` itself: it shows the jobs the daemon published, one per spider
    # of the project without a jobs file.
    settings = Settings.from_mapping(base_env)
    project = list_spiders(settings)
    Store(db).publish_jobs(default_jobs(project, JobDefaults.from_settings(settings)), path=None, error=None,
                           spiders=project, now=utcnow(), owner="host:1")  # fmt: skip
    done = run_cli([sys.executable, "-m", "daemon", "status", "--json"], base_env, tmp_path)
    assert done.returncode == 0, done.stderr
    spiders = {s["spider"]: s for s in json.loads(done.stdout)["spiders"]}
    assert {"ok", "other", "empty", "slow"} <= set(spiders)
    assert spiders["other"]["last_run"] is None and spiders["other"]["last_status"] is None
    assert spiders["other"]["next_due"] <= spiders["ok"]["next_due"]  # never ran: due now
