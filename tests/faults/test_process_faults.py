"""Rows of the fault matrix that kill, restart and starve a real daemon process.

Faults are injected with real tools: signals, `pg_ctl stop -m immediate`, triggers. "Nothing lost"
is checked against the spiders' own side channel as well as against the database.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.conftest import PG_PASSWORD, figure
from tests.helpers import (
    alive,
    count,
    crawl_intervals,
    exits_seen_by_the_daemon,
    hours,
    insert_completed,
    json_lines,
    rows,
    side_channel,
    utcnow,
    wait_for,
)

pytestmark = pytest.mark.faults


def advisory_locks(db) -> int:
    return rows(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                    "database = (SELECT oid FROM pg_database WHERE datname = current_database())")[0][0]  # fmt: skip


def crawl_pids(env) -> list[int]:
    return [pid for kind, _, pid, _ in side_channel(_side(env)) if kind == "start"]


def _side(env):
    from pathlib import Path

    return Path(env["SPIDER_SIDE_CHANNEL"])


def assert_no_overlap(env, db) -> None:
    spans = crawl_intervals(_side(env), exits_seen_by_the_daemon(db))
    for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
        assert s2 >= e1, f"crawls overlapped: {n1} {s1}-{e1} and {n2} {s2}-{e2}"


def healthcheck(env) -> int:
    import subprocess
    import sys

    from tests.conftest import ROOT

    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "daemon", "healthcheck"], env=full, cwd=ROOT / "tests",
                          capture_output=True, timeout=30).returncode  # fmt: skip


def test_sigterm_while_idle_exits_0_at_once_and_releases_the_lock(base_env, db, daemon_factory):
    insert_completed(db, ["ok"], utcnow() - hours(1))
    d = daemon_factory({**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_TICK_SECONDS": "30"}).start()
    wait_for(lambda: "run_not_due" in d.output(), timeout=30, what="the idle daemon")
    assert advisory_locks(db) == 1
    sent = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=10) == 0
    figure(f"idle daemon exited {time.monotonic() - sent:.2f} s after SIGTERM (tick 30 s)")
    assert advisory_locks(db) == 0


def test_sigkill_at_random_points_leaves_no_row_running_and_no_orphan_crawl(base_env, db, daemon_factory):
    seed = int(os.environ.get("FAULT_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    env = {**base_env, "SCHEDULER_INTERVAL_HOURS": "0.0003", "SCHEDULER_SPIDERS": "ok,slow", "SLOW_SECONDS": "1"}
    repeats = int(os.environ.get("FAULT_REPEATS", "50"))
    for _ in range(repeats):
        d = daemon_factory(env).start()
        time.sleep(rng.uniform(0.3, 3.0))
        d.signal(signal.SIGKILL)
        d.wait()
    final = daemon_factory(env).start()
    before = count(db, "status = 'completed'")
    wait_for(lambda: count(db, "status = 'completed'") > before, timeout=60, what="a run after the last kill")
    final.signal(signal.SIGTERM)
    assert final.wait(timeout=30) == 0
    stale = count(db, "failure = 'stale'", "spider_runs")
    completed = count(db, "status = 'completed'")
    figure(f"seed {seed}: {repeats} SIGKILLs at random points, {stale} crawls marked stale, {completed} runs completed")
    assert count(db, "status = 'running'") == 0
    assert count(db, "status = 'running'", "spider_runs") == 0
    assert [pid for pid in crawl_pids(env) if alive(pid)] == []
    assert_no_overlap(env, db)


def test_a_power_cut_keeps_the_committed_history_and_catches_up(pg_server, base_env, db, daemon_factory):
    insert_completed(db, ["ok", "slow"], utcnow() - hours(8))
    env = {**base_env, "SCHEDULER_SPIDERS": "ok,slow", "SLOW_SECONDS": "30", "DB_WAIT_TIMEOUT_SECONDS": "60"}
    d = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'completed' AND spider = 'ok'", "spider_runs") == 2, timeout=60,
             what="ok to finish inside the run")  # fmt: skip
    wait_for(lambda: count(db, "status = 'running' AND spider = 'slow'", "spider_runs") == 1, timeout=30,
             what="slow to be crawling")  # fmt: skip
    db.close()
    d.signal(signal.SIGKILL)
    pg_server.stop("immediate")
    pg_server.start()
    conn = pg_server.connect(base_env["DB_NAME"])
    try:
        # What was committed survived: the old run, and ok's crawl inside the interrupted run.
        assert count(conn, "status = 'completed' AND spider = 'ok'", "spider_runs") == 2
        assert count(conn, "status = 'running'") == 1
        after = daemon_factory({**env, "SLOW_SECONDS": "1"}).start()
        wait_for(lambda: count(conn, "status = 'completed' AND spider = 'slow'", "spider_runs") == 2, timeout=60,
                 what="the catch-up of slow")  # fmt: skip
        assert count(conn, "failure = 'stale'", "spider_runs") == 1
        # ok succeeded 0 h ago: only slow was due again.
        assert count(conn, "spider = 'ok'", "spider_runs") == 2
        after.signal(signal.SIGTERM)
        assert after.wait(timeout=30) == 0
    finally:
        conn.close()


def test_a_restart_storm_within_one_interval_gives_exactly_one_run(base_env, db, daemon_factory):
    env = {**base_env, "SCHEDULER_INTERVAL_HOURS": "0.05", "SCHEDULER_SPIDERS": "ok"}
    rng = random.Random(7)
    started = time.monotonic()
    for _ in range(20):
        d = daemon_factory(env).start()
        time.sleep(rng.uniform(0.5, 2.0))
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
    final = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'completed'") >= 1, timeout=60, what="the one run")
    time.sleep(2)
    final.signal(signal.SIGTERM)
    assert final.wait(timeout=30) == 0
    elapsed = time.monotonic() - started
    assert elapsed < 180, "the storm must fit inside one interval for the count to mean anything"
    assert count(db, "status = 'completed'") == 1
    assert count(db, "status = 'running'") == 0
    assert_no_overlap(env, db)


def test_postgres_down_at_start_waits_with_backoff_then_starts(pg_server, base_env, db, daemon_factory):
    db.close()
    env = {**base_env, "SCHEDULER_SPIDERS": "ok", "DB_WAIT_TIMEOUT_SECONDS": "120"}
    pg_server.stop("fast")
    try:
        d = daemon_factory(env).start()
        wait_for(lambda: d.output().count('"database_unavailable"') >= 3, timeout=30, what="waiting with backoff")
    finally:
        pg_server.start()
    conn = pg_server.connect(base_env["DB_NAME"])
    wait_for(lambda: count(conn, "status = 'completed'") == 1, timeout=60, what="the run once Postgres is up")
    conn.close()
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    waits = [e["retry_in_s"] for e in json_lines(d.output()) if e["event"] == "database_unavailable"]
    assert waits[:4] == sorted(waits[:4]) and waits[0] < waits[-1]  # backing off, not hammering
    assert PG_PASSWORD not in d.output()


def test_postgres_that_never_appears_gives_exit_3_and_one_line(base_env, daemon_factory):
    from tests.conftest import free_port

    d = daemon_factory({**base_env, "DB_PORT": str(free_port()), "DB_WAIT_TIMEOUT_SECONDS": "2",
                        "SCHEDULER_SPIDERS": "ok"}).start()  # fmt: skip
    assert d.wait(timeout=60) == 3
    errors = [line for line in d.output().splitlines() if not line.startswith("{")]
    assert len(errors) == 1 and "did not accept a connection within 2 s" in errors[0]
    assert PG_PASSWORD not in d.output()


def test_crashing_spiders_do_not_stop_the_others_and_are_recorded_each(base_env, db, daemon_factory):
    d = daemon_factory({**base_env, "SCHEDULER_SPIDERS": "crash,ok,segv"}).start()
    wait_for(lambda: count(db, "status <> 'running'", "spider_runs") == 3, timeout=60, what="three crawls")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    got = dict((s, (st, code, msg)) for s, st, code, msg in
               rows(db, "SELECT spider, status, exit_code, message FROM spider_runs"))  # fmt: skip
    assert got["ok"][0] == "completed"
    assert got["crash"][:2] == ("failed", 1) and "exited with code 1" in got["crash"][2]
    assert got["segv"][:2] == ("failed", -11) and "SIGSEGV" in got["segv"][2]


def test_a_full_or_read_only_database_is_logged_backed_off_and_recovered_from(base_env, db, daemon_factory):
    rows(db, """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
        CREATE TRIGGER full_disk BEFORE INSERT ON scheduler_state FOR EACH ROW EXECUTE FUNCTION refuse();
    """)  # fmt: skip
    env = {**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_TICK_SECONDS": "1"}
    d = daemon_factory(env).start()
    wait_for(lambda: d.output().count('"sqlstate": "53100"') >= 3, timeout=30, what="the disk_full errors")
    time.sleep(5)
    assert healthcheck(env) == 1, "the healthcheck must report a daemon whose database refuses writes"
    errors = d.output().count('"sqlstate": "53100"')
    assert errors < 15, f"{errors} attempts in ~8 s: a hot loop"
    assert d.proc.poll() is None  # it stays up
    rows(db, "DROP TRIGGER full_disk ON scheduler_state")
    wait_for(lambda: count(db, "status = 'completed'") == 1, timeout=60, what="recovery once space is back")
    wait_for(lambda: healthcheck(env) == 0, timeout=20, what="healthy again")
    # Read-only: the same story with another SQLSTATE.
    rows(db, "SELECT current_database()")
    dbname = base_env["DB_NAME"]
    rows(db, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    rows(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
             "AND pid <> pg_backend_pid()")  # fmt: skip
    rows(db, "UPDATE scheduler_state SET last_run_at = last_run_at - interval '1 day'")
    rows(db, "UPDATE spider_runs SET started_at = started_at - interval '1 day'")
    wait_for(lambda: '"sqlstate": "25006"' in d.output(), timeout=30, what="the read-only error")
    rows(db, f'ALTER DATABASE "{dbname}" RESET default_transaction_read_only')
    wait_for(lambda: count(db, "status = 'completed'") == 2, timeout=60, what="recovery once writable")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
