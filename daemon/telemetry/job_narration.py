"""Decision lines per job (issue 20): with a jobs file, each job keeps its own cadence, so the lines
name the job and its own interval ("Last run of quick was 0.01 hours ago (required: 15 seconds)").
The design's phrases stay greppable ("Last run of", "Time threshold met or exceeded", "skipping
immediate execution"). Without a jobs file every job has the one interval and daemon/telemetry/narration.py's
lines read as they always did."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from daemon.plan.decision import Plan, SpiderHistory

log = structlog.get_logger("daemon.scheduler")

UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


# What a job that is not due waits for, by its plan's reason (a calendar's: daemon/plan/calendar_decision.py).
WAITING_PHRASES = {
    "retry": "Failed job waiting for its retry backoff",
    "waiting_retry": "Failed job waiting for its retry backoff",
    "waiting_slot": "Calendar job waiting for its next slot",
    "waiting_window": "Job waiting for its window to open",
    "too_late": "Calendar job's slot missed by more than catch_up_within; waiting for its next slot",
    "no_slot": "Calendar job with no slot ahead",
    "never_open": "Job whose window never opens",
}


def say_every(every: timedelta) -> str:
    """An interval in the largest unit that divides it: 15 seconds, 4 hours, 1 day, 90 seconds."""
    seconds = every.total_seconds()
    for unit, size in UNITS:
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds:g} seconds"


def own_cadences(plan: Plan, interval: timedelta) -> bool:
    """Some job has an interval of its own (a jobs file): the lines are told per job."""
    return any((p.every is not None and p.every != interval) or p.reason in WAITING_PHRASES or p.calendar is not None
               for p in plan.spiders)  # fmt: skip


def log_job_decisions(plan: Plan, histories: Sequence[SpiderHistory], tz: ZoneInfo) -> None:
    """One `last_run_checked` and one `run_due` per due job, then `run_not_due` naming the job due next."""
    last_success = {h.spider: h.last_success_at for h in histories}
    due = set(plan.due)
    for p in plan.spiders:
        if p.spider not in due:
            continue
        every = say_every(p.every) if p.every is not None else "its interval"
        at = last_success.get(p.spider)
        if at is None:
            message = f"Last run of {p.spider} was never: no completed run on record (required: {every})"
        else:
            message = f"Last run of {p.spider} was {_hours(plan.now, at):.2f} hours ago (required: {every})"
        log.info("last_run_checked", message=message, job=p.spider, reason=p.reason,
                 hours_ago=None if at is None else round(_hours(plan.now, at), 4),
                 required_s=p.every.total_seconds() if p.every is not None else None)  # fmt: skip
        log.info("run_due", message=f"Time threshold met or exceeded for {p.spider}, running it immediately",
                 job=p.spider, reason=p.reason)  # fmt: skip
    next_due = plan.next_due_at
    if next_due is None:
        return
    first = next(p for p in plan.spiders if p.due_at == next_due and p.spider not in due)
    local = next_due.astimezone(tz).isoformat(timespec="seconds")
    phrase = WAITING_PHRASES.get(first.reason, "Recent run detected")
    every = say_every(first.every) if first.every is not None else "its interval"
    log.info("run_not_due",
             message=f"{phrase} for {first.spider} (required: {every}), skipping immediate execution; "
                     f"next run due at {local} (in {_hours(plan.now, next_due) * -1:.2f} hours)",
             job=first.spider, next_due_at=local, wait_hours=round(-_hours(plan.now, next_due), 4),
             waiting_jobs=len(plan.spiders) - len(due))  # fmt: skip


def _hours(now: datetime, at: datetime) -> float:
    return (now - at).total_seconds() / 3600
