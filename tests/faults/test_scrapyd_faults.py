"""Rows of the fault matrix for SCHEDULER_ENGINE=scrapyd: the daemon as a real process
(`python -m daemon`) against real Scrapyd 1.6 nodes on 127.0.0.1 (tests/e2e/test_scrapyd.py's
ScrapydNode) and the real PostgreSQL, with faults injected by real tools (SIGKILL of the daemon,
`pg_ctl stop`, the node's whole process group killed).

Every test checks the promise from the nodes' side, not the daemon's:
- never two crawls of one job at once: from the side channels the crawls themselves write on each
  node (`start|end <time> <pid> <job>`); a crawl killed with its node ends when it was killed;
- nothing lost: every crawl a node really ran (a log in its logs directory, a `start` in its side
  channel) has exactly one spider_runs row, under its node and Scrapyd job id, and no row is left
  `running`.
"""

from __future__ import annotations

import itertools
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import pytest

from tests.conftest import figure
from tests.scrapyd_nodes import ScrapydNode, crawling, most_at_once
from tests.helpers import json_lines, rows, run_cli, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

RUNS = "SELECT id, job, status, failure, node, remote_jobid FROM spider_runs ORDER BY id"


@pytest.fixture
def make_node(tmp_path: Path, site: str) -> Iterator[Any]:
    """Nodes of one test's own; every process of each (Scrapyd and its crawls) gone at teardown."""
    made: list[ScrapydNode] = []

    def make(name: str, **kwargs: Any) -> ScrapydNode:
        node = ScrapydNode(tmp_path / "nodes", name, site, **kwargs)
        made.append(node)
        return node.start()

    yield make
    for node in made:
        node.kill_group()


def cluster_env(base_env: dict[str, str], nodes: list[ScrapydNode], slots: int | None = None,
                **extra: str) -> dict[str, str]:  # fmt: skip
    listed = ",".join(n.url + (f"={slots}" if slots else "") for n in nodes)
    return {**base_env, "SCHEDULER_ENGINE": "scrapyd", "SCRAPYD_NODES": listed, **extra}


def crawls_ran(node: ScrapydNode) -> list[str]:
    """The Scrapyd job ids of the crawls the node really started: one log each in its logs directory."""
    return sorted(log.stem for log in node.logs.glob("default/*/*.log"))


def events(daemon: Any, name: str) -> list[dict]:
    return [e for e in json_lines(daemon.output()) if e.get("event") == name]


def spans(nodes: list[ScrapydNode], killed_at: dict[str, float] | None = None) -> list[tuple[float, float, str]]:
    """(start, end, job) of every crawl the nodes ran, from their side channels. A crawl that wrote
    no end ended when its node was killed (`killed_at`: node URL -> time), else it runs still."""
    killed_at = killed_at or {}
    found = []
    for node in nodes:
        opened: dict[int, tuple[float, str]] = {}
        for kind, at, pid, job in node.crawls():
            if kind == "start":
                opened[pid] = (at, job)
            elif pid in opened:
                begin, name = opened.pop(pid)
                found.append((begin, at, name))
        found += [(begin, killed_at.get(node.url, math.inf), name) for begin, name in opened.values()]
    return sorted(found)


def assert_never_two_crawls_of_one_job_at_once(nodes: list[ScrapydNode], killed_at: dict[str, float] | None = None
                                               ) -> None:  # fmt: skip
    by_job: dict[str, list[tuple[float, float]]] = {}
    for begin, end, job in spans(nodes, killed_at):
        by_job.setdefault(job, []).append((begin, end))
    for job, runs in by_job.items():
        for (_, end), (begin, _) in itertools.pairwise(runs):
            assert end <= begin, f"two crawls of {job} at once: {runs}"


def assert_nothing_lost(db, nodes: list[ScrapydNode]) -> list[tuple]:
    """Every crawl the nodes ran has exactly one row, under its node and job id; none is left
    `running`. Returns the rows."""
    records = rows(db, RUNS)
    assert [r for r in records if r[2] == "running"] == []
    recorded = [(r[4], r[5]) for r in records]
    assert len(set(recorded)) == len(recorded), f"a crawl recorded twice: {records}"
    for node in nodes:
        ran = crawls_ran(node)
        assert sorted(jobid for url, jobid in recorded if url == node.url) == ran, (node.url, ran, records)
        assert sum(1 for kind, *_ in node.crawls() if kind == "start") == len(ran)  # each log is one crawl
    return records


