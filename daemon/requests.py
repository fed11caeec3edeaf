"""Hearing `python -m daemon run-now`: a thread LISTENs on its own connection and, on a
notification, wakes the loop, which takes the requests from the run_requests table (so a request
made while no daemon listened is still taken, by whoever holds the runner lock next)."""

from __future__ import annotations

import select
import threading
from collections.abc import Sequence
from datetime import datetime

import psycopg2
import structlog

from daemon import db, queries
from daemon.config import Settings
from daemon.store import Store

log = structlog.get_logger("daemon.requests")

WAKE_EVERY_SECONDS = 1.0  # the listener re-checks the stop event at least this often


class RunNowListener(threading.Thread):
    def __init__(self, settings: Settings, stop: threading.Event, wake: threading.Event) -> None:
        super().__init__(name="run-now-listener", daemon=True)
        self.settings = settings
        self.stop = stop
        self.wake = wake
        self.pending = threading.Event()  # a request may be waiting in run_requests

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
                cur.execute(queries.LISTEN_RUN_NOW)
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
        self.wake.set()

    def new_term(self) -> None:
        """This daemon has just taken the runner lock: requests made while another daemon (or none)
        held it are waiting in the table."""
        self.pending.set()

    def take(self, store: Store, spiders: Sequence[str], now: datetime) -> set[str]:
        """Spiders asked for with `run-now` (taken only by the lock holder, once each)."""
        if not self.pending.is_set():
            return set()
        self.pending.clear()
        requested: set[str] = set()
        for request_id, names in store.take_requests(now):
            wanted = set(spiders) if names is None else set(names) & set(spiders)
            requested |= wanted
            log.info("run_requested", message="Run requested with run-now", request_id=request_id,
                     spiders=sorted(wanted))  # fmt: skip
        return requested
