"""Hearing the commands: `run-now`, `pause`, `resume` and `cancel`. A thread LISTENs on its own
connection and, on a notification, wakes the loop, which then reads the tables (run_requests,
job_pauses, cancel_requests): a request made while no daemon listened is still taken, by whoever
holds the runner lock next, and pauses outlive restarts. While crawls run, the runner's poll asks
for cancellations (`take_cancels`) so a cancel is heard within a second."""

from __future__ import annotations

import select
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import psycopg2
import structlog

from daemon.records import board_queries, db
from daemon.settings.config import Settings
from daemon.records.store import Store

log = structlog.get_logger("daemon.requests")

WAKE_EVERY_SECONDS = 1.0  # the listener re-checks the stop event at least this often


class RunNowListener(threading.Thread):
    def __init__(self, settings: Settings, stop: threading.Event, wake: threading.Event) -> None:
        super().__init__(name="run-now-listener", daemon=True)
        self.settings = settings
        self.stop = stop
        self.wake = wake
        self.pending = threading.Event()  # a request may be waiting in run_requests (or a pause changed)
        self.cancel_pending = threading.Event()  # a cancel may be waiting in cancel_requests
        self.pauses: dict[str, datetime | None] = {}  # job -> paused until (None: until resumed)

    def run(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                self._listen()
                delay = 1.0
            except psycopg2.Error as exc:
                log.debug("run_now_listener_reconnecting", error=db.first_line(exc))
                self.stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _listen(self) -> None:
        conn = db.connect(self.settings)
        try:
            with conn.cursor() as cur:
                cur.execute(board_queries.LISTEN_RUN_NOW)
            self._heard()  # anything requested while nobody listened
            while not self.stop.is_set():
                readable, _, _ = select.select([conn], [], [], WAKE_EVERY_SECONDS)
                if readable:
                    conn.poll()
                    if conn.notifies:
                        conn.notifies.clear()
                        self._heard()
        finally:
            conn.close()

    def _heard(self) -> None:
        self.pending.set()
        self.cancel_pending.set()
        self.wake.set()

    def new_term(self) -> None:
        """This daemon has just taken the runner lock: requests made while another daemon (or none)
        held it are waiting in the tables."""
        self.pending.set()
        self.cancel_pending.set()

    def take(self, store: Store, resolve: Callable[[Sequence[str] | None], set[str]], now: datetime) -> set[str]:
        """Jobs asked for with `run-now` (taken only by the lock holder, once each); the pauses are
        read anew too. `resolve` turns requested names (jobs or spiders; None: all) into jobs."""
        if not self.pending.is_set():
            return set()
        self.pending.clear()
        pauses = store.pauses(now)
        if pauses != self.pauses:
            log.info("pauses_read", paused={job: until.isoformat() if until else None for job, until in pauses.items()})
        self.pauses = pauses
        for job in self.take_cancels(store, now):  # no crawl runs now: nothing to stop
            log.info("cancel_ignored", job=job, reason="not running")
        requested: set[str] = set()
        for request_id, names in store.take_requests(now):
            wanted = resolve(names)
            requested |= wanted
            log.info("run_requested", message="Run requested with run-now", request_id=request_id,
                     spiders=sorted(wanted))  # fmt: skip
        return requested

    def take_cancels(self, store: Store | None, now: datetime) -> list[str]:
        """Jobs whose running crawl `cancel` asked to stop (read only after a notification)."""
        if store is None or not self.cancel_pending.is_set():
            return []
        self.cancel_pending.clear()
        return store.take_cancels(now)
