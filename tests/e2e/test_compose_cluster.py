"""The compose `cluster` profile, built and run for real: PostgreSQL, the scheduler in scrapyd mode
and two Scrapyd nodes, brought up with the README's one command
(`SCHEDULER_ENGINE=scrapyd docker compose --profile cluster up -d`) in a copy of the project with a
compose project name of its own. One build, one `up`; the tests of the class share that stack and
read it in order: the crawls recorded, where they ran, the status command, the hardening, the auth,
and no secret anywhere they can see. docker-compose v1 is only asked to read the file (the full
stack runs once, with v2, to keep within the CI budget)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from tests.conftest import ROOT, figure
from tests.e2e.test_compose_stack import CANARY, FLAVOURS, Stack, make_stack, require_docker
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(900)]

NODES = {"http://scrapyd-1:6800": "scrapyd-1", "http://scrapyd-2:6800": "scrapyd-2"}
USERNAME = "scheduler"
PASSWORD = "cluster-canary-" + uuid.uuid4().hex[:8]
ITEMS = {"ok": 15, "slow": 5}  # what the tests' site holds for each spider
LOGS = "/var/lib/scrapyd/logs/default"  # the node image's logs_dir, project `default`


class ClusterStack(Stack):
    """Every command as the README gives it: SCHEDULER_ENGINE=scrapyd in the shell, --profile cluster."""

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        argv = [*self.command, "-p", self.project, *sum((["-f", f] for f in self.files), []), "--profile", "cluster"]
        done = subprocess.run([*argv, *args], cwd=self.workdir, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "SCHEDULER_ENGINE": "scrapyd"})  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def crawls(self) -> list[dict[str, str]]:
        """The recorded crawls, oldest first."""
        rows = self.sql("SELECT spider, status, COALESCE(failure, ''), COALESCE(node, ''), COALESCE(remote_jobid, ''), "
                        "COALESCE(log_url, ''), COALESCE(items_scraped, -1) FROM spider_runs ORDER BY id")  # fmt: skip
        keys = ("spider", "status", "failure", "node", "jobid", "log_url", "items")
        return [dict(zip(keys, row)) for row in rows]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    base = make_stack("v2", tmp)
    shutil.copytree(ROOT / "docker" / "scrapyd-node", tmp / "docker" / "scrapyd-node")
    with (tmp / ".env").open("a") as env:
        # Nothing due again by itself while the tests look; the nodes and the scheduler share the auth.
        env.write(f"SCHEDULER_INTERVAL_HOURS=1\nSCRAPYD_USERNAME={USERNAME}\nSCRAPYD_PASSWORD={PASSWORD}\n")
    stack = ClusterStack("v2", tmp, [*base.files, "tests/e2e/docker/compose.cluster.test.yml"])
    yield stack
    stack.compose("down", "-v", "--remove-orphans", check=False, timeout=300)


def completed(stack: ClusterStack) -> list[dict[str, str]]:
    try:
        rows = stack.crawls()
    except AssertionError:  # PostgreSQL or the tables not there yet
        return []
    failed = [row for row in rows if row["status"] == "failed"]
    assert not failed, f"a crawl failed: {failed}"
    done = [row for row in rows if row["status"] == "completed"]
    return done if {row["spider"] for row in done} == set(ITEMS) else []


class TestComposeCluster:
    def test_both_compose_generations_read_the_profile(self, cluster):
        require_docker()
        for flavour in FLAVOURS.values():
            if shutil.which(flavour[0]) is None:
                pytest.fail(f"{' '.join(flavour)} is not installed")
            argv = [*flavour, "-p", cluster.project, *sum((["-f", f] for f in cluster.files), [])]
            plain = subprocess.run([*argv, "config", "--services"], cwd=cluster.workdir, capture_output=True,
                                   text=True, check=True).stdout.split()  # fmt: skip
            profiled = subprocess.run([*argv, "--profile", "cluster", "config"], cwd=cluster.workdir,
                                      capture_output=True, text=True, check=True).stdout  # fmt: skip
            # v1 lists every service; v2 only those of the active profiles. Both know the nodes.
            assert {"db-password", "postgres", "scheduler"} <= set(plain), flavour
            assert "scrapyd-1:" in profiled and "scrapyd-2:" in profiled, flavour
            assert "SCRAPYD_NODES: http://scrapyd-1:6800,http://scrapyd-2:6800" in profiled, flavour

    def test_one_command_brings_up_the_cluster_and_both_jobs_complete_on_the_nodes(self, cluster):
        cluster.compose("up", "-d", "--build", timeout=900)
        rows = wait_for(lambda: completed(cluster), timeout=240, step=2, what="both jobs' crawls completed")
        figure("compose cluster: " + ", ".join(f"{r['spider']} on {NODES.get(r['node'], r['node'])}" for r in rows))
        for row in rows:
            assert row["node"] in NODES, row
            assert row["jobid"], row
            assert row["log_url"] == f"{row['node']}/logs/default/{row['spider']}/{row['jobid']}.log", row
            assert int(row["items"]) == ITEMS[row["spider"]], row
        # One slot per node: two crawls on one node never overlapped.
        overlaps = cluster.sql("SELECT a.id, b.id FROM spider_runs a JOIN spider_runs b ON a.id < b.id "
                               "AND a.node = b.node AND tstzrange(a.started_at, a.finished_at) "
                               "&& tstzrange(b.started_at, b.finished_at)")  # fmt: skip
        assert overlaps == []

    def test_the_crawls_ran_on_the_node_recorded_and_left_their_log_and_stats_there(self, cluster):
        for row in completed(cluster):
            here = NODES[row["node"]]
            other = next(name for name in NODES.values() if name != here)
            path = f"{LOGS}/{row['spider']}/{row['jobid']}"
            stats = json.loads(cluster.compose("exec", "-T", here, "cat", f"{path}.stats.json").stdout)
            assert stats["item_scraped_count"] == ITEMS[row["spider"]]
            assert stats["finish_reason"] == "finished"
            log = cluster.compose("exec", "-T", here, "cat", f"{path}.log").stdout
            assert "Spider closed (finished)" in log
            assert cluster.compose("exec", "-T", other, "test", "-e", f"{path}.log", check=False).returncode != 0

    def test_the_status_command_answers_in_the_scheduler(self, cluster):
        done = cluster.compose("exec", "-T", "scheduler", "python", "-m", "daemon", "status", check=False)
        assert done.returncode == 0, done.stderr
        lines = [line.split() for line in done.stdout.splitlines()]
        for spider in ITEMS:  # one line per job: its name first, its last crawl's status on it
            assert any(words[:1] == [spider] and "completed" in words for words in lines), done.stdout

    def test_the_nodes_ask_for_basic_auth(self, cluster):
        code = ("import urllib.request, urllib.error\n"
                "try:\n    urllib.request.urlopen('{url}/daemonstatus.json', timeout=5)\n"
                "except urllib.error.HTTPError as exc:\n    print(exc.code)\n")  # fmt: skip
        for url in NODES:
            done = cluster.compose("exec", "-T", "scheduler", "python", "-c", code.format(url=url))
            assert done.stdout.strip() == "401", (url, done.stdout, done.stderr)

    def test_the_nodes_run_hardened_with_their_own_volume_and_no_published_port(self, cluster):
        volumes = set()
        for node in NODES.values():
            assert cluster.inspect("{{.HostConfig.ReadonlyRootfs}}", node) == "true"
            assert "ALL" in cluster.inspect("{{json .HostConfig.CapDrop}}", node)
            assert "no-new-privileges:true" in cluster.inspect("{{json .HostConfig.SecurityOpt}}", node)
            assert cluster.inspect("{{.HostConfig.Init}}", node) == "true"
            assert cluster.inspect("{{.HostConfig.RestartPolicy.Name}}", node) == "unless-stopped"
            assert cluster.inspect("{{json .HostConfig.PortBindings}}", node) in ("{}", "null")
            mounts = json.loads(cluster.inspect("{{json .Mounts}}", node))
            [state] = [m for m in mounts if m["Destination"] == "/var/lib/scrapyd"]
            [project] = [m for m in mounts if m["Destination"] == "/app/project"]
            assert state["Type"] == "volume" and project["RW"] is False
            volumes.add(state["Name"])
        assert len(volumes) == 2

    def test_no_password_in_the_logs_of_any_service_nor_in_the_nodes_crawl_logs(self, cluster):
        logs = cluster.logs("scheduler", "postgres", "scrapyd-1", "scrapyd-2")
        assert "scrapyd-1" in logs and "scrapyd-2" in logs  # the nodes' logs were read at all
        assert PASSWORD not in logs and CANARY not in logs  # the nodes' and the database's
        for node in NODES.values():
            found = cluster.compose("exec", "-T", node, "grep", "-rl", PASSWORD, "/var/lib/scrapyd", check=False)
            assert found.returncode == 1, found.stdout  # grep: 1 is "no match", 2 an error
