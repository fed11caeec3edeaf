"""Generated histories for the page's tests (and the README's screenshot): jobs with their crawls,
relative to `now`, written to a real database as the daemon writes them."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

from daemon.jobs.jobfile import Job, JobDefaults, make_job
from daemon.records.store import Store
from daemon.web.timeline import Crawl

H = timedelta(hours=1)
M = timedelta(minutes=1)
DEFAULTS = JobDefaults(every=4 * H, timeout=2 * H, retry_delay=15 * M, max_errors=0, min_items=0, jitter=0 * M)
HOSTILE = ('<script>alert("job")</script>', '"><svg onload=alert(1)>')


@dataclasses.dataclass
class Planned:
    """A crawl to arrange: `ago` before now, lasting `took`."""

    ago: timedelta
    status: str = "completed"
    failure: str | None = None
    took: timedelta = 3 * M
    items: int | None = 50
    errors: int | None = 0
    finish_reason: str | None = "finished"
    message: str | None = None
    stats: dict[str, Any] | None = None
    log_tail: str | None = None
    spider: str | None = None
    args: dict[str, str] | None = None


def job(name: str, every: timedelta = 4 * H, **values: Any) -> Job:
    return make_job(name=name, spider=values.pop("spider", name), defaults=DEFAULTS, every=every, **values)


def steady(every: timedelta, since: timedelta, until: timedelta = 0 * H, items: int = 50) -> list[Planned]:
    """A success every `every` from `since` ago to `until` ago."""
    found, ago = [], since
    while ago >= until:
        found.append(Planned(ago, items=items + int(ago / H) % 7 * 3))
        ago -= every
    return found


def failed(ago: timedelta, failure: str = "error", message: str = "spider raised", **values: Any) -> Planned:
    return Planned(ago, "failed", failure, items=values.pop("items", 0), errors=values.pop("errors", 1),
                   finish_reason=values.pop("finish_reason", "finished"), message=message, **values)  # fmt: skip


def showcase() -> list[tuple[Job, list[Planned]]]:
    """A few jobs over a week: on time, failing and retried, overdue after a gap, paused, never successful."""
    return [
        (job("quotes", 4 * H), steady(4 * H, 7 * 24 * H - 1.8 * H, 1 * H)),
        (job("books", 4 * H), [*steady(4 * H, 7 * 24 * H, 13 * H),
                               failed(9 * H), failed(8.7 * H, "timeout", "took longer than 2h"), failed(0.5 * H)]),
        (job("prices", 6 * H), [*steady(6 * H, 7 * 24 * H, 4 * 24 * H),
                                failed(3.8 * 24 * H, "timeout", "took longer than 2h"),
                                failed(3.6 * 24 * H, "error", "HTTP 503 from the site"),
                                *steady(6 * H, 3 * 24 * H, 35 * H)]),
        (job("news", 12 * H, paused=True), steady(12 * H, 7 * 24 * H, 2 * 24 * H)),
        (job("archive", 24 * H), [failed(30 * H, "too_few_items", "scraped 0 items, fewer than 10"),
                                  failed(6 * H, "error", "ImportError in the spider")]),
    ]  # fmt: skip


def to_crawls(name: str, spider: str, planned: list[Planned], now: datetime, first_id: int = 1) -> list[Crawl]:
    """The crawls as the page reads them (for unit tests, without a database)."""
    return [
        Crawl(first_id + i, name, p.spider or spider, p.status, p.failure, now - p.ago,
              None if p.status == "running" else now - p.ago + p.took, p.items, p.errors, p.finish_reason,
              p.message)
        for i, p in enumerate(sorted(planned, key=lambda p: -p.ago))
    ]  # fmt: skip


def arrange(conn: Any, now: datetime, jobs: list[tuple[Job, list[Planned]]], *, publish: bool = True) -> dict[str, list[int]]:
    """Publish `jobs` as the lock holder does and record their crawls, one run each, oldest first;
    returns each job's crawl ids in that order."""
    if publish:
        Store(conn).publish_jobs([j for j, _ in jobs], path=None, error=None, spiders=None, now=now, owner="test")
    everything = sorted(((now - p.ago, j, p) for j, crawls in jobs for p in crawls), key=lambda t: t[0])
    ids: dict[str, list[int]] = {j.name: [] for j, _ in jobs}
    with conn.cursor() as cur:
        for started, j, p in everything:
            finished = None if p.status == "running" else started + p.took
            cur.execute("INSERT INTO scheduler_state (last_run_at, spider_count, status, finished_at) "
                        "VALUES (%s, 1, %s, %s) RETURNING id",
                        (started, "running" if p.status == "running" else "completed", finished))  # fmt: skip
            run_id = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO spider_runs (run_id, job, spider, args, status, failure, started_at, finished_at, "
                "items_scraped, error_count, finish_reason, message, stats, log_tail, exit_code) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (run_id, j.name, p.spider or j.spider, json.dumps(p.args or dict(j.args)), p.status, p.failure,
                 started, finished, p.items, p.errors, None if p.status == "running" else p.finish_reason,
                 p.message, None if p.stats is None else json.dumps(p.stats), p.log_tail,
                 None if p.status == "running" else (0 if p.status == "completed" else 1)),
            )  # fmt: skip
            ids[j.name].append(cur.fetchone()[0])
    return ids


def serve_page(env: dict[str, str], **kwargs: Any) -> tuple[Any, int]:
    """The HTTP endpoint as the daemon builds it, on a free port of 127.0.0.1, against `env`'s
    database; returns it (stop it after) and its port."""
    from daemon.settings.config import Settings
    from daemon.web.http import HttpEndpoint
    from daemon.telemetry.metrics import Metrics
    from tests.conftest import free_port

    port = free_port()
    settings = Settings.from_mapping({**env, "SCHEDULER_HTTP_PORT": str(port)})
    endpoint = HttpEndpoint(settings, Metrics(), lambda: {"is_running": False, "jobs": []}, **kwargs)
    endpoint.start()
    return endpoint, port
