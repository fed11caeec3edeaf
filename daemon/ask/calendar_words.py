"""How a calendar is said in English, for `status`, the page and `explain` (pure; nothing here
decides). The expression's wording is cronsim's own `explain()`; the sentences about DST say what
the slots do with a local time that does not exist or happens twice (daemon/plan/calendar.py):

    02:30 does not exist on 2027-03-14 in America/New_York: this slot is at 03:00 EDT.
    01:30 happens twice on 2026-11-01 in America/New_York: this slot is the first, 01:30 EDT.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from daemon.plan.calendar import UTC, Calendar, Window, exists, repeated, resolve_local
from daemon.plan.calendar_decision import CalendarPlan

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def describe_cron(cron: str) -> str:
    """ "0 8 * * 1-5" -> "At 08:00 on Monday through Friday" (cronsim's wording)."""
    from cronsim import CronSim

    return CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC)).explain()


def describe_window(window: Window) -> str:
    """ "starts crawls only 07:00-22:00 on Mon-Fri"; "(past midnight)" when it crosses it."""
    span = f"{window.start:%H:%M}-{window.end:%H:%M}" + (" (past midnight)" if window.crosses_midnight else "")
    if window.days is None or len(window.days) == 7:
        return f"starts crawls only {span} every day"
    return f"starts crawls only {span} on {_days(window.days)}"


def describe(calendar: Calendar) -> str:
    """One sentence: the expression's wording, the time zone, the window, catch-up."""
    parts = [f"{describe_cron(calendar.cron)} ({calendar.tz.key})" if calendar.cron else f"Times in {calendar.tz.key}"]
    if calendar.window is not None:
        parts.append(describe_window(calendar.window))
    if calendar.catch_up_within is not None:
        parts.append(f"a slot missed by more than {_duration(calendar.catch_up_within)} is recorded, not run")
    return "; ".join(parts) + "."


def dst_note(cron: str, tz: ZoneInfo, slot: datetime) -> str | None:
    """The sentence `explain` adds for a slot that DST moved or that a repeated hour could have
    doubled; None for an ordinary slot."""
    local = slot.astimezone(tz)
    moved = _moved_times(cron, tz, slot)
    if moved:
        times = " and ".join(f"{t:%H:%M}" for t in moved)
        verb = "does" if len(moved) == 1 else "do"
        return (
            f"{times} {verb} not exist on {local:%Y-%m-%d} in {tz.key}: "
            f"this slot is at {local:%H:%M} {local.tzname()}."
        )
    if _fixed(cron) and repeated(local):
        second = local.replace(fold=1)
        return (
            f"{local:%H:%M} happens twice on {local:%Y-%m-%d} in {tz.key}: this slot is the first, "
            f"{local:%H:%M} {local.tzname()}; {second:%H:%M} {second.tzname()} is not a slot."
        )
    return None


def explain_plan(calendar: Calendar, plan: CalendarPlan) -> list[str]:
    """`explain JOB`'s sentences for a calendar job's plan: the slot it is due for or waits for, the
    slots a downtime missed, catch-up, the window, a retry, and DST where it moved or folded a slot."""
    tz = calendar.tz
    out: list[str] = []
    if plan.reason == "clock_skew":
        out.append("Its last crawl is dated ahead of the clock (the clock was set back): due now.")
    elif plan.reason == "slot":
        out.append(f"Due for the slot of {when(plan.slot, tz)}.")
    elif plan.reason == "retry":
        out.append(f"Due: its retry for the slot of {when(plan.slot, tz)} may start.")
    elif plan.reason == "waiting_slot":
        out.append(f"Not due: its next slot is {when(plan.due_at, tz)}.")
    elif plan.reason == "waiting_retry":
        out.append(f"Retrying the slot of {when(plan.slot, tz)} after a failure: at {when(plan.due_at, tz)}"
                   " (the backoff is capped at the gap to the next slot).")  # fmt: skip
    elif plan.reason == "too_late" and calendar.catch_up_within is not None:
        out.append(f"The slot of {when(plan.too_late, tz)} is more than {_duration(calendar.catch_up_within)} "
                   f"late (catch_up_within): recorded, not run; the next slot is {when(plan.next_slot, tz)}.")  # fmt: skip
    elif plan.reason == "no_slot":
        out.append("No slot ever comes again.")
    if plan.reason == "waiting_window" and calendar.window is not None:
        opens = f"opens at {when(plan.due_at, tz)}" if plan.due_at else "never opens"
        out.append(f"Due for the slot of {when(plan.slot, tz)}, but it {describe_window(calendar.window)}: "
                   f"its window {opens}.")  # fmt: skip
    if plan.missed_count:
        slots = "slot was" if plan.missed_count == 1 else "slots were"
        out.append(f"{plan.missed_count} earlier {slots} missed (the first {when(plan.missed[0], tz)}); "
                   "one crawl covers the latest.")  # fmt: skip
    slot = plan.slot or plan.too_late or plan.next_slot
    note = dst_note(calendar.cron, tz, slot) if calendar.cron and slot is not None else None
    return out + ([note] if note else [])


def when(moment: datetime | None, tz: ZoneInfo) -> str:
    """ "2026-12-07 08:00 -05 (13:00 UTC)": local first, as the job's schedule says it."""
    if moment is None:
        return "never"
    local = moment.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({moment.astimezone(UTC):%H:%M} UTC)"


def _moved_times(cron: str, tz: ZoneInfo, slot: datetime) -> list[datetime]:
    """The expression's wall-clock times on the slot's local date that do not exist and so resolve
    to this slot, the first instant after their gap (none for an ordinary slot)."""
    from cronsim import CronSim

    if not _fixed(cron):
        return []
    local = slot.astimezone(tz)
    day_start = datetime.combine(local.date(), datetime.min.time())
    found = []
    for naive in CronSim(cron, day_start - timedelta(seconds=1)):  # naive: no DST handling, wall times
        if naive.date() != local.date() or naive > local.replace(tzinfo=None):
            break
        candidate = naive.replace(tzinfo=tz)
        if not exists(candidate) and resolve_local(naive.date(), naive.time(), tz) == slot.astimezone(UTC):
            found.append(candidate)
    return found


def _fixed(cron: str) -> bool:
    """Fixed local times (no `*` starting the minute or hour field): DST moves or folds them; with a
    `*` there the slots follow real time instead."""
    minute, hour = cron.split()[:2]
    return not minute.startswith("*") and not hour.startswith("*")


def _days(days: frozenset[int]) -> str:
    ordered = sorted(days)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{_DAY_NAMES[ordered[0]]}-{_DAY_NAMES[ordered[-1]]}"
    return ", ".join(_DAY_NAMES[d] for d in ordered)


def _duration(value: timedelta) -> str:
    from daemon.jobs.jobfile import format_duration

    return format_duration(value)

