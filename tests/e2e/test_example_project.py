"""The example project the stack runs out of the box: its crawl, run the way the daemon runs
crawls, is judged a success (against a local copy of the sandbox's layout: no internet here)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from daemon.jobs.crawl import crawl_command, crawl_environment, judge
from tests.conftest import ROOT, send_html

pytestmark = pytest.mark.e2e


class _Quotes(BaseHTTPRequestHandler):
    """Ten pages of three quotes each, laid out like quotes.toscrape.com."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/robots.txt":
            self.send_error(404)
            return
        page = int(self.path.strip("/").split("/")[-1] or 1) if self.path.startswith("/page/") else 1
        quotes = "".join(
            f"<div class='quote'><span class='text'>quote {page}.{n}</span><small class='author'>A{n}</small>"
            f"<div class='tags'><a class='tag'>t{n}</a></div></div>"
            for n in range(3)
        )
        nxt = f"<ul class='pager'><li class='next'><a href='/page/{page + 1}/'>Next</a></li></ul>" if page < 10 else ""
        send_html(self, f"<html><body>{quotes}{nxt}</body></html>")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_example_spider_crawls_its_first_five_pages_and_is_judged_a_success(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quotes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stats_file = tmp_path / "stats.json"
    argv = [*crawl_command("quotes", stats_file), "-a", f"start_url=http://127.0.0.1:{server.server_address[1]}/",
            "-s", "DOWNLOAD_DELAY=0", "-s", "AUTOTHROTTLE_ENABLED=False", "-s", "HTTPCACHE_ENABLED=False"]  # fmt: skip
    try:
        done = subprocess.run(argv, cwd=ROOT / "example_project", env=crawl_environment(dict(os.environ)),
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    finally:
        server.shutdown()
    stats = json.loads(stats_file.read_text())
    outcome = judge("quotes", exit_code=done.returncode, stats=stats, timed_out=False, interrupted=False,
                    interrupt_message="", max_errors=0, timeout_minutes=120, duration_s=1.0, pid=0)  # fmt: skip
    assert outcome.ok, (outcome.message, done.stderr[-2000:])
    assert stats["finish_reason"] == "finished" and stats["item_scraped_count"] == 15  # 5 pages x 3 quotes