# 1. The daemon killed with SIGKILL mid-crawl -------------------------------------------------------


def test_a_daemon_process_killed_mid_crawl_is_followed_by_one_that_re_attaches_and_never_sends_it_again(
    base_env, db, daemon_factory, make_node
):
    node = make_node("a", max_proc=1, slow_seconds=8)
    env = cluster_env(base_env, [node], SCHEDULER_SPIDERS="slow")
    first = daemon_factory(env).start()
    wait_for(lambda: crawling(node, "slow"), timeout=40, what="the crawl running on its node")
    first.signal(signal.SIGKILL)
    first.wait()
    killed_at = time.time()
    [(_, _, status, _, url, jobid)] = rows(db, RUNS)
    assert status == "running" and url == node.url and crawls_ran(node) == [jobid]
    assert crawling(node, "slow")  # the daemon's death is not its remote crawl's

    second = daemon_factory(env).start()
    wait_for(lambda: rows(db, RUNS)[0][2] != "running", timeout=60, what="the crawl collected")

    [(_, _, status, failure, _, collected)] = assert_nothing_lost(db, [node])
    assert (status, failure, collected) == ("completed", None, jobid)
    [reattached] = events(second, "spider_reattaching")
    assert reattached["jobid"] == jobid
    assert events(second, "spider_dispatched") == []  # never a second schedule.json
    assert [kind for kind, *_ in node.crawls()] == ["start", "end"]
    [(_, ended, _)] = spans([node])
    reattached_at = datetime.fromisoformat(reattached["timestamp"]).timestamp()
    assert reattached_at < ended  # re-attached while it ran
    figure(f"scrapyd, daemon SIGKILLed mid-crawl: the next daemon re-attached {reattached_at - killed_at:.1f} s after "
           f"the kill (process start included), {ended - reattached_at:.1f} s before the crawl ended; 1 schedule.json")
    assert_never_two_crawls_of_one_job_at_once([node])
    second.signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0


# 2. PostgreSQL down while the remote crawl finishes ------------------------------------------------


def test_a_remote_crawl_that_ends_while_postgres_is_down_is_recorded_once_when_it_is_back_and_not_crawled_again(
    base_env, db, pg_server, daemon_factory, make_node
):
    node = make_node("a", max_proc=1, slow_seconds=6)
    env = cluster_env(base_env, [node], SCHEDULER_SPIDERS="slow")
    daemon = daemon_factory(env).start()
    wait_for(lambda: crawling(node, "slow"), timeout=40, what="the crawl running on its node")
    [(_, _, _, _, _, jobid)] = rows(db, RUNS)
    db.close()
    pg_server.stop("fast")
    down = True
    try:
        client = node.client()
        wait_for(lambda: client.status(jobid) == "finished", timeout=40,
                 what="the crawl to end while PostgreSQL is down")  # fmt: skip
        ended_while_down = [kind for kind, *_ in node.crawls()]
        # The daemon collects the outcome from the node and, PostgreSQL down, journals the run's end.
        wait_for(lambda: events(daemon, "run_journaled"), timeout=30, what="the run's end journaled")
        pg_server.start()
        down = False
    finally:
        if down:
            pg_server.start()
    db = pg_server.connect(base_env["DB_NAME"])
    try:
        # The daemon, its journal written, decides from the history with the crawl in it that
        # nothing is due: any second crawl it would send has been sent by then.
        wait_for(lambda: settled(daemon), timeout=60, what="the journal written and the job not due")
        assert ended_while_down == ["start", "end"]
        assert [e["jobid"] for e in events(daemon, "spider_dispatched")] == [jobid], "sent a second time"
        assert crawls_ran(node) == [jobid]
        [(_, _, status, failure, url, collected)] = assert_nothing_lost(db, [node])
        assert (status, failure, url, collected) == ("completed", None, node.url, jobid)
        assert_never_two_crawls_of_one_job_at_once([node])
        assert daemon.proc.poll() is None
    finally:
        db.close()


