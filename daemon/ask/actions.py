"""The one path every action takes: run-now, pause, resume and cancel, from the page, its JSON API
or the command line (issue #23). Each writes the board the lock holder hears within a second
(daemon/records/board.py) and one audit row per job (daemon/records/audit.py), whatever its result,
so an action from the page and the same from the CLI are one thing in effect and in the record.

`act` decides one job's action the way the commands do: a paused job is not run (resume it first),
a job paused in the jobs file is not resumed from here (the file says so), a cancel with no crawl
running or a resume of a job that was not paused changes nothing and says so. It never starts
Scrapy and works with either engine: the lock holder does the rest.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from daemon.jobs.jobfile import DURATION_ALLOWED
from daemon.records import audit

if TYPE_CHECKING:
    from daemon.jobs.jobfile import Job
    from daemon.records.store import Store

ACTIONS = ("run-now", "pause", "resume", "cancel")
PAUSE_ALLOWED = f"{DURATION_ALLOWED}, greater than 0 and at most 100 years"
ALL_JOBS = "*"  # the audit's job for a run-now of every job (the CLI without names)


@dataclass(frozen=True)
class Actor:
    """Who acts: the page's user (source `page` or `api`), or `cli:<OS user>` from the command line."""

    name: str
    source: str  # page | api | cli
    address: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (a bare container user)
            user = "unknown"
        return cls(f"cli:{user}", "cli")


@dataclass(frozen=True)
class Outcome:
    """What became of one action on one job: `done`, `nothing` (nothing to change) or `refused`."""

    action: str
    job: str
    result: str
    message: str  # the one-line notice
    audit_id: int
    until: datetime | None = None

    def as_dict(self, tz: tzinfo) -> dict[str, Any]:
        until = self.until.astimezone(tz).isoformat(timespec="seconds") if self.until else None
        return {"action": self.action, "job": self.job, "result": self.result, "message": self.message,
                "audit_id": self.audit_id, "until": until}  # fmt: skip


def pause_length(text: str) -> timedelta | None:
    """How long a pause asked for as `text` lasts (90m, 4h, 1d, 1h30m or a number of hours), or None
    when it is not one (`PAUSE_ALLOWED` says what is), for the CLI's --for and the API's "for" alike."""
    from daemon.jobs.jobfile import MAX_DURATION, parse_duration

    try:
        value = parse_duration(text)
    except ValueError:
        try:
            value = parse_duration(float(text))
        except ValueError:
            return None
    return value if value and value <= MAX_DURATION else None


def act(store: Store, jobs: Sequence[Job], action: str, name: str, actor: Actor, now: datetime, tz: tzinfo, *,
        pause_for: timedelta | None = None) -> Outcome:  # fmt: skip
    """Do `action` to the job `name` (one of `jobs`, which the caller has checked) and record it.
    `pause_for`: how long a pause lasts (None: until resumed)."""
    job = next(job for job in jobs if job.name == name)
    if action == "run-now":
        return run_now_one(store, job, actor, now)
    if action == "pause":
        until = now + pause_for if pause_for else None
        return pause(store, name, until, actor, now, tz)
    if action == "resume":
        if job.paused:
            return _record(store, now, action, name, actor, "refused",
                           f"{name} is paused in the jobs file (paused = true): set paused = false there to resume it")
        return resume(store, name, actor, now)
    if action == "cancel":
        return cancel(store, name, actor, now)
    raise ValueError(f"no action {action!r}: {', '.join(ACTIONS)}")


def run_now_one(store: Store, job: Job, actor: Actor, now: datetime) -> Outcome:
    if job.paused or job.name in store.pauses(now):
        how = "set paused = false in the jobs file" if job.paused else "resume it first"
        return _record(store, now, "run-now", job.name, actor, "refused", f"{job.name} is paused: {how}")
    _, [outcome] = run_now(store, [job.name], actor, now)
    return outcome


def run_now(store: Store, names: list[str] | None, actor: Actor, now: datetime) -> tuple[int, list[Outcome]]:
    """Ask the lock holder to run these jobs (None: every job): the request's id, one audit row per job."""
    request_id = store.request_run(names)
    return request_id, [_record(store, now, "run-now", name, actor, "done", f"run requested (request {request_id})")
                        for name in (names or [ALL_JOBS])]  # fmt: skip


def pause(store: Store, name: str, until: datetime | None, actor: Actor, now: datetime, tz: tzinfo) -> Outcome:
    store.pause(name, until, now)
    shown = until.astimezone(tz).isoformat(timespec="seconds") if until else None
    message = f"paused {name} until {shown}" if shown else f"paused {name} until resumed"
    return _record(store, now, "pause", name, actor, "done", message, detail=shown or "until resumed", until=until)


def resume(store: Store, name: str, actor: Actor, now: datetime) -> Outcome:
    if store.resume(name):
        return _record(store, now, "resume", name, actor, "done", f"resumed {name}")
    return _record(store, now, "resume", name, actor, "nothing", f"{name} was not paused")


def cancel(store: Store, name: str, actor: Actor, now: datetime) -> Outcome:
    running = [row[0] for row in store.latest_job_runs([name]) if row[3] == "running"]
    if running and store.request_cancel(running):
        return _record(store, now, "cancel", name, actor, "done", f"cancel requested: {name}")
    return _record(store, now, "cancel", name, actor, "nothing", f"{name} is not running: nothing to cancel")


def _record(store: Store, now: datetime, action: str, job: str, actor: Actor, result: str, message: str, *,
            detail: str | None = None, until: datetime | None = None) -> Outcome:  # fmt: skip
    audit_id = audit.record(store.conn, at=now, action=action, job=job, detail=detail, actor=actor.name,
                            source=actor.source, address=actor.address, result=result, message=message)  # fmt: skip
    return Outcome(action, job, result, message, audit_id, until)
