"""The chaos soak: two daemons, interval 10 s, and a random fault every ~20 s. Bounded: SOAK_SECONDS
(default 150 s; 1800+ for the long form). It prints the figures the README's Reliability section
quotes and asserts only the invariants: no overlap, no row left running, no record lost, no job
held back (issue 20: a job due by its records and not started while a slot was free, for longer
than the grace, outside a fault and the recovery after it).

Its cluster mode (`test_chaos_soak_cluster`): the same two daemons with SCHEDULER_ENGINE=scrapyd on
three real Scrapyd nodes (1, 2 and 1 slots), the nodes' faults among the daemons': a whole node
killed and restarted, Scrapyd alone killed (its crawls live on as orphans) and restarted, a crawl
killed with -9. Bounded by SOAK_CLUSTER_SECONDS (default 100 s).

    SOAK_SECONDS=1800 bash tests/run.sh tests/faults/test_soak.py -s -k "not cluster"
    SOAK_CLUSTER_SECONDS=1800 bash tests/run.sh tests/faults/test_soak.py -s -k cluster
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from daemon.engines.scrapyd.client import ScrapydError
from daemon.engines.scrapyd.rules import Limits
from daemon.leadership.lease import SETTLE_SECONDS
from tests.conftest import figure
from tests.scrapyd_nodes import ScrapydNode
from tests.helpers import (
    alive,
    crawl_intervals,
    exits_seen_by_the_daemon,
    held_back,
    rows,
    side_channel,
    wait_for,
)

pytestmark = pytest.mark.faults

INTERVAL_S = 10.0
TICK_S = 1.0
SPIDER_TIMEOUT_S = 6.0
# Not counted as held back: a due job waiting up to this long for a free slot (the loop decides at
# once; this is a loaded machine's slack), nor while a fault lasts and this long after it (a
# daemon's start, the new runner's settling, a tick or two).
HELD_GRACE_S = 2 * TICK_S + 1.0
RECOVERY_S = SETTLE_SECONDS + 5.0 + 2 * TICK_S
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
        self.windows: list[tuple[float, float]] = []  # (unix time) each fault's start and end
        self.calm_until = float("inf")  # (unix time) the calm's end: the held-back count stops there

    def window(self, began: float, recovery_s: float = RECOVERY_S) -> None:
        """A fault that began at `began` has ended now: no job counts as held back meanwhile and for
        `recovery_s` after it."""
        self.windows.append((began, time.time() + recovery_s))

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

    LOCAL_FAULTS = ("sigkill", "sigterm", "sigstop", "pg_immediate", "pg_fast", "terminate_backends",
                    "restart_storm", "disk_full", "read_only", "hang")  # fmt: skip

    def one(self) -> None:
        i = self.rng.randrange(2)
        fault = self.rng.choice(self.LOCAL_FAULTS)
        self.faults[fault] += 1
        began = time.time()
        self.fault(fault, i)
        self.window(began)

    def fault(self, fault: str, i: int) -> None:
        """One of the daemons' faults, on daemon `i` when it is one daemon's."""
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
    seconds = float(os.environ.get("SOAK_SECONDS", "150"))
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
    chaos.calm_until = time.time()
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
    held, looked = held_back_in(conn, chaos, slots=int(env.get("SCHEDULER_CONCURRENCY", "1")), every=INTERVAL_S)
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
        f"SOAK violations={violations} duplicates={duplicates} rows_left_running={running} records_lost={lost} "
        f"held_back={len(held)} {held} (over {looked:.0f} s outside the faults and their recovery)"
    )
    assert violations == 0, "two crawls overlapped"
    assert held == [], "a due job was not started while a slot was free"
    assert running == 0, "a row was left running"
    assert lost == 0, "a crawl that ran is missing from the records"
    assert set(by_spider) == {"ok", "other", "slow"}, "a spider never succeeded"


def held_back_in(conn, chaos: Chaos, *, slots: int, every: float) -> tuple[list[tuple[str, str, float]], float]:
    """The jobs held back between the first crawl and the end of the calm, outside the faults'
    windows: (job, since when, seconds) each (tests/helpers.held_back), and how many seconds of
    that span were outside the windows (the time the count looked at)."""
    crawls = rows(conn, "SELECT job, status, failure, started_at, finished_at FROM spider_runs ORDER BY id")
    first = min(c[3] for c in crawls).timestamp()
    looked, edge = 0.0, first
    for a, b in sorted(chaos.windows):
        looked += max(0.0, min(a, chaos.calm_until) - edge)
        edge = max(edge, b)
    looked += max(0.0, chaos.calm_until - edge)
    retry = timedelta(minutes=0.05)
    utc = lambda stamp: datetime.fromtimestamp(stamp, timezone.utc)  # noqa: E731
    quiet, until = [(utc(a), utc(b)) for a, b in chaos.windows], utc(chaos.calm_until)
    held = held_back([c for c in crawls if c[3] < until], {job: (timedelta(seconds=every), retry) for job in
                     {c[0] for c in crawls}}, slots=slots, grace=timedelta(seconds=HELD_GRACE_S), until=until,
                     quiet=quiet)  # fmt: skip
    return [(job, at.strftime("%H:%M:%S.%f")[:-3], round(seconds, 1)) for job, at, seconds in held], looked


# The cluster mode -------------------------------------------------------------------------------

CLUSTER_INTERVAL_S = 12.0
LOST_AFTER_S = 8.0
CLUSTER_SLOTS = {"a": 1, "b": 2, "c": 1}
CLUSTER_JOBS = {"ok", "other", "slow"}


class SoakNode(ScrapydNode):
    """A Scrapyd node whose death takes every process it ever started: after Scrapyd alone was killed
    and restarted, its orphans are in the old process group, which a whole node's death kills too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups: set[int] = set()

    def start(self) -> SoakNode:
        super().start()
        assert self.proc is not None
        self.groups.add(self.proc.pid)  # its own session: the group of every crawl it spawns
        return self

    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_group(self) -> None:
        for pgid in self.groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(timeout=10)


