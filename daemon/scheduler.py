"""The loop: read the clock once, decide from Postgres, run what is due, wait at most one tick.

Only the daemon holding the runner lock (a session-level advisory lock) runs spiders; another one
stands by and takes over when the lock frees. The wait between steps is on the stop event and
never longer than one tick, so a suspend or a wall-clock jump is noticed within a tick.

When PostgreSQL becomes unreachable, the daemon that was running the spiders keeps its promise
from what it last read (the design's fail-safe): due spiders run anyway and their records go to
the local journal, which is written to the database once it is back.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg2
import structlog

from daemon import db, heartbeat, identity
from daemon.clock import Clock, SystemClock
from daemon.config import Settings
from daemon.crawl import CrawlOutcome
from daemon.decision import SpiderHistory, decide
from daemon.jobs import Jobs
from daemon.journal import Journal, Pending
from daemon.metrics import Metrics
from daemon.narration import log_decision
from daemon.notify import Notifier
from daemon.recording import DatabaseRecorder, Finished, JournalRecorder
from daemon.requests import RunNowListener
from daemon.runner import CrawlRunner
from daemon.store import Store

log = structlog.get_logger("daemon.scheduler")

HEARTBEAT_EVERY_SECONDS = 1.0  # while crawls run, the heartbeat is refreshed this often

# Never two runners, also across a lost lock connection (Postgres restarted, backend terminated):
# - while crawls run, the runner proves its lock connection alive and refreshes the run's lease
#   every PROBE_SECONDS; when the connection is gone it reconnects and re-takes the lock, and if
#   another daemon holds the lock (or failed the run) it kills its crawls at once;
# - a daemon that takes the lock while its previous holder (runner_holder) may still be alive
#   waits SETTLE_SECONDS before running anything (time for that runner to notice and give way),
#   and waits for a 'running' run's lease to be LEASE_SECONDS old before failing it, unless the
#   run's owner is provably dead.
PROBE_SECONDS = 1.0
OFFLINE_PROBE_SECONDS = 0.1
SETTLE_SECONDS = 5.0
LEASE_SECONDS = 10.0
# An idle lock holder decides from the history it read last (it is the only writer of runs) and
# re-reads it at least this often, so an edit made with psql is seen within this time.
HISTORY_REFRESH_SECONDS = 300.0
# At shutdown, queued notifications (the interrupted run's /fail ping) get this long to go out;
# well inside SCHEDULER_STOP_GRACE_SECONDS' default and compose's stop_grace_period.
NOTIFY_FLUSH_SECONDS = 5.0
GAVE_WAY_MESSAGE = "another daemon took the runner lock; this daemon killed its crawls (never two runners)"


def _may_still_run(previous_holder: str | None) -> bool:
    """The lock's previous holder, as recorded, may be alive and running spiders without the lock."""
    return (
        previous_holder is not None
        and previous_holder != identity.this_process()
        and not identity.certainly_dead(previous_holder)
    )


