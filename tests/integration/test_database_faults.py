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
        assert heartbeat.stat().st_mtime > frozen
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
