"""The Scrapyd engine against real Scrapyd 1.6 nodes on 127.0.0.1, each started inside its own copy
of the test Scrapy project (served as project `default`), its crawls reading the tests' local site.

Each node writes the crawls it really ran to its own side channel (`start|end <time> <pid> <job>`):
the record of what ran where, independent of the engine's own view, from which "never two crawls of
one job at once" and "every crawl dispatched once" are checked.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.system.clock import SystemClock
from daemon.settings.secret import Secret
from daemon.jobs.crawl import CrawlOutcome
from daemon.engines.scrapyd.dispatch import ScrapydEngine
from daemon.engines.scrapyd.rules import EngineSettings, Limits
from daemon.engines.engine import RemoteRun
from daemon.settings.addresses import Node
from daemon.jobs.jobfile import Job, make_job
from daemon.engines.scrapyd.client import ScrapydClient, ScrapydError
from tests.conftest import free_port
from tests.helpers import alive, crawl_to_end, wait_for
from tests.scrapyd_nodes import ScrapydNode, crawling, most_at_once, overlapping_runs_of_one_job
from tests.unit.test_jobfile import ENV, HOSTILE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

PASSWORD = "canary-scrapyd-pw-51c9"  # must never show up in an error, a repr or a log line


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, site: str) -> Iterator[list[ScrapydNode]]:
    """Two nodes for the module: `a` open, `b` behind basic auth."""
    base = tmp_path_factory.mktemp("cluster")
    nodes = [ScrapydNode(base, "a", site),
             ScrapydNode(base, "b", site, username="scheduler", password=PASSWORD)]  # fmt: skip
    started: list[ScrapydNode] = []
    try:
        for node in nodes:
            started.append(node.start())
        yield nodes
    finally:
        for node in started:
            node.kill_group()


@pytest.fixture
def own_nodes(tmp_path: Path, site: str) -> Iterator[Any]:
    """Nodes of one test's own (to be killed and restarted); every process gone at teardown."""
    made: list[ScrapydNode] = []

    def make(name: str, **kwargs: Any) -> ScrapydNode:
        node = ScrapydNode(tmp_path, name, site, **kwargs)
        made.append(node)
        return node.start()

    yield make
    for node in made:
        node.kill_group()


def job(name: str, spider: str | None = None, **values: Any) -> Job:
    return make_job(name=name, spider=spider or name, defaults=ENV, **values)


class Records:
    """The engine's callbacks, as the lead's recorder will receive them."""

    def __init__(self, check_unknown_at_dispatch: dict[str, ScrapydClient] | None = None) -> None:
        self.started: list[str] = []
        self.dispatched: list[tuple[Any, str, str, str]] = []
        self.finished: dict[Any, CrawlOutcome] = {}
        self.known_before_sent: list[str] = []
        self.clients = check_unknown_at_dispatch or {}

    def on_start(self, job: Job) -> int:
        self.started.append(job.name)
        return len(self.started)

    def on_dispatch(self, token: Any, node: str, jobid: str, log_url: str) -> None:
        self.dispatched.append((token, node, jobid, log_url))
        client = self.clients.get(node)
        if client is not None and client.status(jobid) != "unknown":
            self.known_before_sent.append(jobid)  # the record must come before schedule.json

    def on_finish(self, token: Any, outcome: CrawlOutcome) -> None:
        assert token not in self.finished, "one outcome per crawl"
        self.finished[token] = outcome


def engine(nodes: list[tuple[str, int]], *, stop: threading.Event | None = None, on_poll: Any = lambda: None,
           grace: float = 2, limits: Limits | None = None,
           password: str | None = PASSWORD) -> ScrapydEngine:  # fmt: skip
    settings = EngineSettings(
        nodes=tuple(Node(url, slots) for url, slots in nodes), username="scheduler",
        password=Secret(password) if password else None, request_timeout_s=5, stop_grace_s=grace,
        limits=limits or Limits(lost_after_s=60, never_started_after_s=10, node_retry_s=30), poll_s=0.1,
    )  # fmt: skip
    return ScrapydEngine(settings, SystemClock(), stop or threading.Event(), on_poll=on_poll)


# The client -------------------------------------------------------------------------------------


