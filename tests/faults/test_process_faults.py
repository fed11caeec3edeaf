"""Rows of the fault matrix that kill, restart and starve a real daemon process.

Faults are injected with real tools: signals, `pg_ctl stop -m immediate`, triggers. "Nothing lost"
is checked against the spiders' own side channel as well as against the database.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from tests.conftest import PG_PASSWORD, ROOT, figure
from tests.helpers import (
    alive,
    count,
    crawl_intervals,
    crawls_writing_to,
    exits_seen_by_the_daemon,
    fault_repeats,
    fault_seed,
    hours,
    insert_completed,
    json_lines,
    process_tree,
    rows,
    side_channel,
    survivors,
    until_empty,
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


def newest_spider_run(db) -> int:
    return rows(db, "SELECT coalesce(max(id), 0) FROM spider_runs")[0][0]


def assert_no_crawl_outlives(tree: dict[int, str], env) -> None:
    """No crawl of the killed daemon survives it: neither a process that was below it when it was
    killed nor any `scrapy crawl` of this test found in the process table (the kernel's
    parent-death signal takes a few milliseconds, hence the short bounded wait)."""
    orphans = until_empty(lambda: survivors(tree) + crawls_writing_to(_side(env)), timeout=5)
    assert orphans == [], f"crawl processes outlived their daemon: {orphans}"


def test_sigkill_at_random_points_mid_run_leaves_no_row_running_and_no_orphan_crawl(base_env, db, daemon_factory):
    seed = fault_seed()
    rng = random.Random(seed)
    # Due every 1.1 s: ok (about 1 s) then slow (about 2 s), then the next run at once; so a daemon
    # that is running spiders is nearly always in the middle of a crawl.
    env = {**base_env, "SCHEDULER_INTERVAL_HOURS": "0.0003", "SCHEDULER_SPIDERS": "ok,slow", "SLOW_SECONDS": "1"}
    repeats = fault_repeats(50)
    mid_run = crawls_killed = 0
    left_running: set[int] = set()
    for _ in range(repeats):
        newest = newest_spider_run(db)
        d = daemon_factory(env).start()
        # Each restart runs the spiders the kill left overdue at once (else this times out)...
        wait_for(lambda: newest_spider_run(db) > newest, timeout=30, what="the restarted daemon's run")
        # ...and is killed at a random point of that run or of the next one.
        time.sleep(rng.uniform(0, 3.0))
        tree = process_tree(d.proc.pid)
        d.signal(signal.SIGKILL)
        d.wait()
        crawls_killed += bool(tree)
        ours = "id > %(newest)s AND status = 'running'"
        running = {r for (r,) in rows(db, f"SELECT id FROM spider_runs WHERE {ours}", {"newest": newest})}
        mid_run += bool(running) or count(db, "status = 'running'") > 0
        left_running |= running
        assert_no_crawl_outlives(tree, env)
    final = daemon_factory(env).start()
    before = count(db, "status = 'completed'")
    wait_for(lambda: count(db, "status = 'completed'") > before, timeout=60, what="a run after the last kill")
    final.signal(signal.SIGTERM)
    assert final.wait(timeout=30) == 0
    stale = {r for (r,) in rows(db, "SELECT id FROM spider_runs WHERE failure = 'stale'")}
    figure(f"row 3, seed {seed}: {repeats} SIGKILLs, {mid_run} mid-run (a run left 'running'), {crawls_killed} "
           f"with a crawl process alive; {len(stale)} crawl rows marked stale, 0 orphans")  # fmt: skip
    assert mid_run >= 0.9 * repeats, f"only {mid_run} of {repeats} kills landed mid-run"
    # Exactly the crawls the kills cut short were failed as stale by the daemon after them.
    assert stale == left_running
    assert count(db, "status = 'running'") == 0
    assert count(db, "status = 'running'", "spider_runs") == 0
    assert crawls_writing_to(_side(env)) == []
    assert [pid for pid in crawl_pids(env) if alive(pid)] == []
    assert_no_overlap(env, db)


def test_a_crawl_forked_just_as_its_daemon_dies_never_starts(tmp_path):
    """The parent-death signal is armed in the child after the fork: a daemon killed in between would
    never send it, and the crawl would run beside the next daemon's. Here the "daemon" exits at once."""
    survived, child = tmp_path / "survived", tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from daemon.engines.local import _die_with_the_daemon
        daemon = os.getpid()
        if os.fork():
            os._exit(0)
        open({str(child)!r}, "w").write(str(os.getpid()))
        for _ in range(1000):
            if os.getppid() != daemon:
                break
            time.sleep(0.01)
        _die_with_the_daemon(daemon)
        open({str(survived)!r}, "w").close()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    pid = int(wait_for(lambda: child.exists() and child.read_text(), timeout=10, what="the forked crawl"))
    assert until_empty(lambda: [pid] if alive(pid) else [], timeout=15) == []
    assert not survived.exists(), "a crawl whose daemon died before it armed the signal went on to exec"


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