class Witness(threading.Thread):
    """Reads the nodes' side channels as they grow and notes when a crawl that wrote no end line was
    first seen dead (killed with -9, alone or with its node): the end of its span, a little late at
    worst, so an overlap is never hidden."""

    def __init__(self, nodes: list[SoakNode]) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.stop = threading.Event()
        self.open: dict[tuple[str, int], tuple[float, str]] = {}  # (node, pid) -> (start, job)
        self.spans: list[tuple[float, float, str, str]] = []  # (start, end, job, node)
        self.dead_at: dict[tuple[str, int], float] = {}
        self._read = {node.url: 0 for node in nodes}

    def look(self) -> None:
        for node in self.nodes:
            if not node.side_channel.exists():
                continue
            with node.side_channel.open("rb") as fh:
                fh.seek(self._read[node.url])
                chunk = fh.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]
            self._read[node.url] += len(whole)
            for line in whole.decode().splitlines():
                kind, at, pid, job = line.split(" ", 3)
                key = (node.url, int(pid))
                if kind == "start":
                    self.open[key] = (float(at), job)
                elif key in self.open:
                    begin, name = self.open.pop(key)
                    self.spans.append((begin, float(at), name, node.url))
        now = time.time()
        for key in list(self.open):
            if key not in self.dead_at and not alive(key[1]):
                self.dead_at[key] = now

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.look()

    def finish(self) -> list[tuple[float, float, str, str]]:
        """Every crawl's span: ended by its end line, or by its death, or still open (inf)."""
        self.stop.set()
        self.join(timeout=10)
        self.look()
        self.look()  # a death noted by the first look whose end line the second may yet read
        left = [(begin, self.dead_at.get(key, float("inf")), job, key[0]) for key, (begin, job) in self.open.items()]
        return sorted(self.spans + left)


