"""PostgreSQL going away under a running daemon: it notices, reports it, and comes back."""

from __future__ import annotations

import time

from structlog.testing import capture_logs

from tests.helpers import (
    SchedulerThread,
    events,
    hours,
    insert_completed,
    rows,
    utcnow,
    wait_for,
)


def test_postgres_restarted_while_idle_reconnects_and_retakes_the_lock_before_running(pg_server, base_env, db):
    insert_completed(db, ["ok"], utcnow() - hours(2))
    db.close()
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]) as sched:
        wait_for(lambda: events(logs, "run_not_due"), what="the first decision")
        heartbeat = sched.settings.heartbeat_file
        pg_server.stop("immediate")
        try:
            wait_for(lambda: events(logs, "database_error"), timeout=10, what="the outage to be noticed")
            frozen = heartbeat.stat().st_mtime
            time.sleep(2)
            # No heartbeat while the database is unreachable: the healthcheck reports the outage.
            assert heartbeat.stat().st_mtime == frozen
            assert all(e.get("sqlstate") in (None, "57P01", "57P02", "57P03") for e in events(logs, "database_error"))
        finally:
            pg_server.start()
        wait_for(lambda: len(events(logs, "runner_lock_acquired")) == 2, timeout=30, what="the lock re-taken")
        # The heartbeat resumes with the loop's first tick after the lock (not at the lock event itself).
        wait_for(lambda: heartbeat.stat().st_mtime > frozen, timeout=10, what="the heartbeat resumed")
        # The committed history survived the immediate stop: still not due until the clock moves.
        after = wait_for(lambda: events(logs, "last_run_checked")[1:], what="the decision after the outage")
        assert after[0]["message"].startswith("Last run was 2.0")
        sched.clock.jump(hours(2))
        conn = pg_server.connect(base_env["DB_NAME"])
        wait_for(lambda: rows(conn, "SELECT count(*) FROM scheduler_state WHERE status = 'completed'")[0][0] == 2,
                 timeout=30, what="the run after the outage")  # fmt: skip
        conn.close()
    # Backoff, not a hot loop: a handful of attempts in the seconds the server was down.
    assert len(events(logs, "database_error")) < 20


def _history_reads(conn) -> int:
    """How often the decision query (SPIDER_HISTORY, recognised by its unnest) has run."""
    return rows(conn, "SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE %(q)s "
                      "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                {"q": "%bad.failures%"})[0][0]  # fmt: skip


def test_an_idle_runner_decides_from_the_history_it_read_without_a_round_trip_per_tick(base_env, db):
    insert_completed(db, ["ok"], utcnow() - hours(2))
    rows(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()")
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]) as sched:
        wait_for(lambda: events(logs, "run_not_due"), what="the first decision")
        time.sleep(3)  # six ticks of 0.5 s, idle
        idle_reads = _history_reads(db)
        # The copy still tells when something is due; what runs is decided from a fresh read.
        sched.clock.jump(hours(2))
        wait_for(lambda: rows(db, "SELECT count(*) FROM scheduler_state WHERE status = 'completed'")[0][0] == 2,
                 timeout=30, what="the run after the jump")  # fmt: skip
    assert idle_reads == 1
    assert _history_reads(db) > idle_reads


def test_a_terminated_lock_connection_is_noticed_while_idle_and_the_lock_retaken(base_env, db):
    insert_completed(db, ["ok"], utcnow() - hours(2))
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]):
        wait_for(lambda: events(logs, "run_not_due"), what="the first decision")
        rows(db, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                 "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")  # fmt: skip
        wait_for(lambda: len(events(logs, "runner_lock_acquired")) == 2, timeout=10, what="the lock re-taken")
    assert events(logs, "database_error")[0]["sqlstate"] in (None, "57P01")


def test_a_crawl_record_the_database_refuses_never_makes_the_loop_spin(base_env, db):
    # Not a lost connection: a statement refused with a SQLSTATE, every time (here a trigger).
    rows(db, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
             "$$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; END $$; "
             "CREATE TRIGGER refuse BEFORE INSERT ON spider_runs FOR EACH ROW EXECUTE FUNCTION refuse()")  # fmt: skip
    with capture_logs() as logs, SchedulerThread(base_env, ["ok"]):
        wait_for(lambda: events(logs, "record_failed"), what="the refused record")
        time.sleep(2)  # four ticks of 0.5 s
    runs = rows(db, "SELECT count(*) FROM scheduler_state")[0][0]
    assert 1 <= runs <= 8, f"{runs} runs in about 2 s with a 0.5 s tick"
    assert rows(db, "SELECT count(*) FROM scheduler_state WHERE status = 'running'") == [(0,)]