def test_a_restart_storm_of_sigterms_and_sigkills_within_one_interval_gives_exactly_one_successful_crawl(
    base_env, db, daemon_factory
):
    """What must hold within the interval, counted from the spiders' own side channel: exactly one
    crawl succeeded; no crawl started after it; every other crawl was cut short by the signal sent
    to its daemon (SIGTERM: recorded 'interrupted', SIGKILL: 'stale'); no daemon started two."""
    seed = fault_seed()
    rng = random.Random(seed)
    interval_s = 180
    # A daemon's crawl of slow succeeds about 2.9 s after the daemon starts, so about one signal in
    # seven comes too late to cut it short: typically several crawls are cut short, one succeeds,
    # and the rest of the storm tests that the success is not repeated.
    env = {**base_env, "SCHEDULER_INTERVAL_HOURS": str(interval_s / 3600), "SCHEDULER_SPIDERS": "slow",
           "SLOW_SECONDS": "2"}  # fmt: skip
    storm_began = time.monotonic()
    daemons, sent = [], []
    for _ in range(fault_repeats(20)):
        d = daemon_factory(env).start()
        time.sleep(rng.uniform(0.5, 3.3))
        sig = rng.choice([signal.SIGTERM, signal.SIGKILL])
        tree = process_tree(d.proc.pid)
        d.signal(sig)
        code = d.wait(timeout=30)
        assert code == 0 or sig == signal.SIGKILL
        assert_no_crawl_outlives(tree, env)
        daemons.append(d)
        sent.append(sig)
    final = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'completed'", "spider_runs") >= 1, timeout=60, what="a successful crawl")
    time.sleep(2)  # four ticks, in which a daemon that wrongly found slow due again would start it
    final.signal(signal.SIGTERM)
    assert final.wait(timeout=30) == 0
    daemons.append(final)
    sent.append(signal.SIGTERM)
    assert time.monotonic() - storm_began < interval_s, "the storm must fit inside one interval to mean anything"

    started = {pid: at for kind, at, pid, _ in side_channel(_side(env)) if kind == "start"}
    recorded = {pid: (st, failure) for pid, st, failure in rows(db, "SELECT pid, status, failure FROM spider_runs")}
    [(winner,)] = rows(db, "SELECT pid FROM spider_runs WHERE status = 'completed'")
    assert winner in started and max(started.values()) == started[winner], "a crawl started after the success"
    crawls_of = [[e["pid"] for e in json_lines(d.output()) if e["event"] == "spider_started"] for d in daemons]
    assert max(len(pids) for pids in crawls_of) == 1, "a daemon started slow twice within the interval"
    cut_short = {"interrupted": 0, "stale": 0}
    for sig, pids in zip(sent, crawls_of):
        for pid in pids:
            if pid != winner:
                expected = "interrupted" if sig == signal.SIGTERM else "stale"
                assert recorded.get(pid) == ("failed", expected), f"crawl {pid} of a daemon sent {sig.name}"
                cut_short[expected] += 1
    assert set(started) <= {pid for pids in crawls_of for pid in pids}  # every crawl is accounted for
    assert count(db, "status = 'completed'") <= 1 and count(db, "status = 'running'") == 0
    assert_no_overlap(env, db)
    won_by = next(i for i, pids in enumerate(crawls_of, 1) if winner in pids)
    kills = sum(sig == signal.SIGKILL for sig in sent)
    figure(f"row 6, seed {seed}: {len(sent) - 1} restarts ({kills} SIGKILL, {len(sent) - 1 - kills} SIGTERM) in "
           f"{time.monotonic() - storm_began:.0f} s; {sum(map(len, crawls_of))} crawls spawned ({len(started)} got "
           f"as far as their side-channel start), 1 succeeded (daemon {won_by} of {len(daemons)}), cut short: "
           f"{cut_short['interrupted']} interrupted, {cut_short['stale']} stale")  # fmt: skip


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


def database_errors(d, after: int = 0) -> list[dict]:
    return [e for e in json_lines(d.output()) if e["event"] == "database_error"][after:]


