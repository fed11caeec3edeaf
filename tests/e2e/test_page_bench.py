"""The page's figures (printed in the summary's `figures` section, never asserted): the overview's
server-side time for 100 jobs x 7 days x 6 crawls a day (target 200 ms), and an idle daemon's
resident memory before and after the first page view."""

from __future__ import annotations

import signal
import statistics
import time
import urllib.request
from pathlib import Path

import pytest

from daemon.system.clock import SystemClock
from daemon.settings.config import Settings
from daemon.web.site import Site
from tests.conftest import figure, free_port
from tests.helpers import utcnow, wait_for
from tests.page_history import H, arrange, failed, job, steady

pytestmark = pytest.mark.e2e

JOBS, DAYS, PER_DAY = 100, 7, 6


def test_the_overview_of_100_jobs_over_a_week_is_rendered_server_side_in_time(base_env, db):
    every = 24 * H / PER_DAY
    history = [(job(f"job-{n:03d}", every), [*steady(every, DAYS * 24 * H - (n % 7) * 0.3 * H, 1 * H),
                                             *([failed(0.5 * H)] if n % 10 == 0 else [])])
               for n in range(JOBS)]  # fmt: skip
    arrange(db, utcnow(), history)
    crawls = sum(len(planned) for _, planned in history)
    site = Site(Settings.from_mapping(base_env), SystemClock())
    try:
        timings = []
        for _ in range(7):
            started = time.perf_counter()
            status, _, body = site.respond("/", "days=7")
            timings.append((time.perf_counter() - started) * 1000)
        assert status == 200 and body.count(b'<svg class="lane"') == JOBS
    finally:
        site.close()
    figure(f"page: overview of {JOBS} jobs, {crawls} crawls over {DAYS} days: {len(body) / 1024:.0f} KiB, "
           f"first {timings[0]:.0f} ms, then median {statistics.median(timings[1:]):.0f} ms "
           f"(min {min(timings[1:]):.0f} ms; target 200 ms)")  # fmt: skip


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_an_idle_daemons_memory_before_and_after_the_first_page_view(base_env, daemon_factory):
    port = free_port()
    env = {**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_HTTP_PORT": str(port), "SCHEDULER_TICK_SECONDS": "1"}
    d = daemon_factory(env).start()
    wait_for(lambda: '"run_completed"' in d.output(), timeout=60, what="a run")
    time.sleep(5)  # idle: the housekeeping jobs have run, nothing is due for hours
    before = rss_kib(d.proc.pid)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
        assert response.status == 200
    time.sleep(1)
    after = rss_kib(d.proc.pid)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
        response.read()
    again = rss_kib(d.proc.pid)
    figure(f"page: idle daemon RSS {before / 1024:.1f} MiB before the first page view, {after / 1024:.1f} MiB "
           f"after it (+{(after - before) / 1024:.1f} MiB), {again / 1024:.1f} MiB after a second")  # fmt: skip
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
