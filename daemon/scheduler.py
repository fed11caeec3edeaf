"""The loop: read the clock once, decide from Postgres, run what is due, wait at most one tick.

Only the daemon holding the runner lock (a session-level advisory lock) runs spiders; another one
stands by and takes over when the lock frees. The wait between steps is on the stop event and
never longer than one tick, so a suspend or a wall-clock jump is noticed within a tick.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

import psycopg2
import structlog

from daemon import db, heartbeat, identity
from daemon.clock import Clock, SystemClock
from daemon.config import Settings
from daemon.crawl import CrawlOutcome
from daemon.decision import Plan, SpiderHistory, decide, oldest_success
from daemon.runner import CrawlRunner
from daemon.store import Store

log = structlog.get_logger("daemon.scheduler")

HEARTBEAT_EVERY_SECONDS = 1.0  # while crawls run, the heartbeat is refreshed this often

# The one-runner rule across a lost lock connection (Postgres restarted, backend terminated):
# while crawls run, the runner proves its lock connection alive and refreshes the run's lease every
# PROBE_SECONDS. When the connection is gone it tries to reconnect and re-take the lock; if that
# fails for GIVE_WAY_AFTER_SECONDS, or another daemon holds the lock, it kills its crawls at once.
# A daemon that takes the lock waits until a 'running' run's lease is LEASE_SECONDS old before it
# fails that run and starts spiders, unless the run's owner is provably dead. The margin between
# PROBE + GIVE_WAY (6 s) and LEASE (10 s) is what keeps two runners from ever overlapping.
PROBE_SECONDS = 1.0
GIVE_WAY_AFTER_SECONDS = 5.0
LEASE_SECONDS = 10.0


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        spiders: Sequence[str],
        *,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        force: threading.Event | None = None,
        conn: psycopg2.extensions.connection | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.spiders = tuple(spiders)
        self.clock = clock or SystemClock()
        self.stop = stop or threading.Event()
        self.force = force or threading.Event()
        self.store: Store | None = Store(conn) if conn is not None else None
        self.holds_lock = False
        self.abort = threading.Event()  # set when this daemon must give way during a run
        self.runner = CrawlRunner(
            settings, self.clock, self.stop, self.force, on_poll=self._during_run, environ=environ, abort=self.abort
        )
        self.recovered = False  # whether runs left 'running' by others were dealt with since the lock
        self._run_id: int | None = None
        self._last_probe = float("-inf")
        self._lost_at: float | None = None
        self._decision_key: object = None
        self._said: set[str] = set()  # one-off notices already logged (standby, disabled)
        self._db_failures = 0
        self._last_beat = float("-inf")

    # ----------------------------------------------------------------- the loop
    def run(self) -> None:
        log.info(
            "scheduler_started",
            message=f"Starting scheduler with {self.settings.interval_hours:g} hour interval",
            interval_hours=self.settings.interval_hours,
            spiders=list(self.spiders),
            concurrency=self.settings.concurrency,
            tick_s=self.settings.tick_seconds,
        )
        try:
            while not self.stop.is_set():
                now = self.clock.now()
                wait = self.step(now)
                if self._db_failures == 0:
                    # A loop that cannot reach its database is not healthy: the heartbeat stops
                    # until it can again, so the healthcheck reports the outage.
                    self._beat()
                if wait > 0:
                    self.clock.wait(self.stop, min(wait, self.settings.tick_seconds))
        finally:
            self.close()
        log.info("scheduler_stopped", message="Scheduler stopped")

    def step(self, now: datetime) -> float:
        """One unit of work at `now`; returns how many seconds may pass before the next one."""
        try:
            wait = self._step(now)
        except psycopg2.Error as exc:
            self._database_failed(exc)
            return min(0.5 * 2**self._db_failures, self.settings.tick_seconds)
        self._db_failures = 0
        return wait

    def _step(self, now: datetime) -> float:
        if not self.settings.enabled:
            self._say_once("scheduling_disabled", "Scheduling is disabled (SCHEDULER_ENABLED=false); running nothing")
            return self.settings.tick_seconds
        store = self._connected()
        if not self.holds_lock and not self._take_lock(store):
            return self.settings.tick_seconds
        if not self.recovered and not self._recover(store, now):
            return min(self.settings.tick_seconds, 1.0)
        histories = store.histories(self.spiders)
        plan = decide(histories, now, self.settings.interval, self.settings.retry_delay)
        self._log_decision(plan, histories)
        if plan.due:
            self._run(store, plan.due, now)
            return 0
        next_due = plan.next_due_at
        return (next_due - now).total_seconds() if next_due else self.settings.tick_seconds

    # ----------------------------------------------------------------- database and lock
    def _connected(self) -> Store:
        if self.store is None:
            self.store = Store(db.connect(self.settings))
            log.info("database_connected", host=self.settings.db_host, port=self.settings.db_port)
        return self.store

    def _take_lock(self, store: Store) -> bool:
        if not store.try_runner_lock():
            self._say_once(
                "standby",
                "Another scheduler holds the runner lock; standing by to take over when it goes away",
            )
            return False
        self.holds_lock = True
        self.recovered = False
        self._said.discard("standby")
        self._decision_key = None
        log.info("runner_lock_acquired", message="This scheduler now runs the spiders")
        return True

    def _recover(self, store: Store, now: datetime) -> bool:
        """Deal with runs left 'running' by another daemon; False while one may still be alive."""
        alive = [
            (run_id, owner, age)
            for run_id, owner, age in store.running_runs()
            if age < LEASE_SECONDS and not identity.certainly_dead(owner)
        ]
        if alive:
            self._say_once(
                "waiting_for_previous_runner",
                f"A run is still 'running' with a fresh lease; waiting up to {LEASE_SECONDS:g} s "
                "for its daemon to stop its crawls before taking over",
            )
            return False
        self._said.discard("waiting_for_previous_runner")
        runs, spiders = store.mark_stale(now)
        if runs or spiders:
            log.warning(
                "stale_runs_failed",
                message="Runs left 'running' by a daemon that stopped were marked failed; their spiders are due again",
                run_ids=runs,
                spiders=sorted({s for _, s in spiders}),
            )
        self.recovered = True
        return True

    def _database_failed(self, exc: psycopg2.Error) -> None:
        self._db_failures += 1
        log.error(
            "database_error",
            message="PostgreSQL failed; reconnecting and re-taking the runner lock before running anything",
            sqlstate=getattr(exc, "pgcode", None),
            error=db.first_line(exc),
            attempt=self._db_failures,
        )
        self._drop_connection()

    def _drop_connection(self) -> None:
        if self.store is not None:
            self.store.close()
        self.store = None
        self.holds_lock = False  # a closed session has released its advisory lock
        self.recovered = False

    def close(self) -> None:
        if self.store is not None and self.holds_lock:
            try:
                self.store.release_runner_lock()
                log.info("runner_lock_released")
            except psycopg2.Error:
                pass  # closing the session releases it anyway
        self._drop_connection()

    # ----------------------------------------------------------------- a run
    def _run(self, store: Store, due: Sequence[str], now: datetime) -> None:
        log.info(
            "run_started",
            message=f"Starting spider run for {len(due)} spider(s)",
            spiders=list(due),
            spider_count=len(due),
        )
        run_id = store.start_run(now, len(due), identity.this_process())
        self._run_id, self._lost_at, self._last_probe = run_id, None, self.clock.monotonic()
        recorder = _Recorder(self, run_id)
        try:
            outcomes = self.runner.run(due, recorder.started, recorder.finished, recorder.spawned)
        finally:
            self._run_id = None
        if self.abort.is_set():
            # This daemon gave way: the run and its rows are the new runner's to fail.
            self.abort.clear()
            self._drop_connection()
            self._decision_key = None
            return
        failed = [o for o in outcomes if not o.ok]
        not_started = len(due) - len(outcomes)
        ok = not failed and not not_started
        error = None
        if not ok:
            parts = [f"{o.spider}: {o.message}" for o in failed]
            if not_started:
                parts.append(f"{not_started} spider(s) not started: the daemon was stopping")
            error = "; ".join(parts)
        # The connection may have been replaced (or lost) during the run: write on the current one.
        store = self._still_runner(run_id)
        recorder.flush(store)
        store.finish_run(run_id, self.clock.now(), ok=ok, error=error)
        if ok:
            log.info("run_completed", message="Spider run completed successfully", run_id=run_id, spiders=list(due))
        else:
            log.error(
                "run_failed",
                message=f"Spider run failed: {len(failed) + not_started} of {len(due)} spider(s) did not succeed",
                run_id=run_id,
                failed=[o.spider for o in failed],
                error=error,
            )
        self._decision_key = None

    def _still_runner(self, run_id: int) -> Store:
        """The store to finish `run_id` on, re-taking the lock if the connection was replaced."""
        if self.store is not None and self.holds_lock:
            return self.store
        self._retake(run_id)
        if self.store is None or not self.holds_lock:
            raise psycopg2.OperationalError("the runner lock could not be re-taken to finish the run")
        return self.store

    # ----------------------------------------------------------------- keeping the lock during a run
    def _during_run(self) -> None:
        """Called by the runner many times a second while crawls run."""
        self._beat_while_running()
        now = self.clock.monotonic()
        if self._run_id is None or self.abort.is_set() or now - self._last_probe < PROBE_SECONDS:
            return
        self._last_probe = now
        try:
            if self.store is None or not self.holds_lock:
                self._retake(self._run_id)
            elif not self.store.touch_run(self._run_id):
                self._give_way("the run was failed by another daemon")
            else:
                return
        except psycopg2.Error as exc:
            if self._lost_at is None:
                self._lost_at = now
                log.error(
                    "runner_lock_connection_lost",
                    message="Lost the connection that holds the runner lock during a run; reconnecting",
                    error=db.first_line(exc),
                )
            self._drop_connection()
        if self._lost_at is not None and not self.abort.is_set() and now - self._lost_at >= GIVE_WAY_AFTER_SECONDS:
            self._give_way(f"the runner lock could not be re-taken within {GIVE_WAY_AFTER_SECONDS:g} s")

    def _retake(self, run_id: int) -> None:
        """Reconnect and re-take the lock mid-run; give way if another daemon has it or the run."""
        self._drop_connection()
        self.store = Store(db.connect(self.settings, connect_timeout=1))
        if not self.store.try_runner_lock():
            self._give_way("another daemon holds the runner lock")
            return
        self.holds_lock = True
        if not self.store.touch_run(run_id):
            self._give_way("the run was failed by another daemon")
            return
        self.recovered = True  # our own run is the one 'running': nothing to recover
        self._lost_at = None
        log.info("runner_lock_retaken", message="Re-took the runner lock; the run goes on", run_id=run_id)

    def _give_way(self, reason: str) -> None:
        log.error(
            "runner_giving_way",
            message=f"Killing this daemon's crawls at once: {reason}; never two runners at once",
            run_id=self._run_id,
        )
        self.abort.set()

    # ----------------------------------------------------------------- logging
    def _log_decision(self, plan: Plan, histories: Sequence[SpiderHistory]) -> None:
        key = (plan.due, plan.next_due_at, plan.skewed)
        if key == self._decision_key:
            return
        self._decision_key = key
        required = f"{self.settings.interval_hours:g}"
        every_spider_ran, oldest = oldest_success(histories)
        if every_spider_ran and oldest is not None:
            hours = (plan.now - oldest).total_seconds() / 3600
            log.info(
                "last_run_checked",
                message=f"Last run was {hours:.2f} hours ago (required: {required} hours)",
                hours_ago=round(hours, 4),
                required_hours=self.settings.interval_hours,
            )
        else:
            never = [h.spider for h in histories if h.last_success_at is None]
            log.info(
                "last_run_checked",
                message=f"Last run was never: no completed run on record (required: {required} hours)",
                spiders_never_run=never,
                required_hours=self.settings.interval_hours,
            )
        if plan.skewed:
            log.warning(
                "clock_skew_detected",
                message="A last run is recorded in the future: the wall clock was set back; "
                "running now so no run is pushed beyond one interval",
                spiders=list(plan.skewed),
            )
        if plan.due:
            log.info(
                "run_due",
                message="Time threshold met or exceeded, running spiders immediately",
                spiders=list(plan.due),
            )
            return
        next_due = plan.next_due_at
        assert next_due is not None  # nothing due means some spider is due later
        local = next_due.astimezone(self.settings.timezone).isoformat(timespec="seconds")
        wait_hours = (next_due - plan.now).total_seconds() / 3600
        retrying = [p.spider for p in plan.spiders if p.reason == "retry"]
        phrase = (
            "Failed spider(s) waiting for their retry backoff, skipping immediate execution"
            if any(p.reason == "retry" and p.due_at == next_due for p in plan.spiders)
            else "Recent run detected, skipping immediate execution"
        )
        log.info(
            "run_not_due",
            message=f"{phrase}; next run due at {local} (in {wait_hours:.2f} hours)",
            next_due_at=local,
            wait_hours=round(wait_hours, 4),
            retrying=retrying,
        )

    def _say_once(self, event: str, message: str) -> None:
        if event not in self._said:
            self._said.add(event)
            log.info(event, message=message)

    def _beat(self) -> None:
        heartbeat.beat(self.settings.heartbeat_file)
        self._last_beat = self.clock.monotonic()

    def _beat_while_running(self) -> None:
        if self.clock.monotonic() - self._last_beat >= HEARTBEAT_EVERY_SECONDS:
            self._beat()


class _Recorder:
    """Writes each spider's row as it starts and finishes, and its canonical log line.

    A finish that cannot be written (the connection is being replaced) is kept and written
    once the run is finished on the new connection.
    """

    def __init__(self, scheduler: Scheduler, run_id: int) -> None:
        self.scheduler = scheduler
        self.run_id = run_id
        self.unwritten: list[tuple[int, datetime, CrawlOutcome]] = []

    def _store(self) -> Store | None:
        s = self.scheduler
        return s.store if s.store is not None and s.holds_lock and not s.abort.is_set() else None

    def started(self, spider: str) -> int | None:
        store = self._store()
        if store is None:
            return None
        try:
            return store.start_spider(self.run_id, spider, self.scheduler.clock.now())
        except psycopg2.Error as exc:
            log.error("record_failed", message="Could not record a spider's start; not starting it",
                      spider=spider, error=db.first_line(exc))  # fmt: skip
            return None

    def spawned(self, spider_run_id: int, pid: int) -> None:
        store = self._store()
        if store is None:
            return
        try:
            store.set_spider_pid(spider_run_id, pid)
        except psycopg2.Error:
            pass  # the pid is a convenience; the probe deals with the connection

    def finished(self, spider_run_id: int, outcome: CrawlOutcome) -> None:
        log_spider_outcome(self.run_id, outcome)
        finished_at = self.scheduler.clock.now()
        store = self._store()
        if store is not None:
            try:
                store.finish_spider(spider_run_id, finished_at, outcome)
                return
            except psycopg2.Error as exc:
                log.warning("record_deferred", message="Could not record a spider's result yet; will retry",
                            spider=outcome.spider, error=db.first_line(exc))  # fmt: skip
        self.unwritten.append((spider_run_id, finished_at, outcome))

    def flush(self, store: Store) -> None:
        while self.unwritten:
            spider_run_id, finished_at, outcome = self.unwritten[0]
            store.finish_spider(spider_run_id, finished_at, outcome)
            self.unwritten.pop(0)


def log_spider_outcome(run_id: int, outcome: CrawlOutcome) -> None:
    """The canonical line: one per spider run."""
    fields = dict(
        spider=outcome.spider,
        run_id=run_id,
        status=outcome.status,
        failure=outcome.failure,
        items=outcome.items_scraped,
        errors=outcome.error_count,
        duration_s=outcome.duration_s,
        exit_code=outcome.exit_code,
        finish_reason=outcome.finish_reason,
        message=outcome.message,
        pid=outcome.pid,
    )
    if outcome.ok:
        log.info("spider_run_finished", **fields)
    else:
        log.error("spider_run_finished", **fields)
