"""Rows 9, 10 and 13: Postgres restarted mid-run, the lock connection killed, and two daemons
started and failed over again and again. The invariant: never two crawls at once."""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import figure
from tests.helpers import (
    count,
    crawl_intervals,
    exits_seen_by_the_daemon,
    json_lines,
    rows,
    wait_for,
)

pytestmark = pytest.mark.faults


def assert_no_overlap(env, conn) -> int:
    spans = crawl_intervals(Path(env["SPIDER_SIDE_CHANNEL"]), exits_seen_by_the_daemon(conn))
    for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
        assert s2 >= e1, f"crawls overlapped: {n1} {s1}-{e1} and {n2} {s2}-{e2}"
    return len(spans)


def stamp(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def test_postgres_restarted_mid_run_the_run_goes_on_and_its_final_state_is_written(pg_server, base_env, db,
                                                                                   daemon_factory):  # fmt: skip
    env = {**base_env, "SCHEDULER_SPIDERS": "slow", "SLOW_SECONDS": "8"}
    d = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'running' AND pid IS NOT NULL", "spider_runs") == 1, timeout=30,
             what="the crawl")  # fmt: skip
    db.close()
    pg_server.stop("immediate")
    pg_server.start()
    conn = pg_server.connect(base_env["DB_NAME"])
    try:
        wait_for(lambda: count(conn, "status = 'completed'") == 1, timeout=60, what="the run to be recorded")
        assert count(conn, "status = 'completed'", "spider_runs") == 1
        assert count(conn, "status = 'failed'", "spider_runs") == 0
        events = [e["event"] for e in json_lines(d.output())]
        assert "runner_lock_connection_lost" in events and "runner_lock_retaken" in events
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
    finally:
        conn.close()


def test_a_killed_lock_connection_never_lets_a_second_runner_overlap(pg_server, base_env, db, daemon_factory):
    env = {**base_env, "SCHEDULER_SPIDERS": "slow", "SLOW_SECONDS": "20", "SCHEDULER_INTERVAL_HOURS": "0.001"}
    a = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'running' AND pid IS NOT NULL", "spider_runs") == 1, timeout=30,
             what="a's crawl")  # fmt: skip
    b = daemon_factory(env).start()
    wait_for(lambda: '"standby"' in b.output(), timeout=30, what="b standing by")
    killed_at = time.time()
    [(terminated,)] = rows(db, """
        SELECT pg_terminate_backend(l.pid) FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""")  # fmt: skip
    assert terminated
    wait_for(lambda: count(db, "status = 'completed'") >= 1, timeout=90, what="a completed run after the kill")
    a_events = {e["event"]: e for e in json_lines(a.output())}
    noticed = stamp(a_events["runner_lock_connection_lost"]) - killed_at
    figure(
        f"lock connection killed: noticed after {noticed:.2f} s (probe 1 s, tick 0.5 s); "
        f"{'re-taken by a' if 'runner_lock_retaken' in a_events else 'a gave way'}"
    )
    assert "runner_lock_retaken" in a_events or "runner_giving_way" in a_events
    for d in (a, b):
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
    assert_no_overlap(env, db)
    assert count(db, "status = 'running'") == 0


