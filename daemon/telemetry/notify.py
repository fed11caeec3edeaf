"""Telling someone outside: alerts to a webhook (Slack/Mattermost-style, with a `text` field) and
healthchecks.io-style pings. A background thread sends them with a timeout and a few retries, so
a slow or broken receiver never blocks the loop; a failure is logged, never fatal. The URLs often
carry tokens: logs name only their scheme and host.

Each attempt is made by a short-lived child process (daemon/telemetry/notify_send.py), so the daemon never
imports urllib, http.client or ssl: with them a daemon that pings stayed 7-8 MiB bigger for good
(issue "Memory with notifications on"). A process start (~60 ms) per attempt is nothing next to a
few pings per run. The URL reaches the child on its stdin, never in its argv."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from daemon.settings.secret import Secret

log = structlog.get_logger("daemon.notify")

TIMEOUT_SECONDS = 5.0
ATTEMPTS = 3
QUEUE_SIZE = 1000
DEADLINE_SECONDS = 3 * TIMEOUT_SECONDS  # one attempt all told (TIMEOUT_SECONDS bounds each socket step)
# -I: no PYTHON* variables, user site or script directory; -S: no site-packages, only the stdlib.
SENDER = [sys.executable, "-I", "-S", str(Path(__file__).with_name("notify_send.py"))]


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class Notifier:
    def __init__(self, webhook: Secret, ping: Secret, stop: threading.Event) -> None:
        self.webhook = webhook
        self.ping_url = ping
        self.stop = stop
        # None, queued by flush: everything queued before it has been handled.
        self.queue: queue.Queue[tuple[str, Secret, bytes | None] | None] = queue.Queue(QUEUE_SIZE)
        self.thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._closed = False
        if webhook or ping:
            self.thread.start()

    def flush(self, timeout: float) -> None:
        """At shutdown (the stop event is set): give what is queued, e.g. the /fail ping of the run
        the stop interrupted, up to `timeout` seconds to go out. Failed sends are not retried; a send
        still going then is cut, and nothing more is sent: no child outlives the daemon.

        Only the flush ends the sender, not the stop: the stop comes first (from a signal), and the
        /fail ping of the run it interrupts is queued after it."""
        if self.thread.is_alive():
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                pass  # the sender then ends when the time is up
            self.thread.join(timeout)
        with self._lock:
            self._closed = True
            if self._child is not None:
                self._child.kill()

    def alert(self, kind: str, text: str, **fields: Any) -> None:
        if self.webhook:
            body = json.dumps({"text": text, "kind": kind, **fields}, default=str).encode()
            self._put("alert", self.webhook, body)

    def ping(self, suffix: str = "") -> None:
        """suffix: '/start' when a run starts, '' on success, '/fail' on failure."""
        if self.ping_url:
            self._put("ping", Secret(self.ping_url.reveal().rstrip("/") + suffix), b"")

    def _put(self, what: str, url: Secret, body: bytes | None) -> None:
        try:
            self.queue.put_nowait((what, url, body))
        except queue.Full:
            log.warning("notification_dropped", what=what, reason="queue full", to=_where(url.reveal()))

    def _work(self) -> None:
        while not self._closed:
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is None:
                return
            what, url, body = item
            try:
                self._send(what, url.reveal(), body)
            except Exception as exc:  # whatever a receiver does, the sender lives on
                log.error("notification_failed", what=what, to=_where(url.reveal()), error=type(exc).__name__)

    def _send(self, what: str, url: str, body: bytes | None) -> None:
        delay = 1.0
        for attempt in range(1, ATTEMPTS + 1):
            error = self._post(url, body or b"")
            if error is None:
                return
            log.warning("notification_failed", what=what, to=_where(url), attempt=attempt, error=error)
            if self.stop.wait(delay):
                break
            delay *= 2
        log.error("notification_given_up", what=what, to=_where(url), attempts=ATTEMPTS)

    def _post(self, url: str, body: bytes) -> str | None:
        """One attempt, by a child process: None once the receiver took it, else what went wrong."""
        task = json.dumps({"url": url, "body": body.decode(), "timeout": TIMEOUT_SECONDS,
                           "deadline": DEADLINE_SECONDS}).encode()  # fmt: skip
        with self._lock:
            if self._closed:
                return "cut at shutdown"
            # Its own session: a Ctrl-C meant for the daemon must not kill the /fail ping it flushes.
            # stderr dropped: a traceback could quote the URL.
            child = self._child = subprocess.Popen(SENDER, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                   stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            out, _ = child.communicate(task, timeout=DEADLINE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return "TimeoutError"
        finally:
            with self._lock:
                self._child = None
        answer = out.decode(errors="replace").strip()
        if answer == "ok":
            return None
        if self._closed:
            return "cut at shutdown"
        return answer or f"sender exited with {child.returncode}"
