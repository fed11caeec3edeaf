"""The real daemon put together: each part built from the settings and handed to the loop.

The loop (daemon/loop/scheduler.py) takes its parts as arguments and knows neither engine nor the web
endpoint; this is the one place that picks them. `python -m daemon`, the benchmark and the tests'
daemons build the loop through `assemble`. Heavy parts (the Scrapyd engine, the endpoint with
http.server and prometheus_client) are imported only when the settings ask for them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg2
import structlog

from daemon.records import db
from daemon.loop.batch import Batches
from daemon.jobs.catalog import Catalog
from daemon.system.clock import Clock
from daemon.settings.config import Settings
from daemon.loop.history import HistoryCopy
from daemon.plan.jitter import Jitter
from daemon.leadership.lease import Lease
from daemon.telemetry.observation import Heartbeat, Observer
from daemon.loop.scheduler import Scheduler
from daemon.leadership.takeover import TakeOver

log = structlog.get_logger("daemon.scheduler")


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
    starts: Any = None,
) -> Scheduler:
    """The loop with its real parts. `jobs`: the catalog, or spiders to run one job each. `starts`:
    the local engine's crawl starter made ahead (daemon.engines.local.prewarmed_starts)."""
    from daemon.system.clock import SystemClock
    from daemon.plan.decision import Cadence
    from daemon.jobs.jobfile import JobDefaults, default_jobs
    from daemon.loop.housekeeping import Housekeeping
    from daemon.records.journal import Journal
    from daemon.telemetry.metrics import Metrics
    from daemon.telemetry.notify import Notifier
    from daemon.loop.requests import RunNowListener
    from daemon.engines.engine import Engine
    from daemon.engines.local import CrawlRunner
    from daemon.records.store import Store

    clock = clock or SystemClock()
    stop, force, wake = stop or threading.Event(), force or threading.Event(), wake or threading.Event()
    if isinstance(jobs, Catalog):
        catalog = jobs
    else:
        defaults = JobDefaults.from_settings(settings)
        catalog = Catalog(None, defaults, lambda: list(jobs), jobs=default_jobs(jobs, defaults), spiders=list(jobs))
    metrics = Metrics.for_endpoint(bool(settings.http_port))

    def new_term() -> None:
        requests.new_term()
        observer.new_term()
        jitter.new_term()
        notifier.wake()  # the alerts' outbox is delivered by the lock holder: this one now

    def connect(timeout: float | None) -> Store:
        return Store(db.connect(settings) if timeout is None else db.connect(settings, connect_timeout=timeout))

    lease = Lease(connect, clock, store=Store(conn) if conn is not None else None, on_taken=new_term,
                  where={"host": settings.db_host, "port": settings.db_port})  # fmt: skip
    notifier = Notifier(settings.alert_webhook_url, settings.healthcheck_ping_url, stop, channels=settings.notify_config,
                        tags_of=lambda name: job.notify if (job := catalog.job(name)) else (),
                        connect=lambda: db.connect(settings, application_name="persistent-scheduler-alerts"),
                        metrics=metrics, alert_after_of=lambda name: job.alert_after if (job := catalog.job(name)) else 1,
                        public_url=settings.public_url, state_dir=settings.state_dir,
                        delivers=lambda: lease.holds_lock, on_tags=catalog.notify_tags,
                        tags_in_use=lambda: frozenset(tag for job in catalog.jobs for tag in job.notify))  # fmt: skip
    observer = Observer(metrics, notifier, clock, every_s=settings.interval.total_seconds(),
                        interval_hours=settings.interval_hours, timezone=settings.timezone)  # fmt: skip
    requests = RunNowListener(settings, stop, wake)
    catalog.alert_with(lambda problems: notifier.alert("jobs_file_invalid", f"The jobs file is not valid; the last "
                                                       f"good jobs keep running: {problems}", level="error"))
    jitter = Jitter(lambda name: job.jitter if (job := catalog.job(name)) else settings.jitter)
    heartbeat = Heartbeat(settings.heartbeat_file, clock.monotonic)

    def during_run() -> None:
        heartbeat.beat_if_due()
        lease.keep()
        for name in requests.take_cancels(lease.runner_store(), clock.now()):
            if not runner.cancel(name):
                log.info("cancel_ignored", job=name, reason="not running")

    runner: Engine
    if settings.engine == "scrapyd":
        from daemon.engines.scrapyd.dispatch import ScrapydEngine, engine_settings  # its client and rules only when asked for

        runner = ScrapydEngine(engine_settings(settings), clock, stop, on_poll=during_run, abort=lease.giving_way,
                               on_node=notifier.node)  # fmt: skip
    else:
        runner = CrawlRunner(settings, clock, stop, force, on_poll=during_run, environ=environ,
                             abort=lease.giving_way, wake=wake, starts=starts)  # fmt: skip
    journal = Journal(settings.state_dir)
    history = HistoryCopy(clock, Cadence(settings.interval, settings.retry_delay))
    housekeeping = Housekeeping(settings, clock, lease.runner_store, metrics, notifier,
                        watch=lambda: catalog.alert_limits(requests.pauses, settings.alert_after))  # fmt: skip
    http = None
    if settings.http_port:
        from daemon.web.http import HttpEndpoint  # http.server and prometheus_client only when asked for

        http = HttpEndpoint(settings, metrics, lambda: observer.job_view(housekeeping.view()),
                            user=settings.http_user, password=settings.http_password or None,
                            allowed_hosts=settings.http_allowed_hosts, clock=clock)  # fmt: skip
    return Scheduler(
        settings, catalog, clock=clock, stop=stop, wake=wake, reload=reload or threading.Event(), lease=lease,
        takeover=TakeOver(journal, keep_remote=runner.reattaches), history=history, jitter=jitter, requests=requests,
        batches=Batches(runner, lease, journal, history, observer, catalog, clock, stop),
        observer=observer,
        housekeeping=housekeeping, heartbeat=heartbeat, notifier=notifier, http=http,
    )  # fmt: skip
