"""Telling someone outside: alerts to a webhook (Slack/Mattermost-style, with a `text` field) and
healthchecks.io-style pings. A background thread sends them with a timeout and a few retries, so
a slow or broken receiver never blocks the loop; a failure is logged, never fatal. The URLs often
carry tokens: logs name only their scheme and host."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any
from urllib.parse import urlsplit

import structlog

from daemon.config import Secret

log = structlog.get_logger("daemon.notify")

TIMEOUT_SECONDS = 5.0
ATTEMPTS = 3
QUEUE_SIZE = 1000


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class Notifier:
    def __init__(self, webhook: Secret, ping: Secret, stop: threading.Event) -> None:
        self.webhook = webhook
        self.ping_url = ping
        self.stop = stop
        self.queue: queue.Queue[tuple[str, Secret, bytes | None]] = queue.Queue(QUEUE_SIZE)
        self.thread = threading.Thread(target=self._work, name="notify", daemon=True)
        if webhook or ping:
            self.thread.start()

    def flush(self, timeout: float) -> None:
        """At shutdown (the stop event is set): give what is queued, e.g. the /fail ping of the run
        the stop interrupted, up to `timeout` seconds to go out. Failed sends are not retried."""
        if self.thread.is_alive():
            self.thread.join(timeout)

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
        while not (self.stop.is_set() and self.queue.empty()):
            try:
                what, url, body = self.queue.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                self._send(what, url.reveal(), body)
            except Exception as exc:  # whatever a receiver does, the sender lives on
                log.error("notification_failed", what=what, to=_where(url.reveal()), error=type(exc).__name__)

    def _send(self, what: str, url: str, body: bytes | None) -> None:
        # Imported here: urllib.request costs ~1 MiB resident, and most daemons never notify.
        import http.client
        import urllib.error
        import urllib.request

        delay = 1.0
        for attempt in range(1, ATTEMPTS + 1):
            request = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "User-Agent": "persistent-scheduler"})  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                    response.read()
                return
            except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts,
                # and a receiver that answers with something that is not HTTP (BadStatusLine):
                # the sending thread must outlive any receiver.
                error = f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else type(exc).__name__
                log.warning("notification_failed", what=what, to=_where(url), attempt=attempt, error=error)
            if self.stop.wait(delay):
                break
            delay *= 2
        log.error("notification_given_up", what=what, to=_where(url), attempts=ATTEMPTS)
