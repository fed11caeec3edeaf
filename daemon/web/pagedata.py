"""What the page reads, on a PostgreSQL session of its own.

The session is opened by the first page request, in the HTTP thread, never on the loop's
connection: read-only (`default_transaction_read_only=on`), each statement cut off after
STATEMENT_TIMEOUT, one page in one snapshot (REPEATABLE READ), one page at a time. A slow or
broken page can never hold the loop.

The jobs are those `status` shows (the published ones, or one per spider before any daemon
published), and each plan is decided by the daemon's own code through `status.plan_jobs`, so the
page, `status`, `explain` and the scheduler cannot disagree.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions

from daemon.records import board_queries
from daemon.web import timeline
from daemon.settings.config import Settings
from daemon.plan.decision import Plan, SpiderHistory, SpiderPlan
from daemon.jobs.jobfile import Job
from daemon.telemetry.outbox import UNDELIVERED
from daemon.records.store import Store

STATEMENT_TIMEOUT = "2s"
CONNECT_TIMEOUT = 3  # seconds
LATEST_SHOWN = 100  # crawls in the table below the lanes

T = TypeVar("T")


class Unavailable(Exception):
    """PostgreSQL did not answer the page (unreachable, or a statement took too long)."""


class PageSession:
    """The page's read-only connection: opened lazily, reopened after a failure, one user at a time."""

    def __init__(self, settings: Settings, connect: Callable[[], psycopg2.extensions.connection] | None = None):
        self.settings = settings
        self._connect = connect or self._open
        self._conn: psycopg2.extensions.connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> psycopg2.extensions.connection:
        from daemon.records import db

        return db.connect(self.settings, connect_timeout=CONNECT_TIMEOUT, application_name="persistent-scheduler-page",
                          session={"default_transaction_read_only": "on", "statement_timeout": STATEMENT_TIMEOUT})  # fmt: skip

    def read(self, work: Callable[[Store], T]) -> T:
        """`work` on a Store over the page's session, in one read-only snapshot."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                    self._conn.set_session(isolation_level="REPEATABLE READ", readonly=True, autocommit=False)
                try:
                    return work(Store(self._conn))
                finally:
                    if not self._conn.closed:
                        self._conn.rollback()
            except psycopg2.errors.QueryCanceled as exc:
                raise Unavailable(f"PostgreSQL did not answer the page within {STATEMENT_TIMEOUT}") from exc
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self.close()
                raise Unavailable(f"PostgreSQL is unreachable: {type(exc).__name__}") from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass


@dataclasses.dataclass(frozen=True)
class JobLane:
    job: Job
    plan: SpiderPlan
    history: SpiderHistory
    lane: timeline.Lane


@dataclasses.dataclass(frozen=True)
class Overview:
    now: datetime
    since: datetime
    days: int
    lanes: tuple[JobLane, ...]
    latest: tuple[timeline.Crawl, ...]  # newest first
    file_error: str | None
    published: bool
    undelivered: tuple[tuple[str, int], ...] = ()  # (channel name, alerts it has not taken): the outbox's
    # job -> its calendar as status shows it (daemon/ask/calendar_status.py); only a job's own page reads it
    calendars: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CrawlDetail:
    crawl: timeline.Crawl
    run_id: int
    args: dict[str, Any] | None
    settings: dict[str, Any] | None
    stats: dict[str, Any] | None
    log_tail: str | None
    previous: int | None
    next: int | None


def overview(store: Store, settings: Settings, now: datetime, days: int, *, job: str | None = None,
             failed_only: bool = False) -> Overview | None:  # fmt: skip
    """Every job's lane over the last `days` (only `job`'s when given: None if there is no such job)."""
    from daemon.ask.status import current_jobs, plan_jobs  # the commands' own: published, or one per spider

    jobs, source, published = current_jobs(store, settings)
    if job is not None:
        jobs = [j for j in jobs if j.name == job]
        if not jobs:
            return None
    since = now - timedelta(days=days)
    plan, histories, _ = plan_jobs(store, settings, now, jobs)
    names = [j.name for j in jobs]
    with store.conn.cursor() as cur:
        cur.execute(board_queries.PAGE_CRAWLS, {"jobs": names, "since": since})
        crawls = [timeline.Crawl(*row) for row in cur.fetchall()]
        cur.execute(board_queries.PAGE_SUCCESSES_BEFORE, {"jobs": names, "since": since})
        before = dict(cur.fetchall())
        cur.execute(UNDELIVERED)
        undelivered = tuple((name, int(n)) for name, n in cur.fetchall())
    ov = assemble(jobs, plan, histories, crawls, before, now=now, days=days, tick=settings.tick_seconds,
                  tz=settings.timezone, failed_only=failed_only, file_error=source[2] if source else None,
                  published=published)  # fmt: skip
    calendars: Mapping[str, Any] = {}
    if job is not None:
        from daemon.ask.calendar_status import calendar_report

        calendars = calendar_report(store, jobs, {p.spider: p for p in plan.spiders}, now)
    return dataclasses.replace(ov, undelivered=undelivered, calendars=calendars)


def assemble(jobs: Sequence[Job], plan: Plan, histories: Sequence[SpiderHistory], crawls: Sequence[timeline.Crawl],
             before: Mapping[str, datetime], *, now: datetime, days: int, tick: float, tz: tzinfo,
             failed_only: bool = False, file_error: str | None = None, published: bool = True) -> Overview:  # fmt: skip
    """The overview from what was read: each job's lane (its crawls, its last success `before` the
    window), and the latest crawls (only failures and crawls cut short, with `failed_only`)."""
    since = now - timedelta(days=days)
    by_job: dict[str, list[timeline.Crawl]] = {job.name: [] for job in jobs}
    for crawl in crawls:
        by_job[crawl.job].append(crawl)
    plans = {p.spider: p for p in plan.spiders}
    lanes = tuple(
        JobLane(j, plans[j.name], h, timeline.lane(
            # plan.every: a cron job's longest gap between slots (its inherited `every` means nothing)
            j.name, by_job[j.name], history=h, plan=plans[j.name], every=plans[j.name].every or j.every,
            retry_delay=j.retry_delay,
            grace=j.jitter + timedelta(seconds=tick) + timeline.LATE_SLACK, success_before=before.get(j.name),
            since=since, now=now, tz=tz))
        for j, h in zip(jobs, histories, strict=True)
    )  # fmt: skip
    shown = [c for c in crawls if not failed_only or c.kind in (timeline.FAILED, timeline.CUT)]
    latest = tuple(sorted(shown, key=lambda c: (c.started_at, c.id), reverse=True)[:LATEST_SHOWN])
    return Overview(now, since, days, lanes, latest, file_error, published)


def crawl_detail(store: Store, crawl_id: int) -> CrawlDetail | None:
    with store.conn.cursor() as cur:
        cur.execute(board_queries.PAGE_CRAWL, {"id": crawl_id})
        row = cur.fetchone()
        if row is None:
            return None
        cur.execute(board_queries.PAGE_NEIGHBOURS, {"job": row[1], "id": crawl_id})
        previous, following = cur.fetchone()
    run_id, args, crawl_settings, stats, log_tail = row[12:]
    return CrawlDetail(timeline.Crawl(*row[:12]), run_id, args, crawl_settings, stats, log_tail, previous, following)


def explanation(store: Store, settings: Settings, job: str, now: datetime) -> Any:
    """The job's `explain` (daemon/ask/explain.py: `.paragraph()`, `.as_dict()`), from the very inputs
    `python -m daemon explain JOB` reads."""
    from daemon.ask import explain as why
    from daemon.ask.commands import explain_inputs

    return why.explain(*explain_inputs(store, settings, job, now), now, settings.timezone)
