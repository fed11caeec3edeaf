"""The loop against a real Postgres, with real `scrapy crawl` subprocesses; only the clock is fake."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from daemon.records import queries
from daemon.system.clock import OffsetClock
from tests.conftest import figure
from tests.helpers import (
    SchedulerThread,
    alive,
    crawl_intervals,
    events,
    hours,
    insert_completed,
    rows,
    utcnow,
    wait_for,
)


def messages(logs):
    return [e.get("message", "") for e in logs]


def completed_runs(db):
    return rows(db, "SELECT id FROM scheduler_state WHERE status = 'completed'")


def test_first_run_starts_at_once_with_no_history_and_records_the_results(base_env, db):
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]):
        wait_for(lambda: completed_runs(db), what="a completed run")
    [(spider, status, failure, items, errors, reason, code, started, finished, message)] = rows(
        db,
        "SELECT spider, status, failure, items_scraped, error_count, finish_reason, exit_code, "
        "started_at, finished_at, message FROM spider_runs",
    )
    assert (spider, status, failure, items, errors, reason, code) == ("ok", "completed", None, 15, 0, "finished", 0)
    assert started <= finished and message == "scraped 15 item(s)"
    [(spider_count, run_status, last_run_at)] = rows(
        db, "SELECT spider_count, status, last_run_at FROM scheduler_state"
    )
    assert (spider_count, run_status) == (1, "completed")
    # last_run_at is when the run started: at the decision, just before its crawl's row.
    assert last_run_at <= started < last_run_at + timedelta(seconds=30)
    # The canonical line: one per spider run, with everything a reader needs.
    [summary] = events(logs, "spider_run_finished")
    [(run_id,)] = rows(db, "SELECT id FROM scheduler_state")
    assert {k: summary[k] for k in ("spider", "run_id", "status", "items", "errors", "exit_code", "finish_reason")} == {
        "spider": "ok", "run_id": run_id, "status": "completed", "items": 15, "errors": 0, "exit_code": 0,
        "finish_reason": "finished"}  # fmt: skip
    assert summary["duration_s"] > 0
    said = messages(logs)
    assert any(m.startswith("Last run was never") for m in said)
    assert "Time threshold met or exceeded, running spiders immediately" in said
    assert "Starting spider run for 1 spider(s)" in said
    assert "Spider run completed successfully" in said
    [summary] = events(logs, "spider_run_finished")
    assert summary["status"] == "completed" and summary["items"] == 15 and summary["spider"] == "ok"
    output = events(logs, "spider_output")
    assert output and all(e["spider"] == "ok" and e["channel"] in ("stdout", "stderr") for e in output)
    lines = [e["line"] for e in output]
    assert any("Spider closed (finished)" in line for line in lines)
    # No network console may listen during a crawl.
    assert not [line for line in lines if "Telnet console listening" in line or "Remote control HTTP" in line]


def test_overdue_spider_runs_at_once_after_restart(base_env, db):
    insert_completed(db, ["ok"], utcnow() - hours(8))
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]):
        wait_for(lambda: len(completed_runs(db)) == 2, what="the catch-up run")
    assert "Last run was 8.00 hours ago (required: 4 hours)" in messages(logs)
    assert "Time threshold met or exceeded, running spiders immediately" in messages(logs)


def test_recent_run_waits_the_remainder_and_a_wall_clock_jump_starts_it_within_a_tick(base_env, db):
    insert_completed(db, ["ok"], utcnow() - hours(2))
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]) as sched:
        not_due = wait_for(lambda: events(logs, "run_not_due"), what="the decision")
        time.sleep(1.5)  # three ticks: nothing may run
        assert len(completed_runs(db)) == 1
        assert not_due[0]["message"].startswith("Recent run detected, skipping immediate execution; next run due at")
        assert abs(not_due[0]["wait_hours"] - 2.0) < 0.01
        assert "Last run was 2.00 hours ago (required: 4 hours)" in messages(logs)
        # The machine was suspended: the wall clock leaps 2 h while the process's waits did not.
        sched.clock.jump(hours(2))
        jumped = time.monotonic()
        wait_for(lambda: events(logs, "run_started"), timeout=10, what="the run after the jump")
        figure(f"run started {time.monotonic() - jumped:.2f} s after the wall-clock jump (tick 0.5 s)")
        wait_for(lambda: len(completed_runs(db)) == 2, what="the run to complete")


def test_the_time_zone_changes_only_how_times_are_shown(base_env, db):
    started = utcnow() - hours(1)
    insert_completed(db, ["ok"], started)
    env = {**base_env, "SCHEDULER_TIMEZONE": "America/Bogota"}
    with capture_logs() as logs, SchedulerThread(env, ["ok"]):
        [decision] = wait_for(lambda: events(logs, "run_not_due"), what="the decision")
    assert decision["next_due_at"].endswith("-05:00")
    assert "next run due at" in decision["message"] and "-05:00 (in 3.00 hours)" in decision["message"]
    [(stored,)] = rows(db, "SELECT started_at FROM spider_runs")
    assert stored == started  # stored as the UTC instant it is


def test_a_failing_spider_is_retried_with_backoff_without_rerunning_the_ones_that_succeeded(base_env, db):
    env = {**base_env, "SCHEDULER_RETRY_DELAY_MINUTES": "0.02"}  # 1.2 s, doubling
    with capture_logs() as logs, SchedulerThread(env, ["ok", "boom"]):
        wait_for(
            lambda: rows(db, "SELECT count(*) FROM spider_runs WHERE spider = 'boom' AND status = 'failed'")[0][0] >= 3,
            timeout=60,
            what="three failed attempts of boom",
        )
    ok_runs = rows(db, "SELECT status FROM spider_runs WHERE spider = 'ok'")
    assert ok_runs == [("completed",)], "a spider that succeeded must not run again within the interval"
    boom = rows(
        db,
        "SELECT started_at, finished_at, failure, exit_code, error_count, message FROM spider_runs "
        "WHERE spider = 'boom' ORDER BY id",
    )
    for _, _, failure, exit_code, errors, message in boom:
        # Exit code 0, yet failed: success is judged from the crawl's stats.
        assert (failure, exit_code) == ("error", 0) and errors >= 1 and "error(s)" in message
    # Never earlier than the backoff: 1.2 s after the first failure, 2.4 s after the second.
    assert boom[1][0] - boom[0][1] >= timedelta(seconds=1.2)
    assert boom[2][0] - boom[1][1] >= timedelta(seconds=2.4)
    statuses = rows(db, "SELECT status, spider_count FROM scheduler_state ORDER BY id")
    # One slot (SCHEDULER_CONCURRENCY=1): each decision's run holds the one job its free slot takes.
    assert sorted(statuses) == [("completed", 1)] + [("failed", 1)] * (len(statuses) - 1)
    assert any(e["event"] == "run_failed" and "did not succeed" in e["message"] for e in logs)


def test_a_hanging_spider_that_ignores_sigterm_is_killed_at_the_timeout_and_the_heartbeat_goes_on(base_env, db):
    env = {**base_env, "SCHEDULER_SPIDER_TIMEOUT_MINUTES": "0.1", "SCHEDULER_STOP_GRACE_SECONDS": "1"}
    with SchedulerThread(env, ["hang"]) as sched:
        wait_for(lambda: [e for e in _entries(env) if e[0] == "start"], timeout=30, what="the crawl to hang")
        # While the crawl hangs (6 s to the timeout, then 1 s of grace), the loop keeps beating.
        beats = []
        for _ in range(12):
            if not rows(db, "SELECT 1 FROM spider_runs WHERE status = 'running'"):
                break
            beats.append(sched.settings.heartbeat_file.stat().st_mtime_ns)
            time.sleep(1.5)  # well over the 1 s between beats during a run
        wait_for(lambda: rows(db, "SELECT 1 FROM spider_runs WHERE status = 'failed'"), timeout=30, what="the timeout")
    figure(f"row 11: the heartbeat was refreshed across {len(beats)} samples, 1.5 s apart, while the crawl hung")
    assert len(beats) >= 4, "the crawl hung for less time than the samples need"
    assert beats == sorted(set(beats)), "the heartbeat stood still while the crawl hung"
    [(failure, message, code)] = rows(db, "SELECT failure, message, exit_code FROM spider_runs")
    assert failure == "timeout" and "ran longer than 0.1 minute(s)" in message and code == -9
    [(start, end, spider)] = crawl_intervals(base_env_path(base_env))
    assert end == float("inf")  # it never ended by itself...
    pid = [pid for kind, _, pid, _ in _entries(base_env) if kind == "start"][0]
    assert not alive(pid)  # ...and it is gone


def test_rows_left_running_by_a_dead_daemon_are_failed_on_start_and_their_spiders_run_again(base_env, db):
    [(run_id,)] = rows(
        db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 1, 'running') RETURNING id"
    )
    rows(
        db,
        "INSERT INTO spider_runs (run_id, spider, status, started_at) VALUES (%(r)s, 'ok', 'running', now())",
        {"r": run_id},
    )
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]):
        wait_for(lambda: completed_runs(db), what="the spider to run again")
    [(status, error)] = rows(db, "SELECT status, error FROM scheduler_state WHERE id = %(r)s", {"r": run_id})
    assert status == "failed" and "daemon stopped during the run" in error
    [(failure,)] = rows(db, "SELECT failure FROM spider_runs WHERE run_id = %(r)s", {"r": run_id})
    assert failure == "stale"
    assert events(logs, "stale_runs_failed")


def test_two_runs_may_be_under_way_at_once_but_never_two_crawls_of_one_job(db):
    import psycopg2

    rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 1, 'running')")
    rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 1, 'running')")
    first, second = (r for (r,) in rows(db, "SELECT id FROM scheduler_state ORDER BY id"))
    crawl = ("INSERT INTO spider_runs (run_id, job, spider, status, started_at) "
             "VALUES (%(run)s, %(job)s, 'ok', 'running', now())")  # fmt: skip
    rows(db, crawl, {"run": first, "job": "long"})
    rows(db, crawl, {"run": second, "job": "quick"})
    with pytest.raises(psycopg2.errors.UniqueViolation, match="spider_runs_one_running_per_job"):
        rows(db, crawl, {"run": second, "job": "long"})
    rows(db, "UPDATE spider_runs SET status = 'completed', finished_at = now() WHERE job = 'long'")
    rows(db, crawl, {"run": second, "job": "long"})  # once the first has ended, the job may run again
    assert rows(db, "SELECT job, status FROM spider_runs ORDER BY id") == [
        ("long", "completed"), ("quick", "running"), ("long", "running")]


def test_a_second_scheduler_stands_by_and_takes_over_when_the_first_goes_away(base_env, db):
    env = {**base_env, "SCHEDULER_INTERVAL_HOURS": "0.0005", "SLOW_SECONDS": "1"}  # due every 1.8 s
    first = SchedulerThread(env, ["slow"])
    second = SchedulerThread(env, ["slow"])
    with capture_logs() as logs:
        with first:
            wait_for(lambda: rows(db, "SELECT 1 FROM spider_runs WHERE status = 'running'"), what="the first run")
            with second:
                wait_for(lambda: events(logs, "standby"), what="the standby notice")
                first.stop.set()
                first.thread.join(timeout=30)
                taken = len(completed_runs(db))
                wait_for(lambda: len(completed_runs(db)) >= taken + 2, timeout=30, what="runs by the second daemon")
    assert len(events(logs, "runner_lock_acquired")) == 2
    spans = crawl_intervals(base_env_path(env))
    for (s1, e1, _), (s2, _, _) in zip(spans, spans[1:]):
        assert s2 >= e1, "two crawls overlapped"


def test_disabled_scheduling_keeps_running_and_runs_nothing(base_env, db):
    with capture_logs() as logs, SchedulerThread({**base_env, "SCHEDULER_ENABLED": "false"}, ["ok"]):
        wait_for(lambda: events(logs, "scheduling_disabled"), what="the notice")
        time.sleep(1.5)
    assert rows(db, "SELECT count(*) FROM scheduler_state") == [(0,)]


@pytest.mark.parametrize(("concurrency", "overlap"), [("1", False), ("2", True)])
def test_concurrency_bounds_how_many_crawls_run_together(base_env, db, concurrency, overlap):
    env = {**base_env, "SCHEDULER_CONCURRENCY": concurrency, "SLOW_SECONDS": "3"}
    with SchedulerThread(env, ["slow", "slow2"]):
        wait_for(lambda: completed_runs(db), timeout=60, what="the run")
    (s1, e1, _), (s2, e2, _) = crawl_intervals(base_env_path(env))
    assert (s2 < e1) is overlap


def test_stopping_interrupts_running_spiders_and_records_them(base_env, db):
    env = {**base_env, "SLOW_SECONDS": "60"}
    sched = SchedulerThread(env, ["slow"])
    with sched:
        wait_for(lambda: [e for e in _entries(env) if e[0] == "start"], timeout=30, what="the crawl to start")
    [(status, failure, message)] = rows(db, "SELECT status, failure, message FROM spider_runs")
    assert (status, failure) == ("failed", "interrupted") and "shutting down" in message
    assert rows(db, "SELECT status FROM scheduler_state") == [("failed",)]
    pid = [pid for kind, _, pid, _ in _entries(env) if kind == "start"][0]
    assert not alive(pid)


def base_env_path(env):
    from pathlib import Path

    return Path(env["SPIDER_SIDE_CHANNEL"])


def _entries(env):
    from tests.helpers import side_channel

    return side_channel(base_env_path(env))


def test_jitter_delays_regular_runs_and_never_the_catch_up(base_env, db):
    env = {**base_env, "SCHEDULER_INTERVAL_HOURS": "0.0005", "SCHEDULER_JITTER_MINUTES": "0.03"}  # 1.8 s, 1.8 s
    with capture_logs() as logs, SchedulerThread(env, ["ok"]):
        wait_for(lambda: len(completed_runs(db)) >= 3, timeout=60, what="three runs")
    jittered = events(logs, "run_jittered")
    assert len(jittered) >= 2 and all(0 <= e["delay_s"] <= 1.8 for e in jittered)
    starts = [r[0] for r in rows(db, "SELECT started_at FROM spider_runs ORDER BY id")]
    first_decision = next(i for i, e in enumerate(logs) if e["event"] == "run_due")
    assert not [e for e in logs[:first_decision] if e["event"] == "run_jittered"]  # the catch-up ran at once
    for previous, following in zip(starts, starts[1:]):
        assert following - previous >= timedelta(seconds=1.8)  # never early


class CountingClock(OffsetClock):
    """The real clock, counting how often the loop reads it (once per step)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def now(self):
        self.reads += 1
        return super().now()


@pytest.mark.parametrize("role", ["standby", "disabled"])
def test_a_daemon_that_runs_nothing_still_waits_a_tick_between_steps(base_env, db, role):
    # A run-now listener that connected marks "a request may be waiting"; only the lock holder
    # takes requests, so anyone else must not skip its wait for them (a standby used to spin).
    env = dict(base_env)
    if role == "standby":
        rows(db, "SELECT pg_advisory_lock(%(key)s)", {"key": queries.RUNNER_LOCK_KEY})
    else:
        env["SCHEDULER_ENABLED"] = "false"
    clock = CountingClock()
    with capture_logs() as logs, SchedulerThread(env, ["ok"], clock=clock):
        wait_for(lambda: events(logs, "standby" if role == "standby" else "scheduling_disabled"), what="idling")
        time.sleep(0.5)  # the listener has connected by now
        before = clock.reads
        time.sleep(2)  # four ticks of 0.5 s
        steps = clock.reads - before
    assert steps <= 12, f"{steps} steps in 2 s with a 0.5 s tick"