def test_the_client_schedules_our_job_id_and_reads_its_states_its_log_and_its_stats(cluster, tmp_path):
    node = cluster[0]
    client = node.client()
    out = tmp_path / "received.json"
    args = [("out", str(out)), *HOSTILE.items()]
    settings = [("JOB_SETTING", "a=b=c"), ("STATS_CLASS", "daemon.node_stats.NodeStatsCollector")]

    assert client.schedule("default", "args", "ours-1", args, settings) == "ours-1"
    assert client.status("ours-1") in ("pending", "running")
    wait_for(lambda: client.status("ours-1") == "finished", timeout=30, what="the crawl to finish")

    assert client.status("never-scheduled") == "unknown"
    assert client.listjobs().state("ours-1") == "finished"
    received = json.loads(out.read_text(encoding="utf-8"))
    assert received["args"] == {"out": str(out), **HOSTILE, "_job": "ours-1"}  # Scrapyd adds _job
    assert received["settings"]["JOB_SETTING"] == "a=b=c"
    stats = client.stats("default", "args", "ours-1")
    assert stats is not None and stats["finish_reason"] == "finished" and stats["item_scraped_count"] == 15
    path = client.log_path("default", "args", "ours-1")
    size = client.file_size(path)
    assert size == (node.logs / "default" / "args" / "ours-1.log").stat().st_size
    tail = client.tail(path, 300)
    assert tail is not None and len(tail) == 300 and b"Spider closed (finished)" in tail
    assert client.tail(path, 10 * size) == (node.logs / "default" / "args" / "ours-1.log").read_bytes()
    assert client.file_size(client.log_path("default", "args", "nope")) is None
    assert client.log_url("default", "args", "ours-1") == f"{node.url}/logs/default/args/ours-1.log"


def test_a_reserved_argument_name_is_refused_before_anything_is_sent(cluster):
    client = cluster[0].client()
    with pytest.raises(ValueError, match="spider"):
        client.schedule("default", "args", "reserved-1", [("spider", "other")])
    assert client.status("reserved-1") == "unknown"


def test_a_node_behind_basic_auth_refuses_a_client_without_or_with_wrong_credentials(cluster):
    node = cluster[1]
    with pytest.raises(ScrapydError, match="asks for credentials") as without:
        ScrapydClient(node.url).daemonstatus()
    wrong = ScrapydClient(node.url, username="scheduler", password=Secret("wrong-" + PASSWORD))
    with pytest.raises(ScrapydError, match="refused our credentials") as refused:
        wrong.listjobs()
    assert without.value.http_status == refused.value.http_status == 401
    right = node.client()
    assert right.daemonstatus().running >= 0
    assert f"127.0.0.1:{node.port}" in str(refused.value)
    for shown in (str(refused.value), repr(refused.value), repr(right), repr(wrong)):
        assert PASSWORD not in shown


# The engine ------------------------------------------------------------------------------------


def test_crawls_are_spread_over_the_nodes_recorded_before_they_are_sent_and_never_exceed_a_nodes_slots(cluster):
    a, b = cluster
    records = Records({a.url: a.client(), b.url: b.client()})
    before = {node.url: len(node.crawls()) for node in cluster}  # rows of earlier tests
    jobs = [job(f"spread-{i}", "slow") for i in range(4)]

    with capture_logs() as logs:
        outcomes = crawl_to_end(engine([(a.url, 1), (b.url, 1)]), jobs, records.on_start, records.on_finish,
                                on_dispatch=records.on_dispatch)  # fmt: skip

    assert sorted(o.name for o in outcomes) == sorted(j.name for j in jobs)
    assert all(o.ok and o.items_scraped == 5 for o in outcomes), [o.message for o in outcomes]
    assert records.known_before_sent == []
    assert {node for _, node, _, _ in records.dispatched} == {a.url, b.url}
    assert len(records.dispatched) == 4  # each sent once
    ran = {node.url: node.crawls()[before[node.url] :] for node in cluster}
    for rows in ran.values():
        assert rows and most_at_once(rows) == 1, rows  # its one slot, never its own queue
    assert overlapping_runs_of_one_job([*ran[a.url], *ran[b.url]]) == []
    assert sorted(job_name for rows in ran.values() for kind, _, _, job_name in rows if kind == "start") == sorted(
        j.name for j in jobs)  # each crawled exactly once
    dispatched = [e for e in logs if e["event"] == "spider_dispatched"]
    assert sorted(e["job"] for e in dispatched) == sorted(j.name for j in jobs)
    assert all(PASSWORD not in json.dumps(e, default=str) for e in logs)