def _unreachable(exc: psycopg2.Error) -> bool:
    """The server cannot be reached at all (as opposed to refusing a statement with a SQLSTATE)."""
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and not exc.pgcode


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        spiders: Sequence[str],
        *,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        force: threading.Event | None = None,
        wake: threading.Event | None = None,
        conn: psycopg2.extensions.connection | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.spiders = tuple(spiders)
        self.clock = clock or SystemClock()
        self.stop = stop or threading.Event()
        self.force = force or threading.Event()
        self.abort = threading.Event()  # set when this daemon must give way during a run
        self.wake = wake or threading.Event()  # cuts a wait short: a signal, or a run-now request
        self.listener = RunNowListener(settings, self.stop, self.wake)
        self.metrics = Metrics.for_endpoint(bool(settings.http_port))
        self.notifier = Notifier(settings.alert_webhook_url, settings.healthcheck_ping_url, self.stop)
        self.jobs = Jobs(settings, self.clock, self._store_if_runner, self.metrics, self.notifier,
                         spiders=self.spiders)  # fmt: skip
        self.http = None
        if settings.http_port:
            from daemon.http import HttpEndpoint  # http.server and prometheus_client only when asked for

            self.http = HttpEndpoint(settings, self.metrics, self.job_view)
        self._spider_job: dict[str, object] = {"id": "spiders", "every_s": settings.interval.total_seconds(),
                                                "last_run": None, "last_status": None, "next_due": None,
                                                "running": False}  # fmt: skip
        self.store: Store | None = Store(conn) if conn is not None else None
        self.holds_lock = False
        self.recovered = False  # runs left 'running' by others dealt with since taking the lock
        self.journal = Journal(settings.state_dir)
        self.runner = CrawlRunner(
            settings, self.clock, self.stop, self.force, on_poll=self._during_run, environ=environ, abort=self.abort
        )
        self._histories: list[SpiderHistory] | None = None  # the last history read (offline runs, idle ticks)
        self._history_read_at = float("-inf")  # monotonic; -inf: read it again before deciding
        self._may_run_offline = False  # only the daemon that was running the spiders may
        self._settle_until = float("-inf")
        self._run_id: int | None = None  # the database run in progress
        self._offline_run = False
        self._last_probe = float("-inf")
        self._decision_key: object = None
        self._said: set[str] = set()  # one-off notices already logged (standby, disabled)
        self._db_failures = 0
        self._last_beat = float("-inf")
        self._run_started_m = 0.0
        self._decided_since_lock = False
        self._jitter: dict[tuple[str, datetime], timedelta] = {}

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
        self.listener.start()
        if self.http is not None:
            self.http.start()
        try:
            while not self.stop.is_set():
                now = self.clock.now()
                wait = self.step(now)
                if self._db_failures == 0:
                    # A loop that cannot reach its database is not healthy: the heartbeat stops
                    # until it can again, so the healthcheck reports the outage.
                    self._beat()
                if wait > 0 and not self._request_to_take():
                    self.clock.wait(self.wake, min(wait, self.settings.tick_seconds))
                    self.wake.clear()
        finally:
            if self.http is not None:
                self.http.stop()
            self.close()
            self.notifier.flush(NOTIFY_FLUSH_SECONDS)
        log.info("scheduler_stopped", message="Scheduler stopped")

    def step(self, now: datetime) -> float:
        """One unit of work at `now`; returns how many seconds may pass before the next one."""
        try:
            wait = self._step(now)
        except psycopg2.Error as exc:
            offline = self._may_run_offline and _unreachable(exc)
            self._database_failed(exc)
            if offline and self._run_offline_if_due(now):
                return 0
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
        settling = self._settle_until - self.clock.monotonic()
        if settling > 0:
            return settling
        requested = self._take_requests(store, now)
        plan = self._decide_from_copy(store, now) if not requested else None
        if plan is None or plan.due:
            # Nothing runs on a copy: what may run is decided from a fresh read.
            self._histories = store.histories(self.spiders)
            self._history_read_at = self.clock.monotonic()
            plan = decide(self._histories, now, self.settings.interval, self.settings.retry_delay)
        histories = self._histories
        self._log_decision(plan, histories)
        self._observe_plan(plan, histories)
        due = [s for s in self.spiders if s in plan.due or s in requested]
        first_decision = not self._decided_since_lock
        self._decided_since_lock = True
        due, held_until = self._jittered(plan, due, requested, now, first_decision)
        if due:
            if self._run(store, due, now):
                return 0
            # Not one crawl could be recorded as started (e.g. a trigger or a constraint refuses the
            # row): the spiders stay due, but trying again at once would spin and pile up runs.
            return self.settings.tick_seconds
        # Housekeeping only when no spider is due: a catch-up never waits behind a cleanup.
        self.jobs.run_pending()
        if held_until is not None:
            return (held_until - now).total_seconds()
        next_due = plan.next_due_at
        return (next_due - now).total_seconds() if next_due else self.settings.tick_seconds

    def _decide_from_copy(self, store: Store, now: datetime):  # type: ignore[no-untyped-def]
        """The plan from the history read last, or None when that copy may be out of date.

        The lock holder is the only writer of runs, so while it idles the copy stays true, and
        deciding from it costs no round trip (issue "Performance": an idle daemon makes at most a
        couple a minute). It is re-read after every run, on (re)taking the lock, every
        HISTORY_REFRESH_SECONDS (someone may edit the table with psql), and when something
        arrived on the connection: a terminated backend or a server going away announces itself
        there, so a lost lock is still noticed within a tick, then by the read that fails.
        """
        if (
            self._histories is None
            or self.clock.monotonic() - self._history_read_at >= HISTORY_REFRESH_SECONDS
            or not store.idle_and_quiet()
        ):
            return None
        return decide(self._histories, now, self.settings.interval, self.settings.retry_delay)

    # ----------------------------------------------------------------- database and lock
    def _connected(self) -> Store:
        if self.store is None:
            self.store = Store(db.connect(self.settings))
            log.info("database_connected", host=self.settings.db_host, port=self.settings.db_port)
        return self.store

    def _take_lock(self, store: Store) -> bool:
        held, previous = store.take_runner_lock(identity.this_process())
        if not held:
            self._may_run_offline = False
            self._say_once(
                "standby",
                "Another scheduler holds the runner lock; standing by to take over when it goes away",
            )
            # Runs this daemon made while PostgreSQL was unreachable are written now, not when
            # (if ever) it holds the lock again: a standby may stay one until it is stopped.
            self._replay_journal(store, self.journal.own_pending())
            return False
        if _may_still_run(previous):
            # The last holder on record did not stop cleanly and is not provably dead: it may still
            # be running spiders, having lost its lock connection (a terminated backend, PostgreSQL
            # restarted) or having run them offline while PostgreSQL was away. Give it time to
            # notice that it lost the lock and kill its crawls before anything runs here. A holder
            # that stopped cleanly, or died on this machine (its crawls die with it), costs no wait.
            self._settle_until = self.clock.monotonic() + SETTLE_SECONDS
            log.info("runner_lock_settling", settle_s=SETTLE_SECONDS, previous_holder=previous,
                     message=f"Waiting {SETTLE_SECONDS:g} s for the previous runner to stop its crawls")  # fmt: skip
        self.holds_lock = True
        self.recovered = False
        self._decided_since_lock = False
        self.listener.pending.set()  # requests made while another daemon (or none) held the lock
        self._said.discard("standby")
        self._decision_key = None
        log.info("runner_lock_acquired", message="This scheduler now runs the spiders")
        return True

    def _jittered(
        self, plan, due: list[str], requested: set[str], now: datetime, first_decision: bool
    ) -> tuple[list[str], datetime | None]:  # type: ignore[no-untyped-def]
        """SCHEDULER_JITTER_MINUTES: hold each regular run back by a random delay (fixed per due
        time). Never a catch-up (what is due at the first decision after taking the lock), a first
        run, a retry, or a run-now request."""
        if not self.settings.jitter or first_decision:
            return due, None
        held: list[datetime] = []
        for p in plan.spiders:
            if p.spider not in due or p.reason != "interval" or p.spider in requested or p.due_at is None:
                continue
            key = (p.spider, p.due_at)
            if key not in self._jitter:
                self._jitter[key] = timedelta(seconds=random.uniform(0, self.settings.jitter.total_seconds()))
                log.info("run_jittered", spider=p.spider, delay_s=round(self._jitter[key].total_seconds(), 1))
            if now < p.due_at + self._jitter[key]:
                held.append(p.due_at + self._jitter[key])
                due = [s for s in due if s != p.spider]
        return due, min(held, default=None)

    def _request_to_take(self) -> bool:
        """A run-now request is waiting and this daemon would take it on its next step. Only then
        does the loop skip its wait: a standby, a disabled or a settling daemon leaves requests
        for later, and skipping the wait there would spin the loop (it did: a standby called
        pg_try_advisory_lock in a tight loop)."""
        return (
            self.listener.pending.is_set()
            and self.settings.enabled
            and self.holds_lock
            and self.recovered
            and self._settle_until <= self.clock.monotonic()
        )

    def _take_requests(self, store: Store, now: datetime) -> set[str]:
        """Spiders asked for with `run-now` (taken only by the lock holder, once each)."""
        if not self.listener.pending.is_set():
            return set()
        self.listener.pending.clear()
        requested: set[str] = set()
        for request_id, spiders in store.take_requests(now):
            wanted = set(self.spiders) if spiders is None else set(spiders) & set(self.spiders)
            requested |= wanted
            log.info("run_requested", message="Run requested with run-now", request_id=request_id,
                     spiders=sorted(wanted))  # fmt: skip
        return requested

    def _recover(self, store: Store, now: datetime) -> bool:
        """Deal with runs left 'running' and with the journal; False while a run may still be alive."""
        # A run of our own left 'running' is over (no run is in progress while this runs): its end,
        # if the database refused it, is in our journal.
        me = identity.this_process()
        alive = [
            run_id
            for run_id, owner, age in store.running_runs()
            if age < LEASE_SECONDS and owner != me and not identity.certainly_dead(owner)
        ]
        if alive:
            self._say_once(
                "waiting_for_previous_runner",
                f"A run is still 'running' with a fresh lease; waiting up to {LEASE_SECONDS:g} s "
                "for its daemon to stop its crawls before taking over",
            )
            return False
        self._said.discard("waiting_for_previous_runner")
        # The journal first: the ends of runs it holds are written before what is still 'running'
        # is failed as stale (the other way round, a journaled end would find its run failed).
        self._replay_journal(store, self.journal.pending())
        runs, spiders = store.mark_stale(now)
        if runs or spiders:
            log.warning(
                "stale_runs_failed",
                message="Runs left 'running' by a daemon that stopped were marked failed; their spiders are due again",
                run_ids=runs,
                spiders=sorted({s for _, s in spiders}),
            )
        self.recovered = True
        # Also after (re)taking the lock or reconnecting: the history is read anew before deciding.
        self._history_read_at = float("-inf")
        self._may_run_offline = True
        return True

    def _replay_journal(self, store: Store, pending: Pending | None) -> None:
        if pending is None:
            return
        runs, finishes = pending.runs(), pending.finishes()
        written = store.replay(runs, finishes)
        pending.done()
        log.info(
            "journal_replayed",
            message="Runs recorded while PostgreSQL was unreachable were written to it",
            runs=len(runs),
            finished_runs=len(finishes),
            records_written=written,
        )

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
        self.recovered = False  # so _recover runs (and the history is read anew) before deciding

    def close(self) -> None:
        if self.store is not None and self.holds_lock:
            try:
                self.store.forget_runner_holder(identity.this_process())
                self.store.release_runner_lock()
                log.info("runner_lock_released")
            except psycopg2.Error:
                pass  # closing the session releases it anyway
        self._drop_connection()

    # ----------------------------------------------------------------- a run
    def _run(self, store: Store, due: Sequence[str], now: datetime) -> bool:
        """One run of `due`; False when not one of its crawls could be started."""
        log.info(
            "run_started",
            message=f"Starting spider run for {len(due)} spider(s)",
            spiders=list(due),
            spider_count=len(due),
        )
        run_id = store.start_run(now, len(due), identity.this_process())
        self._running(True, now)
        recorder = DatabaseRecorder(self._store_if_runner, self.clock, run_id)
        self._run_id, self._last_probe = run_id, self.clock.monotonic()
        try:
            outcomes = self.runner.run(due, recorder.started, recorder.finished, recorder.spawned)
        finally:
            self._run_id = None
            self._history_read_at = float("-inf")
            self._running(False, now)
        self._observe_results(recorder.results)
        if self._gave_way():
            return True
        ok, error = self._verdict(due, outcomes)
        finished_at = self.clock.now()
        try:
            store = self._still_runner(run_id)
            if store is None:
                self._gave_way()  # another daemon has the lock: the run is its to fail
                return True
            recorder.flush(store)
            store.finish_run(run_id, finished_at, ok=ok, error=error)
        except psycopg2.Error as exc:
            # Unreachable, or refusing writes (disk full, read-only): either way the crawls' results
            # must not be lost. The run's end goes to the journal, which is written once the
            # database takes writes again (before the run could be failed as stale).
            self.journal.finish_online_run(run_id, recorder.unwritten, finished_at, ok, error)
            log.warning("run_journaled", message="PostgreSQL did not take the run's end; it went to the journal",
                        run_id=run_id, sqlstate=getattr(exc, "pgcode", None), error=db.first_line(exc))  # fmt: skip
            self._log_run_end(run_id, due, outcomes, ok, error)
            if not _unreachable(exc):
                raise  # a refusal (disk full, read-only): step() logs its SQLSTATE and backs off
            self._drop_connection()
            return bool(outcomes)
        self._log_run_end(run_id, due, outcomes, ok, error)
        return bool(outcomes)

    def _run_offline_if_due(self, now: datetime) -> bool:
        """The fail-safe: run what is due by the last history read, recording into the journal."""
        if self._histories is None or self.stop.is_set():
            return False
        plan = decide(self._histories, now, self.settings.interval, self.settings.retry_delay)
        if not plan.due:
            return False
        due = plan.due
        log.warning(
            "run_started",
            message=f"Starting spider run for {len(due)} spider(s) while PostgreSQL is unreachable "
            "(recorded in the local journal)",
            spiders=list(due),
            spider_count=len(due),
            offline=True,
        )
        journal_run = self.journal.start_run(now, list(due), identity.this_process())
        recorder = JournalRecorder(self.journal, self.clock, journal_run)
        self._offline_run, self._last_probe = True, self.clock.monotonic()
        self._running(True, now)
        try:
            outcomes = self.runner.run(due, recorder.started, recorder.finished, recorder.spawned)
        finally:
            self._offline_run = False
            self._running(False, now)
        self._observe_results(recorder.results)
        if self._gave_way():
            # The run is over, cut short: its end is journaled as a failure, so the replay does not
            # read it as a run whose daemon died.
            self.journal.end_run(journal_run, self.clock.now(), False, GAVE_WAY_MESSAGE)
            return True
        ok, error = self._verdict(due, outcomes)
        self.journal.end_run(journal_run, self.clock.now(), ok, error)
        self._remember(recorder.results)
        self._log_run_end(None, due, outcomes, ok, error)
        return True

    def _remember(self, results: list[Finished]) -> None:
        """Fold an offline run's results into the history it was decided from."""
        by_spider = {h.spider: h for h in self._histories or []}
        for r in results:
            h = by_spider[r.outcome.spider]
            if r.outcome.ok:
                by_spider[h.spider] = SpiderHistory(h.spider, r.started_at, 0, None)
            elif r.outcome.failure in ("error", "timeout"):
                by_spider[h.spider] = SpiderHistory(h.spider, h.last_success_at, h.consecutive_failures + 1,
                                                    r.finished_at)  # fmt: skip
        self._histories = [by_spider[h.spider] for h in self._histories or []]

    def _verdict(self, due: Sequence[str], outcomes: list[CrawlOutcome]) -> tuple[bool, str | None]:
        failed = [o for o in outcomes if not o.ok]
        not_started = len(due) - len(outcomes)
        if not failed and not not_started:
            return True, None
        parts = [f"{o.spider}: {o.message}" for o in failed]
        if not_started:
            parts.append(f"{not_started} spider(s) not started: the daemon was stopping")
        return False, "; ".join(parts)

    def _log_run_end(self, run_id: int | None, due: Sequence[str], outcomes: list[CrawlOutcome], ok: bool,
                     error: str | None) -> None:  # fmt: skip
        status = "completed" if ok else "failed"
        self.metrics.runs.labels(status).inc()
        self.notifier.ping("" if ok else "/fail")
        self._spider_job["last_status"] = status
        if ok:
            log.info("run_completed", message="Spider run completed successfully", run_id=run_id, spiders=list(due))
        else:
            failed = [o.spider for o in outcomes if not o.ok]
            log.error(
                "run_failed",
                message=f"Spider run failed: {len(due) - len(outcomes) + len(failed)} of {len(due)} spider(s) "
                "did not succeed",
                run_id=run_id,
                failed=failed,
                error=error,
            )
        self._decision_key = None

    def _gave_way(self) -> bool:
        if not self.abort.is_set():
            return False
        # This daemon gave way: the run and its rows are the new runner's to fail.
        self.abort.clear()
        # Its /start ping went out and the run did not complete here: without an end ping the
        # outside service would see a run that never ends (the new runner pings its own runs).
        self.notifier.ping("/fail")
        self._may_run_offline = False
        self._drop_connection()
        self._decision_key = None
        return True

    def _store_if_runner(self) -> Store | None:
        if self.store is not None and self.holds_lock and not self.abort.is_set():
            return self.store
        return None

    def _still_runner(self, run_id: int) -> Store | None:
        """The store to finish `run_id` on: the current one, or a new one with the lock re-taken."""
        if self._store_if_runner() is None:
            self._retake(run_id)
        return self._store_if_runner()

    # ----------------------------------------------------------------- keeping the lock during a run
    def _during_run(self) -> None:
        """Called by the runner many times a second while crawls run."""
        self._beat_while_running()
        now = self.clock.monotonic()
        # Offline, PostgreSQL is probed more often: when it comes back, this runner must re-take the
        # lock before a freshly started daemon (whose start-up retries are 0.25 s apart) can.
        every = OFFLINE_PROBE_SECONDS if self._offline_run else PROBE_SECONDS
        if self.abort.is_set() or now - self._last_probe < every:
            return
        self._last_probe = now
        if self._offline_run:
            self._probe_offline()
            return
        if self._run_id is None:
            return
        try:
            if self.store is None or not self.holds_lock:
                self._retake(self._run_id)
            elif not self.store.touch_run(self._run_id):
                self._give_way("the run was failed by another daemon")
        except psycopg2.Error as exc:
            self._say_once(
                "runner_lock_connection_lost",
                f"Lost the connection that holds the runner lock during a run: {db.first_line(exc)}; "
                "the crawls go on while it reconnects",
            )
            self._drop_connection()

    def _retake(self, run_id: int) -> None:
        """Reconnect and re-take the lock mid-run; give way if another daemon has it or the run.
        Raises when PostgreSQL cannot be reached: then nobody else can take the lock either."""
        self._drop_connection()
        self.store = Store(db.connect(self.settings, connect_timeout=1))
        if not self.store.take_runner_lock(identity.this_process())[0]:
            self._give_way("another daemon holds the runner lock")
            return
        self.holds_lock = True
        if not self.store.touch_run(run_id):
            self._give_way("the run was failed by another daemon")
            return
        self.recovered = True  # our own run is the one 'running': nothing else to recover
        self._said.discard("runner_lock_connection_lost")
        log.info("runner_lock_retaken", message="Re-took the runner lock; the run goes on", run_id=run_id)

    def _probe_offline(self) -> None:
        """During an offline run: once PostgreSQL answers, take the lock or give way."""
        if self.store is not None and self.holds_lock:
            return
        try:
            self._drop_connection()
            self.store = Store(db.connect(self.settings, connect_timeout=1))
            if self.store.take_runner_lock(identity.this_process())[0]:
                self.holds_lock = True
                log.info("runner_lock_retaken", message="PostgreSQL is back; the offline run goes on under the lock")
            else:
                self._give_way("another daemon took the runner lock while PostgreSQL was unreachable")
        except psycopg2.Error:
            self._drop_connection()

    def _give_way(self, reason: str) -> None:
        log.error(
            "runner_giving_way",
            message=f"Killing this daemon's crawls at once: {reason}; never two runners at once",
            run_id=self._run_id,
        )
        self.abort.set()

    # ----------------------------------------------------------------- metrics and the jobs view
    def _running(self, running: bool, started: datetime) -> None:
        if running:
            self.notifier.ping("/start")
        self.metrics.is_running.set(1 if running else 0)
        self._spider_job["running"] = running
        if running:
            self._spider_job["last_run"] = started.isoformat()
            self._run_started_m = self.clock.monotonic()
        else:
            self.metrics.run_duration.observe(self.clock.monotonic() - self._run_started_m)

    def _observe_results(self, results: list[Finished]) -> None:
        for r in results:
            self.metrics.spider_runs.labels(r.outcome.spider, r.outcome.status).inc()
            self.metrics.items.labels(r.outcome.spider).inc(r.outcome.items_scraped or 0)
            if r.outcome.ok:
                self.metrics.last_success.labels(r.outcome.spider).set(r.started_at.timestamp())

    def _observe_plan(self, plan, histories: Sequence[SpiderHistory]) -> None:  # type: ignore[no-untyped-def]
        for h in histories:
            if h.last_success_at is not None:
                self.metrics.last_success.labels(h.spider).set(h.last_success_at.timestamp())
        next_due = plan.next_due_at
        wait = 0.0 if plan.due or next_due is None else (next_due - plan.now).total_seconds()
        self.metrics.until_next_due.set(wait)
        self._spider_job["next_due"] = plan.now.isoformat() if plan.due or next_due is None else next_due.isoformat()

    def job_view(self) -> dict[str, object]:
        """What GET /jobs shows: the spider job and the housekeeping jobs."""
        return {"is_running": bool(self._spider_job["running"]), "jobs": [dict(self._spider_job), *self.jobs.view()]}

    # ----------------------------------------------------------------- telling
    def _log_decision(self, plan, histories: Sequence[SpiderHistory]) -> None:  # type: ignore[no-untyped-def]
        key = (plan.due, plan.next_due_at, plan.skewed)
        if key == self._decision_key:
            return
        self._decision_key = key
        log_decision(plan, histories, self.settings.interval_hours, self.settings.timezone)

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
