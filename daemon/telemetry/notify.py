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
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from daemon.settings.notify_config import NotifyConfig, read_config, stamp
from daemon.settings.secret import Secret

if TYPE_CHECKING:
    from daemon.telemetry.outbox import Outbox

log = structlog.get_logger("daemon.notify")

TIMEOUT_SECONDS = 5.0
ATTEMPTS = 3
QUEUE_SIZE = 1000
# How often the outbox is looked at when nothing woke it: for retries that came due and alerts
# another daemon wrote. A run's end and an alert wake it at once (`wake`), so this only bounds the rest.
OUTBOX_POLL_SECONDS = 15.0
DEADLINE_SECONDS = 3 * TIMEOUT_SECONDS  # one attempt all told (TIMEOUT_SECONDS bounds each socket step)
# -I: no PYTHON* variables, user site or script directory; -S: no site-packages, only the stdlib.
SENDER = [sys.executable, "-I", "-S", str(Path(__file__).with_name("notify_send.py"))]


def where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class Notifier:
    """channels: SCHEDULER_NOTIFY_CONFIG's Apprise channels (daemon/telemetry/channels.py), sent to by their own
    short-lived process; tags_of: a job's `notify` tags, which choose its alerts' channels; delivers:
    whether this daemon delivers the outbox now (the daemon's: it holds the runner lock)."""

    def __init__(self, webhook: Secret, ping: Secret, stop: threading.Event, *, channels: NotifyConfig | None = None,
                 tags_of: Callable[[str], tuple[str, ...]] = lambda job: (),
                 connect: Callable[[], Any] | None = None, metrics: Any = None,
                 alert_after_of: Callable[[str], int] = lambda job: 1, public_url: Secret = Secret(""),
                 state_dir: Path | None = None, delivers: Callable[[], bool] = lambda: True,
                 tags_in_use: Callable[[], frozenset[str]] = frozenset,
                 on_tags: Callable[[frozenset[str]], None] = lambda tags: None) -> None:  # fmt: skip
        self.webhook = webhook
        self.ping_url = ping
        self.stop = stop
        self.channels = channels
        self.tags_of = tags_of
        self.tags_in_use = tags_in_use  # the tags the jobs' `notify` name: a reloaded file must have them all
        self.on_tags = on_tags  # a reloaded file's tags, which the jobs file may name from then on
        self._stamp = stamp(channels.path) if channels is not None else None
        self.config_error: str | None = None  # why the file on disk will not do; None: it is in use
        # None, queued by flush: everything queued before it has been handled.
        self.queue: queue.Queue[tuple[str, Any, Any] | None] = queue.Queue(QUEUE_SIZE)
        self.thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._closed = False
        # With a database (the daemon's): alerts go through the outbox (daemon/telemetry/outbox.py), never lost.
        self.outbox: Outbox | None = None
        if connect is not None and (webhook or channels is not None):
            from daemon.telemetry.outbox import Outbox

            from daemon.telemetry.alert_spool import AlertSpool

            spool = AlertSpool(state_dir) if state_dir is not None else None
            self.outbox = Outbox(connect, channels, webhook, tags_of, self._post, metrics, alert_after_of, public_url,
                                 spool, delivers)  # fmt: skip
        if webhook or ping or channels is not None:
            self.thread.start()

    @classmethod
    def post_once(cls, url: Secret, body: bytes) -> str | None:
        """One POST of `body` to `url` now, by the sender process: None once taken, else what went wrong."""
        return cls(Secret(""), Secret(""), threading.Event())._post(url.reveal(), body)

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

    def refresh(self, hup: bool) -> bool:
        """SIGHUP, or SCHEDULER_NOTIFY_CONFIG's file changed: read it again, as the jobs file is (the
        loop asks before the jobs file, whose `notify` may name a new tag). A file that will not do
        (the secret file's rules, a line Apprise cannot read, a tag a job names gone) keeps the last
        good channels: one log line per problem, one alert per episode. True when channels changed."""
        if self.channels is None:
            return False  # no file at start: a file needs a restart, as SCHEDULER_NOTIFY_CONFIG does
        now = stamp(self.channels.path)
        if not hup and now == self._stamp:
            return False
        self._stamp = now
        from daemon.telemetry.channels import ChannelsError, describe

        path = self.channels.path
        why, text = read_config(path)
        if why is None and text == self.channels.text.reveal():
            self.config_error = None  # the file in use, again (or still)
            return False
        if why is None:
            config = NotifyConfig(path, Secret(text))
            try:
                described = describe(config)
            except ChannelsError as exc:
                why = str(exc)
            else:
                tags = frozenset(tag for channel in described for tag in channel.tags)
                gone = sorted(self.tags_in_use() - tags)
                if gone:
                    why = f"the jobs' `notify` name tag(s) no channel of it has: {', '.join(gone)}"
        if why is not None:
            if why != self.config_error:
                log.error("notify_config_invalid", file=str(path), problem=why,
                          message="The alert channels' file is not valid; the last good channels stay in use")  # fmt: skip
            if self.config_error is None:  # alerted once per episode, to the channels still in use
                self.alert("notify_config_invalid", f"The alert channels' file {path} is not valid; the last good "
                           f"channels stay in use: {why}", level="error")  # fmt: skip
            self.config_error = why
            return False
        self.config_error = None
        self.channels = config
        if self.outbox is not None:
            self.outbox.use(config, described)
        self.on_tags(tags)
        log.info("notify_config_reloaded", file=str(path), channels=[channel.name for channel in described])
        return True

    def alert(self, kind: str, text: str, **fields: Any) -> None:
        if self.outbox is not None:
            if kind != "spider_failed":  # a failed crawl's alert is written with its record (sql/017's trigger)
                more = {k: v for k, v in fields.items() if k not in ("job", "level")}
                self._put("outbox", None, {"kind": kind, "job": fields.get("job"), "text": text, "fields": more,
                                           "level": str(fields.get("level", "error")),
                                           "created_at": datetime.now(timezone.utc)})  # fmt: skip
            return
        if self.webhook:
            body = json.dumps({"text": text, "kind": kind, **fields}, default=str).encode()
            self._put("alert", self.webhook, body)
        if self.channels is not None:
            job = fields.get("job")
            title = f"{job}: {kind}" if job else kind
            tags = self.tags_of(str(job)) if job else ()
            self._put("channels", None, {"kind": kind, "title": title, "body": text, "tags": tags,
                                         "level": str(fields.get("level", "error"))})  # fmt: skip

    def node(self, name: str, up: bool, why: str) -> None:
        """A Scrapyd node stopped answering (once per outage: the engine tells its first failure) or
        answers again. `name` is the engine's (scheme, host and port: no credentials)."""
        # One episode per node: lost, back, lost... (the outbox writes neither twice in a row, so a
        # daemon restarted during an outage does not tell it again).
        episode = f"node {name}"
        if up:
            self.alert("node_back", f"Scrapyd node {name} answers again: it takes crawls again", level="info",
                       node=name, episode=episode)  # fmt: skip
        else:
            why = why.removeprefix(f"scrapyd node {name}: ")  # the engine's error names the node already
            self.alert("node_lost", f"Scrapyd node {name} does not answer ({why}): its crawls are lost if it stays "
                       "away, and new crawls go to the other nodes", level="error", node=name,
                       episode=episode)  # fmt: skip

    def wake(self) -> None:
        """A run ended: its crawls' alerts (written with their records) are due now, not at the next poll."""
        if self.outbox is not None:
            self._put("wake", None, None)

    def ping(self, suffix: str = "") -> None:
        """suffix: '/start' when a run starts, '' on success, '/fail' on failure."""
        if self.ping_url:
            self._put("ping", Secret(self.ping_url.reveal().rstrip("/") + suffix), b"")

    def _put(self, what: str, url: Secret | None, body: Any) -> None:
        try:
            self.queue.put_nowait((what, url, body))
        except queue.Full:
            log.warning("notification_dropped", what=what, reason="queue full",
                        to=where(url.reveal()) if url is not None else "channels")  # fmt: skip

    def _work(self) -> None:
        if self.outbox is not None:
            self.outbox.step()  # what a daemon before this one left undelivered
        while not self._closed:
            try:
                item = self.queue.get(timeout=OUTBOX_POLL_SECONDS if self.outbox is not None else 1.0)
            except queue.Empty:
                item = ()
            if self.outbox is not None and item != ():
                if item is not None and item[0] == "wake":
                    item = ()
                elif item is not None and item[0] == "outbox":
                    body = item[2]
                    self.outbox.add(body["kind"], body["job"], body["level"], body["text"], body["created_at"],
                                    body["fields"])  # fmt: skip
                    item = ()
            if self.outbox is not None and (item == () or item is None):
                self.outbox.step()
            if item is None:
                if self.outbox is not None:
                    self.outbox.close()
                return
            if item == ():
                continue
            what, url, body = item
            try:
                if url is None:
                    self._send_channels(body)
                else:
                    self._send(what, url.reveal(), body)
            except Exception as exc:  # whatever a receiver does, the sender lives on
                log.error("notification_failed", what=what, to=where(url.reveal()) if url else "channels",
                          error=type(exc).__name__)  # fmt: skip

    def _send_channels(self, alert: dict[str, Any]) -> None:
        """One alert to its Apprise channels; the failed ones tried again (only they: a channel that
        took it never gets it twice), ATTEMPTS times in all."""
        from daemon.telemetry.channels import send

        assert self.channels is not None
        only: tuple[int, ...] | None = None
        delay = 1.0
        for attempt in range(1, ATTEMPTS + 1):
            if self._closed:
                return
            results = send(self.channels, alert["title"], alert["body"], tags=alert["tags"], level=alert["level"],
                           only=only)  # fmt: skip
            failed = tuple(r.channel for r in results if not r.ok)
            if not results:  # the sender was cut, or found no channel for these tags: try it all again
                log.warning("alert_failed", kind=alert["kind"], channel="channels", attempt=attempt,
                            error="no answer from the sender")  # fmt: skip
                failed = only or (-1,)
            for r in results:
                if r.ok:
                    log.info("alert_delivered", kind=alert["kind"], channel=r.name, attempt=attempt)
                else:
                    log.warning("alert_failed", kind=alert["kind"], channel=r.name, attempt=attempt, error=r.why)
            if not failed:
                return
            only = None if failed == (-1,) else failed
            if self.stop.wait(delay):
                break
            delay *= 2
        log.error("alert_given_up", kind=alert["kind"], channels=len(only or ()), attempts=ATTEMPTS)

    def _send(self, what: str, url: str, body: bytes | None) -> None:
        delay = 1.0
        for attempt in range(1, ATTEMPTS + 1):
            error = self._post(url, body or b"")
            if error is None:
                return
            log.warning("notification_failed", what=what, to=where(url), attempt=attempt, error=error)
            if self.stop.wait(delay):
                break
            delay *= 2
        log.error("notification_given_up", what=what, to=where(url), attempts=ATTEMPTS)

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
