"""What the loop tells its readers: the decision lines (with the design's phrases in `message`,
so `grep "Last run was"` finds them) and the canonical line of each spider run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from zoneinfo import ZoneInfo

import structlog

from daemon.jobs.crawl import CrawlOutcome
from daemon.plan.decision import Plan, SpiderHistory, oldest_success
from daemon.telemetry.job_narration import log_job_decisions, own_cadences

log = structlog.get_logger("daemon.scheduler")


def log_decision(plan: Plan, histories: Sequence[SpiderHistory], interval_hours: float, tz: ZoneInfo) -> None:
    if own_cadences(plan, timedelta(hours=interval_hours)):
        _warn_skew(plan)
        log_job_decisions(plan, histories, tz)  # a jobs file: each job by its own cadence
        return
    required = f"{interval_hours:g}"
    every_spider_ran, oldest = oldest_success(histories)
    if every_spider_ran and oldest is not None:
        hours = (plan.now - oldest).total_seconds() / 3600
        log.info(
            "last_run_checked",
            message=f"Last run was {hours:.2f} hours ago (required: {required} hours)",
            hours_ago=round(hours, 4),
            required_hours=interval_hours,
        )
    else:
        never = [h.spider for h in histories if h.last_success_at is None]
        log.info(
            "last_run_checked",
            message=f"Last run was never: no completed run on record (required: {required} hours)",
            spiders_never_run=never,
            required_hours=interval_hours,
        )
    _warn_skew(plan)
    if plan.due:
        log.info(
            "run_due",
            message="Time threshold met or exceeded, running spiders immediately",
            spiders=list(plan.due),
        )
        return
    next_due = plan.next_due_at
    assert next_due is not None  # nothing due means some spider is due later
    local = next_due.astimezone(tz).isoformat(timespec="seconds")
    wait_hours = (next_due - plan.now).total_seconds() / 3600
    retrying = [p.spider for p in plan.spiders if p.reason == "retry"]
    phrase = (
        "Failed spider(s) waiting for their retry backoff, skipping immediate execution"
        if any(p.reason == "retry" and p.due_at == next_due for p in plan.spiders)
        else "Recent run detected, skipping immediate execution"
    )
    log.info(
        "run_not_due",
        message=f"{phrase}; next run due at {local} (in {wait_hours:.2f} hours)",
        next_due_at=local,
        wait_hours=round(wait_hours, 4),
        retrying=retrying,
    )


def _warn_skew(plan: Plan) -> None:
    if plan.skewed:
        log.warning(
            "clock_skew_detected",
            message="A last run is recorded in the future: the wall clock was set back; "
            "running now so no run is pushed beyond one interval",
            spiders=list(plan.skewed),
        )


def log_spider_outcome(run_id: int | None, outcome: CrawlOutcome) -> None:
    """The canonical line: one per spider run."""
    fields = dict(
        job=outcome.name,
        spider=outcome.spider,
        run_id=run_id,
        status=outcome.status,
        failure=outcome.failure,
        items=outcome.items_scraped,
        errors=outcome.error_count,
        duration_s=outcome.duration_s,
        exit_code=outcome.exit_code,
        finish_reason=outcome.finish_reason,
        message=outcome.message,
        pid=outcome.pid,
    )
    if outcome.ok:
        log.info("spider_run_finished", **fields)
    else:
        log.error("spider_run_finished", **fields)