def errors_per_tick(errors: list[dict], tick: float) -> list[int]:
    """How many database errors fell into each tick-long window, counted from the first one."""
    first = datetime.fromisoformat(errors[0]["timestamp"])
    windows = Counter(int((datetime.fromisoformat(e["timestamp"]) - first).total_seconds() // tick) for e in errors)
    return [windows[i] for i in range(max(windows) + 1)]


def assert_backed_off(errors: list[dict], tick: float) -> list[int]:
    """Counts, not timings: every failure of the outage is counted (the backoff never starts over),
    no tick holds more than the three attempts of the ramp (1 s, 2 s, then a tick apart: no hot
    loop), and the first tick holds more than any later one (the spacing grew)."""
    assert [e["attempt"] for e in errors] == list(range(1, len(errors) + 1))
    windows = errors_per_tick(errors, tick)
    assert len(windows) >= 2 and max(windows) <= 3, f"database errors per {tick:g} s tick: {windows}"
    assert windows[0] > max(windows[1:]), f"the retries did not back off: {windows} per {tick:g} s tick"
    return windows


def test_a_full_or_read_only_database_is_logged_backed_off_and_recovered_from(base_env, db, daemon_factory):
    tick = 4.0
    env = {**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_TICK_SECONDS": f"{tick:g}"}
    insert_completed(db, ["ok"], utcnow() - hours(4) + timedelta(seconds=8))  # due in 8 s
    rows(db, """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
        CREATE TRIGGER full_disk BEFORE INSERT ON scheduler_state FOR EACH ROW EXECUTE FUNCTION refuse();
    """)  # fmt: skip
    d = daemon_factory(env).start()
    wait_for(lambda: healthcheck(env) == 0, timeout=30, what="healthy while nothing is due")
    # Disk full once ok is due: the run cannot be recorded.
    wait_for(lambda: healthcheck(env) == 1, timeout=60, step=1, what="unhealthy while the disk is full")
    full = database_errors(d)
    assert {e["sqlstate"] for e in full} == {"53100"}
    full_ticks = assert_backed_off(full, tick)
    assert d.proc.poll() is None  # it stays up
    rows(db, "DROP TRIGGER full_disk ON scheduler_state")
    wait_for(lambda: count(db, "status = 'completed'") == 2, timeout=60, what="recovery once space is back")
    wait_for(lambda: healthcheck(env) == 0, timeout=20, what="healthy again")
    # Read-only: the same story with another SQLSTATE, and a run due meanwhile.
    seen = len(database_errors(d))
    dbname = base_env["DB_NAME"]
    rows(db, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    rows(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
             "AND pid <> pg_backend_pid()")  # fmt: skip
    rows(db, "UPDATE scheduler_state SET last_run_at = last_run_at - interval '1 day'")
    rows(db, "UPDATE spider_runs SET started_at = started_at - interval '1 day'")
    wait_for(lambda: healthcheck(env) == 1, timeout=60, step=1, what="unhealthy while the database is read-only")
    read_only = database_errors(d, after=seen)
    assert "25006" in {e["sqlstate"] for e in read_only}
    read_only_ticks = assert_backed_off(read_only, tick)
    assert d.proc.poll() is None
    rows(db, f'ALTER DATABASE "{dbname}" RESET default_transaction_read_only')
    wait_for(lambda: count(db, "status = 'completed'") == 3, timeout=60, what="recovery once writable")
    wait_for(lambda: healthcheck(env) == 0, timeout=20, what="healthy again")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    figure(f"row 17 (tick {tick:g} s), database errors per tick until unhealthy: disk full {full_ticks}, "
           f"read-only {read_only_ticks}")


def _postgres_processes(pg_server) -> list[int]:
    """The test cluster's postmaster and its children."""
    postmaster = int((pg_server.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *map(int, children)]


def _signal_each(pids: list[int], sig: signal.Signals) -> None:
    """Signal each process; one that has exited since it was listed (a short-lived backend) is skipped."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def test_a_frozen_postgres_never_holds_the_daemon_and_nothing_is_lost(pg_server, base_env, db, daemon_factory):
    """PostgreSQL frozen (SIGSTOP of the server, as `docker pause` does): the kernel still answers
    for it, so no TCP keepalive ever fires and a blocking statement would wait for as long as the
    freeze lasts. The daemon stops waiting after its deadline, so a SIGTERM mid-run is acted upon
    while the server stays frozen; the interrupted crawl goes to the journal and reaches the
    database once the server thaws."""

    env = {**base_env, "SCHEDULER_SPIDERS": "slow", "SLOW_SECONDS": "60"}
    d = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'running' AND pid IS NOT NULL", "spider_runs") == 1, timeout=30,
             what="the crawl")  # fmt: skip
    [(crawl_pid,)] = rows(db, "SELECT pid FROM spider_runs")
    db.close()
    frozen = _postgres_processes(pg_server)
    try:
        _signal_each(frozen, signal.SIGSTOP)
        time.sleep(2)  # the daemon's next lease refresh is now waiting on the frozen server
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=90) == 0, "the daemon was held by a frozen PostgreSQL"
        assert not alive(crawl_pid)
        assert '"run_journaled"' in d.output()
    finally:
        _signal_each(frozen, signal.SIGCONT)  # whatever happened above: never leave the server frozen
    again = daemon_factory({**env, "SCHEDULER_SPIDERS": "ok"}).start()
    conn = pg_server.connect(env["DB_NAME"])
    try:
        wait_for(lambda: '"journal_replayed"' in again.output(), timeout=60, what="the journal written")
        [(status, failure)] = rows(conn, "SELECT status, failure FROM spider_runs WHERE pid = %(p)s",
                                   {"p": crawl_pid})  # fmt: skip
        assert (status, failure) == ("failed", "interrupted")
        [(run_status,)] = rows(conn, "SELECT s.status FROM scheduler_state s JOIN spider_runs r ON r.run_id = s.id "
                                     "WHERE r.pid = %(p)s", {"p": crawl_pid})  # fmt: skip
        assert run_status == "failed"
        again.signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0
        assert count(conn, "status = 'running'") == 0
    finally:
        conn.close()
