"""The Scrapyd node image (docker/scrapyd-node/Dockerfile), built and run for real: the engine
dispatches the example project's spider to it, behind basic auth, and judges the crawl from the
stats the node's collector wrote next to its log."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest

from daemon.system.clock import SystemClock
from daemon.settings.secret import Secret
from daemon.engines.scrapyd.dispatch import ScrapydEngine
from daemon.engines.scrapyd.rules import EngineSettings
from daemon.settings.addresses import Node
from daemon.jobs.jobfile import make_job
from daemon.engines.scrapyd.client import ScrapydClient, ScrapydError
from tests.conftest import ROOT, free_port
from tests.e2e.test_compose_stack import require_docker
from tests.helpers import crawl_to_end, wait_for
from tests.unit.test_jobfile import ENV

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(900)]

IMAGE = f"scheduler-scrapyd-node-e2e:{uuid.uuid4().hex[:8]}"
PASSWORD = "node-canary-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    require_docker()
    subprocess.run(["docker", "build", "-q", "-f", "docker/scrapyd-node/Dockerfile", "-t", IMAGE, "."],
                   cwd=ROOT, check=True, capture_output=True, timeout=900)  # fmt: skip
    port = free_port()
    name = f"scrapyd-node-e2e-{uuid.uuid4().hex[:8]}"
    # The host's network, so the crawl reaches the tests' site on 127.0.0.1; Scrapyd listens there too.
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "host",
                    "-e", f"SCRAPYD_HTTP_PORT={port}", "-e", "SCRAPYD_BIND_ADDRESS=127.0.0.1",
                    "-e", "SCRAPYD_USERNAME=scheduler", "-e", f"SCRAPYD_PASSWORD={PASSWORD}", IMAGE],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    client = ScrapydClient(url, username="scheduler", password=Secret(PASSWORD))

    def answers() -> bool:
        try:
            return client.daemonstatus().running == 0
        except ScrapydError:
            return False

    try:
        wait_for(answers, timeout=60, what="the node's Scrapyd")
        yield url
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", "-f", IMAGE], capture_output=True, timeout=60)


def test_the_node_image_serves_its_project_as_default_and_its_crawls_leave_their_stats_for_the_engine(node, site):
    job = make_job(name="quotes-here", spider="quotes", defaults=ENV, args={"start_url": f"{site}/"})
    settings = EngineSettings(nodes=(Node(node, 1),), username="scheduler", password=Secret(PASSWORD), poll_s=0.2)
    finished = {}
    [outcome] = crawl_to_end(ScrapydEngine(settings, SystemClock(), threading.Event()), [job], lambda job: "token",
                             lambda token, outcome: finished.update({token: outcome}))  # fmt: skip
    assert outcome.ok and outcome.stats is not None, outcome.message
    assert outcome.stats["finish_reason"] == "finished" and outcome.stats["response_received_count"] >= 1
    assert finished == {"token": outcome}