def overlaps_per_job(spans: list[tuple[float, float, str, str]]) -> int:
    """Crawls that started while another crawl of the same job ran, on any node."""
    busy_until: dict[str, float] = {}
    violations = 0
    for begin, end, job, _ in spans:
        if begin < busy_until.get(job, float("-inf")):
            violations += 1
        busy_until[job] = max(busy_until.get(job, float("-inf")), end)
    return violations


class ClusterChaos(Chaos):
    """The daemons' faults, plus the nodes': a whole node killed and restarted some seconds later,
    Scrapyd alone killed (its crawls go on as orphans) and restarted, a crawl killed with -9."""

    DAEMON_FAULTS = ("sigkill", "sigterm", "sigstop", "pg_immediate", "pg_fast", "terminate_backends",
                     "restart_storm")  # fmt: skip
    NODE_FAULTS = ("node_killed", "scrapyd_killed", "crawl_killed")

    def __init__(self, pg_server, make, env, rng, nodes: list[SoakNode]) -> None:
        super().__init__(pg_server, make, env, rng)
        self.nodes = nodes
        self.killed_whole: dict[str, list[float]] = defaultdict(list)  # node -> when

    def one(self) -> None:
        # Half the faults are the nodes': they are what this mode adds.
        fault = self.rng.choice(self.DAEMON_FAULTS if self.rng.random() < 0.5 else self.NODE_FAULTS)
        began = time.time()
        if fault in self.DAEMON_FAULTS:
            print(f"FAULT {time.strftime('%H:%M:%S')} {fault}", flush=True)
            self.fault(fault, self.rng.randrange(2))
            self.faults[fault] += 1
            self.window(began)
            return
        # A node's fault: its slots are not offered again until it has rested after its failure,
        # and a crawl on it is lost only after the limit.
        self.node_fault(fault)
        self.window(began, RECOVERY_S + Limits().node_retry_s + LOST_AFTER_S)

    def node_fault(self, fault: str) -> None:
        # A node fault bites when the node runs a crawl: the first seen busy in a few seconds.
        busy = self.running_crawls(within_s=10.0)
        if fault == "crawl_killed":
            fault, node = self.kill_a_crawl(busy)
        else:
            node = self.rng.choice(sorted({n for n, _ in busy}, key=self.nodes.index) or self.nodes)
            fault += "" if busy else "_idle"
        print(f"FAULT {time.strftime('%H:%M:%S')} {fault} {node.url}", flush=True)  # to read the logs by
        if fault.startswith("node_killed"):
            node.kill_group()
            self.killed_whole[node.url].append(time.time())
            time.sleep(self.rng.uniform(2.0, 2 * LOST_AFTER_S))  # back before the limit, or after it
            node.start()
        elif fault.startswith("scrapyd_killed"):
            node.kill(signal.SIGKILL)
            time.sleep(self.rng.uniform(1.0, LOST_AFTER_S / 2))
            node.start()
        self.faults[fault] += 1

    def running_crawls(self, within_s: float) -> list[tuple[SoakNode, int]]:
        """(node, pid) of the crawls the nodes' Scrapyds list as running, the first time any does
        in `within_s` seconds (none: every node idle all that while)."""
        deadline = time.monotonic() + within_s
        while True:
            running = []
            for node in self.nodes:
                if node.up():
                    try:
                        running += [(node, pid) for pid in node.client().listjobs().pids.values()]
                    except ScrapydError:
                        pass
            if running or time.monotonic() > deadline:
                return running
            time.sleep(0.2)

    def kill_a_crawl(self, running: list[tuple[SoakNode, int]]) -> tuple[str, SoakNode]:
        """kill -9 of one of `running`, on its node: what happened, and where."""
        if not running:
            return "crawl_killed_idle", self.nodes[0]
        node, pid = self.rng.choice(sorted(running, key=lambda r: r[1]))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return "crawl_killed_too_late", node
        return "crawl_killed", node


