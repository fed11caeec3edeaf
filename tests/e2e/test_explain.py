"""`python -m daemon explain JOB` as a real process against a real PostgreSQL, with the jobs published
the way the lock holder publishes them, an arranged history, and the runner lock held (or not) by
a session of the test, as a daemon holds it."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta

import pytest

from daemon.records.journal import Journal
from daemon.records.queries import RUNNER_LOCK_KEY
from tests.conftest import free_port
from tests.e2e.test_job_commands import publish
from tests.helpers import hours, rows, run_cli, utcnow

pytestmark = pytest.mark.e2e

OWNER = "host=box-7 boot=b1 pid=4242 start=99"


@pytest.fixture
def env(base_env):
    return {**base_env, "SCHEDULER_TIMEZONE": "America/Bogota"}


@pytest.fixture
def runner(pg_server, database):
    """A session holding the runner lock, with its holder recorded, as a running daemon's does."""
    conn = pg_server.connect(database)
    rows(conn, "SELECT pg_advisory_lock(%(key)s)", {"key": RUNNER_LOCK_KEY})
    [(since,)] = rows(conn, "INSERT INTO runner_holder (owner, acquired_at) VALUES (%(o)s, now() - interval '2 days') "
                            "RETURNING acquired_at", {"o": OWNER})  # fmt: skip
    yield since
    conn.close()