def settled(daemon: Any) -> bool:
    """The daemon wrote its journal to PostgreSQL, then found nothing due."""
    seen = [e["event"] for e in json_lines(daemon.output())]
    return "journal_replayed" in seen and "run_not_due" in seen[seen.index("journal_replayed"):]


# 3. A node killed whole while its crawl runs ------------------------------------------------------


def test_a_node_killed_whole_mid_crawl_makes_it_lost_and_the_job_runs_again_on_the_other_node(
    base_env, db, daemon_factory, make_node
):
    doomed = make_node("a", max_proc=1, slow_seconds=60)
    other = make_node("b", max_proc=1, slow_seconds=2)
    env = cluster_env(base_env, [doomed, other], SCHEDULER_SPIDERS="slow", SCRAPYD_LOST_AFTER_SECONDS="2",
                      SCHEDULER_RETRY_DELAY_MINUTES="0.02")  # fmt: skip
    daemon = daemon_factory(env).start()
    wait_for(lambda: crawling(doomed, "slow"), timeout=40, what="the crawl running on the first node")
    doomed.kill_group()
    killed_at = {doomed.url: time.time()}

    wait_for(lambda: any(r[2] == "completed" for r in rows(db, RUNS)), timeout=60, what="the job done elsewhere")
    records = assert_nothing_lost(db, [doomed, other])
    assert [(r[2], r[3], r[4]) for r in records] == [("failed", "lost", doomed.url), ("completed", None, other.url)]
    [lost] = events(daemon, "remote_crawl_lost")
    assert lost["reason"] == "node_unreachable" and lost["jobid"] == records[0][5]
    assert_never_two_crawls_of_one_job_at_once([doomed, other], killed_at)
    [(begin_lost, _, _), (begin_again, _, _)] = spans([doomed, other], killed_at)
    assert begin_lost < killed_at[doomed.url] <= begin_again
    figure(f"scrapyd, node killed whole (SCRAPYD_LOST_AFTER_SECONDS=2): the crawl started again on the other node "
           f"{begin_again - killed_at[doomed.url]:.1f} s after the kill")


# 4. Nodes with more than one slot ----------------------------------------------------------------


class Watcher:
    """Polls each node's listjobs.json while the crawls run: what each node ran and queued at once."""

    def __init__(self, nodes: list[ScrapydNode]) -> None:
        self.clients = {node.url: node.client(timeout=5) for node in nodes}
        self.seen: list[tuple[str, int, int]] = []  # (node, running, pending)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.is_set():
            for url, client in self.clients.items():
                jobs = client.listjobs()
                self.seen.append((url, len(jobs.running), len(jobs.pending)))
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_nodes_with_two_slots_run_two_crawls_each_and_never_queue_one(base_env, db, daemon_factory, make_node,
                                                                     tmp_path):  # fmt: skip
    nodes = [make_node(name, max_proc=2, slow_seconds=5) for name in ("a", "b")]
    names = [f"slow-{i}" for i in range(1, 7)]
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text("".join(f'[jobs.{name}]\nspider = "slow"\n\n' for name in names))
    env = cluster_env(base_env, nodes, slots=2, SCHEDULER_JOBS_FILE=str(jobs_file))
    with Watcher(nodes) as watcher:
        daemon = daemon_factory(env).start()
        wait_for(lambda: len([r for r in rows(db, RUNS) if r[2] != "running"]) == len(names), timeout=80,
                 what="six crawls")  # fmt: skip

    records = assert_nothing_lost(db, nodes)
    assert sorted(r[1] for r in records) == names and {r[2] for r in records} == {"completed"}
    assert len(events(daemon, "spider_dispatched")) == len(names)  # each sent once
    for node in nodes:
        assert most_at_once(node.crawls()) == 2, node.crawls()  # both slots used, never a third
    assert watcher.seen and {url for url, _, _ in watcher.seen} == {n.url for n in nodes}
    queued = [(url, running, pending) for url, running, pending in watcher.seen if running + pending > 2]
    assert queued == [], "a crawl waited in a node's own queue"
    pending = sum(1 for _, _, waiting in watcher.seen if waiting)
    figure(f"scrapyd, 2 nodes x 2 slots, 6 crawls: at most 2 at once per node; {len(watcher.seen)} listjobs.json "
           f"answers, {pending} with a crawl pending (none with the node's slots full)")
    assert_never_two_crawls_of_one_job_at_once(nodes)


