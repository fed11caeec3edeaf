"""The loop: read the clock once, ask each part one question, run what is due, wait at most a tick.

Each concept is an object of its own, passed in: the catalog (which jobs run), the lease (which
daemon runs them, and this daemon's role), the take-over (stale runs and journals), the history
copy and the decision, jitter, requests (run-now, pause, cancel), the run path, observation,
housekeeping and the heartbeat. daemon/assemble.py builds them for a real daemon; a unit test passes
fakes and drives `step(now)` without sleeping.

The wait between steps is on the wake event and never longer than one tick, so a suspend or a
wall-clock jump is noticed within a tick. When PostgreSQL becomes unreachable, the daemon that was
running the spiders keeps its promise from what it last read (the design's fail-safe): due spiders
run anyway and their records go to the local journal, written to the database once it is back.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import psycopg2
import structlog

from daemon.records import db
from daemon.loop.batch import Batches, unreachable
from daemon.jobs.catalog import Catalog
from daemon.system.clock import Clock
from daemon.settings.config import Settings
from daemon.loop.history import HistoryCopy
from daemon.plan.jitter import Jitter
from daemon.leadership.lease import Lease
from daemon.telemetry.logs import Once
from daemon.telemetry.observation import Observer
from daemon.loop.runs import POLL_SECONDS
from daemon.plan.slots import take_slots, waiting
from daemon.loop.slot_ledger import SlotLedger
from daemon.leadership.takeover import TakeOver

log = structlog.get_logger("daemon.scheduler")

# At shutdown, queued notifications (the interrupted run's /fail ping) get this long to go out;
# well inside SCHEDULER_STOP_GRACE_SECONDS' default and compose's stop_grace_period.
NOTIFY_FLUSH_SECONDS = 5.0


class Scheduler:
    def __init__(
        self, settings: Settings, catalog: Catalog, *, clock: Clock, stop: threading.Event,
        wake: threading.Event, reload: threading.Event, lease: Lease, takeover: TakeOver, history: HistoryCopy,
        jitter: Jitter, requests: Any, batches: Batches, observer: Observer, housekeeping: Any, heartbeat: Any,
        notifier: Any, http: Any = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.catalog = catalog
        self.clock, self.stop, self.wake, self.reload = clock, stop, wake, reload
        self.lease, self.takeover, self.history, self.jitter = lease, takeover, history, jitter
        self.requests, self.batches, self.observer = requests, batches, observer
        self.housekeeping, self.heartbeat, self.notifier, self.http = housekeeping, heartbeat, notifier, http
        self.db_failures = 0
        self.notices = Once(log)
        self.asked: set[str] = set()  # jobs asked for with run-now, until a slot is theirs
        self.ledger = SlotLedger(observer, getattr(notifier, "alert", None))  # calendar jobs' missed slots (their kept ones: the recorder)

    def run(self) -> None:
        log.info("scheduler_started", message=f"Starting scheduler with {self.settings.interval_hours:g} hour interval",
                 interval_hours=self.settings.interval_hours, spiders=list(dict.fromkeys(j.spider for j in self.catalog.jobs)),
                 jobs=len(self.catalog.jobs), concurrency=self.settings.concurrency,
                 tick_s=self.settings.tick_seconds)  # fmt: skip
        self.requests.start()
        if self.http is not None:
            self.http.start()
        try:
            while not self.stop.is_set():
                wait = self.step(self.clock.now())
                if self.db_failures == 0:
                    # A loop that cannot reach its database is not healthy: the heartbeat stops
                    # until it can again, so the healthcheck reports the outage.
                    self.heartbeat.beat()
                if wait > 0 and not self._request_to_take():
                    self._wait(min(wait, self.settings.tick_seconds))
            self.batches.drain(self.wake)  # nothing left 'running': each run under way ends and is recorded
        finally:
            if self.http is not None:
                self.http.stop()
            self.lease.release()
            self.notifier.flush(NOTIFY_FLUSH_SECONDS)
        log.info("scheduler_stopped", message="Scheduler stopped")

    def _wait(self, seconds: float) -> None:
        """Wait on the earliest of: `seconds` (the next due time, or the tick), a request, and the
        end of a crawl under way (its process's exit wakes the loop; the crawls are also checked
        every POLL_SECONDS for timeouts, cancels and the lease), so a freed slot is given at once."""
        until = self.clock.monotonic() + seconds
        while True:
            left = until - self.clock.monotonic()
            busy = self.batches.busy
            woken = self.clock.wait(self.wake, min(left, POLL_SECONDS) if busy else left)
            self.wake.clear()
            if woken or not busy or left <= POLL_SECONDS:
                return
            try:
                if self.batches.collect():
                    return  # a slot freed: decide again now
            except psycopg2.Error:
                return  # the step deals with the database

    def step(self, now: datetime) -> float:
        """One unit of work at `now`; returns how many seconds may pass before the next one."""
        try:
            self.batches.collect()  # the crawls that ended, and the runs they end
            wait = self._step(now)
        except psycopg2.Error as exc:
            return self._database_failed(exc, now)
        if self.lease.may_run_offline:
            return wait  # runs under way beside an unreachable PostgreSQL: not a sign it answers
        self.db_failures = 0
        self.observer.database_reachable(True)
        return wait

    def _step(self, now: datetime) -> float:
        tick = self.settings.tick_seconds
        if not self.settings.enabled:
            self.notices.say("scheduling_disabled", "Scheduling is disabled (SCHEDULER_ENABLED=false); running nothing")
            return tick
        if self.batches.busy and not self.lease.holds_lock:
            # Runs under way while the lock's connection is re-taken (the lease's probe does it) or
            # while this daemon gives way: their crawls are collected, nothing new starts. Beside
            # the fail-safe's own runs (PostgreSQL unreachable; the lease probes for it), the
            # fail-safe gives each freed slot to the most overdue due job. Once the probe has the
            # lock again, the take-over below adopts the fail-safe's runs under way and the loop
            # decides beside them: a long offline crawl holds no other job.
            if self.lease.may_run_offline and self.batches.offline(now, self.catalog.cadences(self.requests.pauses)):
                return 0
            return POLL_SECONDS
        store = self.lease.store()
        if not self.lease.take(store):
            self.takeover.standing_by(store)
            return tick
        if self.lease.must_recover():
            if not self.takeover.recover(store, now, self.batches):
                return min(tick, 1.0)
            self.batches.find_left_running(store, now)  # remote crawls: re-attached by the next run
            self.lease.recovered()
            self.history.invalidate()
        settling = self.lease.settle_left()
        if settling > 0:
            return settling
        hup = self._hup()
        self.notifier.refresh(hup)  # the alert channels' file first: the jobs' `notify` name its tags
        if self.catalog.refresh(hup=hup) or self.catalog.dirty:
            self.catalog.publish(store, now, self.lease.me)
        requested = self.requests.take(store, self.catalog.resolve, now)
        self.asked |= requested
        jobs, cadences = self.catalog.names(), self.catalog.cadences(self.requests.pauses)
        running = self.batches.running()  # a crawl under way, or re-attached next: never started twice
        plan, histories = self.history.plan(store, now, jobs, cadences, fresh=bool(requested), running=running)
        self.ledger.deciding(now, self.clock.monotonic())
        self.ledger.watch_pauses(cadences, now)
        self.observer.planned(plan, histories, self.catalog.spider_of)
        paused = {p.spider for p in plan.spiders if p.paused}
        self.asked = {j for j in self.asked if j in jobs and j not in paused}  # a request waits for a slot
        candidates = waiting(plan, running, [j for j in jobs if j in self.asked] if self.asked else ())
        due, held_until = self.jitter.hold_back(plan, candidates, self.asked)
        if due:  # the free slots asked only then: a Scrapyd engine asks its nodes
            due = take_slots(due, self.batches.free())  # most overdue first: the rest wait for a freed slot
        reattaching = self.batches.reattaching()
        if due or reattaching:
            self.asked -= set(due)
            slots = self.ledger.starting(store, plan, histories, due, now, cadences)  # calendar jobs: the slot each covers
            # False: not one crawl could be recorded as started (a trigger or a constraint refuses the
            # row; a slot another daemon's crawl covers). The jobs stay due, but trying again at once
            # would spin and pile up runs.
            return 0 if self.batches.online(store, self.catalog.jobs_named(due), now, slots=slots) else tick
        self.ledger.settled(store, plan, histories, now, cadences)
        if candidates and not held_until:
            return tick  # every slot is taken: a crawl's end wakes the loop
        # Housekeeping only when no spider is due: a catch-up never waits behind a cleanup.
        self.housekeeping.run_pending()
        until = held_until or plan.next_due_at
        return (until - now).total_seconds() if until else tick

    def _database_failed(self, exc: psycopg2.Error, now: datetime) -> float:
        self.db_failures += 1
        self.ledger.database_down(now)
        self.observer.database_reachable(False)
        if self.batches.busy and self.lease.leading:
            # Between two polls of runs under way: as when the lease's probe finds it, the crawls
            # go on and the probe re-takes the lock (or gives way); nothing new starts meanwhile.
            self.lease.lost_mid_run(exc)
            return POLL_SECONDS
        log.error("database_error",
                  message="PostgreSQL failed; reconnecting and re-taking the runner lock before running anything",
                  sqlstate=getattr(exc, "pgcode", None), error=db.first_line(exc), attempt=self.db_failures)  # fmt: skip
        self.lease.lost()
        cadences = self.catalog.cadences(self.requests.pauses)
        if unreachable(exc) and self.lease.may_run_offline and self.batches.offline(now, cadences):
            return 0
        return min(0.5 * 2**self.db_failures, self.settings.tick_seconds)

    def _hup(self) -> bool:
        """SIGHUP: read the jobs file and list the spiders again, now."""
        hup = self.reload.is_set()
        self.reload.clear()
        return hup

    def _request_to_take(self) -> bool:
        """A run-now request is waiting and this daemon would take it on its next step. Only then
        does the loop skip its wait: a standby, a disabled or a settling daemon leaves requests
        for later, and skipping the wait there would spin the loop (it did: a standby called
        pg_try_advisory_lock in a tight loop)."""
        return self.requests.pending.is_set() and self.settings.enabled and self.lease.leading
