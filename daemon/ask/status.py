"""`python -m daemon status`: one line per job, like `systemctl list-timers`, read from PostgreSQL,
so it works from any shell (`docker-compose exec scheduler python -m daemon status`) while the
daemon runs. The jobs are those the lock holder published; when each is due is decided by the
daemon's own decision code from the job's history, cadence and pause, never re-derived here."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from daemon.records import audit
from daemon.ask.calendar_status import calendar_report, lines as calendar_lines
from daemon.jobs.catalog import cadence
from daemon.settings.config import Settings
from daemon.plan.decision import Cadence, Plan, SpiderHistory, decide_jobs
from daemon.jobs.jobfile import Job, format_duration
from daemon.records.store import Store

ARGS_SHOWN = 30  # characters of a job's arguments in the table (--json has them whole)


def plan_jobs(store: Store, settings: Settings, now: datetime,
              jobs: Sequence[Job]) -> tuple[Plan, list[SpiderHistory], dict[str, Cadence]]:  # fmt: skip
    """Each job's plan at `now` by the daemon's own decision code, from its history, cadence and
    pause as PostgreSQL has them; with the histories and cadences it was decided from. `status` and
    the page both ask here, so they cannot disagree."""
    pauses = store.pauses(now)
    since = store.schedules_since() if any(job.calendar is not None for job in jobs) else {}
    cadences = {job.name: cadence(job, pauses, since.get(job.name)) for job in jobs}
    histories = store.histories([job.name for job in jobs])
    return decide_jobs(histories, now, cadences, Cadence(settings.interval, settings.retry_delay)), histories, cadences


def gather(store: Store, settings: Settings, now: datetime, jobs: Sequence[Job],
           source: tuple[Any, ...] | None, published: bool) -> dict[str, Any]:  # fmt: skip
    """The report: `jobs` as published (`published` False: the stand-in when nothing was), and
    `source` as Store.jobs_source gives it."""
    names = [job.name for job in jobs]
    plan, _, cadences = plan_jobs(store, settings, now, jobs)
    plans = {p.spider: p for p in plan.spiders}
    latest = {row[0]: row for row in store.latest_job_runs(names)} if names else {}
    acted = audit.last_per_job(store.conn, names) if names else {}  # sql/018_actions.sql
    suspects = store.latest_suspects(names) if names else {}
    running = [name for name, row in latest.items() if row[3] == "running"]
    calendars = calendar_report(store, jobs, plans, now, running) if names else {}
    rows = []
    for job in jobs:
        _, started, finished, status, failure, items, message = latest.get(job.name, (job.name,) + (None,) * 6)
        p, c = plans[job.name], cadences[job.name]
        rows.append({
            "job": job.name, "spider": job.spider, "args": dict(job.args), "settings": dict(job.settings),
            "every": f"cron {job.calendar.cron}" if job.calendar is not None and job.calendar.cron else format_duration(job.every),
            "every_s": c.every.total_seconds(),  # a cron job's: the longest gap between its slots
            "last_run": _iso(started, settings), "last_finished": _iso(finished, settings),
            "last_status": status, "failure": failure, "items": items, "message": message,
            "suspect": suspects.get(job.name),  # a success that looks wrong against the job's baseline
            "next_due": None if p.paused and p.due_at is None else _iso(max(p.due_at or now, now), settings),
            "paused": c.paused, "paused_until": _iso(c.paused_until, settings),
            "paused_by": ("file" if job.paused else "command") if c.paused else None,
            "running": status == "running",
            "last_action": acted[job.name].as_dict(settings.timezone) if job.name in acted else None,
            "calendar": calendars.get(job.name),  # None: an interval job without a window
        })  # fmt: skip
    run = store.latest_run()
    waiting = [p.due_at or now for p in plan.spiders if not (p.paused and p.due_at is None)]
    runs = {
        "id": "spiders",  # the runs of jobs (scheduler_state), named before jobs existed
        "last_run": _iso(run[1], settings) if run else None,
        "last_status": run[3] if run else None,
        "spiders": run[4] if run else None,
        "next_due": _iso(max(min(waiting), now), settings) if waiting else None,
        "running": bool(run and run[3] == "running"),
        "pending_requests": store.pending_requests(),
    }
    timers = [runs]
    last_jobs = dict(store.last_job_runs_detail())
    housekeeping = (
        ("history_retention", timedelta(days=1)),
        ("overdue_check", settings.overdue_check_every),
        ("cache_cleanup", settings.cache_cleanup_every),
    )
    for name, every in housekeeping:
        started, status = last_jobs.get(name, (None, None))
        timers.append({
            "id": name, "last_run": _iso(started, settings), "last_status": status,
            "next_due": _iso(max(started + every, now) if started else now, settings), "running": False,
        })  # fmt: skip
    path, loaded_at, error, spiders, listed_at = source or (None,) * 5
    return {
        "now": _iso(now, settings),
        "timezone": str(settings.timezone),
        "is_running": runs["running"],
        "source": {
            "published": published, "path": path, "loaded_at": _iso(loaded_at, settings), "error": error,
            "spiders": spiders, "listed_at": _iso(listed_at, settings),
        },  # fmt: skip
        "jobs": timers,  # the runs and the housekeeping timers ("jobs" before jobs of spiders existed)
        "spiders": rows,  # one entry per job of spiders
    }


def _iso(moment: datetime | None, settings: Settings) -> str | None:
    return moment.astimezone(settings.timezone).isoformat(timespec="seconds") if moment else None


def render(report: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(report, indent=2)
    text: list[str] = []
    source = report["source"]
    if source["error"]:
        text.append("JOBS FILE ERROR: the daemon keeps running its last good jobs (below) until the file is fixed:")
        text += [f"  {line}" for line in source["error"].splitlines()]
    header = ("JOB / SPIDER", "ARGS", "EVERY", "LAST RUN", "STATUS", "ITEMS", "NEXT DUE", "PAUSED", "RUNNING")
    jobs = [header]
    for row in report["spiders"]:
        status = row["last_status"] or "-"
        if row["failure"]:
            status = f"{status} ({row['failure']})"
        if row.get("suspect"):
            status = f"{status}, suspect"
        name = row["job"] if row["job"] == row["spider"] else f"{row['job']} / {row['spider']}"
        jobs.append((
            _printable(name), _short_args(row["args"]), row["every"], _short(row["last_run"]) or "never", status,
            "-" if row["items"] is None else str(row["items"]), _short(row["next_due"]) or "-", _paused(row),
            "yes" if row["running"] else "no",
        ))  # fmt: skip
    text += _table(jobs)
    text += [f"{_printable(row['job'])}: suspect: {_printable(row['suspect'])}" for row in report["spiders"]
             if row.get("suspect")]  # fmt: skip
    calendars = [row for row in report["spiders"] if row.get("calendar")]
    if calendars:
        text.append("")
        for row in calendars:
            text += [_printable(line) for line in calendar_lines(row["job"], row["calendar"])]
    timers = [("TIMER", "LAST RUN", "STATUS", "NEXT DUE", "RUNNING")]
    for timer in report["jobs"]:
        name = "runs" if timer["id"] == "spiders" else timer["id"]
        timers.append((name, _short(timer["last_run"]) or "never", timer["last_status"] or "-",
                       _short(timer["next_due"]) or "-", "yes" if timer["running"] else "no"))  # fmt: skip
    text += [""] + _table(timers)
    pending = report["jobs"][0].get("pending_requests")
    if pending:
        text.append(f"({pending} run-now request(s) waiting for the daemon)")
    text.append(f"(now {_short(report['now'])}, times in {report['timezone']}; {_source(source)})")
    return "\n".join(text)


def _table(lines: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]


def _short(iso: str | None) -> str | None:
    """"2026-05-01T14:03:09-05:00" as the table shows it: "2026-05-01 14:03" (the zone is in the footer)."""
    return iso[:16].replace("T", " ") if iso else None


def _paused(row: dict[str, Any]) -> str:
    if not row["paused"]:
        return "no"
    if row["paused_by"] == "file":
        return "in the file"
    return f"until {_short(row['paused_until'])}" if row["paused_until"] else "until resumed"


def _short_args(args: dict[str, str]) -> str:
    shown = _printable(" ".join(f"{k}={v}" for k, v in args.items())) or "-"
    return shown if len(shown) <= ARGS_SHOWN else shown[: ARGS_SHOWN - 3] + "..."


def _printable(text: str) -> str:
    """A value as one table cell: control characters (a newline in an argument) as escapes."""
    return "".join(c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in text)


def _source(source: dict[str, Any]) -> str:
    if not source["published"]:
        return "no daemon has published its jobs yet: one job per spider known here"
    where = f"jobs from {source['path']}" if source["path"] else "no jobs file: one job per spider"
    return f"{where}, loaded {_short(source['loaded_at'])}"


def current_jobs(store: Store, settings: Settings) -> tuple[list[Job], tuple[Any, ...] | None, bool]:
    """(the jobs, their source, whether they were published). Nothing published yet: one job per
    spider of SCHEDULER_SPIDERS, else per spider known from the history."""
    from daemon.jobs.jobfile import JobDefaults, default_jobs

    source = store.jobs_source()
    if source is not None:
        return store.published_jobs(), source, True
    spiders = list(settings.spiders) or store.known_spiders()
    return list(default_jobs(spiders, JobDefaults.from_settings(settings))), None, False