def test_chaos_soak_cluster(pg_server, base_env, db, daemon_factory, site, tmp_path):
    seconds = float(os.environ.get("SOAK_CLUSTER_SECONDS", "100"))
    seed = int(os.environ.get("FAULT_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    nodes = [SoakNode(tmp_path / "nodes", name, site, max_proc=slots, jobs_to_keep=100_000, slow_seconds=2)
             for name, slots in CLUSTER_SLOTS.items()]  # fmt: skip
    env = {
        **base_env,
        "SCHEDULER_ENGINE": "scrapyd",
        "SCRAPYD_NODES": ",".join(f"{n.url}={slots}" for n, slots in zip(nodes, CLUSTER_SLOTS.values())),
        "SCRAPYD_LOST_AFTER_SECONDS": str(LOST_AFTER_S),
        "SCHEDULER_SPIDERS": ",".join(sorted(CLUSTER_JOBS)),
        "SCHEDULER_INTERVAL_HOURS": str(CLUSTER_INTERVAL_S / 3600),
        "SCHEDULER_TICK_SECONDS": str(TICK_S),
        "SCHEDULER_RETRY_DELAY_MINUTES": "0.05",
        "DB_WAIT_TIMEOUT_SECONDS": "120",
        # Longer than the engine's 30 s before a crawl no node knows is sent again: the job's
        # timeout counts from its first dispatch, so a shorter one would stop every resent crawl.
        "SCHEDULER_SPIDER_TIMEOUT_MINUTES": "1.5",
    }
    db.close()
    witness = Witness(nodes)
    try:
        for node in nodes:
            node.start()
        witness.start()
        chaos = ClusterChaos(pg_server, daemon_factory, env, rng, nodes)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            time.sleep(rng.uniform(8, 20))
            chaos.one()
        # Calm: every node up, the lost found lost and run again, then the daemons stopped cleanly,
        # at a moment with no crawl in flight if one comes (a stop leaves remote crawls running).
        time.sleep(CLUSTER_INTERVAL_S + LOST_AFTER_S + 10)
        chaos.calm_until = time.time()
        conn = pg_server.connect(env["DB_NAME"])
        try:
            in_flight = "SELECT count(*) FROM spider_runs WHERE status = 'running'"
            try:
                wait_for(lambda: rows(conn, in_flight)[0][0] == 0, timeout=30, step=0.05, what="no crawl in flight")
            except AssertionError:
                pass
            for d in chaos.daemons:
                stop_cleanly(d)
            # Crawls left running by the stop: the next daemon re-attaches to them (and has nothing
            # else due: its interval is an hour).
            left = rows(conn, in_flight)[0][0]
            if left:
                collector = daemon_factory({**env, "SCHEDULER_INTERVAL_HOURS": "1"}).start()
                wait_for(lambda: rows(conn, in_flight)[0][0] == 0, timeout=LOST_AFTER_S + 60,
                         what="the crawls left running collected")  # fmt: skip
                stop_cleanly(collector)
            spans = witness.finish()
            cluster_report(conn, env, chaos, seed, seconds, spans, left)
        finally:
            conn.close()
    finally:
        witness.stop.set()
        for node in nodes:
            node.kill_group()


def stop_cleanly(d) -> None:
    if d.proc.poll() is None:
        d.signal(signal.SIGCONT)
        wait_for(lambda: '"scheduler_started"' in d.output(), timeout=60, what="a daemon up")
        d.signal(signal.SIGTERM)
        d.wait(timeout=60)


def cluster_report(conn, env, chaos: ClusterChaos, seed: int, seconds: float,
                   spans: list[tuple[float, float, str, str]], left_for_next: int) -> None:  # fmt: skip
    violations = overlaps_per_job(spans)
    successes = rows(conn, "SELECT job, extract(epoch FROM started_at)::float8 FROM spider_runs "
                           "WHERE status = 'completed' ORDER BY job, started_at")  # fmt: skip
    by_job: dict[str, list[float]] = defaultdict(list)
    for job, stamp in successes:
        by_job[job].append(stamp)
    gaps = {j: max((b - a for a, b in pairwise(t)), default=0.0) for j, t in by_job.items()}
    duplicates = sum(1 for t in by_job.values() for a, b in pairwise(t) if b - a < CLUSTER_INTERVAL_S * 0.9)
    running = rows(conn, "SELECT count(*) FROM scheduler_state WHERE status = 'running'")[0][0]
    running += rows(conn, "SELECT count(*) FROM spider_runs WHERE status = 'running'")[0][0]
    recorded = {jobid: (node, status, failure) for jobid, node, status, failure in rows(
        conn, "SELECT remote_jobid, node, status, failure FROM spider_runs WHERE remote_jobid IS NOT NULL")}  # fmt: skip
    # What the nodes really ran: a log per crawl Scrapyd started (named by our job id), "Spider
    # closed" in it when the crawl saw its end. Every one must have its row (written ahead).
    ran: dict[str, tuple[str, bool]] = {}
    for node in chaos.nodes:
        for log in node.logs.glob("default/*/*.log"):
            ran[log.stem] = (node.url, b"] INFO: Spider closed (" in log.read_bytes())
    unrecorded = sorted(jobid for jobid in ran if jobid not in recorded)
    ended_unrecorded = [jobid for jobid in unrecorded if ran[jobid][1]]
    misplaced = sorted(j for j, (node, _) in ran.items() if j in recorded and recorded[j][0] != node)
    lost_rows = [(jobid, node) for jobid, (node, _, failure) in recorded.items() if failure == "lost"]
    lost_on_killed_nodes = sum(1 for _, node in lost_rows if node in chaos.killed_whole)
    per_node = {n.url.rsplit(":", 1)[1]: sum(1 for s in spans if s[3] == n.url) for n in chaos.nodes}
    held, looked = held_back_in(conn, chaos, slots=sum(CLUSTER_SLOTS.values()), every=CLUSTER_INTERVAL_S)
    figure(
        f"\nSOAK-CLUSTER seed={seed} seconds={seconds:.0f} interval={CLUSTER_INTERVAL_S:.0f}s tick={TICK_S:.0f}s "
        f"lost_after={LOST_AFTER_S:.0f}s nodes={len(chaos.nodes)} slots={list(CLUSTER_SLOTS.values())} "
        f"faults={dict(chaos.faults)}\n"
        f"SOAK-CLUSTER crawls={len(spans)} per_node={per_node} successes={len(successes)} "
        f"largest_gap_s={ {j: round(g, 1) for j, g in sorted(gaps.items())} } (interval {CLUSTER_INTERVAL_S:.0f} s; "
        f"not asserted)\n"
        f"SOAK-CLUSTER violations={violations} duplicates={duplicates} rows_left_running={running} "
        f"records_lost={len(ended_unrecorded)} unrecorded_starts={len(unrecorded)} "
        f"lost={len(lost_rows)} (on nodes killed whole: {lost_on_killed_nodes}) "
        f"left_for_the_next_daemon={left_for_next} held_back={len(held)} {held} (over {looked:.0f} s outside "
        f"the faults and their recovery)"
    )
    assert held == [], "a due job was not started while a node's slot was free"
    assert violations == 0, "two crawls of one job ran at once in the cluster"
    assert running == 0, "a row was left running"
    assert ended_unrecorded == [], "a crawl a node ran to its end is missing from the records"
    assert unrecorded == [], "a crawl a node started had no row written ahead of it"
    assert misplaced == [], "a crawl is recorded on another node than the one that ran it"
    assert set(by_job) == CLUSTER_JOBS, "a job never succeeded"
