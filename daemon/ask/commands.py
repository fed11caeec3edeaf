"""The commands that talk to the daemon through PostgreSQL: status, run-now, pause, resume, cancel,
explain.

Each reads the jobs the lock holder published (sql/012_jobs.sql) and never starts Scrapy, so it
answers at once. Before any daemon published its jobs, one job per spider stands in: the spiders of
SCHEDULER_SPIDERS, or those known from the history, with the environment's interval.

A name that is no job (for run-now: no job and no spider of a job) exits 2 with one line naming
the known jobs; so does asking to run or resume a paused job that cannot be. Nothing is changed
then. Every command takes --json.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from daemon.system.errors import SchedulerError

if TYPE_CHECKING:
    from daemon.settings.config import Settings
    from daemon.jobs.jobfile import Job
    from daemon.records.store import Store

KNOWN_SHOWN = 10  # names listed in an "unknown job" line before "... (N in all)"
DB_WAIT_SECONDS = 10  # a command waits at most this long for PostgreSQL (or DB_WAIT_TIMEOUT_SECONDS if shorter)
FOLLOW_POLL_SECONDS = 0.5  # `logs --follow`: how often a running crawl's file is read again


class CommandError(SchedulerError):
    """The command cannot be done as asked."""

    exit_code = 2


def add_arguments(parsers: dict[str, argparse.ArgumentParser]) -> None:
    """The arguments of the commands here (`python -m daemon COMMAND --help`)."""
    for name in ("status", "run-now", "pause", "resume", "cancel", "explain"):
        parsers[name].add_argument("--json", action="store_true", help="machine-readable output")
    parsers["run-now"].add_argument("jobs", nargs="*", metavar="JOB",
                                    help="jobs to run, or spiders to run all their jobs (default: every job)")
    parsers["pause"].add_argument("jobs", nargs="+", metavar="JOB", help="the jobs to pause")
    parsers["pause"].add_argument("--for", dest="duration", metavar="DURATION",
                                  help="how long: 90m, 4h, 1d, 1h30m or a number of hours (default: until resumed)")
    parsers["resume"].add_argument("jobs", nargs="+", metavar="JOB", help="the paused jobs to resume")
    parsers["cancel"].add_argument("jobs", nargs="+", metavar="JOB", help="the jobs whose running crawl to stop")
    parsers["explain"].add_argument("job", metavar="JOB", help="the job to explain")


def status(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.ask import status as report
    from daemon.system.clock import SystemClock
    from daemon.ask.status import current_jobs

    with _store(settings) as store:
        jobs, source, published = current_jobs(store, settings)
        gathered = report.gather(store, settings, SystemClock().now(), jobs, source, published)
    print(report.render(gathered, args.json))
    return 0


def run_now(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.ask import actions
    from daemon.system.clock import SystemClock
    from daemon.ask.status import current_jobs

    now = SystemClock().now()
    with _store(settings) as store:
        jobs, _, _ = current_jobs(store, settings)
        pauses = store.pauses(now)
        paused = {job.name: _pause_text(job, pauses, settings) for job in jobs if job.paused or job.name in pauses}
        by_name = {job.name: job for job in jobs}
        chosen: list[str] = []
        skipped: list[str] = []  # paused jobs of a spider asked for by name
        unknown = []
        for name in args.jobs:
            if name in by_name:
                if name in paused:
                    how = ("set paused = false there" if by_name[name].paused
                           else f"resume it first: python -m daemon resume {name}")  # fmt: skip
                    raise CommandError(f"run-now: job {name} is paused ({paused[name]}): {how}")
                chosen.append(name)
                continue
            of_spider = [job.name for job in jobs if job.spider == name]
            if not of_spider:
                unknown.append(name)
            chosen += [n for n in of_spider if n not in paused]
            skipped += [n for n in of_spider if n in paused]
        if unknown:
            names = [job.name for job in jobs]
            spiders = [s for s in dict.fromkeys(job.spider for job in jobs) if s not in by_name]
            raise CommandError(f"run-now: no job and no spider named {_shown(unknown)} "
                               f"(known: {_listed(names + spiders)})")  # fmt: skip
        chosen = list(dict.fromkeys(chosen))
        if args.jobs and not chosen:
            raise CommandError(f"run-now: every job of {', '.join(args.jobs)} is paused "
                               f"({', '.join(f'{n}: {paused[n]}' for n in skipped)}): resume one first")  # fmt: skip
        request_id, _ = actions.run_now(store, chosen or None, actions.Actor.cli(), now)
    if args.json:
        print(json.dumps({"request_id": request_id, "jobs": chosen or None, "skipped_paused": skipped}))
    else:
        others = f" except the paused {_listed(paused)}" if paused else ""
        asked = ", ".join(chosen) if chosen else f"all jobs{others}"
        print(f"run requested (request {request_id}): {asked}")
        if skipped:
            print(f"not requested, paused: {_listed(f'{n} ({paused[n]})' for n in skipped)}")
    return 0


def pause(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.ask import actions
    from daemon.system.clock import SystemClock
    from daemon.ask.status import current_jobs

    now = SystemClock().now()
    until = None
    if args.duration is not None:
        until = now + _duration(args.duration)
    with _store(settings) as store:
        jobs, _, _ = current_jobs(store, settings)
        names = _resolve("pause", args.jobs, jobs)
        for name in names:
            actions.pause(store, name, until, actions.Actor.cli(), now, settings.timezone)
    shown = _iso(until, settings)
    if args.json:
        print(json.dumps({"paused": [{"job": name, "until": shown} for name in names]}))
    else:
        print(f"paused {', '.join(names)} " + (f"until {shown}" if shown else "until resumed"))
    return 0


def resume(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.ask import actions
    from daemon.system.clock import SystemClock
    from daemon.ask.status import current_jobs

    now, actor = SystemClock().now(), actions.Actor.cli()
    with _store(settings) as store:
        jobs, _, _ = current_jobs(store, settings)
        names = _resolve("resume", args.jobs, jobs)
        in_file = [job.name for job in jobs if job.name in names and job.paused]
        if in_file:
            for name in in_file:  # recorded refused, as from the page
                actions.act(store, jobs, "resume", name, actor, now, settings.timezone)
            raise CommandError(f"resume: {', '.join(in_file)} paused in the jobs file (paused = true): "
                               "set paused = false there to resume it; nothing was changed")  # fmt: skip
        resumed = [name for name in names if actions.resume(store, name, actor, now).result == "done"]
    idle = [name for name in names if name not in resumed]
    if args.json:
        print(json.dumps({"resumed": resumed, "not_paused": idle}))
    else:
        said = (resumed and f"resumed {', '.join(resumed)}", idle and f"not paused: {', '.join(idle)}")
        print("; ".join(part for part in said if part))
    return 0


def cancel(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.ask import actions
    from daemon.system.clock import SystemClock
    from daemon.ask.status import current_jobs

    now, actor = SystemClock().now(), actions.Actor.cli()
    with _store(settings) as store:
        jobs, _, _ = current_jobs(store, settings)
        names = _resolve("cancel", args.jobs, jobs)
        running = [name for name in names if actions.cancel(store, name, actor, now).result == "done"]
    idle = [name for name in names if name not in running]
    if args.json:
        print(json.dumps({"cancel_requested": running, "not_running": idle}))
    else:
        said = (running and f"cancel requested: {', '.join(running)}",
                idle and f"{', '.join(idle)} not running: nothing to cancel")
        print("; ".join(part for part in said if part))
    return 0


def explain(settings: Settings, args: argparse.Namespace) -> int:
    """One paragraph: the rule in force for the job (daemon/ask/explain.py), from the daemon's own
    decision code. PostgreSQL unreachable: one line naming the fail-safe and this machine's journal."""
    from daemon.ask import explain as why
    from daemon.system.clock import SystemClock
    from daemon.system.errors import DatabaseUnavailable
    from daemon.records.journal import journaled

    now = SystemClock().now()
    try:
        with _store(settings) as store:
            explained = why.explain(*explain_inputs(store, settings, args.job, now), now, settings.timezone)
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(why.unreachable(str(exc), *journaled(settings.state_dir))) from None
    print(json.dumps(explained.as_dict(), indent=2) if args.json else explained.paragraph())
    return 0