def test_a_node_down_at_dispatch_is_skipped_and_the_crawl_goes_to_one_that_answers(cluster):
    a = cluster[0]
    down = f"http://127.0.0.1:{free_port()}"
    records = Records()
    with capture_logs() as logs:
        [outcome] = crawl_to_end(engine([(down, 4), (a.url, 1)]), [job("ok")], records.on_start, records.on_finish,
                                 on_dispatch=records.on_dispatch)  # fmt: skip
    assert outcome.ok, outcome.message
    assert [node for _, node, _, _ in records.dispatched] == [a.url]
    failed = [e for e in logs if e["event"] == "scrapyd_node_failed"]
    assert failed and failed[0]["node"] == down.split("//")[1] and "unreachable" in failed[0]["error"]


def test_a_crawl_killed_with_kill_9_on_its_node_is_failed_not_a_success(cluster):
    a = cluster[0]
    client = a.client()
    killed: list[int] = []

    def kill_it_once_crawling() -> None:
        if not killed and (pids := crawling(a, "killed")):
            [(jobid, pid)] = [(j, p) for j, p in client.listjobs().pids.items() if j.startswith("killed-")]
            assert [pid] == pids
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    records = Records()
    [outcome] = crawl_to_end(engine([(a.url, 1)], on_poll=kill_it_once_crawling), [job("killed", "hang")],
                             records.on_start, records.on_finish, on_dispatch=records.on_dispatch)  # fmt: skip
    assert killed
    assert not outcome.ok and outcome.failure == "process_died", outcome
    assert outcome.exit_code is None and outcome.stats is None


def test_a_crawl_over_its_timeout_is_cancelled_then_killed_after_the_grace(cluster):
    a = cluster[0]
    records = Records()
    with capture_logs() as logs:
        [outcome] = crawl_to_end(engine([(a.url, 1)], grace=1), [job("deaf", "hang", timeout=timedelta(seconds=3))],
                                 records.on_start, records.on_finish)  # fmt: skip
    assert outcome.failure == "timeout", outcome
    events = [e["event"] for e in logs if e["event"] in ("spider_stopping", "spider_killed")]
    assert events == ["spider_stopping", "spider_killed"]  # `hang` ignores SIGTERM: only KILL ends it


def test_cancel_stops_a_remote_crawl_and_its_verdict_is_cancelled(cluster):
    a = cluster[0]
    records = Records()
    cancelled: list[bool] = []

    def cancel_when_running() -> None:
        if not cancelled and crawling(a, "to-cancel"):
            cancelled.append(runner.cancel("to-cancel"))

    runner = engine([(a.url, 1)], on_poll=cancel_when_running, grace=5)
    [outcome] = crawl_to_end(runner, [job("to-cancel", "slow")], records.on_start, records.on_finish)
    assert cancelled == [True]
    assert outcome.failure == "cancelled", outcome
    assert crawling(a, "to-cancel") == []  # SIGTERM ended it (its spider closed): no KILL needed


class DroppingProxy:
    """A proxy on 127.0.0.1 in front of a node that passes every request on, counts them by path,
    and drops the connection instead of answering the first `drop` schedule.json requests (after
    the node took them)."""

    def __init__(self, upstream: str, drop: int = 1) -> None:
        self.upstream = upstream.split("//")[1]
        self.drop = drop
        self.calls: dict[str, int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                path = self.path.split("?")[0]
                proxy.calls[path] = proxy.calls.get(path, 0) + 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                conn.request(self.command, self.path, body=body or None,
                             headers={k: v for k, v in self.headers.items() if k.lower() != "host"})  # fmt: skip
                response = conn.getresponse()
                data = response.read()
                conn.close()
                if path == "/schedule.json" and proxy.drop > 0:
                    proxy.drop -= 1
                    self.close_connection = True
                    return  # the node took it; its answer never reaches the client
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "server", "date"):
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _forward  # noqa: N815 (http.server's names)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_connection_dropped_after_the_node_took_the_job_is_asked_about_never_sent_again(cluster):
    a = cluster[0]
    proxy = DroppingProxy(a.url)
    records = Records()
    try:
        with capture_logs() as logs:
            [outcome] = crawl_to_end(engine([(proxy.url, 1)]), [job("dropped", "ok")], records.on_start,
                                     records.on_finish, on_dispatch=records.on_dispatch)  # fmt: skip
    finally:
        proxy.close()
    assert outcome.ok, outcome.message
    assert proxy.calls["/schedule.json"] == 1 and proxy.calls["/status.json"] >= 1
    [(_, _, jobid, _)] = records.dispatched
    assert a.client().listjobs().finished.count(jobid) == 1
    [unconfirmed] = [e for e in logs if e["event"] == "scrapyd_schedule_unconfirmed"]
    assert unconfirmed["jobid"] == jobid and unconfirmed["state"] in ("pending", "running", "finished")