def test_two_daemons_started_and_failed_over_again_and_again_never_overlap(base_env, db, daemon_factory):
    seed = int(os.environ.get("FAULT_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    failovers = int(os.environ.get("FAULT_FAILOVERS", "30"))
    env = {**base_env, "SCHEDULER_SPIDERS": "ok,slow", "SLOW_SECONDS": "1", "SCHEDULER_INTERVAL_HOURS": "0.0005"}
    daemons = [daemon_factory(env).start()]
    time.sleep(rng.uniform(0, 1))
    daemons.append(daemon_factory(env).start())
    starts, takeovers = 2, []
    for _ in range(failovers):
        # Long enough, sometimes, for the new holder to settle (5 s) and run spiders before the next kill.
        time.sleep(rng.uniform(1.0, 6.0))
        holder = next((d for d in daemons if _holds_lock(d)), None)
        if holder is None:
            continue
        other = next(d for d in daemons if d is not holder)
        # A restart of the standby at a random moment (a start with a random offset).
        other.signal(rng.choice([signal.SIGTERM, signal.SIGKILL]))
        other.wait()
        time.sleep(rng.uniform(0, 0.5))
        other = daemon_factory(env).start()
        daemons = [holder, other]
        starts += 1
        wait_for(lambda: '"standby"' in other.output() or _holds_lock(other), timeout=30, what="the new standby")
        if _holds_lock(other):
            continue
        seen = other.output().count('"runner_lock_acquired"')
        killed = time.monotonic()
        holder.signal(signal.SIGKILL)
        holder.wait()
        wait_for(lambda: other.output().count('"runner_lock_acquired"') > seen, timeout=30, step=0.05,
                 what="the standby to take over")  # fmt: skip
        takeovers.append(time.monotonic() - killed)
        daemons = [other, daemon_factory(env).start()]
        starts += 1
    for d in daemons:
        # A process still importing has no handler yet; SIGTERM would kill it outright.
        wait_for(lambda: '"scheduler_started"' in d.output(), timeout=30, what="the daemon to be up")
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
    crawls = assert_no_overlap(env, db)
    assert count(db, "status = 'running'") == 0
    figure(
        f"seed {seed}: {starts} daemon starts, {len(takeovers)} failovers, {crawls} crawls, 0 overlaps; "
        f"takeover max {max(takeovers):.2f} s, median {sorted(takeovers)[len(takeovers) // 2]:.2f} s (tick 0.5 s)"
    )
    assert len(takeovers) >= failovers // 2


def _holds_lock(d) -> bool:
    """A daemon holds the lock when its last lock event was an acquisition."""
    events = [e["event"] for e in json_lines(d.output())
              if e.get("event") in ("runner_lock_acquired", "runner_lock_released", "runner_giving_way")]  # fmt: skip
    return bool(events) and events[-1] == "runner_lock_acquired"


def test_a_fresh_daemon_waits_for_a_runner_still_running_offline_when_postgres_comes_back(pg_server, base_env, db,
                                                                                          daemon_factory):  # fmt: skip
    """The race the README once listed as a known limit: A runs a spider while PostgreSQL is down
    (the fail-safe); PostgreSQL comes back and a freshly started B takes the lock before A's probe
    does. B never stood by, yet it must not start that spider while A's crawl lives. A is frozen
    (SIGSTOP) while B takes the lock, so B wins the race every time; A's crawl keeps running."""
    from tests.helpers import insert_completed, side_channel, utcnow

    interval_s = 72.0
    env = {**base_env, "SCHEDULER_SPIDERS": "slow", "SLOW_SECONDS": "15",
           "SCHEDULER_INTERVAL_HOURS": str(interval_s / 3600)}  # fmt: skip
    # Due 6 s from now: A starts idle, and the spider falls due while PostgreSQL is down.
    insert_completed(db, ["slow"], utcnow() - timedelta(seconds=interval_s - 6))
    side = Path(env["SPIDER_SIDE_CHANNEL"])
    a = daemon_factory(env).start()
    wait_for(lambda: '"run_not_due"' in a.output(), timeout=30, what="a idle, holding the lock")
    db.close()
    pg_server.stop("immediate")
    wait_for(lambda: any(k == "start" for k, *_ in side_channel(side)), timeout=30, what="a's offline crawl")
    assert '"offline": true' in a.output()
    a.signal(signal.SIGSTOP)
    try:
        pg_server.start()
        b = daemon_factory(env).start()
        wait_for(lambda: '"runner_lock_acquired"' in b.output(), timeout=30, what="b to take the lock")
        # A stays frozen a while longer: long enough for a B that does not wait to start its own
        # crawl of the spider (and overlap A's), well inside the settle of a B that does.
        starts = lambda: sum(1 for k, *_ in side_channel(side) if k == "start")  # noqa: E731
        deadline = time.monotonic() + 2.5
        while starts() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert '"runner_lock_settling"' in b.output(), "b took the lock without waiting for the offline runner"
    finally:
        a.signal(signal.SIGCONT)
    conn = pg_server.connect(base_env["DB_NAME"])
    try:
        wait_for(lambda: '"runner_giving_way"' in a.output(), timeout=30, what="a to give way")
        wait_for(lambda: count(conn, "status = 'completed' AND pid IS NOT NULL", "spider_runs") >= 1, timeout=90,
                 what="b's crawl of the spider")  # fmt: skip
        # A, now a standby, writes its own journal without waiting to hold the lock again.
        wait_for(lambda: '"journal_replayed"' in a.output(), timeout=30, what="a's journal written")
        for d in (a, b):
            d.signal(signal.SIGTERM)
            assert d.wait(timeout=30) == 0
        assert_no_overlap(env, conn)
        started = {pid for kind, _, pid, _ in side_channel(side) if kind == "start"}
        recorded = {pid for (pid,) in rows(conn, "SELECT pid FROM spider_runs WHERE pid IS NOT NULL")}
        assert started <= recorded, f"crawls missing from the records: {started - recorded}"
        assert count(conn, "status = 'running'") == 0
        assert not list(Path(env["SCHEDULER_STATE_DIR"]).glob("journal-*.jsonl"))
    finally:
        conn.close()


def test_the_last_holder_on_record_delays_a_new_runner_only_while_it_may_be_alive(base_env, db):
    """The rule behind the settle of a first-time taker, on the real table: a clean stop forgets
    its row; a holder that is us, or certainly dead on this machine, does not delay anyone."""
    import subprocess
    import sys

    from daemon.records import db as daemon_db
    from daemon.leadership import identity
    from daemon.settings.config import Settings
    from daemon.leadership.lease import may_still_run as _may_still_run
    from daemon.records.store import Store

    store = Store(daemon_db.connect(Settings.from_mapping(base_env)))
    try:
        me = identity.this_process()
        assert store.take_runner_lock(me) == (True, None)
        assert store.take_runner_lock("host=elsewhere boot=x pid=1 start=1") == (True, me)
        assert store.take_runner_lock(me) == (True, "host=elsewhere boot=x pid=1 start=1")
        store.forget_runner_holder(me)
        assert rows(db, "SELECT count(*) FROM runner_holder")[0][0] == 0
    finally:
        store.close()
    gone = subprocess.run([sys.executable, "-c", "from daemon.leadership import identity; print(identity.this_process())"],
                          capture_output=True, text=True, check=True, cwd=str(Path(__file__).parents[2]))  # fmt: skip
    assert _may_still_run("host=elsewhere boot=x pid=1 start=1")
    assert not _may_still_run(identity.this_process())
    assert not _may_still_run(gone.stdout.strip())
    assert not _may_still_run(None)
