"""`python -m daemon explain JOB`: why a job runs now, or when it will and why not sooner.

A pure function of what the commands read from PostgreSQL (the job, its history, its plan from the
daemon's own decision code, its newest crawl, the run under way, a pending run-now request, who
holds the runner lock) and `now`. It names the rule in force, a small code for scripts, and renders
one paragraph in plain English, times in SCHEDULER_TIMEZONE. Nothing here reads the clock or the
database, so the job's page can say the same thing.

The rules, the first that applies winning:

    running           its crawl is under way
    file_error        the jobs file has a problem with this job: it runs as last loaded
    paused            paused in the jobs file, or by `pause` (until a time, or until resumed)
    no_runner         no daemon holds the runner lock: nothing runs until one starts
    due_run_now       a run-now request for it waits for the lock holder
    waiting_slot      due, and the run under way has crawls still to start: a concurrency slot
    waiting_run       due since the run under way started: the next run starts when it ends
    ...then its own cadence (`timing`, always computed by decision.plan_job):
    due_first_run     it never succeeded: due at once
    due_clock_skew    its latest crawl is recorded in the future (the clock was set back): due now
    due_retry         its backoff after failures is over
    due_catch_up      due since before the lock holder took the lock: run in its catch-up
    due_interval      its last success started one interval ago or more
    waiting_backoff   failed N times in a row: retried after a backoff
    waiting_interval  its last success started less than one interval ago

Jitter is drawn inside the daemon, so only its bound is known here: "may be held back by up to X".
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta, tzinfo
from typing import Any

from daemon.plan.decision import NEVER_DUE, Cadence, SpiderHistory, SpiderPlan, plan_job, retry_backoff
from daemon.ask.explain_words import (  # the rule codes, and how each is said
    DUE_CALENDAR, DUE_CATCH_UP, DUE_CLOCK_SKEW, DUE_FIRST_RUN, DUE_INTERVAL, DUE_RETRY, DUE_RUN_NOW, FILE_ERROR,
    NO_RUNNER, PAUSED, RULES, RUNNING, WAITING_BACKOFF, WAITING_CALENDAR, WAITING_INTERVAL, WAITING_RUN,
    WAITING_SLOT, humanize, oneline, paused_by, sentences, unreachable,
)  # fmt: skip
from daemon.jobs.jobfile import Job


@dataclasses.dataclass(frozen=True)
class Crawl:
    """The job's newest crawl (a row of spider_runs)."""

    started_at: datetime
    status: str  # running | completed | failed
    finished_at: datetime | None = None
    failure: str | None = None
    message: str | None = None
    items: int | None = None