def explain_inputs(store: Store, settings: Settings, name: str, now: Any) -> tuple[Any, ...]:
    """(job, plan, history, facts, holder) for daemon.ask.explain.explain, its plan by the daemon's own
    decision code from the job's history, cadence and pause (status.plan_jobs, as `status` decides)."""
    from daemon.ask import explain as why
    from daemon.ask.status import plan_jobs
    from daemon.ask.status import current_jobs
    jobs, source, published = current_jobs(store, settings)
    job = next((job for job in jobs if job.name == name), None)
    if job is None:
        raise CommandError(_unknown_explained(name, jobs, source))
    decided, [history], cadences = plan_jobs(store, settings, now, [job])
    [plan] = decided.spiders
    [(_, started, finished, status, failure, items, message)] = store.latest_job_runs([job.name])
    run = store.run_under_way()
    facts = why.Facts(
        last_crawl=why.Crawl(started, status, finished, failure, message, items) if started else None,
        run=why.RunUnderWay(*run) if run else None,
        run_now_at=store.pending_request_for(job.name, job.spider),
        concurrency=settings.concurrency,
        paused_until=cadences[job.name].paused_until,
        file_error=source[2] if source else None,
        published=published,
        last_suspect=store.last_suspect(job.name),
        schedule_since=store.schedules_since().get(job.name) if job.calendar is not None else None,
    )  # fmt: skip
    return job, plan, history, facts, why.Holder(*store.runner_holder())


