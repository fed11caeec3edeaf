"""The real daemon loop with SCHEDULER_ENGINE=scrapyd against real Scrapyd nodes on 127.0.0.1 and the
real PostgreSQL: the same promise and the same records as the local runner, plus each crawl's node,
Scrapyd job id and log URL. The nodes are tests/e2e/test_scrapyd.py's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scrapyd_nodes import ScrapydNode
from tests.helpers import SchedulerThread, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def nodes(tmp_path: Path, site: str) -> Iterator[list[ScrapydNode]]:
    started: list[ScrapydNode] = []
    try:
        for name in ("a", "b"):
            started.append(ScrapydNode(tmp_path / "nodes", name, site, max_proc=1, slow_seconds=3).start())
        yield started
    finally:
        for node in started:
            node.kill_group()


def cluster_env(base_env: dict[str, str], nodes: list[ScrapydNode]) -> dict[str, str]:
    return {**base_env, "SCHEDULER_ENGINE": "scrapyd", "SCRAPYD_NODES": ",".join(n.url for n in nodes)}


def rows(db, job: str | None = None) -> list[tuple]:
    with db.cursor() as cur:
        cur.execute("SELECT job, status, failure, items_scraped, node, remote_jobid, log_url, log_tail, started_at, "
                    "finished_at FROM spider_runs WHERE %(job)s::text IS NULL OR job = %(job)s ORDER BY id",
                    {"job": job})  # fmt: skip
        return cur.fetchall()


def scheduled(nodes: list[ScrapydNode]) -> dict[str, str]:
    """remote job id -> node URL, for every crawl the nodes ran: from their logs directories."""
    found = {}
    for node in nodes:
        for log in node.logs.glob("default/*/*.log"):
            found[log.stem] = node.url
    return found


def never_two_at_once(records: list[tuple]) -> None:
    by_job: dict[str, list[tuple]] = {}
    for r in records:
        by_job.setdefault(r[0], []).append(r)
    for job, runs in by_job.items():
        spans = sorted((r[8], r[9]) for r in runs)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end is not None and end <= start, f"two crawls of {job} at once"


def test_due_jobs_run_on_the_nodes_within_their_slots_and_are_recorded_with_node_job_id_and_log(base_env, db, nodes):
    with SchedulerThread(cluster_env(base_env, nodes), ["ok", "slow", "other"]):
        wait_for(lambda: len([r for r in rows(db) if r[1] != "running"]) == 3, timeout=60, what="three crawls")
    records = rows(db)
    assert {r[0] for r in records} == {"ok", "slow", "other"} and all(r[1] == "completed" for r in records)
    urls = {n.url for n in nodes}
    assert {r[4] for r in records} == urls  # spread over both nodes
    ran = scheduled(nodes)
    for job, _, _, items, node, jobid, log_url, log_tail, _, _ in records:
        assert ran[jobid] == node and jobid.startswith(job + "-")  # recorded where it ran, under our job id
        assert log_url == f"{node}/logs/default/{job}/{jobid}.log"
        assert items is not None and "Spider closed (finished)" in log_tail
    assert len(ran) == 3  # one schedule.json per crawl
    never_two_at_once(records)


def test_a_daemon_killed_mid_crawl_is_followed_by_one_that_re_attaches_and_never_sends_it_again(base_env, db, nodes):
    env = cluster_env(base_env, nodes[:1])
    first = SchedulerThread(env, ["slow"])
    first.thread.start()
    wait_for(lambda: any(r[5] for r in rows(db, "slow")), timeout=30, what="the crawl dispatched")
    # The first daemon stops mid-crawl (its own stop never cancels a remote crawl). A daemon process
    # SIGKILLed mid-crawl: tests/faults/test_scrapyd_faults.py.
    first.stop.set()
    first.thread.join(timeout=30)
    [(_, status, _, _, node, jobid, _, _, _, _)] = rows(db, "slow")
    assert status == "running"  # left running on its node, not failed as stale
    with SchedulerThread(env, ["slow"]):
        wait_for(lambda: rows(db, "slow")[0][1] != "running", timeout=60, what="the crawl collected")
    records = rows(db, "slow")
    assert len(records) == 1 and records[0][1] == "completed" and records[0][5] == jobid
    assert list(scheduled(nodes)) == [jobid]  # never sent a second time
    side = (nodes[0].side_channel.read_text() if nodes[0].side_channel.exists() else "").splitlines()
    assert sum(1 for line in side if line.startswith("start")) == 1


def test_with_no_node_answering_the_jobs_stay_due_and_the_run_says_why(base_env, db, nodes):
    for node in nodes:
        node.kill_group()
    with SchedulerThread(cluster_env(base_env, nodes), ["ok"]):
        wait_for(lambda: _run_errors(db), timeout=60, what="a run's verdict")
    assert "no Scrapyd node answered" in _run_errors(db)[0] and rows(db) == []


def _run_errors(db) -> list[str]:
    with db.cursor() as cur:
        cur.execute("SELECT error FROM scheduler_state WHERE status = 'failed' ORDER BY id")
        return [r[0] for r in cur.fetchall()]



def test_a_job_due_while_a_restarted_daemon_re_attaches_starts_at_once_on_a_free_node(base_env, db, tmp_path, site):
    nodes = [ScrapydNode(tmp_path / "slow-nodes", name, site, max_proc=1, slow_seconds=10).start() for name in "ab"]
    try:
        first = SchedulerThread(cluster_env(base_env, nodes[:1]), ["slow"])
        first.thread.start()
        wait_for(lambda: any(r[5] for r in rows(db, "slow")), timeout=30, what="the slow crawl dispatched")
        first.stop.set()
        first.thread.join(timeout=30)
        [left] = rows(db, "slow")
        assert left[1] == "running"
        with SchedulerThread(cluster_env(base_env, nodes), ["slow", "ok"]):
            wait_for(lambda: all(r[1] != "running" for r in rows(db)) and len(rows(db)) == 2, timeout=60,
                     what="both crawls recorded")  # fmt: skip
        [slow], [ok] = rows(db, "slow"), rows(db, "ok")
        assert slow[1] == ok[1] == "completed" and slow[5] == left[5]  # re-attached, never sent again
        assert ok[4] == nodes[1].url and ok[8] < slow[9]  # ok ran on the free node while slow still ran
        assert sorted(scheduled(nodes).values()) == sorted(n.url for n in nodes)  # one schedule.json each
    finally:
        for node in nodes:
            node.kill_group()


def test_the_pages_api_cancels_a_crawl_on_a_scrapyd_node_the_same_way_as_a_local_one(base_env, db, tmp_path, site):
    import base64
    import http.client
    import json

    from tests.conftest import free_port

    node = ScrapydNode(tmp_path / "nodes", "a", site, max_proc=1, slow_seconds=60).start()
    port = free_port()
    env = {**cluster_env(base_env, [node]), "SCHEDULER_HTTP_PORT": str(port), "SCHEDULER_HTTP_USER": "alice",
           "SCHEDULER_HTTP_PASSWORD": "s3cret-pw"}  # fmt: skip
    try:
        with SchedulerThread(env, ["slow"]):
            wait_for(lambda: [r for r in rows(db, "slow") if r[5]], timeout=60, what="the crawl on the node")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/api/jobs/slow/cancel", body=b"{}", headers={
                "Host": f"127.0.0.1:{port}", "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()})  # fmt: skip
            response = conn.getresponse()
            answer = (response.status, json.loads(response.read())["result"])
            conn.close()
            assert answer == (200, "done")
            wait_for(lambda: rows(db, "slow")[0][1] != "running", timeout=30, what="the cancelled crawl recorded")
        assert rows(db, "slow")[0][1:3] == ("failed", "cancelled")
    finally:
        node.kill_group()