@dataclasses.dataclass(frozen=True)
class RunUnderWay:
    """The run in progress (the row of scheduler_state still 'running') and its crawls so far."""

    started_at: datetime
    planned: int  # the crawls it was started for
    started: int  # of those, started so far
    running: int  # running now


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who runs the jobs: whether any session holds the runner lock (pg_locks), and the holder
    recorded in runner_holder (left behind by one that did not stop cleanly when the lock is free)."""

    locked: bool
    owner: str | None = None  # "host=... boot=... pid=... start=..." (daemon/leadership/identity.py)
    since: datetime | None = None

    @property
    def who(self) -> str:
        fields = dict(part.split("=", 1) for part in (self.owner or "").split() if "=" in part)
        if "host" in fields and "pid" in fields:
            return f"host {oneline(fields['host'], 100)}, pid {oneline(fields['pid'], 20)}"
        return oneline(self.owner or "an unrecorded daemon", 100)


@dataclasses.dataclass(frozen=True)
class Facts:
    """What else the commands read about the job."""

    last_crawl: Crawl | None = None
    run: RunUnderWay | None = None
    run_now_at: datetime | None = None  # the oldest run-now request for it not yet taken
    concurrency: int = 1  # SCHEDULER_CONCURRENCY
    paused_until: datetime | None = None  # `pause JOB --for`: until when (None: until resumed, or not so paused)
    file_error: str | None = None  # jobs_source.error: the jobs file's problems
    published: bool = True  # False: no daemon published its jobs yet; a stand-in job per spider
    last_suspect: tuple[datetime, str] | None = None  # its latest crawl judged suspect (sql/017): started, why
    schedule_since: datetime | None = None  # a calendar job's: since when its schedule is published as it is


@dataclasses.dataclass(frozen=True)
class Explanation:
    job: Job
    rules: tuple[str, ...]  # the rules in force, the deciding one first; the last is `timing` (but running)
    timing: str  # what the job's own cadence says, whatever overrides it
    own: SpiderPlan  # the job's plan by its cadence alone (decision.plan_job, unpaused)
    plan: SpiderPlan  # its plan as the daemon decides it (paused or not)
    history: SpiderHistory
    facts: Facts
    holder: Holder
    now: datetime
    timezone: tzinfo

    @property
    def rule(self) -> str:
        return self.rules[0]

    @property
    def due(self) -> bool:
        """Due by its own cadence (paused or not)."""
        return self.own.reason not in NEVER_DUE and (self.own.due_at is None or self.own.due_at <= self.now)

    @property
    def backoff(self) -> timedelta:
        return retry_backoff(self.history.consecutive_failures, self.job.retry_delay, self.job.every)

    @property
    def file_problems(self) -> tuple[str, ...]:
        return problems_naming(self.facts.file_error, self.job.name)

    def paragraph(self) -> str:
        return " ".join(sentences(self))

    def as_dict(self) -> dict[str, Any]:
        iso, f, h, c = self._iso, self.facts, self.holder, self.facts.last_crawl
        run = f.run
        return {
            "job": self.job.name, "spider": self.job.spider, "rule": self.rule, "rules": list(self.rules),
            "timing": self.timing, "paragraph": self.paragraph(), "now": iso(self.now),
            "timezone": str(self.timezone), "due": self.due, "due_at": iso(self.own.due_at),
            "every_s": self.job.every.total_seconds(), "retry_delay_s": self.job.retry_delay.total_seconds(),
            "jitter_s": self.job.jitter.total_seconds(), "timeout_s": self.job.timeout.total_seconds(),
            "last_success_at": iso(self.history.last_success_at), "failures": self.history.consecutive_failures,
            "last_failure_at": iso(self.history.last_failure_at), "backoff_s": self.backoff.total_seconds(),
            "paused": self.plan.paused, "paused_by": paused_by(self),
            "paused_until": iso(f.paused_until) if self.plan.paused else None,
            "resumes_due_at": iso(self.plan.due_at) if self.plan.paused else None,
            "run_now_requested_at": iso(f.run_now_at),
            "run": None if run is None else {
                "started_at": iso(run.started_at), "planned": run.planned, "started": run.started,
                "running": run.running, "concurrency": f.concurrency,
            },
            "runner": {"locked": h.locked, "owner": h.owner, "since": iso(h.since)},
            "last_crawl": None if c is None else {
                "started_at": iso(c.started_at), "finished_at": iso(c.finished_at), "status": c.status,
                "failure": c.failure, "message": c.message, "items": c.items,
            },
            "file_problems": list(self.file_problems), "file_error": f.file_error is not None,
            "published": f.published,
            "last_suspect": None if f.last_suspect is None else {
                "started_at": iso(f.last_suspect[0]), "reason": f.last_suspect[1]},
            "slot": iso(self.own.slot), "next_slot": iso(self.own.calendar.next_slot) if self.own.calendar else None,
        }  # fmt: skip

    def _iso(self, moment: datetime | None) -> str | None:
        return moment.astimezone(self.timezone).isoformat(timespec="seconds") if moment else None


def explain(job: Job, plan: SpiderPlan, history: SpiderHistory, facts: Facts, holder: Holder, now: datetime,
            timezone: tzinfo) -> Explanation:  # fmt: skip
    """Why `job` runs now or when it will: `plan` is its plan from decision.decide_jobs (with its
    pause), `history` the history it was decided from."""
    calendar = dict(calendar=job.calendar, published_at=facts.schedule_since) if job.calendar is not None else {}
    own = plan_job(history, now, Cadence(job.every, job.retry_delay, **calendar))
    timing = _timing(own, holder, now, calendar=job.calendar is not None)
    due = own.reason not in NEVER_DUE and (own.due_at is None or own.due_at <= now)
    crawl = facts.last_crawl
    if crawl is not None and crawl.status == "running":
        rules: tuple[str, ...] = (RUNNING,)
    else:
        blocking = _blocking(plan, facts, holder, own, due)
        rules = (FILE_ERROR,) if problems_naming(facts.file_error, job.name) else ()
        rules += (*blocking, timing)
    return Explanation(job, rules, timing, own, plan, history, facts, holder, now, timezone)


def _timing(own: SpiderPlan, holder: Holder, now: datetime, *, calendar: bool = False) -> str:
    """The rule of the job's own cadence: its plan's reason, and whether it is due by `now`."""
    if own.reason == "clock_skew":
        return DUE_CLOCK_SKEW
    if calendar and (own.calendar is not None or own.reason in ("waiting_window", "never_open")):
        due = own.reason not in NEVER_DUE and own.due_at is not None and own.due_at <= now
        return DUE_CALENDAR if due else WAITING_CALENDAR
    if own.reason == "never_run":
        return DUE_FIRST_RUN
    if own.reason == "clock_skew" or own.due_at is None:
        return DUE_CLOCK_SKEW
    if own.reason == "retry":
        return DUE_RETRY if own.due_at <= now else WAITING_BACKOFF
    if own.due_at > now:
        return WAITING_INTERVAL
    # Due before the lock holder took the lock: its first decision (a catch-up) runs it at once.
    return DUE_CATCH_UP if holder.locked and holder.since is not None and own.due_at < holder.since else DUE_INTERVAL


def _blocking(plan: SpiderPlan, facts: Facts, holder: Holder, own: SpiderPlan, due: bool) -> tuple[str, ...]:
    if plan.paused:
        return (PAUSED,)
    if not holder.locked:
        return (NO_RUNNER,)
    if facts.run_now_at is not None:
        return (DUE_RUN_NOW,)
    run = facts.run
    if due and run is not None:
        in_run = (own.due_at is None or own.due_at <= run.started_at) and run.started < run.planned
        return (WAITING_SLOT,) if in_run else (WAITING_RUN,)
    return ()


def problems_naming(file_error: str | None, job: str) -> tuple[str, ...]:
    """The jobs file's problems about `job` (each names it as `job 'NAME'`, daemon/jobs/rules.py)."""
    if not file_error:
        return ()
    named = f"job {job!r}"
    return tuple(p for p in re.split(r"\n|; ", file_error) if named in p)


__all__ = ["Crawl", "Explanation", "Facts", "Holder", "RULES", "RunUnderWay", "explain", "humanize", "problems_naming",
           "unreachable"]
