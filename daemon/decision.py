"""The scheduling decision: a pure function of the history and `now`.

A spider is due when its last successful crawl started at least one interval ago, or when it has
none. After a spider's own failure (an error or a timeout) it is retried after a backoff that
doubles with each consecutive failure and never exceeds the interval. Runs cut short by the daemon
itself (interrupted, or left behind by a crash) are not the spider's fault and add no backoff: the
spider is simply still due.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

# A last-run time this far in the future (the wall clock was set back) is not trusted: the spider
# is treated as due, so a backward jump never pushes a run further than one interval away. Smaller
# steps, such as NTP corrections, are within this tolerance and change nothing.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class SpiderHistory:
    spider: str
    last_success_at: datetime | None = None
    consecutive_failures: int = 0  # the spider's own failures (error, timeout) since that success
    last_failure_at: datetime | None = None  # when the latest of those failures finished


@dataclasses.dataclass(frozen=True)
class SpiderPlan:
    spider: str
    due_at: datetime | None  # None: no history, due at once
    reason: str  # never_run | interval | retry | clock_skew
    clock_skew: bool = False


@dataclasses.dataclass(frozen=True)
class Plan:
    now: datetime
    spiders: tuple[SpiderPlan, ...]

    @property
    def due(self) -> tuple[str, ...]:
        return tuple(p.spider for p in self.spiders if p.due_at is None or p.due_at <= self.now)

    @property
    def next_due_at(self) -> datetime | None:
        """When the earliest spider that is not due yet becomes due (None when all are due)."""
        waiting = [p.due_at for p in self.spiders if p.due_at is not None and p.due_at > self.now]
        return min(waiting, default=None)

    @property
    def skewed(self) -> tuple[str, ...]:
        return tuple(p.spider for p in self.spiders if p.clock_skew)


def retry_backoff(failures: int, retry_delay: timedelta, interval: timedelta) -> timedelta:
    """The wait after `failures` consecutive failures: retry_delay, doubled each time, capped."""
    if failures <= 0:
        return timedelta(0)
    # Work in float seconds with a capped exponent: a long failure streak must not overflow.
    seconds = retry_delay.total_seconds() * 2.0 ** min(failures - 1, 60)
    return timedelta(seconds=min(seconds, interval.total_seconds()))


def plan_spider(history: SpiderHistory, now: datetime, interval: timedelta, retry_delay: timedelta) -> SpiderPlan:
    if history.consecutive_failures > 0 and history.last_failure_at is not None:
        if history.last_failure_at - now > CLOCK_SKEW_TOLERANCE:
            return SpiderPlan(history.spider, now, "clock_skew", clock_skew=True)
        backoff = retry_backoff(history.consecutive_failures, retry_delay, interval)
        return SpiderPlan(history.spider, history.last_failure_at + backoff, "retry")
    if history.last_success_at is None:
        return SpiderPlan(history.spider, None, "never_run")
    if history.last_success_at - now > CLOCK_SKEW_TOLERANCE:
        return SpiderPlan(history.spider, now, "clock_skew", clock_skew=True)
    return SpiderPlan(history.spider, history.last_success_at + interval, "interval")


def decide(histories: Sequence[SpiderHistory], now: datetime, interval: timedelta, retry_delay: timedelta) -> Plan:
    return Plan(now, tuple(plan_spider(h, now, interval, retry_delay) for h in histories))


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
    held: dict[str, datetime] = {}
    for p in plan.spiders:
        if p.spider not in due or p.reason != "interval" or p.spider in requested or p.due_at is None:
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


COUNTED_FAILURES = ("error", "timeout")


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
            by_spider[r.spider] = SpiderHistory(r.spider, h.last_success_at, h.consecutive_failures + 1, r.finished_at)
    return [by_spider[h.spider] for h in histories]
