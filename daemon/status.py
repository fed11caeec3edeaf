"""`python -m daemon status`: like `systemctl list-timers`, read from PostgreSQL, so it works from
any shell (`docker-compose exec scheduler python -m daemon status`) while the daemon runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from daemon.config import Settings
from daemon.decision import decide
from daemon.store import Store


def gather(store: Store, settings: Settings, now: datetime, spiders: Sequence[str] = ()) -> dict[str, Any]:
    names = list(spiders) or list(settings.spiders) or store.known_spiders()
    plan = decide(store.histories(names), now, settings.interval, settings.retry_delay) if names else None
    due_at = {p.spider: (p.due_at or now) for p in plan.spiders} if plan else {}
    latest = store.latest_spider_runs(names) if names else []
    run = store.latest_run()
    rows = []
    for spider, started, finished, status, failure, items, message in latest:
        rows.append({
            "spider": spider, "last_run": _iso(started, settings), "last_finished": _iso(finished, settings),
            "last_status": status, "failure": failure, "items": items, "message": message,
            "next_due": _iso(max(due_at[spider], now), settings), "running": status == "running",
        })  # fmt: skip
    next_due = min(due_at.values(), default=None)
    job = {
        "id": "spiders",
        "last_run": _iso(run[1], settings) if run else None,
        "last_status": run[3] if run else None,
        "spiders": run[4] if run else None,
        "next_due": _iso(max(next_due, now), settings) if next_due else None,
        "running": bool(run and run[3] == "running"),
        "pending_requests": store.pending_requests(),
    }
    jobs = [job]
    last_jobs = dict(store.last_job_runs_detail())
    housekeeping = (
        ("history_retention", timedelta(days=1)),
        ("overdue_check", settings.overdue_check_every),
        ("cache_cleanup", settings.cache_cleanup_every),
    )
    for name, every in housekeeping:
        started, status = last_jobs.get(name, (None, None))
        jobs.append({
            "id": name, "last_run": _iso(started, settings), "last_status": status,
            "next_due": _iso(max(started + every, now) if started else now, settings), "running": False,
        })  # fmt: skip
    return {"now": _iso(now, settings), "is_running": job["running"], "jobs": jobs, "spiders": rows}


def _iso(moment: datetime | None, settings: Settings) -> str | None:
    return moment.astimezone(settings.timezone).isoformat(timespec="seconds") if moment else None


def render(report: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(report, indent=2)
    header = ("JOB / SPIDER", "LAST RUN", "STATUS", "ITEMS", "NEXT DUE", "RUNNING")
    lines: list[tuple[str, ...]] = [header]
    for job in report["jobs"]:
        lines.append((job["id"], job["last_run"] or "never", job["last_status"] or "-", "-",
                      job["next_due"] or "-", "yes" if job["running"] else "no"))  # fmt: skip
    for row in report["spiders"]:
        status = row["last_status"] or "-"
        if row["failure"]:
            status = f"{status} ({row['failure']})"
        items = "-" if row["items"] is None else str(row["items"])
        lines.append((f"  {row['spider']}", row["last_run"] or "never", status, items, row["next_due"] or "-",
                      "yes" if row["running"] else "no"))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(text + [f"(now {report['now']})"])