def crawl(db, job: str, started: datetime, status: str = "completed", failure: str | None = None,
          finished: datetime | None = None, message: str | None = None, run_status: str = "completed",
          run_id: int | None = None) -> int:  # fmt: skip
    if run_id is None:
        [(run_id,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (%(t)s, 1, %(s)s) "
                               "RETURNING id", {"t": started, "s": run_status})  # fmt: skip
    rows(db, "INSERT INTO spider_runs (run_id, job, spider, status, failure, started_at, finished_at, items_scraped, "
             "message) VALUES (%(r)s, %(j)s, 'ok', %(s)s, %(f)s, %(t)s, %(e)s, 3, %(m)s)",
         {"r": run_id, "j": job, "s": status, "f": failure, "t": started, "m": message,
          "e": finished or (None if status == "running" else started + timedelta(minutes=5))})  # fmt: skip
    return run_id


def explain(env, tmp_path, *args: str):
    return run_cli([sys.executable, "-m", "daemon", "explain", *args], env, tmp_path)


def explained(env, tmp_path, job: str) -> tuple[str, dict]:
    """(the paragraph, the --json answer)."""
    text, data = explain(env, tmp_path, job), explain(env, tmp_path, job, "--json")
    assert text.returncode == 0 and data.returncode == 0, text.stderr + data.stderr
    [paragraph] = text.stdout.strip().splitlines()
    return paragraph, json.loads(data.stdout)


def test_a_job_that_never_ran_is_due_at_once_on_the_daemon_holding_the_lock(env, db, tmp_path, runner):
    publish(db)
    paragraph, data = explained(env, tmp_path, "data-bogota")
    assert paragraph.startswith("data-bogota is due now: it has never run")
    assert "host box-7, pid 4242, since " in paragraph and paragraph.endswith("Times in America/Bogota.")
    assert (data["rule"], data["due"], data["due_at"], data["spider"]) == ("due_first_run", True, None, "ok")
    assert data["runner"]["locked"] is True and data["runner"]["owner"] == OWNER
    assert abs(datetime.fromisoformat(data["runner"]["since"]) - runner) < timedelta(seconds=1)
    assert data["runner"]["since"].endswith("-05:00")
    assert data["paragraph"] == paragraph


def test_a_job_backing_off_after_3_failures_says_until_when_and_why(env, db, tmp_path, runner):
    publish(db)
    now = utcnow()
    crawl(db, "python-remote", now - hours(9))
    for minutes in (200, 100, 25):
        crawl(db, "python-remote", now - timedelta(minutes=minutes), "failed", "error",
              finished=now - timedelta(minutes=minutes - 5), message="spider raised ValueError")  # fmt: skip
    paragraph, data = explained(env, tmp_path, "python-remote")
    # 15 min doubled twice: 1 h after the last failure, which ended 20 min ago.
    assert data["rule"] == "waiting_backoff" and (data["failures"], data["backoff_s"]) == (3, 3600.0)
    assert abs(datetime.fromisoformat(data["due_at"]) - (now + timedelta(minutes=40))) < timedelta(seconds=5)
    assert "python-remote waits until " in paragraph and "3 failures in a row" in paragraph
    assert "backoff of 1 h" in paragraph and "retry delay of 15 min" in paragraph
    assert "failed (error) after 5 min: spider raised ValueError." in paragraph
    assert data["last_crawl"]["message"] == "spider raised ValueError"


def test_a_paused_job_says_until_when_and_by_what(env, db, tmp_path, runner):
    publish(db)
    crawl(db, "data-bogota", utcnow() - hours(7))
    assert run_cli([sys.executable, "-m", "daemon", "pause", "data-bogota", "--for", "2h"], env, tmp_path).returncode == 0
    paragraph, data = explained(env, tmp_path, "data-bogota")
    assert (data["rule"], data["paused_by"], data["timing"]) == ("paused", "command", "due_interval")
    assert data["paused_until"].endswith("-05:00") and data["paused_until"][11:16] in paragraph
    assert "data-bogota is paused until " in paragraph and "(in 2 h)" in paragraph and "then it is due at once" in paragraph
    paragraph, data = explained(env, tmp_path, "other")
    assert (data["rule"], data["paused_by"]) == ("paused", "file")
    assert "paused in the jobs file (paused = true)" in paragraph


def test_with_no_daemon_holding_the_lock_nothing_runs_and_the_last_holder_is_named(env, db, tmp_path):
    publish(db)
    crawl(db, "python-remote", utcnow() - hours(5))
    paragraph, data = explained(env, tmp_path, "python-remote")
    assert (data["rule"], data["timing"], data["runner"]["locked"]) == ("no_runner", "due_interval", False)
    assert paragraph.startswith("No daemon holds the runner lock (the last one stopped cleanly), so nothing runs")
    assert "By its own rule it has been due since " in paragraph and "(3 h ago)" in paragraph
    # A holder recorded but no lock: that daemon did not stop cleanly (it may be running offline).
    rows(db, "INSERT INTO runner_holder (owner, acquired_at) VALUES (%(o)s, now())", {"o": OWNER})
    paragraph, _ = explained(env, tmp_path, "python-remote")
    assert "The last holder (host box-7, pid 4242, since " in paragraph and "the fail-safe" in paragraph


def test_a_running_crawl_is_named_with_its_start_and_timeout(env, db, tmp_path, runner):
    publish(db)
    crawl(db, "python-remote", utcnow() - timedelta(minutes=12), "running", run_status="running")
    paragraph, data = explained(env, tmp_path, "python-remote")
    assert data["rule"] == "running" and data["last_crawl"]["status"] == "running"
    assert paragraph.startswith("python-remote is running: its crawl started at ")
    assert "(12 min ago)" in paragraph and "timeout of 2 h" in paragraph


def test_a_due_job_waits_for_a_concurrency_slot_while_a_run_is_under_way(env, db, tmp_path, runner):
    publish(db)
    now = utcnow()
    crawl(db, "data-bogota", now - hours(7))  # due an hour ago, every 6 h
    [(run_id,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (%(t)s, 2, "
                           "'running') RETURNING id", {"t": now - timedelta(minutes=10)})  # fmt: skip
    crawl(db, "python-remote", now - timedelta(minutes=10), "running", run_id=run_id)
    paragraph, data = explained({**env, "SCHEDULER_CONCURRENCY": "1"}, tmp_path, "data-bogota")
    assert (data["rule"], data["timing"]) == ("waiting_slot", "due_interval")
    assert data["run"] | {"started_at": None} == {"started_at": None, "planned": 2, "started": 1, "running": 1,
                                                  "concurrency": 1}  # fmt: skip
    assert "waits for a concurrency slot" in paragraph and "started 1 of its 2 crawls, 1 running" in paragraph


def test_a_run_now_request_not_taken_yet_is_the_reason(env, db, tmp_path, runner):
    publish(db)
    crawl(db, "python-remote", utcnow() - hours(1))
    assert run_cli([sys.executable, "-m", "daemon", "run-now", "ok"], env, tmp_path).returncode == 0
    paragraph, data = explained(env, tmp_path, "python-remote")
    assert (data["rule"], data["timing"]) == ("due_run_now", "waiting_interval")
    assert "A run-now request for python-remote, made at " in paragraph and "By its own rule it waits until" in paragraph


def test_a_jobs_file_problem_with_the_job_is_named_first(env, db, tmp_path, runner):
    publish(db, error="/project/schedule.toml: job 'python-remote': every='soon' is not allowed: a duration such as "
                      "90m; /project/schedule.toml: job 'x': unknown key 'evry'")  # fmt: skip
    paragraph, data = explained(env, tmp_path, "python-remote")
    assert data["rule"] == "file_error" and data["file_problems"] == [
        "/project/schedule.toml: job 'python-remote': every='soon' is not allowed: a duration such as 90m"]
    assert "every='soon'" in paragraph and "evry" not in paragraph and "As last loaded, python-remote is due" in paragraph


def test_an_unknown_job_is_one_line_naming_the_known_ones_and_exit_2(env, db, tmp_path):
    publish(db)
    done = explain(env, tmp_path, "nosuch", "--json")
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line == "explain: no job named nosuch (known: python-remote, data-bogota, other)"
    done = explain(env, tmp_path, "ok")
    [line] = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "spider ok runs as the jobs python-remote, data-bogota: explain one of them" in line


def test_postgresql_unreachable_is_one_line_exit_3_counting_the_runs_in_this_machines_journal(base_env, tmp_path):
    state = tmp_path / "state"
    journal = Journal(state)  # a daemon's own journal, as it writes it while PostgreSQL is unreachable
    for _ in range(2):
        journal.start_run(utcnow(), ["python-remote"], OWNER)
    planted = tmp_path / "planted.jsonl"  # runs no daemon wrote: reached through a link, never read
    planted.write_text(json.dumps({"kind": "run", "run": "evil", "started_at": utcnow().isoformat()}) + "\n")
    os.symlink(planted, state / "journal-1-evil.jsonl")
    env = {**base_env, "DB_PORT": str(free_port()), "DB_WAIT_TIMEOUT_SECONDS": "1"}
    done = explain(env, tmp_path, "python-remote")
    assert done.returncode == 3
    [line] = done.stderr.strip().splitlines()
    assert "did not accept a connection within 1 s" in line and "the fail-safe" in line
    assert "2 runs wait in 1 journal file" in line

