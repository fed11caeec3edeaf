"""The loop: read the clock once, ask each part one question, run what is due, wait at most a tick.

Each concept is an object of its own, passed in: the catalog (which jobs run), the lease (which
daemon runs them, and this daemon's role), the take-over (stale runs and journals), the history
copy and the decision, jitter, requests (run-now, pause, cancel), the run path, observation,
housekeeping and the heartbeat. `assemble`
builds them for a real daemon; a unit test passes fakes and drives `step(now)` without sleeping.

The wait between steps is on the wake event and never longer than one tick, so a suspend or a
wall-clock jump is noticed within a tick. When PostgreSQL becomes unreachable, the daemon that was
running the spiders keeps its promise from what it last read (the design's fail-safe): due spiders
run anyway and their records go to the local journal, written to the database once it is back.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg2
import structlog

from daemon import db
from daemon.batch import Batches, unreachable
from daemon.catalog import Catalog
from daemon.clock import Clock
from daemon.config import Settings
from daemon.history import HistoryCopy
from daemon.jitter import Jitter
from daemon.lease import Lease
from daemon.logs import Once
from daemon.observation import Heartbeat, Observer
from daemon.takeover import TakeOver

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
                    self.clock.wait(self.wake, min(wait, self.settings.tick_seconds))
                    self.wake.clear()
        finally:
            if self.http is not None:
                self.http.stop()
            self.lease.release()
            self.notifier.flush(NOTIFY_FLUSH_SECONDS)
        log.info("scheduler_stopped", message="Scheduler stopped")

    def step(self, now: datetime) -> float:
        """One unit of work at `now`; returns how many seconds may pass before the next one."""
        try:
            wait = self._step(now)
        except psycopg2.Error as exc:
            return self._database_failed(exc, now)
        self.db_failures = 0
        self.observer.database_reachable(True)
        return wait

    def _step(self, now: datetime) -> float:
        tick = self.settings.tick_seconds
        if not self.settings.enabled:
            self.notices.say("scheduling_disabled", "Scheduling is disabled (SCHEDULER_ENABLED=false); running nothing")
            return tick
        store = self.lease.store()
        if not self.lease.take(store):
            self.takeover.standing_by(store)
            return tick
        if self.lease.must_recover():
            if not self.takeover.recover(store, now):
                return min(tick, 1.0)
            self.batches.find_left_running(store, now)  # remote crawls: re-attached by the next run
            self.lease.recovered()
            self.history.invalidate()
        settling = self.lease.settle_left()
        if settling > 0:
            return settling
        if self.catalog.refresh(hup=self._hup()) or self.catalog.dirty:
            self.catalog.publish(store, now, self.lease.me)
        requested = self.requests.take(store, self.catalog.resolve, now)
        jobs, cadences = self.catalog.names(), self.catalog.cadences(self.requests.pauses)
        plan, histories = self.history.plan(store, now, jobs, cadences, fresh=bool(requested))
        self.observer.planned(plan, histories, self.catalog.spider_of)
        paused = {p.spider for p in plan.spiders if p.paused}
        asked = [j for j in jobs if j in requested and j not in plan.due and j not in paused]
        due, held_until = self.jitter.hold_back(plan, [*plan.most_overdue_first, *asked], requested)
        reattaching = self.batches.reattaching()  # still running on their nodes: never sent twice
        due = [name for name in due if name not in reattaching]
        if due or reattaching:
            # False: not one crawl could be recorded as started (a trigger or a constraint refuses the
            # row). The jobs stay due, but trying again at once would spin and pile up runs.
            return 0 if self.batches.online(store, self.catalog.jobs_named(due), now) else tick
        # Housekeeping only when no spider is due: a catch-up never waits behind a cleanup.
        self.housekeeping.run_pending()
        until = held_until or plan.next_due_at
        return (until - now).total_seconds() if until else tick

    def _database_failed(self, exc: psycopg2.Error, now: datetime) -> float:
        self.db_failures += 1
        self.observer.database_reachable(False)
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


def assemble(
    settings: Settings,
    jobs: Catalog | Sequence[str],
    *,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
    force: threading.Event | None = None,
    wake: threading.Event | None = None,
    reload: threading.Event | None = None,
    conn: psycopg2.extensions.connection | None = None,
    environ: dict[str, str] | None = None,
) -> Scheduler:
    """The loop with its real parts. `jobs`: the catalog, or spiders to run one job each."""
    from daemon.clock import SystemClock
    from daemon.decision import Cadence
    from daemon.jobfile import JobDefaults, default_jobs
    from daemon.housekeeping import Housekeeping
    from daemon.journal import Journal
    from daemon.metrics import Metrics
    from daemon.notify import Notifier
    from daemon.requests import RunNowListener
    from daemon.engine import Engine
    from daemon.runner import CrawlRunner
    from daemon.store import Store

    clock = clock or SystemClock()
    stop, force, wake = stop or threading.Event(), force or threading.Event(), wake or threading.Event()
    if isinstance(jobs, Catalog):
        catalog = jobs
    else:
        defaults = JobDefaults.from_settings(settings)
        catalog = Catalog(None, defaults, lambda: list(jobs), jobs=default_jobs(jobs, defaults), spiders=list(jobs))
    metrics = Metrics.for_endpoint(bool(settings.http_port))
    notifier = Notifier(settings.alert_webhook_url, settings.healthcheck_ping_url, stop, channels=settings.notify_config,
                        tags_of=lambda name: job.notify if (job := catalog.job(name)) else (),
                        connect=lambda: db.connect(settings, application_name="persistent-scheduler-alerts"),
                        metrics=metrics, alert_after_of=lambda name: job.alert_after if (job := catalog.job(name)) else 1,
                        public_url=settings.public_url, state_dir=settings.state_dir)  # fmt: skip
    observer = Observer(metrics, notifier, clock, every_s=settings.interval.total_seconds(),
                        interval_hours=settings.interval_hours, timezone=settings.timezone)  # fmt: skip
    requests = RunNowListener(settings, stop, wake)
    catalog.alert_with(lambda problems: notifier.alert("jobs_file_invalid", f"The jobs file is not valid; the last "
                                                       f"good jobs keep running: {problems}", level="error"))
    jitter = Jitter(lambda name: job.jitter if (job := catalog.job(name)) else settings.jitter)

    def new_term() -> None:
        requests.new_term()
        observer.new_term()
        jitter.new_term()

    def connect(timeout: float | None) -> Store:
        return Store(db.connect(settings) if timeout is None else db.connect(settings, connect_timeout=timeout))

    lease = Lease(connect, clock, store=Store(conn) if conn is not None else None, on_taken=new_term,
                  where={"host": settings.db_host, "port": settings.db_port})  # fmt: skip
    heartbeat = Heartbeat(settings.heartbeat_file, clock.monotonic)

    def during_run() -> None:
        heartbeat.beat_if_due()
        lease.keep()
        for name in requests.take_cancels(lease.runner_store(), clock.now()):
            if not runner.cancel(name):
                log.info("cancel_ignored", job=name, reason="not running")

    runner: Engine
    if settings.engine == "scrapyd":
        from daemon.dispatch import ScrapydEngine  # its client and the node's rules only when asked for

        runner = ScrapydEngine(engine_settings(settings), clock, stop, on_poll=during_run, abort=lease.giving_way)
    else:
        runner = CrawlRunner(settings, clock, stop, force, on_poll=during_run, environ=environ,
                             abort=lease.giving_way)  # fmt: skip
    journal = Journal(settings.state_dir)
    history = HistoryCopy(clock, Cadence(settings.interval, settings.retry_delay))
    housekeeping = Housekeeping(settings, clock, lease.runner_store, metrics, notifier,
                        watch=lambda: catalog.alert_limits(requests.pauses, settings.alert_after))  # fmt: skip
    http = None
    if settings.http_port:
        from daemon.http import HttpEndpoint  # http.server and prometheus_client only when asked for

        http = HttpEndpoint(settings, metrics, lambda: observer.job_view(housekeeping.view()),
                            user=settings.http_user, password=settings.http_password or None,
                            allowed_hosts=settings.http_allowed_hosts, clock=clock)  # fmt: skip
    return Scheduler(
        settings, catalog, clock=clock, stop=stop, wake=wake, reload=reload or threading.Event(), lease=lease,
        takeover=TakeOver(journal, keep_remote=runner.reattaches), history=history, jitter=jitter, requests=requests,
        batches=Batches(runner, lease, journal, history, observer, catalog, clock, stop), observer=observer,
        housekeeping=housekeeping, heartbeat=heartbeat, notifier=notifier, http=http,
    )  # fmt: skip


def engine_settings(settings: Settings) -> Any:
    """What the Scrapyd engine takes from the settings: the nodes, their auth and project, the limit
    after which a silent crawl is lost, the grace between cancel and kill. At most as many crawls at
    once as the nodes have slots (SCHEDULER_CONCURRENCY is the local runner's)."""
    from daemon.remote import EngineSettings, Limits

    return EngineSettings(
        nodes=settings.scrapyd_nodes, project=settings.scrapyd_project, username=settings.scrapyd_username,
        password=settings.scrapyd_password if settings.scrapyd_username else None,
        stop_grace_s=settings.stop_grace_seconds, limits=Limits(lost_after_s=settings.scrapyd_lost_after_seconds),
    )  # fmt: skip
