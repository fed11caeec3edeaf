"""Alerts to a webhook and healthchecks-style pings, received by a local server on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import PG_PASSWORD, free_port
from tests.helpers import count, events, hours, insert_completed, json_lines, rows, utcnow, wait_for

pytestmark = pytest.mark.e2e


class Receiver:
    """Records every request as it arrives; answers with `status` (500 to play a broken receiver),
    once `hold` is set when one is given (a receiver slower than the notifier's timeout)."""

    def __init__(self, status: int = 200, hold: threading.Event | None = None) -> None:
        self.requests: list[tuple[str, dict | None]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                receiver.requests.append((self.path, json.loads(raw) if raw else None))
                if hold is not None:
                    hold.wait(120)  # bounded: a forgotten hold must not keep a thread forever
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

    from daemon.settings.secret import Secret
    from daemon.telemetry.notify import Notifier

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


def test_overdue_check_watches_the_spiders_the_daemon_runs_and_not_those_gone_from_the_project(base_env, db,
                                                                                              daemon_factory):  # fmt: skip
    from daemon.settings.config import Settings
    from daemon.jobs.spiders import list_spiders

    project = list_spiders(Settings.from_mapping(base_env))  # SCHEDULER_SPIDERS unset: the daemon runs them all
    now = utcnow()
    insert_completed(db, [s for s in project if s != "boom"], now - hours(1))
    insert_completed(db, ["boom", "retired"], now - hours(20))  # retired: since removed from the project
    # boom failed a minute ago: it waits for its retry (15 minutes), so nothing is due and the checks run.
    rows(db, "WITH run AS (INSERT INTO scheduler_state (last_run_at, spider_count, status, finished_at) "
             "VALUES (%(t)s, 1, 'failed', %(t)s) RETURNING id) "
             "INSERT INTO spider_runs (run_id, spider, status, failure, started_at, finished_at, message) "
             "SELECT id, 'boom', 'failed', 'error', %(t)s, %(t)s, 'logged 1 error(s)' FROM run",
         {"t": now - hours(1 / 60)})  # fmt: skip
    d = daemon_factory(base_env).start()
    checked = lambda: [e for e in events(json_lines(d.output()), "job_finished")  # noqa: E731
                       if e["job"] == "overdue_check"]  # fmt: skip
    wait_for(checked, timeout=60, what="the overdue check")
    logs = json_lines(d.output())
    assert {e["spider"] for e in events(logs, "alert") if e["kind"] == "overdue"} == {"boom"}
    assert not events(logs, "spider_started")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_a_receiver_answering_500_is_retried_then_given_up_and_the_crawls_go_on(base_env, db, daemon_factory):
    from daemon.telemetry.notify import ATTEMPTS

    broken = Receiver(status=500)
    try:
        env = {**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_INTERVAL_HOURS": "0.0005",  # 1.8 s
               "HEALTHCHECK_PING_URL": f"{broken.url}/ping/uuid-500"}  # fmt: skip
        d = daemon_factory(env).start()
        wait_for(lambda: len(broken.requests) > ATTEMPTS, timeout=60, what="the second notification")
        wait_for(lambda: count(db, "status = 'completed'") >= 3, timeout=90, what="three completed runs")
        # Each notification is tried ATTEMPTS times, then given up; the next one is sent after it.
        assert broken.paths()[: ATTEMPTS + 1] == ["/ping/uuid-500/start"] * ATTEMPTS + ["/ping/uuid-500"]
        logs = json_lines(d.output())
        failed = events(logs, "notification_failed")
        assert [(e["attempt"], e["error"]) for e in failed[:ATTEMPTS]] == [(a, "HTTP 500") for a in
                                                                           range(1, ATTEMPTS + 1)]  # fmt: skip
        assert events(logs, "notification_given_up")[0]["attempts"] == ATTEMPTS
        assert d.proc.poll() is None  # the daemon stays up...
        assert count(db, "status = 'completed'", "spider_runs") >= 3  # ...and its crawls are recorded
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
        assert "uuid-500" not in d.output()
    finally:
        broken.server.shutdown()


def test_a_receiver_slower_than_the_timeout_never_holds_up_the_crawls(base_env, db, daemon_factory):
    hold = threading.Event()  # the receiver answers nothing until the test ends
    slow = Receiver(hold=hold)
    try:
        env = {**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_INTERVAL_HOURS": "0.0005",  # 1.8 s
               "HEALTHCHECK_PING_URL": f"{slow.url}/ping/uuid-slow"}  # fmt: skip
        d = daemon_factory(env).start()
        wait_for(lambda: count(db, "status = 'completed'") >= 4, timeout=90, what="four completed runs")
        runs, sent = count(db, "status = 'completed'"), len(slow.requests)
        # A loop that waited for its pings would have sent each run's /start before its crawl and
        # its success ping after recording it: 2 * runs - 1 requests at least by now. The sender is
        # still stuck on the first ones, and the runs went on regardless.
        assert 1 <= sent < 2 * runs - 1, (sent, runs)
        assert slow.paths()[0] == "/ping/uuid-slow/start"
        wait_for(lambda: events(json_lines(d.output()), "notification_failed"), timeout=60,
                 what="the first attempt timing out")  # fmt: skip
        assert events(json_lines(d.output()), "notification_failed")[0]["error"] == "TimeoutError"
        assert d.proc.poll() is None
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
    finally:
        hold.set()
        slow.server.shutdown()


def test_a_daemon_that_gives_way_mid_run_pings_fail_for_the_run_it_started(base_env, db, daemon_factory, receiver):
    env = {**base_env, "SCHEDULER_SPIDERS": "slow", "SLOW_SECONDS": "60"}
    a = daemon_factory({**env, "HEALTHCHECK_PING_URL": f"{receiver.url}/ping/a"}).start()
    wait_for(lambda: count(db, "status = 'running' AND pid IS NOT NULL", "spider_runs") == 1, timeout=30,
             what="a's crawl")  # fmt: skip
    b = daemon_factory({**env, "HEALTHCHECK_PING_URL": f"{receiver.url}/ping/b"}).start()
    wait_for(lambda: '"standby"' in b.output(), timeout=30, what="b standing by")
    # a is frozen while its lock connection is cut, so b takes the lock before a can re-take it;
    # once a runs again it finds the lock taken and gives way (as in tests/faults/test_one_runner.py).
    a.signal(signal.SIGSTOP)
    try:
        [(terminated,)] = rows(db, """
            SELECT pg_terminate_backend(l.pid) FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""")  # fmt: skip
        assert terminated
        wait_for(lambda: '"runner_lock_acquired"' in b.output(), timeout=30, what="b taking the lock")
    finally:
        a.signal(signal.SIGCONT)
    wait_for(lambda: '"runner_giving_way"' in a.output(), timeout=30, what="a giving way")
    wait_for(lambda: "/ping/a/fail" in receiver.paths(), timeout=30, what="a's /fail ping")
    assert [p for p in receiver.paths() if p.startswith("/ping/a")] == ["/ping/a/start", "/ping/a/fail"]
    assert a.proc.poll() is None  # it gave way and stands by
    for d in (a, b):
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0


def _senders() -> dict[int, str]:
    """This process's notification senders still running: pid -> command line."""
    import os
    from pathlib import Path

    found = {}
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue  # not a process, or gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and "notify_send.py" in cmdline:
            found[int(proc.name)] = cmdline
    return found


def test_a_notification_url_reaches_its_sender_process_never_through_its_command_line():
    from pathlib import Path

    from daemon.settings.secret import Secret
    from daemon.telemetry.notify import Notifier

    hold = threading.Event()
    slow = Receiver(hold=hold)  # holds the request: the sender is caught while it runs
    stop = threading.Event()
    try:
        notifier = Notifier(Secret(""), Secret(f"{slow.url}/ping/uuid-S3CR3T"), stop)
        notifier.ping("/start")
        wait_for(lambda: slow.paths() == ["/ping/uuid-S3CR3T/start"], timeout=30, what="the ping arriving")
        senders = wait_for(_senders, timeout=10, what="the sender process")
        assert all("S3CR3T" not in line and "127.0.0.1" not in line for line in senders.values()), senders
        everyone = [p.read_bytes() for p in Path("/proc").glob("[0-9]*/cmdline") if p.exists()]
        assert not [line for line in everyone if b"S3CR3T" in line]
        stop.set()
        notifier.flush(0)
    finally:
        stop.set()
        hold.set()
        slow.server.shutdown()


def test_a_send_still_going_when_the_flush_ends_is_cut_so_no_sender_outlives_the_daemon(monkeypatch):
    from structlog.testing import capture_logs

    from daemon.telemetry import notify
    from daemon.settings.secret import Secret
    from daemon.telemetry.notify import Notifier

    # A sender left alone would wait for the stuck receiver far longer than this test waits for it.
    monkeypatch.setattr(notify, "TIMEOUT_SECONDS", 600.0)
    monkeypatch.setattr(notify, "DEADLINE_SECONDS", 600.0)
    hold = threading.Event()
    slow = Receiver(hold=hold)
    stop = threading.Event()
    try:
        with capture_logs() as logs:
            notifier = Notifier(Secret(f"{slow.url}/hooks/T0K3N"), Secret(f"{slow.url}/ping/uuid-1"), stop)
            notifier.ping("/fail")
            notifier.alert("spider_failed", "boom failed")  # queued behind the stuck ping: never sent
            wait_for(lambda: slow.paths() == ["/ping/uuid-1/fail"], timeout=30, what="the ping arriving")
            wait_for(_senders, timeout=10, what="the sender process")
            stop.set()
            notifier.flush(0.5)
            wait_for(lambda: not _senders(), timeout=10, what="the sender cut")
            notifier.thread.join(10)
        assert not notifier.thread.is_alive()
        assert slow.paths() == ["/ping/uuid-1/fail"]
        assert [(e["event"], e.get("error")) for e in logs if e["event"].startswith("notification")] == [
            ("notification_failed", "cut at shutdown"), ("notification_given_up", None)]  # fmt: skip
    finally:
        hold.set()
        slow.server.shutdown()


def test_a_notification_queued_after_the_stop_and_before_the_flush_still_goes_out(receiver):
    # The order at shutdown: a signal sets the stop, the loop winds up the run it interrupted and
    # queues its /fail ping, then flushes. The sender must not have ended in between.
    import time

    from daemon.settings.secret import Secret
    from daemon.telemetry.notify import Notifier

    stop = threading.Event()
    notifier = Notifier(Secret(""), Secret(f"{receiver.url}/ping/uuid-1"), stop)
    stop.set()
    time.sleep(1.5)  # the run being wound up; longer than the sender's look at its empty queue
    notifier.ping("/fail")
    notifier.flush(30)
    assert receiver.paths() == ["/ping/uuid-1/fail"]
