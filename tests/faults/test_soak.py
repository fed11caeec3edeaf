"""The chaos soak: two daemons, interval 10 s, and a random fault every ~20 s. Bounded: SOAK_SECONDS
(default 300 s; 1800+ for the long form). It prints the figures the README's Reliability section
quotes and asserts only the invariants: no overlap, no row left running, no record lost.

    SOAK_SECONDS=1800 bash tests/run.sh tests/faults/test_soak.py -s
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import figure
from tests.helpers import (
    crawl_intervals,
    exits_seen_by_the_daemon,
    rows,
    side_channel,
    wait_for,
)

pytestmark = pytest.mark.faults

INTERVAL_S = 10.0
TICK_S = 1.0
SPIDER_TIMEOUT_S = 6.0
DISK_FULL = """
CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON spider_runs FOR EACH ROW EXECUTE FUNCTION disk_full();
CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON scheduler_state FOR EACH ROW EXECUTE FUNCTION disk_full();
"""


class Chaos:
    def __init__(self, pg_server, make, env, rng):
        self.pg = pg_server
        self.make = make
        self.env = env
        self.rng = rng
        self.daemons = [make(env).start(), make(env).start()]
        self.pg_down_s = 0.0
        self.faults: dict[str, int] = defaultdict(int)

    def restart(self, i: int, sig: signal.Signals) -> None:
        d = self.daemons[i]
        d.signal(sig)
        try:
            d.wait(timeout=60)
        except Exception:
            d.stop()
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.daemons[i] = self.make(self.env).start()

    def postgres(self, mode: str) -> None:
        down = time.monotonic()
        self.pg.stop(mode)
        time.sleep(self.rng.uniform(1.0, 4.0))
        self.pg.start()
        self.pg_down_s = max(self.pg_down_s, time.monotonic() - down)

    def refuse_writes(self, how: str) -> None:
        """The database refuses writes for a while: full (a trigger raising disk_full) or read-only."""
        conn = self.pg.connect(self.env["DB_NAME"])
        try:
            if how == "disk_full":
                rows(conn, DISK_FULL)
            else:
                rows(conn, f'ALTER DATABASE "{self.env["DB_NAME"]}" SET default_transaction_read_only = on')
                rows(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'persistent-scheduler'")  # fmt: skip
            refused = self.rng.uniform(2.0, 6.0)
            time.sleep(refused)
            self.pg_down_s = max(self.pg_down_s, refused)
        finally:
            if how == "disk_full":
                rows(conn, "DROP TRIGGER disk_full ON spider_runs; DROP TRIGGER disk_full ON scheduler_state; "
                           "DROP FUNCTION disk_full()")  # fmt: skip
            else:
                rows(conn, f'ALTER DATABASE "{self.env["DB_NAME"]}" RESET default_transaction_read_only')
                rows(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'persistent-scheduler'")  # fmt: skip
            conn.close()

    def hang(self) -> None:
        """The slow spider's crawls started in the next few seconds hang, deaf to SIGTERM, until the
        daemon kills them at the spider timeout."""
        flag = Path(self.env["SPIDER_HANG_FILE"])
        flag.touch()
        time.sleep(self.rng.uniform(3.0, 8.0))
        flag.unlink()

    def one(self) -> None:
        i = self.rng.randrange(2)
        fault = self.rng.choice(["sigkill", "sigterm", "sigstop", "pg_immediate", "pg_fast", "terminate_backends",
                                 "restart_storm", "disk_full", "read_only", "hang"])  # fmt: skip
        self.faults[fault] += 1
        if fault == "sigkill":
            self.restart(i, signal.SIGKILL)
        elif fault == "sigterm":
            self.restart(i, signal.SIGTERM)
        elif fault == "sigstop":
            self.daemons[i].signal(signal.SIGSTOP)
            time.sleep(self.rng.uniform(1.0, 4.0))
            self.daemons[i].signal(signal.SIGCONT)
        elif fault == "pg_immediate":
            self.postgres("immediate")
        elif fault == "pg_fast":
            self.postgres("fast")
        elif fault == "terminate_backends":
            conn = self.pg.connect(self.env["DB_NAME"])
            rows(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = 'persistent-scheduler'")  # fmt: skip
            conn.close()
        elif fault == "restart_storm":
            for _ in range(3):
                self.restart(i, self.rng.choice([signal.SIGTERM, signal.SIGKILL]))
        elif fault in ("disk_full", "read_only"):
            self.refuse_writes(fault)
        elif fault == "hang":
            self.hang()


def test_chaos_soak(pg_server, base_env, db, daemon_factory):
    seconds = float(os.environ.get("SOAK_SECONDS", "300"))
    seed = int(os.environ.get("FAULT_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    env = {
        **base_env,
        "SCHEDULER_SPIDERS": "ok,other,slow",
        "SLOW_SECONDS": "2",
        "SCHEDULER_INTERVAL_HOURS": str(INTERVAL_S / 3600),
        "SCHEDULER_TICK_SECONDS": str(TICK_S),
        "SCHEDULER_RETRY_DELAY_MINUTES": "0.05",
        "DB_WAIT_TIMEOUT_SECONDS": "120",
        "SCHEDULER_SPIDER_TIMEOUT_MINUTES": str(SPIDER_TIMEOUT_S / 60),
        "SPIDER_HANG_FILE": str(Path(base_env["SCHEDULER_STATE_DIR"]).parent / "hang-slow"),
    }
    db.close()
    chaos = Chaos(pg_server, daemon_factory, env, rng)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(rng.uniform(10, 30))
        chaos.one()
    # Calm: let the survivors catch up, then stop them cleanly.
    time.sleep(INTERVAL_S + 10)
    for d in chaos.daemons:
        if d.proc.poll() is None:
            d.signal(signal.SIGCONT)
            wait_for(lambda d=d: '"scheduler_started"' in d.output(), timeout=60, what="a daemon up")
            d.signal(signal.SIGTERM)
            d.wait(timeout=60)
    conn = pg_server.connect(env["DB_NAME"])
    try:
        report(conn, env, chaos, seed, seconds)
    finally:
        conn.close()


def report(conn, env, chaos: Chaos, seed: int, seconds: float) -> None:
    side = Path(env["SPIDER_SIDE_CHANNEL"])
    spans = crawl_intervals(side, exits_seen_by_the_daemon(conn))
    violations = sum(1 for (_, e1, _), (s2, _, _) in zip(spans, spans[1:]) if s2 < e1)
    successes = rows(conn, "SELECT spider, extract(epoch FROM started_at)::float8 FROM spider_runs "
                           "WHERE status = 'completed' ORDER BY spider, started_at")  # fmt: skip
    by_spider: dict[str, list[float]] = defaultdict(list)
    for spider, stamp in successes:
        by_spider[spider].append(stamp)
    gaps = {s: max((b - a for a, b in zip(t, t[1:])), default=0.0) for s, t in by_spider.items()}
    duplicates = sum(1 for t in by_spider.values() for a, b in zip(t, t[1:]) if b - a < INTERVAL_S * 0.9)
    running = rows(conn, "SELECT count(*) FROM scheduler_state WHERE status = 'running'")[0][0]
    running += rows(conn, "SELECT count(*) FROM spider_runs WHERE status = 'running'")[0][0]
    recorded = {pid for (pid,) in rows(conn, "SELECT pid FROM spider_runs WHERE pid IS NOT NULL")}
    finished = {pid for kind, _, pid, _ in side_channel(side) if kind == "end"}
    lost = len(finished - recorded)
    goal = INTERVAL_S + TICK_S + chaos.pg_down_s
    # A crawl hung on purpose ends at the spider timeout (plus the stop grace), and then waits
    # for its retry: the slow spider's own goal is that much longer when that fault came up.
    hang_goal = goal + SPIDER_TIMEOUT_S + float(env["SCHEDULER_STOP_GRACE_SECONDS"]) + 3.0
    figure(
        f"\nSOAK seed={seed} seconds={seconds:.0f} interval={INTERVAL_S:.0f}s tick={TICK_S:.0f}s "
        f"faults={dict(chaos.faults)}\n"
        f"SOAK crawls={len(spans)} successes={len(successes)} "
        f"largest_gap_s={ {s: round(g, 1) for s, g in gaps.items()} } (goal <= {goal:.1f} = interval + tick + "
        f"longest Postgres outage or refusal; slow after a hang: <= {hang_goal:.1f})\n"
        f"SOAK violations={violations} duplicates={duplicates} rows_left_running={running} records_lost={lost}"
    )
    assert violations == 0, "two crawls overlapped"
    assert running == 0, "a row was left running"
    assert lost == 0, "a crawl that ran is missing from the records"
    assert set(by_spider) == {"ok", "other", "slow"}, "a spider never succeeded"
