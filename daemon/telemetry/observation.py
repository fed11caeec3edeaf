"""What the outside sees of the loop: metrics, healthcheck pings, the /jobs view, the decision lines
and the heartbeat file's cadence. Fed from events the loop reports (a plan, a run starting and
ending, crawls finishing), so none of it reads the loop's fields, and the loop never formats a
metric or a ping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from daemon.telemetry import heartbeat
from daemon.system.clock import Clock
from daemon.jobs.crawl import CrawlOutcome
from daemon.plan.decision import Plan, SpiderHistory
from daemon.telemetry.metrics import Metrics
from daemon.telemetry.narration import log_decision
from daemon.telemetry.notify import Notifier

log = structlog.get_logger("daemon.scheduler")


class Observer:
    def __init__(
        self, metrics: Metrics, notifier: Notifier, clock: Clock, *, every_s: float, interval_hours: float,
        timezone: Any,
    ) -> None:  # fmt: skip
        self.metrics = metrics
        self.notifier = notifier
        self.clock = clock
        self.interval_hours = interval_hours
        self.timezone = timezone
        self._job: dict[str, object] = {"id": "spiders", "every_s": every_s, "last_run": None, "last_status": None,
                                        "next_due": None, "running": False}  # fmt: skip
        self._run_started_m = 0.0
        self._decision_key: object = None  # the decision logged last: each is logged once
        self._exported: dict[str, str] = {}  # job -> spider: the per-job series on /metrics
        self._next_slots: dict[str, datetime] = {}  # calendar job -> its next slot, on /metrics
        self._exported_from: object = None  # what those series were last set from

    # ----------------------------------------------------------------- events
    def new_term(self) -> None:
        """This daemon has just taken the runner lock: its next decision is told again."""
        self._decision_key = None

    def planned(self, plan: Plan, histories: Sequence[SpiderHistory], spider_of: Callable[[str], str]) -> None:
        key = (plan.due, plan.next_due_at, plan.skewed)
        if key != self._decision_key:
            self._decision_key = key
            log_decision(plan, histories, self.interval_hours, self.timezone)
        if self.metrics.registry is not None:  # nobody can read them while the endpoint is off
            self._export_jobs(plan, histories, spider_of)
        next_due = plan.next_due_at
        waiting = not plan.due and next_due is not None
        self.metrics.until_next_due.set((next_due - plan.now).total_seconds() if waiting else 0.0)  # type: ignore[operator]
        self._job["next_due"] = next_due.isoformat() if waiting else plan.now.isoformat()  # type: ignore[union-attr]

    def slots_missed(self, job: str, cause: str, slots: int) -> None:
        """Missed slots of a calendar job this daemon wrote to the ledger."""
        self.metrics.slots_missed.labels(job, cause).inc(slots)

    def database_reachable(self, reachable: bool) -> None:
        """The loop's latest statements to PostgreSQL succeeded (True), or failed (False)."""
        self.metrics.database_up.set(1 if reachable else 0)

    def run_started(self, now: datetime) -> None:
        self.notifier.ping("/start")
        self.metrics.is_running.set(1)
        self._job["running"] = True
        self._job["last_run"] = now.isoformat()
        self._run_started_m = self.clock.monotonic()

    def run_stopped(self) -> None:
        """The run's crawls are over (its verdict may still be to come)."""
        self.metrics.is_running.set(0)
        self._job["running"] = False
        self.metrics.run_duration.observe(self.clock.monotonic() - self._run_started_m)

    def crawl_finished(self, outcome: CrawlOutcome, started_at: datetime, suspect: str | None = None) -> None:
        """suspect: why the success looks wrong against the job's baseline (sql/017), or None."""
        self.metrics.spider_runs.labels(outcome.name, outcome.spider, outcome.status).inc()
        if suspect is not None:
            self.metrics.suspect_crawls.labels(outcome.name, outcome.spider).inc()
        self.metrics.items.labels(outcome.name, outcome.spider).inc(outcome.items_scraped or 0)
        if outcome.ok:
            self.metrics.last_success.labels(outcome.name, outcome.spider).set(started_at.timestamp())

    def run_ended(self, run_id: int | None, due: Sequence[Any], outcomes: Sequence[CrawlOutcome], ok: bool,
                  error: str | None) -> None:  # fmt: skip
        """The canonical line of a run, its ping and its count."""
        status = "completed" if ok else "failed"
        self.metrics.runs.labels(status).inc()
        self.notifier.ping("" if ok else "/fail")
        self.notifier.wake()  # its crawls' alerts are in the outbox now
        self._job["last_status"] = status
        if ok:
            log.info("run_completed", message="Spider run completed successfully", run_id=run_id,
                     spiders=[job.name for job in due])  # fmt: skip
        else:
            failed = [o.name for o in outcomes if not o.ok]
            log.error(
                "run_failed",
                message=f"Spider run failed: {len(due) - len(outcomes) + len(failed)} of {len(due)} spider(s) "
                "did not succeed",
                run_id=run_id,
                failed=failed,
                error=error,
            )
        self._decision_key = None

    def gave_way(self) -> None:
        # The run's /start ping went out and it did not complete here: without an end ping the
        # outside service would see a run that never ends (the new runner pings its own runs).
        self.notifier.ping("/fail")
        self._decision_key = None

    def _export_jobs(self, plan: Plan, histories: Sequence[SpiderHistory], spider_of: Callable[[str], str]) -> None:
        """Each job's last success, and each planned job's interval, pause and failure streak, for
        alerting rules. The series of a job no longer planned (removed from the jobs file, or now
        running another spider) go, so a job that is gone never alerts. Set again only when what
        they are set from changed: an idle tick's plan and history are the last tick's (at 10,000
        jobs, setting them all took ~80 ms a tick)."""
        exported = {p.spider: spider_of(p.spider) for p in plan.spiders}
        source = (self.metrics, plan.spiders, histories, exported)
        if source == self._exported_from:
            return
        self._exported_from = source
        for h in histories:
            if h.last_success_at is not None:
                self.metrics.last_success.labels(h.spider, exported.get(h.spider) or spider_of(h.spider)).set(
                    h.last_success_at.timestamp())  # fmt: skip
        for job, spider in self._exported.items():
            if exported.get(job) != spider:
                for gauge in (self.metrics.job_interval, self.metrics.job_failures, self.metrics.last_success):
                    gauge.remove(job, spider)
            if job not in exported:
                self.metrics.job_paused.remove(job)
        slots = {p.spider: p.calendar.next_slot for p in plan.spiders
                 if p.calendar is not None and p.calendar.next_slot is not None}  # fmt: skip
        for job in self._next_slots.keys() - slots.keys():
            self.metrics.next_slot.remove(job)
        for job, slot in slots.items():
            self.metrics.next_slot.labels(job).set(slot.timestamp())
        self._next_slots = slots
        failures = {h.spider: h.consecutive_failures for h in histories}
        for p in plan.spiders:
            if p.every is not None:
                self.metrics.job_interval.labels(p.spider, exported[p.spider]).set(p.every.total_seconds())
            self.metrics.job_paused.labels(p.spider).set(1 if p.paused else 0)
            self.metrics.job_failures.labels(p.spider, exported[p.spider]).set(failures.get(p.spider, 0))
        self._exported = exported

    # ----------------------------------------------------------------- the view
    def job_view(self, housekeeping: Sequence[dict[str, Any]] = ()) -> dict[str, object]:
        """What GET /jobs shows: the spider job and the housekeeping jobs."""
        return {"is_running": bool(self._job["running"]), "jobs": [dict(self._job), *housekeeping]}


class Heartbeat:
    """The cadence of the loop's heartbeat file (daemon/telemetry/heartbeat.py), which the healthcheck reads:
    a beat on every pass of the loop, and at least every `every_s` while crawls run (the loop is
    inside the runner then)."""

    def __init__(self, path: Path, monotonic: Callable[[], float], every_s: float = 1.0) -> None:
        self.path = path
        self.monotonic = monotonic
        self.every_s = every_s
        self._last = float("-inf")

    def beat(self) -> None:
        heartbeat.beat(self.path)
        self._last = self.monotonic()

    def beat_if_due(self) -> None:
        if self.monotonic() - self._last >= self.every_s:
            self.beat()
