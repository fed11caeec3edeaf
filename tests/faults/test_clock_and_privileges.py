"""Rows 14 and 21: wall-clock jumps through the clock seam, and a least-privilege database role."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg2
import pytest
from structlog.testing import capture_logs

from tests.conftest import figure
from tests.helpers import (
    SchedulerThread,
    hours,
    insert_completed,
    rows,
    utcnow,
    wait_for,
)

pytestmark = pytest.mark.faults


def completed(db) -> int:
    return rows(db, "SELECT count(*) FROM scheduler_state WHERE status = 'completed'")[0][0]


def test_a_wall_clock_jump_of_ten_hours_gives_exactly_one_catch_up_run(base_env, db):
    insert_completed(db, ["ok"], utcnow() - hours(1))
    with SchedulerThread(base_env, ["ok"]) as sched:
        time.sleep(1)
        assert completed(db) == 1
        sched.clock.jump(hours(10))
        wait_for(lambda: completed(db) == 2, timeout=30, what="the catch-up run")
        time.sleep(3)  # six ticks: no second catch-up
        assert completed(db) == 2


def test_a_wall_clock_set_back_three_days_warns_and_never_pushes_the_run_beyond_an_interval(base_env, db):
    insert_completed(db, ["ok"], utcnow() - hours(1))
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]) as sched:
        time.sleep(1)
        sched.clock.jump(-timedelta(days=3))
        wait_for(lambda: [e for e in logs if e["event"] == "clock_skew_detected"], timeout=10, what="the warning")
        wait_for(lambda: completed(db) == 2, timeout=30, what="the run")
        [decision] = [e for e in logs if e["event"] == "run_not_due"][-1:]
        # After the run under the set-back clock, the next one is one interval away on that clock.
        assert decision["wait_hours"] <= 4.0
        time.sleep(2)
        assert completed(db) == 2  # and it does not run again and again


def test_a_suspend_of_eight_hours_starts_the_run_within_a_tick_of_waking(base_env, db):
    insert_completed(db, ["ok"], utcnow() - hours(1))
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]) as sched:
        wait_for(lambda: [e for e in logs if e["event"] == "run_not_due"], what="the wait")
        sched.clock.jump(hours(8))  # the wall clock moved; the process's monotonic waits did not
        woke = time.monotonic()
        wait_for(lambda: [e for e in logs if e["event"] == "run_started"], timeout=10, what="the run")
        figure(f"run started {time.monotonic() - woke:.2f} s after waking (tick 0.5 s)")


LEAST_PRIVILEGE = """
CREATE ROLE scheduler_app LOGIN PASSWORD %(pw)s;
GRANT CONNECT ON DATABASE {db} TO scheduler_app;
GRANT USAGE ON SCHEMA public TO scheduler_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON scheduler_state, spider_runs TO scheduler_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON run_requests TO scheduler_app;
GRANT SELECT, INSERT, DELETE ON job_runs TO scheduler_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON runner_holder TO scheduler_app;
GRANT SELECT ON spiders_scraping_zero, jobs_scraping_zero TO scheduler_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs, jobs_source, job_pauses, cancel_requests TO scheduler_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON alert_outbox, alert_deliveries TO scheduler_app;
GRANT SELECT, INSERT, DELETE ON actions, job_slots TO scheduler_app;
GRANT USAGE ON SEQUENCE scheduler_state_id_seq, spider_runs_id_seq, run_requests_id_seq, job_runs_id_seq,
   cancel_requests_id_seq, alert_outbox_id_seq, actions_id_seq TO scheduler_app;
"""


def test_the_daemon_works_with_a_least_privilege_role_that_cannot_do_more(pg_server, base_env, db):
    dbname = base_env["DB_NAME"]
    try:
        rows(db, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        rows(db, LEAST_PRIVILEGE.replace("{db}", f'"{dbname}"'), {"pw": "app-pw"})
        env = {**base_env, "DB_USER": "scheduler_app", "DB_PASSWORD": "app-pw"}
        with capture_logs() as logs, SchedulerThread(env, ["ok"]):
            wait_for(lambda: completed(db) == 1, timeout=60, what="a run as the least-privileged role")
            # The housekeeping jobs work with it too (retention deletes, the jobs record their runs).
            jobs = ("history_retention", "overdue_check", "cache_cleanup")
            wait_for(lambda: {e["job"] for e in logs if e["event"] == "job_finished"} >= set(jobs), timeout=60,
                     what="every housekeeping job to run")  # fmt: skip
        finished = {e["job"]: e["status"] for e in logs if e["event"] == "job_finished"}
        assert {job: finished[job] for job in jobs} == {job: "completed" for job in jobs}, [e for e in logs if e["event"] == "job_finished"]
        assert not [e for e in logs if "permission denied" in str(e).lower()]
        app = psycopg2.connect(host="127.0.0.1", port=pg_server.port, user="scheduler_app", password="app-pw",
                               dbname=dbname)  # fmt: skip
        app.autocommit = True
        for statement in ("DROP TABLE spider_runs", "DELETE FROM schema_migrations", "CREATE TABLE x (i int)",
                          "TRUNCATE scheduler_state", "ALTER TABLE scheduler_state ADD COLUMN x int",
                          "UPDATE job_runs SET status = 'x'", "DELETE FROM schema_migrations"):  # fmt: skip
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                rows(app, statement)
        app.close()
    finally:
        rows(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'scheduler_app'")
        rows(db, f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM scheduler_app; '
                 f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM scheduler_app; '
                 f'REVOKE ALL ON SCHEMA public FROM scheduler_app; '
                 f'REVOKE ALL ON DATABASE "{dbname}" FROM scheduler_app; '
                 f'DROP ROLE scheduler_app')  # fmt: skip
