"""Alerts to a webhook and healthchecks-style pings, received by a local server on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import PG_PASSWORD, free_port
from tests.helpers import hours, insert_completed, utcnow, wait_for

pytestmark = pytest.mark.e2e


class Receiver:
    """Records every request; answers with `status` (500 to play a broken receiver)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, dict | None]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                receiver.requests.append((self.path, json.loads(raw) if raw else None))
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def test_a_failed_run_pings_start_and_fail_and_alerts_reach_the_webhook(base_env, db, daemon_factory, receiver):
    insert_completed(db, ["ok"], utcnow() - hours(20))  # ok is overdue for the alert (limit 8 h)
    env = {**base_env, "SCHEDULER_SPIDERS": "ok,boom", "ALERT_WEBHOOK_URL": f"{receiver.url}/hooks/T0K3N",
           "HEALTHCHECK_PING_URL": f"{receiver.url}/ping/uuid-1234",
           "SCHEDULER_OVERDUE_CHECK_MINUTES": "0.02"}  # fmt: skip
    d = daemon_factory(env).start()
    wait_for(lambda: "/ping/uuid-1234/fail" in receiver.paths(), timeout=60, what="the /fail ping")
    assert receiver.paths().index("/ping/uuid-1234/start") < receiver.paths().index("/ping/uuid-1234/fail")
    hooks = lambda: [body for path, body in receiver.requests if path == "/hooks/T0K3N"]  # noqa: E731
    wait_for(lambda: {"spider_failed", "overdue"} <= {a["kind"] for a in hooks()}, timeout=30, what="the alerts")
    alerts = hooks()
    assert all(a["text"] for a in alerts)
    assert any(a["kind"] == "spider_failed" and a["spider"] == "boom" for a in alerts)
    # boom has never succeeded; ok's catch-up run succeeded before the check, so it is not overdue.
    assert {a["spider"] for a in alerts if a["kind"] == "overdue"} == {"boom"}
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    assert "T0K3N" not in d.output() and "uuid-1234" not in d.output() and PG_PASSWORD not in d.output()


def test_a_successful_run_pings_the_bare_url(base_env, db, daemon_factory, receiver):
    env = {**base_env, "SCHEDULER_SPIDERS": "ok", "HEALTHCHECK_PING_URL": f"{receiver.url}/ping/abc"}
    d = daemon_factory(env).start()
    wait_for(lambda: "/ping/abc" in receiver.paths(), timeout=60, what="the success ping")
    assert receiver.paths()[:2] == ["/ping/abc/start", "/ping/abc"]
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_a_broken_webhook_is_logged_and_never_stops_the_daemon(base_env, db, daemon_factory):
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    env = {**base_env, "SCHEDULER_SPIDERS": "boom", "ALERT_WEBHOOK_URL": dead, "HEALTHCHECK_PING_URL": dead,
           "SCHEDULER_RETRY_DELAY_MINUTES": "0.02"}  # fmt: skip
    d = daemon_factory(env).start()
    wait_for(lambda: d.output().count('"notification_given_up"') >= 1, timeout=60, what="the notifier giving up")
    wait_for(lambda: d.output().count('"run_failed"') >= 2, timeout=60, what="the loop going on")
    assert d.proc.poll() is None
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_a_receiver_that_answers_garbage_is_logged_and_the_sender_goes_on(receiver):
    import socket

    from structlog.testing import capture_logs

    from daemon.config import Secret
    from daemon.notify import Notifier

    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen()

    def answer_garbage() -> None:
        for _ in range(5):  # bounded: the notifier tries 3 times
            try:
                conn, _ = garbage.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"this is not HTTP\r\n\r\n")

    threading.Thread(target=answer_garbage, daemon=True).start()
    stop = threading.Event()
    with capture_logs() as logs:
        notifier = Notifier(Secret(f"http://127.0.0.1:{garbage.getsockname()[1]}/hooks/T0K3N"),
                            Secret(f"{receiver.url}/ping/uuid-1"), stop)  # fmt: skip
        notifier.alert("overdue", "ok is overdue")
        notifier.ping("")
        wait_for(lambda: "/ping/uuid-1" in receiver.paths(), timeout=30, what="the ping after the garbage")
    stop.set()
    garbage.close()
    failed = [e for e in logs if e["event"] == "notification_failed"]
    assert failed and failed[0]["error"] in ("BadStatusLine", "RemoteDisconnected")
    assert "T0K3N" not in repr(logs)


def test_a_run_interrupted_by_a_stop_still_pings_fail_before_the_daemon_exits(base_env, db, daemon_factory, receiver):
    env = {**base_env, "SCHEDULER_SPIDERS": "slow", "SLOW_SECONDS": "30",
           "HEALTHCHECK_PING_URL": f"{receiver.url}/ping/abc"}  # fmt: skip
    d = daemon_factory(env).start()
    wait_for(lambda: "/ping/abc/start" in receiver.paths(), timeout=60, what="the start ping")
    wait_for(lambda: '"spider_started"' in d.output(), timeout=30, what="the crawl")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    assert receiver.paths() == ["/ping/abc/start", "/ping/abc/fail"]  # sent before the process ended
