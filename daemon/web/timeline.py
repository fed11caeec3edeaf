"""What the page shows of a job over a window of time: a pure function of its crawls, its history,
its plan (decided by daemon/plan/decision.py, never re-derived here) and `now`.

- Each crawl is a bar from its start to its end (to `now` while it runs), of one of four kinds:
  ok (completed), failed (the job's own failure: error, timeout, too few items, cancelled), cut
  short (interrupted or stale: the daemon stopped, not the job's fault), running.
- The deadline is the last success plus the job's interval (the decision's own `plan_spider`).
- The job is overdue from its deadline to `now` once it is more than `grace` past it (a due crawl
  starts within a tick, plus the job's jitter), unless it is paused.
- A gap is every pair of consecutive successes more than one interval (plus `grace`) apart: the
  promise was broken from the first one's deadline to the second one's start, and the crawls in
  between say why when they can.
- The chip says where the job stands in a few words; a job that is late or failing also gets one
  sentence, the page's answer before its evidence.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo

from daemon.plan.decision import COUNTED_FAILURES, SpiderHistory, SpiderPlan, plan_spider

OK, FAILED, CUT, RUNNING = "ok", "failed", "cut short", "running"
LATE_SLACK = timedelta(minutes=1)  # a crawl this much (plus a tick and the job's jitter) past its deadline is on time
MESSAGE_SHOWN = 160  # characters of a crawl's message in a sentence


@dataclasses.dataclass(frozen=True)
class Crawl:
    """One row of spider_runs, as the page shows it."""

    id: int
    job: str
    spider: str
    status: str  # running | completed | failed
    failure: str | None
    started_at: datetime
    finished_at: datetime | None
    items: int | None = None
    errors: int | None = None
    finish_reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    suspect: str | None = None  # a success that looks wrong against the job's baseline: why (sql/017)

    @property
    def kind(self) -> str:
        if self.status == "completed":
            return OK
        if self.status == "running":
            return RUNNING
        return FAILED if self.failure in COUNTED_FAILURES else CUT

    def end(self, now: datetime) -> datetime:
        """Where its bar ends: its finish, `now` while it runs, its start when neither is known."""
        if self.finished_at is not None:
            return max(self.finished_at, self.started_at)
        return max(now, self.started_at) if self.status == "running" else self.started_at


@dataclasses.dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    why: str


@dataclasses.dataclass(frozen=True)
class Chip:
    state: str  # ok | overdue | retry | paused | never
    text: str


@dataclasses.dataclass(frozen=True)
class Lane:
    job: str
    since: datetime
    now: datetime
    crawls: tuple[Crawl, ...]  # those that touch the window, by start
    deadline: datetime | None  # the last success plus the interval; None: never succeeded
    overdue: Span | None
    gaps: tuple[Span, ...]
    chip: Chip
    sentence: str | None  # the answer, when the job is late or failing


def lane(job: str, crawls: Sequence[Crawl], *, history: SpiderHistory, plan: SpiderPlan, every: timedelta,
         retry_delay: timedelta, grace: timedelta, success_before: datetime | None, since: datetime,
         now: datetime, tz: tzinfo) -> Lane:  # fmt: skip
    """The lane of `job` over [since, now]. `crawls`: its crawls that started in the window (and any
    still running); `success_before`: the start of its last success before the window."""
    shown = tuple(sorted((c for c in crawls if c.end(now) >= since), key=lambda c: (c.started_at, c.id)))
    last, deadline, overdue = history.last_success_at, None, None
    if last is not None:
        deadline = plan_spider(SpiderHistory(job, last), now, every, retry_delay).due_at
    if last is not None and deadline is not None and not plan.paused and now - deadline > grace:
        since_last = _between([c for c in shown if c.started_at > last])
        overdue = Span(deadline, now, f"no success for {duration(now - last)} (the last started "
                                      f"{moment(last, now, tz)}): {since_last} since")  # fmt: skip
    return Lane(
        job, since, now, shown, deadline, overdue, tuple(gaps(shown, every, grace, success_before, now, tz)),
        chip(history, plan, deadline, grace, now, tz), sentence(job, shown, history, plan, overdue, now, tz),
    )


def gaps(crawls: Sequence[Crawl], every: timedelta, grace: timedelta, success_before: datetime | None,
         now: datetime, tz: tzinfo) -> list[Span]:  # fmt: skip
    """Each time two consecutive successes were more than one interval (plus `grace`) apart: from
    the first one's deadline to the second one's start, with the crawls in between as the reason."""
    starts = sorted({c.started_at for c in crawls if c.kind == OK} | ({success_before} if success_before else set()))
    found = []
    for first, second in itertools.pairwise(starts):
        if second - first > every + grace:
            between = [c for c in crawls if first < c.started_at < second]
            found.append(Span(first + every, second, f"{duration(second - first)} between the successes of "
                              f"{moment(first, now, tz)} and {moment(second, now, tz)}: {_between(between)}"))  # fmt: skip
    return found


def chip(history: SpiderHistory, plan: SpiderPlan, deadline: datetime | None, grace: timedelta, now: datetime,
         tz: tzinfo) -> Chip:  # fmt: skip
    """Where the job stands, in a few words: "ok, due in 2 h 10 min", "overdue 1 d 5 h", "retry at
    14:20 (3 failures)", "paused until …", "never succeeded"."""
    if plan.paused:
        return Chip("paused", f"paused until {moment(plan.due_at, now, tz)}" if plan.due_at else "paused until resumed")
    if deadline is None:
        return Chip("never", "never succeeded")
    if history.consecutive_failures and plan.reason == "retry" and plan.due_at is not None:
        failures = _count(history.consecutive_failures, "failure")
        if plan.due_at <= now:
            return Chip("retry", f"retry due now ({failures})")
        return Chip("retry", f"retry at {moment(plan.due_at, now, tz)} ({failures})")
    if now - deadline > grace:
        return Chip("overdue", f"overdue {duration(now - deadline)}")
    if plan.due_at is None or plan.due_at <= now:
        return Chip("ok", "ok, due now")
    return Chip("ok", f"ok, due in {duration(plan.due_at - now)}")