# 5. PostgreSQL back while the fail-safe's long remote crawl runs -------------------------------------


def test_once_postgres_is_back_the_fail_safes_long_remote_crawl_is_adopted_and_holds_no_other_job(
    base_env, db, pg_server, daemon_factory, make_node, tmp_path
):
    """Issue "every job on its own clock" on Scrapyd: the fail-safe sends long's crawl while
    PostgreSQL is down; PostgreSQL comes back while it runs. The lock's holder adopts that run and
    quick is crawled again beside it, recorded in PostgreSQL, before it ends; every crawl the node
    ran is recorded once, none twice at once, none left running."""
    node = make_node("a", max_proc=2, slow_seconds=1, jobs_to_keep=100)  # every crawl's log kept: one each
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text('[defaults]\nevery = "4h"\n\n[jobs.quick]\nspider = "ok"\nevery = "3s"\n\n'
                         '[jobs.long]\nspider = "slow"\nevery = "20s"\nargs = { seconds = "15" }\n')  # fmt: skip
    env = cluster_env(base_env, [node], slots=2, SCHEDULER_JOBS_FILE=str(jobs_file), SCHEDULER_TICK_SECONDS="1",
                      DB_WAIT_TIMEOUT_SECONDS="60")  # fmt: skip
    daemon = daemon_factory(env).start()
    wait_for(lambda: rows(db, "SELECT 1 FROM spider_runs WHERE job = 'long' AND status = 'completed'"), timeout=60,
             what="long's first crawl")  # fmt: skip
    db.close()
    pg_server.stop("fast")
    try:
        wait_for(lambda: len(crawling(node, "long")) == 1, timeout=40, what="the fail-safe's crawl of long")
    finally:
        pg_server.start()
    up = time.time()
    db = pg_server.connect(base_env["DB_NAME"])
    try:
        wait_for(lambda: rows(db, "SELECT count(*) FROM spider_runs WHERE job = 'long' AND status = 'completed'")[0][0]
                 == 2, timeout=40, what="long's offline crawl recorded completed")  # fmt: skip
        # Stopped with no crawl under way (a stopping daemon leaves its remote crawls 'running' for
        # the next one): quick paused, its last crawl ended.
        assert run_cli([sys.executable, "-m", "daemon", "pause", "quick"], env, tmp_path).returncode == 0
        wait_for(lambda: not rows(db, "SELECT 1 FROM spider_runs WHERE status = 'running'"), timeout=30,
                 what="quick's last crawl to end")  # fmt: skip
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        [(long_end, adopted)] = rows(db, "SELECT extract(epoch FROM s.finished_at)::float8, r.journal_id IS NOT NULL "
                                         "FROM spider_runs s JOIN scheduler_state r ON r.id = s.run_id "
                                         "WHERE s.job = 'long' ORDER BY s.id DESC LIMIT 1")  # fmt: skip
        beside = rows(db, "SELECT s.id FROM spider_runs s JOIN scheduler_state r ON r.id = s.run_id "
                          "WHERE s.job = 'quick' AND r.journal_id IS NULL AND s.status = 'completed' "
                          "AND s.started_at > to_timestamp(%(up)s) AND s.started_at < to_timestamp(%(end)s)",
                      {"up": up, "end": long_end})  # fmt: skip
        figure(f"scrapyd: PostgreSQL back {long_end - up:.1f} s before the fail-safe's long remote crawl ended: "
               f"quick crawled {len(beside)} times beside it, recorded in PostgreSQL (interval 3 s)")
        assert adopted and len(beside) >= 1
        assert_nothing_lost(db, [node])
        assert_never_two_crawls_of_one_job_at_once([node])
    finally:
        db.close()
