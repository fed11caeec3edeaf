"""What `status` (text and --json) and the page show of a calendar job (issue 21): its schedule (the
expression, its English wording, the time zone, the window), the next slot (local and UTC, "in 3 h"),
the current slot's state, the last kept slot and its crawl, the missed slots of the last 30 days with
their causes, and freshness this month (kept ÷ owed, from the ledger). The plan is the daemon's own
(status.plan_jobs); the ledger is daemon/records/ledger.py's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from daemon.ask.calendar_words import describe, describe_cron, describe_window, when
from daemon.jobs.jobfile import Job, format_duration
from daemon.plan.decision import SpiderPlan
from daemon.records.store import Store

UTC = timezone.utc
MISSED_DAYS = 30  # the missed slots shown: those of the last 30 days
MISSED_SHOWN = 50

# The current slot's state, in words, by the plan's reason.
STATES = {
    "slot": "due now",
    "retry": "due: its retry may start",
    "clock_skew": "due now (its last crawl is dated ahead of the clock)",
    "waiting_slot": "waiting for its next slot",
    "waiting_retry": "failed: waiting for its retry",
    "waiting_window": "due: waiting for its window to open",
    "too_late": "missed (past catch_up_within): waiting for its next slot",
    "no_slot": "no slot ever comes again",
    "never_open": "its window never opens",
    "paused": "paused",
    "interval": "by its interval",
    "never_run": "never ran: due now",
}


def relative(delta: timedelta) -> str:
    """ "in 3 h", "in 12 min", "in 2 days"; "now" for what is not ahead."""
    seconds = delta.total_seconds()
    if seconds < 1:
        return "now"
    for unit, size, limit in (("s", 1, 60), ("min", 60, 3600), ("h", 3600, 48 * 3600)):
        if seconds < limit:
            return f"in {int(seconds // size)} {unit}"
    return f"in {int(seconds // 86400)} days"


def month_start(now: datetime, tz: Any) -> datetime:
    local = now.astimezone(tz)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def calendar_report(store: Store, jobs: Sequence[Job], plans: Mapping[str, SpiderPlan], now: datetime,
                    running: Sequence[str] = ()) -> dict[str, dict[str, Any]]:  # fmt: skip
    """job -> what status and the page show of its calendar; jobs without one are left out."""
    shown = [job for job in jobs if job.calendar is not None]
    if not shown:
        return {}
    fresh: dict[Any, dict[str, tuple[int, int]]] = {}
    report = {}
    for job in shown:
        cal, p = job.calendar, plans.get(job.name)
        assert cal is not None
        tz = cal.tz
        since = month_start(now, tz)
        if since not in fresh:
            fresh[since] = store.freshness(since)
        kept, owed = fresh[since].get(job.name, (0, 0))
        cp = p.calendar if p is not None else None
        upcoming = cp.next_slot if cp is not None else None
        last = store.last_kept_slot(job.name)
        missed = store.missed_slots(job.name, now - timedelta(days=MISSED_DAYS), MISSED_SHOWN)
        reason = p.reason if p is not None else None
        report[job.name] = {
            "cron": cal.cron, "wording": describe_cron(cal.cron) if cal.cron else None, "sentence": describe(cal),
            "timezone": tz.key, "window": describe_window(cal.window) if cal.window is not None else None,
            "catch_up_within": format_duration(cal.catch_up_within) if cal.catch_up_within else None,
            "next_slot": upcoming.astimezone(tz).isoformat(timespec="seconds") if upcoming else None,
            "next_slot_utc": upcoming.astimezone(UTC).isoformat(timespec="seconds") if upcoming else None,
            "next_slot_in": relative(upcoming - now) if upcoming else None,
            "next_slot_text": when(upcoming, tz) if upcoming else None,
            "state": "running" if job.name in running else STATES.get(reason or "", reason),
            "slot": cp.slot.isoformat() if cp is not None and cp.slot is not None else None,
            "last_kept": None if last is None else {
                "slot": last[0].astimezone(tz).isoformat(timespec="seconds"), "slot_text": when(last[0], tz),
                "crawl": last[1], "late_s": last[2]},
            "missed_30d": [{"slot": slot.astimezone(tz).isoformat(timespec="seconds"), "slot_text": when(slot, tz),
                            "cause": cause, "slots": slots} for slot, cause, slots in missed],
            "freshness_month": {"kept": kept, "owed": owed, "since": since.astimezone(tz).isoformat(timespec="seconds")},
        }  # fmt: skip
    return report


def lines(name: str, cal: Mapping[str, Any]) -> list[str]:
    """`status`'s text for one calendar job, under the table."""
    out = [f"{name}: {cal['sentence']}"]
    if cal["next_slot_text"]:
        out.append(f"  next slot {cal['next_slot_text']}, {cal['next_slot_in']}; now {cal['state']}")
    else:
        out.append(f"  now {cal['state']}")
    fresh = cal["freshness_month"]
    kept = cal["last_kept"]
    last = f"last kept slot {kept['slot_text']} (crawl {kept['crawl']})" if kept else "no kept slot yet"
    out.append(f"  {last}; freshness this month {fresh['kept']}/{fresh['owed']} slots kept")
    if cal["missed_30d"]:
        missed = "; ".join(f"{m['slot_text']} {m['cause']}" + (f" (+{m['slots'] - 1} more)" if m["slots"] > 1 else "")
                           for m in cal["missed_30d"][:10])  # fmt: skip
        more = len(cal["missed_30d"]) - 10
        out.append(f"  missed in the last {MISSED_DAYS} days: {missed}" + (f"; and {more} more" if more > 0 else ""))
    return out
