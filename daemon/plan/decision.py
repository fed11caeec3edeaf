"""The scheduling decision: a pure function of the history and `now`.

A spider is due when its last successful crawl started at least one interval ago, or when it has
none. After a spider's own failure (an error or a timeout) it is retried after a backoff that
doubles with each consecutive failure and never exceeds the interval. Runs cut short by the daemon
itself (interrupted, or left behind by a crash) are not the spider's fault and add no backoff: the
spider is simply still due.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

# A last-run time this far in the future (the wall clock was set back) is not trusted: the spider
# is treated as due, so a backward jump never pushes a run further than one interval away. Smaller
# steps, such as NTP corrections, are within this tolerance and change nothing.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=1)

# Plans whose due time None means "not until something changes", not "due at once": a pause until
# resumed, a calendar that has no slot left or a window that never opens.
NEVER_DUE = ("paused", "no_slot", "never_open")


# The per-job records (a history, a plan, a cadence each, at 10,000 jobs) keep their fields in slots:
# no dict per instance.
@dataclasses.dataclass(frozen=True, slots=True)
class SpiderHistory:
    spider: str
    last_success_at: datetime | None = None
    consecutive_failures: int = 0  # the spider's own failures (error, timeout) since that success
    last_failure_at: datetime | None = None  # when the latest of those failures finished
    last_failure_kind: str | None = None  # its kind (COUNTED_FAILURES): a missed slot's cause (issue 21)


@dataclasses.dataclass(frozen=True, slots=True)
class Cadence:
    """A job's own rhythm: its interval and retry delay, and whether it is paused (until when;
    None: until resumed)."""

    every: timedelta
    retry_delay: timedelta
    paused: bool = False
    paused_until: datetime | None = None
    # A calendar job's schedule (daemon/plan/calendar.py; None: an interval job without a window) and
    # since when it is published as it is: its slots are owed from then (issue 21).
    calendar: Any = None
    published_at: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SpiderPlan:
    spider: str  # the job's name (a spider's, for a job named after it)
    due_at: datetime | None  # None: no history, due at once (or, paused: until resumed)
    reason: str  # never_run | interval | retry | clock_skew | paused; with a calendar (calendar_decision.py):
    # slot | waiting_slot | waiting_retry | waiting_window | too_late | no_slot | never_open
    clock_skew: bool = False
    every: timedelta | None = None  # the job's interval: how overdue it is counts against this
    # A calendar job's (daemon/plan/calendar_decision.py): the slot a crawl started now covers, and
    # the whole CalendarPlan (missed slots, too_late) for the ledger. None for interval jobs.
    slot: datetime | None = None
    calendar: Any = None

    @property
    def paused(self) -> bool:
        return self.reason == "paused"

    def overdue(self, now: datetime) -> float:
        """How many of its own intervals the job is overdue by (infinite: it never ran)."""
        if self.due_at is None or not self.every:
            return math.inf
        return (now - self.due_at) / self.every


@dataclasses.dataclass(frozen=True)
class Plan:
    """The plan at `now`. What it derives (due, most overdue first, next due time, skewed) is worked
    out once per plan: a tick asks for each of them more than once, at 10,000 jobs."""

    now: datetime
    spiders: tuple[SpiderPlan, ...]

    @functools.cached_property
    def due(self) -> tuple[str, ...]:
        return tuple(p.spider for p in self.spiders if self._is_due(p))

    @functools.cached_property
    def most_overdue_first(self) -> tuple[str, ...]:
        """What is due, the most overdue relative to its own interval first (after an outage the
        job that has waited longest by its own measure runs first); never-run jobs lead."""
        due = [p for p in self.spiders if self._is_due(p)]
        return tuple(p.spider for p in sorted(due, key=lambda p: -p.overdue(self.now)))

    def _is_due(self, p: SpiderPlan) -> bool:
        return p.reason not in NEVER_DUE and (p.due_at is None or p.due_at <= self.now)

    @functools.cached_property
    def next_due_at(self) -> datetime | None:
        """When the earliest spider that is not due yet becomes due (None when all are due)."""
        waiting = [p.due_at for p in self.spiders if p.due_at is not None and p.due_at > self.now]
        return min(waiting, default=None)

    @functools.cached_property
    def skewed(self) -> tuple[str, ...]:
        return tuple(p.spider for p in self.spiders if p.clock_skew)


def retry_backoff(failures: int, retry_delay: timedelta, interval: timedelta) -> timedelta:
    """The wait after `failures` consecutive failures: retry_delay, doubled each time, capped."""
    if failures <= 0:
        return timedelta(0)
    # Work in float seconds with a capped exponent: a long failure streak must not overflow.
    seconds = retry_delay.total_seconds() * 2.0 ** min(failures - 1, 60)
    return timedelta(seconds=min(seconds, interval.total_seconds()))


def plan_spider(history: SpiderHistory, now: datetime, interval: timedelta, retry_delay: timedelta,
                every: timedelta | None = None) -> SpiderPlan:  # fmt: skip
    """`every`: the interval recorded on the plan (plan_job's), built at once: a tick plans every job."""
    if history.consecutive_failures > 0 and history.last_failure_at is not None:
        if history.last_failure_at - now > CLOCK_SKEW_TOLERANCE:
            return SpiderPlan(history.spider, now, "clock_skew", clock_skew=True, every=every)
        backoff = retry_backoff(history.consecutive_failures, retry_delay, interval)
        return SpiderPlan(history.spider, history.last_failure_at + backoff, "retry", every=every)
    if history.last_success_at is None:
        return SpiderPlan(history.spider, None, "never_run", every=every)
    if history.last_success_at - now > CLOCK_SKEW_TOLERANCE:
        return SpiderPlan(history.spider, now, "clock_skew", clock_skew=True, every=every)
    return SpiderPlan(history.spider, history.last_success_at + interval, "interval", every=every)


def plan_job(history: SpiderHistory, now: datetime, cadence: Cadence) -> SpiderPlan:
    """A job's plan: as a spider's by its own interval and retry delay (or by its calendar, and
    within its window: daemon/plan/calendar_decision.py), unless it is paused."""
    if cadence.calendar is not None:
        from daemon.plan.calendar_decision import plan_calendar_job  # only a calendar loads cronsim

        plan = plan_calendar_job(history, now, cadence)
    else:
        plan = plan_spider(history, now, cadence.every, cadence.retry_delay, cadence.every)
    if not cadence.paused or (cadence.paused_until is not None and cadence.paused_until <= now):
        return plan
    if cadence.paused_until is None:
        return SpiderPlan(history.spider, None, "paused", every=cadence.every, calendar=plan.calendar)
    # Paused until a time: due then, or later by its own rule.
    resume = max(cadence.paused_until, plan.due_at) if plan.due_at is not None else cadence.paused_until
    return SpiderPlan(history.spider, resume, "paused", every=cadence.every, calendar=plan.calendar)


def decide(histories: Sequence[SpiderHistory], now: datetime, interval: timedelta, retry_delay: timedelta) -> Plan:
    """Every spider (or job) by one interval and retry delay."""
    return decide_jobs(histories, now, {}, Cadence(interval, retry_delay))


def decide_jobs(histories: Sequence[SpiderHistory], now: datetime, cadences: Mapping[str, Cadence],
                default: Cadence) -> Plan:  # fmt: skip
    """Every job by its own cadence (`default` for a job without one)."""
    return Plan(now, tuple(plan_job(h, now, cadences.get(h.spider, default)) for h in histories))


def quiet_span(plan: Plan, histories: Sequence[SpiderHistory], cadences: Mapping[str, Cadence],
               default: Cadence, running: Collection[str] = frozenset()) -> tuple[datetime | None, datetime | None] | None:  # fmt: skip
    """For a plan decided by `decide_jobs(histories, plan.now, cadences, default)`: the span of `now`,
    [since, until), over which deciding the same histories and cadences again gives the same job
    plans with nothing due, i.e. `moved(plan, now)`. None bounds a side. None: the plan is not quiet
    (a job is due, or a last run lies ahead of the clock: its plan moves with `now`).

    Within the span nothing crosses a rule's edge: the plan's next due time (a job falls due), a
    pause's end, or the point where a job's last run stops, or starts, being more than
    CLOCK_SKEW_TOLERANCE ahead of `now` (a clock set back).

    `running`: jobs with a crawl under way (issue 20). Their being due changes nothing until the
    crawl ends (which brings a new history): a plan whose due jobs all run is quiet too, from the
    latest of their due times on (a job due when it never ran, from any time)."""
    if plan.skewed or any(name not in running for name in plan.due):
        return None
    since: datetime | None = None
    for p in plan.spiders:
        if p.due_at is not None and p.due_at <= plan.now and p.spider in running:
            since = p.due_at if since is None else max(since, p.due_at)
    until = plan.next_due_at
    for h in histories:
        cadence = cadences.get(h.spider, default)
        at = h.last_failure_at if h.consecutive_failures > 0 and h.last_failure_at is not None else h.last_success_at
        edges = [at - CLOCK_SKEW_TOLERANCE] if at is not None else []
        if cadence.paused and cadence.paused_until is not None:
            edges.append(cadence.paused_until)
        for edge in edges:
            if edge <= plan.now:
                since = edge if since is None else max(since, edge)
            else:
                until = edge if until is None else min(until, edge)
    return since, until


def moved(plan: Plan, now: datetime) -> Plan:
    """A quiet plan at another `now` within its `quiet_span`: the same job plans, still nothing due,
    the same next due time. What it derives is carried over rather than worked out again (the point:
    an idle tick at 10,000 jobs)."""
    at = Plan(now, plan.spiders)
    for name in ("due", "most_overdue_first", "next_due_at", "skewed"):
        at.__dict__[name] = getattr(plan, name)  # functools.cached_property's own store
    return at


def oldest_success(histories: Sequence[SpiderHistory]) -> tuple[bool, datetime | None]:
    """(every spider has a success, the oldest of those successes): the binding constraint."""
    times = [h.last_success_at for h in histories]
    if not times or any(t is None for t in times):
        return False, None
    return True, min(t for t in times if t is not None)


def hold_back(
    plan: Plan, due: Sequence[str], requested: Collection[str], delays: Mapping[tuple[str, datetime], timedelta]
) -> tuple[tuple[str, ...], datetime | None]:
    """Jitter: each regular run (due by its interval, not asked for with run-now) waits until its due
    time plus its delay from `delays` (keyed by spider and due time; a missing key: no delay).
    Returns what runs now and when the earliest held-back run becomes due (None: none held)."""
    if not due:
        return (), None
    held: dict[str, datetime] = {}
    due_set = set(due)
    for p in plan.spiders:
        if p.spider not in due_set or p.reason != "interval" or p.spider in requested or p.due_at is None:
            continue
        until = p.due_at + delays.get((p.spider, p.due_at), timedelta(0))
        if plan.now < until:
            held[p.spider] = until
    return tuple(s for s in due if s not in held), min(held.values(), default=None)


@dataclasses.dataclass(frozen=True)
class CrawlResult:
    """What the history needs to know of one finished crawl."""

    spider: str
    ok: bool
    failure: str | None  # as in CrawlOutcome: only 'error' and 'timeout' count against the spider
    started_at: datetime
    finished_at: datetime


# The job's own failures, retried with backoff ('process_died': a remote crawl that ended without its
# stats); a crawl cut short by the daemon ('interrupted', 'stale') or whose node went silent ('lost')
# is not the job's fault. Kept in step with the history query (daemon/records/queries.py) and its index
# (sql/015_remote_runs.sql).
COUNTED_FAILURES = ("error", "timeout", "too_few_items", "cancelled", "process_died")


def fold(histories: Sequence[SpiderHistory], results: Sequence[CrawlResult]) -> list[SpiderHistory]:
    """The history as it stands after `results` (an offline run's, which PostgreSQL has not seen):
    a success starts the interval anew; a spider's own failure adds to its backoff; a crawl cut
    short by the daemon changes nothing."""
    by_spider = {h.spider: h for h in histories}
    for r in results:
        h = by_spider.get(r.spider)
        if h is None:
            continue
        if r.ok:
            by_spider[r.spider] = SpiderHistory(r.spider, r.started_at, 0, None)
        elif r.failure in COUNTED_FAILURES:
            by_spider[r.spider] = SpiderHistory(r.spider, h.last_success_at, h.consecutive_failures + 1, r.finished_at,
                                              r.failure)
    return [by_spider[h.spider] for h in histories]
