"""The calendar decision: whether a calendar job is due at `now`, for which slot, and when to look
again. Pure, beside daemon/plan/decision.py's interval rules (which it reuses for the backoff and the
clock-skew tolerance); it reads no clock and no database.

- Slots are owed strictly after the later of the job's publish time (when its schedule was first
  published: a new or edited calendar job waits for its first slot; `run-now` is the loop's) and the
  last successful crawl's start. A crawl covers a slot only if it started at or after it.
- Due when the first owed slot has come. After a downtime one crawl covers the latest slot that has
  come; the earlier owed slots are `missed` (for the ledger). With `catch_up_within`, a latest slot
  whose crawl could start only later than that after it is `too_late`, and the job waits for its next.
- After the job's own failures: today's backoff (retry_delay, doubled per failure), capped at the gap
  from the slot being retried to the slot after it.
- A due job starts only inside its window: outside, it is due when the window next opens.
- A success or failure dated more than CLOCK_SKEW_TOLERANCE in the future (the clock was set back)
  makes the job due now, as for interval jobs.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from daemon.plan.calendar import Calendar, next_slot, open_at, owed_slots
from daemon.plan.decision import CLOCK_SKEW_TOLERANCE, Cadence, SpiderHistory, SpiderPlan, plan_spider, retry_backoff

MISSED_ROWS = 100  # the ledger's rows per job and tick; the rest is one summary row (missed_count)


@dataclasses.dataclass(frozen=True, slots=True)
class CalendarPlan:
    """reason: slot (due for `slot`) | retry (a failure's backoff is over) | clock_skew (due now) |
    waiting_slot | waiting_retry | waiting_window (due, the window is shut until `due_at`) |
    too_late (the latest slot is past catch_up_within: waiting for the next) | no_slot (none ever)."""

    due: bool
    reason: str
    due_at: datetime | None  # when it may start (now or earlier when due; None: never again)
    slot: datetime | None  # the slot a crawl started at due_at covers (None: clock_skew, not yet owed)
    next_slot: datetime | None  # the first slot strictly after `now`
    missed: tuple[datetime, ...] = ()  # owed slots before `slot` no crawl will cover, at most MISSED_ROWS
    # all of them (the ledger's summary row: missed_count - len(missed)); counting stops at
    # daemon.plan.calendar.COUNT_LIMIT - 1: that many means "at least"
    missed_count: int = 0
    too_late: datetime | None = None  # the latest slot, recorded and not run (catch_up_within)

    @property
    def wake_at(self) -> datetime | None:
        """When the loop should decide again if it does nothing: the due time, else the next slot."""
        times = [t for t in (self.due_at, self.next_slot) if t is not None]
        return min(times, default=None)


def decide_calendar(
    calendar: Calendar,
    now: datetime,
    *,
    published_at: datetime,
    last_success_at: datetime | None,
    failures: int = 0,
    last_failure_at: datetime | None = None,
    retry_delay: timedelta = timedelta(minutes=15),
) -> CalendarPlan:
    """A calendar job's plan at `now` (see the module's rules). `failures`: its own consecutive
    failures since `last_success_at` (daemon.plan.decision.COUNTED_FAILURES), the latest ended at
    `last_failure_at`."""
    assert calendar.cron is not None, "an interval job is decided by daemon.plan.decision"
    cron, tz, window = calendar.cron, calendar.tz, calendar.window
    upcoming = next_slot(cron, tz, now)
    for at in (last_success_at, last_failure_at if failures else None):
        if at is not None and at - now > CLOCK_SKEW_TOLERANCE:
            return CalendarPlan(True, "clock_skew", now, None, upcoming)
    origin = max(published_at, last_success_at) if last_success_at is not None else published_at
    origin = min(origin, now)  # published "in the future" (the clock was set back): owed from now on
    first, count, latest = owed_slots(cron, tz, origin, now, keep=MISSED_ROWS + 1)
    if latest is None:  # nothing owed yet: wait for the first slot after the origin
        slot = next_slot(cron, tz, origin)
        if slot is None:
            return CalendarPlan(False, "no_slot", None, None, None)
        return _in_window(calendar, now, "waiting_slot", slot, slot, upcoming)
    missed = tuple(s for s in first if s != latest)[:MISSED_ROWS]
    gone = dict(missed=missed, missed_count=count - 1)
    start = now
    reason = "slot"
    if failures and last_failure_at is not None and last_failure_at >= latest:
        # Retrying the latest slot; a failure before it belonged to an earlier slot: the new one is due.
        gap = (next_slot(cron, tz, latest) or latest + timedelta(days=366)) - latest
        start = max(now, last_failure_at + retry_backoff(failures, retry_delay, gap))
        reason = "retry"
    opens = open_at(window, tz, start)
    if opens is None:
        return CalendarPlan(False, "waiting_window", None, latest, upcoming, **gone)
    if calendar.catch_up_within is not None and opens - latest > calendar.catch_up_within:
        wait = open_at(window, tz, upcoming) if upcoming is not None else None
        return CalendarPlan(False, "too_late", wait, None, upcoming, too_late=latest, **gone)
    if opens > now:
        waiting = "waiting_retry" if opens == start else "waiting_window"
        return CalendarPlan(False, waiting, opens, latest, upcoming, **gone)
    due_at = (open_at(window, tz, latest) or now) if reason == "slot" else opens  # since when it is due
    return CalendarPlan(True, reason, min(due_at, now), latest, upcoming, **gone)


def _in_window(calendar: Calendar, now: datetime, reason: str, slot: datetime, at: datetime,
               upcoming: datetime | None) -> CalendarPlan:  # fmt: skip
    opens = open_at(calendar.window, calendar.tz, at)
    return CalendarPlan(False, reason if opens == at else "waiting_window", opens, slot, upcoming)


def interval_start(calendar: Calendar | None, due_at: datetime) -> tuple[datetime | None, str]:
    """For an interval job (daemon.plan.decision's due time): when it may start, given its window, and
    why ("interval", or "waiting_window" when the window moves it; None: the window never opens)."""
    if calendar is None or calendar.window is None:
        return due_at, "interval"
    opens = open_at(calendar.window, calendar.tz, due_at)
    return opens, "interval" if opens == due_at else "waiting_window"


def plan_calendar_job(history: SpiderHistory, now: datetime, cadence: Cadence) -> SpiderPlan:
    """The loop's plan of a job with a calendar (`cadence.calendar`), as daemon.plan.decision.plan_job
    gives it before pauses (which it applies). A cron job by `decide_calendar`: due with the slot its
    crawl covers; else due_at is when to decide again (`wake_at`). An interval job with a window: by
    today's rules, then held until the window opens (`interval_start`).

    A calendar job whose schedule was never published (`published_at` None) is owed slots from `now`:
    it waits for its next one (the loop publishes before deciding, so only a daemon that never could)."""
    calendar: Calendar = cadence.calendar
    if calendar.cron is None:
        plan = plan_spider(history, now, cadence.every, cadence.retry_delay, cadence.every)
        if plan.clock_skew:
            return plan
        due = plan.due_at if plan.due_at is not None and plan.due_at > now else now  # the window, then
        start, why = interval_start(calendar, due)
        if start is None:
            return SpiderPlan(history.spider, None, "never_open", every=cadence.every)
        if why == "waiting_window" and start > now:
            return SpiderPlan(history.spider, start, "waiting_window", every=cadence.every)
        return plan
    cp = decide_calendar(
        calendar, now, published_at=cadence.published_at or now, last_success_at=history.last_success_at,
        failures=history.consecutive_failures, last_failure_at=history.last_failure_at,
        retry_delay=cadence.retry_delay,
    )  # fmt: skip
    if cp.due:
        return SpiderPlan(history.spider, cp.due_at, cp.reason, clock_skew=cp.reason == "clock_skew",
                          every=cadence.every, slot=cp.slot, calendar=cp)  # fmt: skip
    wake = cp.wake_at
    if wake is not None and wake <= now:  # too_late with the window open now: look again at the next slot
        wake = cp.next_slot
    reason = cp.reason if wake is not None else "no_slot"
    return SpiderPlan(history.spider, wake, reason, every=cadence.every, calendar=cp)