def sentence(job: str, crawls: Sequence[Crawl], history: SpiderHistory, plan: SpiderPlan,
             overdue: Span | None, now: datetime, tz: tzinfo) -> str | None:  # fmt: skip
    """One sentence when the job is late or failing (None: it is on time, or paused)."""
    if plan.paused:
        return None
    last = history.last_success_at
    failed = [c for c in crawls if c.kind == FAILED and (last is None or c.started_at > last)]
    said = f" The last failure: {_said(failed[-1], now, tz)}." if failed else ""
    retry = f"; the next attempt is at {moment(plan.due_at, now, tz)}" if plan.due_at and plan.due_at > now else ""
    if overdue is not None and last is not None:
        return (f"{job} is overdue by {duration(now - overdue.start)}: its last success started "
                f"{moment(last, now, tz)}, and {_between([c for c in crawls if c.started_at > last])} since"
                f"{retry if history.consecutive_failures else ''}.{said}")  # fmt: skip
    if last is None and (history.consecutive_failures or failed):
        failures = f": {_count(history.consecutive_failures, 'failure')} in a row" if history.consecutive_failures else ""
        return f"{job} has never succeeded{failures}{retry}.{said}"
    if history.consecutive_failures:
        return f"{job} has failed {_count(history.consecutive_failures, 'time')} in a row{retry}.{said}"
    return None


def duration(span: timedelta) -> str:
    """The two largest units of a duration: "2 h 10 min", "1 d 5 h", "45 min", "30 s"."""
    seconds = max(0, int(span.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append((count, unit))
        if len(parts) == 2:
            break
    shown = [f"{count} {unit}" for count, unit in parts if count]
    return " ".join(shown) or "0 s"


def moment(when: datetime, now: datetime, tz: tzinfo) -> str:
    """A time in the page's zone: "14:20" today, "2026-05-03 14:20" on another day."""
    local, today = when.astimezone(tz), now.astimezone(tz)
    return local.strftime("%H:%M" if local.date() == today.date() else "%Y-%m-%d %H:%M")


def _between(crawls: Sequence[Crawl]) -> str:
    """What happened between two successes: the failures by kind, crawls cut short, or nothing."""
    if not crawls:
        return "no crawl was recorded"
    kinds = Counter(c.failure or c.kind for c in crawls if c.kind != OK)
    if not kinds:
        return f"{_count(len(crawls), 'crawl')} ran"
    parts = ", ".join(f"{kind} ×{n}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    failed = sum(n for kind, n in kinds.items() if kind in COUNTED_FAILURES)
    cut = sum(n for kind, n in kinds.items() if kind in ("interrupted", "stale"))
    said = [part for part in (failed and _count(failed, "failed crawl"), cut and f"{_count(cut, 'crawl')} cut short "
                              "by the daemon", kinds.get(RUNNING) and "a crawl running") if part]  # fmt: skip
    return f"{' and '.join(said)} ({parts})"


def _said(crawl: Crawl, now: datetime, tz: tzinfo) -> str:
    text = " ".join((crawl.message or "").split())
    if len(text) > MESSAGE_SHOWN:
        text = text[: MESSAGE_SHOWN - 1] + "…"
    return f"{crawl.failure or crawl.status} at {moment(crawl.started_at, now, tz)}" + (f" ({text})" if text else "")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")
