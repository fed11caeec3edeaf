"""Logging renders events as JSON off a terminal and readable lines on one; the daemon never
imports scrapy."""

import io
import json
import logging
import subprocess
import sys

import pytest
import structlog

from daemon.telemetry import logs
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def _restore_logging():
    """configure() changes process-wide state; put the defaults back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:], root.level = handlers, level


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_events_are_json_with_utc_iso_timestamps_and_stdlib_logs_join_them():
    out = io.StringIO()
    logs.configure("INFO", "auto", out)
    structlog.get_logger("t").info("run_started", message="Starting spider run for 2 spider(s)", spider_count=2)
    logging.getLogger("some.library").warning("plain stdlib message")
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["event"] == "run_started" and first["spider_count"] == 2 and first["level"] == "info"
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert second["event"] == "plain stdlib message" and second["logger"] == "some.library"


def test_on_a_terminal_events_are_readable_lines():
    out = Terminal()
    logs.configure("INFO", "auto", out)
    structlog.get_logger("t").info("run_started", spider_count=2)
    line = out.getvalue()
    assert "run_started" in line and "spider_count" in line and not line.lstrip().startswith("{")


def test_log_level_filters_events():
    out = io.StringIO()
    logs.configure("WARNING", "json", out)
    structlog.get_logger("t").info("chatty")
    structlog.get_logger("t").warning("important")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["important"]


def test_the_daemon_never_imports_scrapy():
    code = (
        "import sys, daemon.__main__, daemon.assemble, daemon.engines.local, daemon.jobs.spiders, daemon.records.migrations;"
        "print('scrapy' in sys.modules or any(m.startswith('scrapy.') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# Also the Scrapyd engine (its client and rules: SCHEDULER_ENGINE=scrapyd only) and the endpoint.
HEAVY_OPTIONAL = ("twisted", "prometheus_client", "http.server", "urllib.request", "dotenv", "ssl",
                  "daemon.engines.scrapyd.client", "daemon.engines.scrapyd.rules", "daemon.engines.scrapyd.dispatch",
                  "daemon.web.http", "daemon.web.site", "daemon.web.httpserver", "daemon.web.httppools",
                  "daemon.web.httpwire",
                  "daemon.engines.crawl_starts", "daemon.engines.warm",
                  "daemon.engines.warm_parent")  # fmt: skip
# (Warm starts: at the first crawl, or as `run` starts, to start the parent ahead, which `assemble`
# alone does not; they are small, and the benchmark's idle rows measure the real daemon.)


def test_an_idle_daemon_without_the_http_endpoint_leaves_the_heavy_optional_modules_unloaded(tmp_path):
    # Resident memory of the idle daemon (issue "Performance", target <= 30 MiB): Twisted (which
    # structlog would pull in), prometheus_client with http.server, urllib.request, python-dotenv
    # and Python's ssl (psycopg2 and asyncio would load it) stay out unless something needs them;
    # so does the endpoint's server (issue 25).
    code = (
        "import sys, daemon.__main__, daemon.assemble;"
        "from daemon.settings.config import Settings; from daemon.assemble import assemble;"
        f"s = Settings.from_mapping({{'SCRAPY_PROJECT_DIR': {str(ROOT / 'example_project')!r},"
        f" 'SCHEDULER_STATE_DIR': {str(tmp_path)!r}}});"
        "daemon.__main__.load_environment({});"
        "assemble(s, ['a']).notifier.ping('/start');"
        f"print(sorted(m for m in {HEAVY_OPTIONAL!r} if sys.modules.get(m) is not None))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]", done.stderr


PAGE_MODULES = ("daemon.web.site", "daemon.web.page", "daemon.web.pagedata", "daemon.web.lanes", "daemon.web.timeline")


def test_an_idle_daemon_with_the_http_endpoint_loads_the_page_only_when_someone_looks(tmp_path):
    # Issue "Seeing it": the page's modules are imported by the first page request, never by a
    # daemon whose endpoint only answers probes.
    from tests.conftest import free_port

    port = free_port()
    code = f"""
import sys, urllib.error, urllib.request, daemon.__main__, daemon.assemble
from daemon.settings.config import Settings
from daemon.assemble import assemble
s = Settings.from_mapping({{"SCRAPY_PROJECT_DIR": {str(ROOT / "example_project")!r}, "SCHEDULER_STATE_DIR": {str(tmp_path)!r},
                           "SCHEDULER_HTTP_PORT": "{port}", "DB_PORT": "{free_port()}"}})
daemon.__main__.load_environment({{}})
http = assemble(s, ["a"]).http
http.start()
urllib.request.urlopen("http://127.0.0.1:{port}/metrics").read()
print("loaded", sorted(m for m in {PAGE_MODULES!r} if m in sys.modules))
try:
    urllib.request.urlopen("http://127.0.0.1:{port}/")
except urllib.error.HTTPError as exc:
    print("loaded", exc.code)
print("loaded", sorted(m for m in {PAGE_MODULES!r} if m in sys.modules))
http.stop()
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    before, status, after = [line[len("loaded ") :] for line in done.stdout.splitlines() if line.startswith("loaded ")]
    assert before == "[]", done.stdout + done.stderr
    assert status == "503"  # the page was asked for (its database is not there)
    assert after == str(sorted(PAGE_MODULES))


def test_ssl_hidden_while_the_daemon_loads_is_still_there_for_https_webhooks():
    code = "import sys, daemon.__main__, daemon.assemble; import ssl, urllib.request; print(ssl.OPENSSL_VERSION)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.startswith("OpenSSL")


def test_a_daemon_that_pings_and_alerts_over_http_and_https_never_loads_the_http_or_tls_stack(tmp_path):
    # Issue "Memory with notifications on": urllib, http.client (with email) and ssl cost a pinging
    # daemon 7-8 MiB for good; each notification is sent by a short-lived child process instead.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.conftest import free_port

    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ping = f"http://127.0.0.1:{server.server_address[1]}/ping/uuid-1"
    hook = f"https://127.0.0.1:{free_port()}/hooks/T0K3N"  # nothing listens: tried once, over TLS
    code = (
        "import sys, threading, daemon.__main__, daemon.assemble;"
        "from daemon.settings.config import Settings; from daemon.telemetry.notify import Notifier;"
        f"s = Settings.from_mapping({{'SCRAPY_PROJECT_DIR': {str(ROOT / 'example_project')!r},"
        f" 'SCHEDULER_STATE_DIR': {str(tmp_path)!r}, 'HEALTHCHECK_PING_URL': {ping!r},"
        f" 'ALERT_WEBHOOK_URL': {hook!r}}});"
        "stop = threading.Event(); n = Notifier(s.alert_webhook_url, s.healthcheck_ping_url, stop);"
        "n.ping('/start'); n.alert('overdue', 'a is overdue'); stop.set(); n.flush(60);"
        "print(sorted(m for m in ('http.client', 'urllib.request', 'email', 'ssl', '_ssl')"
        " if sys.modules.get(m) is not None))"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    finally:
        server.shutdown()
    assert received == ["/ping/uuid-1/start"]
    assert "notification_given_up" in done.stdout  # the https webhook was tried
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