def _unknown_explained(name: str, jobs: Sequence[Job], source: tuple[Any, ...] | None) -> str:
    line = f"explain: no job named {_shown([name])} (known: {_listed(job.name for job in jobs)})"
    of_spider = [job.name for job in jobs if job.spider == name]
    if of_spider:
        line += f"; spider {name} runs as the jobs {_listed(of_spider)}: explain one of them"
    if source and source[2]:
        line += "; the jobs file has an error, so the daemon runs its last good jobs (status shows the error)"
    return line


class _store:
    """A Store on a fresh connection, closed on leaving."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __enter__(self) -> Store:
        from daemon.records import db
        from daemon.records.store import Store

        timeout = min(self.settings.db_wait_timeout_seconds, DB_WAIT_SECONDS)
        self.store = Store(db.wait_for_database(self.settings, timeout=timeout))
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def _resolve(command: str, names: Sequence[str], jobs: Sequence[Job]) -> list[str]:
    known = [job.name for job in jobs]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CommandError(f"{command}: no job named {_shown(unknown)} (known: {_listed(known)})")
    return list(dict.fromkeys(names))


def _shown(names: Sequence[str]) -> str:
    """Names as typed, on one line: one with control characters is quoted with escapes, a long one cut."""
    shown = [name if name.isprintable() and len(name) <= 100 else repr(name[:100]) for name in names]
    return ", ".join(shown)


def _listed(names: Iterable[str]) -> str:
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(names[:KNOWN_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > KNOWN_SHOWN else "")


def _duration(text: str) -> Any:
    from daemon.ask.actions import PAUSE_ALLOWED, pause_length

    value = pause_length(text)
    if value is None:
        raise CommandError(f"pause: --for {text!r} is not allowed: {PAUSE_ALLOWED}")
    return value


def _pause_text(job: Job, pauses: dict[str, Any], settings: Settings) -> str:
    if job.paused:
        return "in the jobs file"
    until = pauses[job.name]
    return f"until {_iso(until, settings)}" if until else "until resumed"


def _iso(moment: Any, settings: Settings) -> str | None:
    return moment.astimezone(settings.timezone).isoformat(timespec="seconds") if moment else None


def logs(settings: Settings, args: argparse.Namespace) -> int:
    """`logs JOB [--run ID] [--follow]`: a crawl's output, from this machine's file when it is here,
    else the last lines kept in PostgreSQL. --follow prints what a running crawl adds until it ends."""
    import sys
    import time

    from daemon.system import statedir
    from daemon.records import db
    from daemon.engines.crawllog import local_file
    from daemon.system.errors import ConfigError
    from daemon.records.store import Store

    store = Store(db.wait_for_database(settings, timeout=min(settings.db_wait_timeout_seconds, 10)))
    try:
        row = store.crawl_for_log(args.job, args.run)
        if row is None:
            known = store.job_names()
            what = f"no crawl {args.run} of job {args.job!r}" if args.run else f"no crawl of a job named {args.job!r}"
            raise ConfigError([f"logs: {what} (jobs: {', '.join(known[:10]) or 'none'}"
                               f"{', ...' if len(known) > 10 else ''})"])  # fmt: skip
        run_id, job, spider, status, started, finished, pid, tail = row
        path = local_file(settings.state_dir, job, pid, started)
        where = str(path) if path else "its last lines, kept in PostgreSQL"
        print(f"# job {job} (spider {spider}), crawl {run_id}, {status}, started {started.isoformat()}: {where}")
        if path is None:
            sys.stdout.write(tail or "(no output recorded)\n")
            return 0
        fd = statedir.open_own(path, os.O_RDONLY)
        with os.fdopen(fd, encoding="utf-8", errors="replace") as fh:
            sys.stdout.write(fh.read())
            sys.stdout.flush()
            while args.follow and status == "running":
                time.sleep(FOLLOW_POLL_SECONDS)  # the command's own wait, not the loop's
                sys.stdout.write(fh.read())
                sys.stdout.flush()
                status = store.crawl_for_log(job, run_id)[3]  # type: ignore[index]
            sys.stdout.write(fh.read())
        return 0
    finally:
        store.close()