def test_scrapyd_killed_alone_leaves_an_orphan_that_the_next_daemon_waits_for_then_collects(own_nodes):
    node = own_nodes("orphan", slow_seconds=6)
    stop = threading.Event()

    def kill_scrapyd_and_stop_once_running() -> None:
        if not stop.is_set() and crawling(node, "orphan"):
            node.kill(signal.SIGKILL)  # scrapyd alone; its crawl goes on
            stop.set()  # and the daemon stops too: it never cancels remote crawls

    first = engine([(node.url, 1)], stop=stop, on_poll=kill_scrapyd_and_stop_once_running)
    records = Records()
    assert crawl_to_end(first, [job("orphan", "slow")], records.on_start, records.on_finish,
                        on_dispatch=records.on_dispatch) == []  # fmt: skip
    [left] = first.detached
    [(_, _, jobid, _)] = records.dispatched
    assert left.jobid == jobid and left.node == node.url
    [orphan] = crawling(node, "orphan")
    assert alive(orphan)

    node.start()  # the restarted Scrapyd knows nothing of it
    assert node.client().status(jobid) == "unknown"
    with capture_logs() as logs:
        [outcome] = crawl_to_end(engine([(node.url, 1)]), (), records.on_start, records.on_finish,
                                 on_dispatch=records.on_dispatch, attach=[left])  # fmt: skip
    assert outcome.ok and outcome.items_scraped == 5, outcome.message
    assert len(records.dispatched) == 1  # re-attached, never sent again
    assert [kind for kind, *_ in node.crawls()] == ["start", "end"]
    assert any(e["event"] == "remote_crawl_orphan" for e in logs)


def test_a_node_killed_whole_makes_its_crawl_lost_after_the_limit(own_nodes):
    node = own_nodes("doomed")

    def kill_the_node_once_running() -> None:
        if node.proc is not None and node.proc.poll() is None and crawling(node, "doomed"):
            node.kill_group()

    records = Records()
    with capture_logs() as logs:
        [outcome] = crawl_to_end(
            engine([(node.url, 1)], on_poll=kill_the_node_once_running,
                   limits=Limits(lost_after_s=2, never_started_after_s=10, node_retry_s=30)),
            [job("doomed", "hang")], records.on_start, records.on_finish)  # fmt: skip
    assert outcome.failure == "lost" and "did not answer" in outcome.message, outcome
    assert [e["reason"] for e in logs if e["event"] == "remote_crawl_lost"] == ["node_unreachable"]


def test_stats_read_from_the_log_when_their_file_is_gone_and_lost_when_the_log_was_rotated_too(own_nodes):
    node = own_nodes("rotating", max_proc=1, jobs_to_keep=2)
    client = node.client()
    directory = node.logs / "default" / "ok"

    def crawl(jobid: str) -> None:
        client.schedule("default", "ok", jobid, settings=[("STATS_CLASS", "daemon.node_stats.NodeStatsCollector")])
        wait_for(lambda: client.status(jobid) == "finished", timeout=30, what=f"{jobid} to finish")

    crawl("ok-first")
    (directory / "ok-first.stats.json").unlink()  # its log alone is left to say how it went
    records = Records()
    run = RemoteRun(token="first", job=job("ok"), node=node.url, jobid="ok-first", age_s=5)
    with capture_logs() as logs:
        [from_log] = crawl_to_end(engine([(node.url, 1)]), (), records.on_start, records.on_finish, attach=[run])
    assert from_log.ok and from_log.items_scraped == 15 and from_log.stats is not None, from_log.message
    assert from_log.stats["finish_reason"] == "finished" and from_log.stats["finish_time"].startswith("20")
    assert [e["stats_from"] for e in logs if e["event"] == "remote_crawl_collected"] == ["log"]

    crawl("ok-second")
    for later in ("ok-third", "ok-fourth"):  # jobs_to_keep=2 counts files: a log and its stats
        crawl(later)
    assert not (directory / "ok-second.log").exists()
    gone = RemoteRun(token="second", job=job("ok"), node=node.url, jobid="ok-second", age_s=5)
    [rotated] = crawl_to_end(engine([(node.url, 1)]), (), records.on_start, records.on_finish, attach=[gone])
    assert not rotated.ok and rotated.failure == "lost" and "jobs_to_keep" in rotated.message
