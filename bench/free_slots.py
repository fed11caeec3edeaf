"""The benchmark's free-slots section (issue 20): a freed slot refilled at once, an idle tick at
10,000 jobs with a crawl under way, and a long crawl beside short jobs.

- refill: SCHEDULER_CONCURRENCY=1 and `crawls` never-run jobs, all due at once: the time from one
  crawl's recorded end to the next crawl's recorded start (median and worst; target 0.1 s).
- tick with a crawl running: the loop's step in this process at `jobs` jobs (all ran a minute ago)
  while one job's 60 s crawl runs (median and p95; target 20 ms).
- mixed load: one long crawl beside 20 one-second jobs every 10 s at concurrency 2: the worst
  overdue of a short job's start while the long crawl ran (target: one tick). 20 such jobs need two
  slots' worth of crawling and the long crawl holds one of the two, so the short jobs queue by
  arithmetic; the same beside `FITTING_SHORT_JOBS` short jobs, a load the one free slot can carry,
  shows what the loop itself adds.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta
from collections.abc import Callable
from typing import Any

from daemon.records import db
from daemon.settings.config import Settings
from tests.helpers import rows, wait_for

PYTHON_M_DAEMON = ["-m", "daemon"]
SHORT_EVERY_S = 10
MIXED_TICK_S = 1.0
MIXED_SHORT_JOBS = 20  # the load: more than one free slot can carry
FITTING_SHORT_JOBS = 3  # a load one free slot carries: a few seconds of crawling per 10 s


def free_slots(world: Any, process: Callable[..., Any], python: str, *, crawls: int, jobs_spiders: int,
               jobs_argsets: int, ticks: int, long_s: int, generate_job_runs: Callable[[Any, dict[str, Any]], None],
               jobs_file: Callable[[int, int, str], str]) -> dict[str, Any]:  # fmt: skip
    return {
        "refill": _refill(world, process, python, crawls),
        "tick_with_crawl_running": _tick_with_crawl(world, jobs_spiders, jobs_argsets, ticks, generate_job_runs,
                                                    jobs_file),  # fmt: skip
        "mixed": _mixed(world, process, python, long_s, MIXED_SHORT_JOBS),
        "mixed_fitting": _mixed(world, process, python, long_s, FITTING_SHORT_JOBS),
    }


def _refill(world: Any, process: Callable[..., Any], python: str, crawls: int) -> dict[str, Any]:
    dbname = world.database()
    env = world.env(dbname, crawls, SCHEDULER_CONCURRENCY="1")
    conn = world.pg.connect(dbname)
    done = lambda: rows(conn, "SELECT count(*) FROM spider_runs WHERE status <> 'running'")[0][0] >= crawls  # noqa: E731
    with process([python, *PYTHON_M_DAEMON], env, world.workdir / f"refill-{dbname}.log"):
        wait_for(done, timeout=crawls * 20 + 120, step=0.2, what="every crawl")
    spans = rows(conn, "SELECT started_at, finished_at, status FROM spider_runs ORDER BY started_at")
    conn.close()
    gaps = [(b[0] - a[1]).total_seconds() for a, b in zip(spans, spans[1:])]
    return {"crawls": len(spans), "completed": sum(1 for s in spans if s[2] == "completed"),
            "median_s": round(statistics.median(gaps), 4), "worst_s": round(max(gaps), 4)}  # fmt: skip


def _tick_with_crawl(world: Any, spiders: int, argsets: int, ticks: int,
                     generate_job_runs: Callable[[Any, dict[str, Any]], None],
                     jobs_file: Callable[[int, int, str], str]) -> dict[str, Any]:  # fmt: skip
    """In-process steps at spiders x argsets jobs while one job (its history removed) crawls 60 s."""
    import structlog.testing

    from daemon.jobs import jobfile
    from daemon.jobs.catalog import open_catalog
    from daemon.assemble import assemble
    from daemon.jobs.spiders import list_spiders, resolve_spiders

    path = world.workdir / "free-slots-jobs.toml"
    path.write_text(jobs_file(spiders, argsets, "4h"))
    dbname = world.database()
    conn = world.pg.connect(dbname)
    generate_job_runs(conn, {"spiders": spiders, "argsets": argsets})
    rows(conn, "DELETE FROM spider_runs WHERE job = 'bench_000-q000'")  # the one job due: its crawl runs
    rows(conn, "ANALYZE")
    env = world.env(dbname, spiders, SCHEDULER_JOBS_FILE=str(path), BENCH_CRAWL_SECONDS="60")
    settings = Settings.from_mapping({k: v for k, v in env.items() if k not in ("PATH", "PYTHONPATH")})
    os.environ.update({"BENCH_SITE_URL": env["BENCH_SITE_URL"], "BENCH_SPIDERS": env["BENCH_SPIDERS"]})
    store_conn = db.connect(settings)
    catalog = open_catalog(jobfile.resolve_path(str(settings.jobs_file), settings.project_dir),
                           jobfile.JobDefaults.from_settings(settings), settings.spiders, None,
                           lambda: list_spiders(settings), lambda found: resolve_spiders(settings, found))  # fmt: skip
    scheduler = assemble(settings, catalog, conn=store_conn, environ={**os.environ, **env})
    steps: list[float] = []
    try:
        with structlog.testing.capture_logs() as events:
            deadline = time.monotonic() + 120
            while not scheduler.batches.busy and time.monotonic() < deadline:
                time.sleep(min(scheduler.step(scheduler.clock.now()), 0.5))
            if not scheduler.batches.busy:
                raise RuntimeError(f"no crawl started within 120 s: {[e['event'] for e in events][-20:]}")
            scheduler.step(scheduler.clock.now())
            for _ in range(ticks):
                t = time.perf_counter()
                scheduler.step(scheduler.clock.now())
                steps.append((time.perf_counter() - t) * 1000)
                time.sleep(0.05)
            running = scheduler.batches.busy
        scheduler.stop.set()
        scheduler.batches.drain(scheduler.wake)
    finally:
        scheduler.lease.release()
        store_conn.close()
        conn.close()
    steps.sort()
    return {"jobs": len(catalog.jobs), "crawl_running_throughout": running,
            "median_ms": round(statistics.median(steps), 3), "p95_ms": round(steps[int(0.95 * (len(steps) - 1))], 3)}


def _mixed(world: Any, process: Callable[..., Any], python: str, long_s: int, shorts: int) -> dict[str, Any]:
    lines = ["[defaults]", 'every = "4h"', "", "[jobs.long]", 'spider = "bench_000"',
             f'args = {{ seconds = "{long_s}" }}', ""]  # fmt: skip
    for i in range(1, shorts + 1):
        lines += [f"[jobs.short_{i:02d}]", f'spider = "bench_{i:03d}"', f'every = "{SHORT_EVERY_S}s"', ""]
    path = world.workdir / f"mixed-{shorts}.toml"
    path.write_text("\n".join(lines))
    dbname = world.database()
    env = world.env(dbname, shorts + 1, SCHEDULER_JOBS_FILE=str(path), SCHEDULER_CONCURRENCY="2",
                    SCHEDULER_TICK_SECONDS=str(MIXED_TICK_S))  # fmt: skip
    conn = world.pg.connect(dbname)
    long_over = lambda: rows(conn, "SELECT 1 FROM spider_runs WHERE job = 'long' AND status <> 'running'")  # noqa: E731
    with process([python, *PYTHON_M_DAEMON], env, world.workdir / f"mixed-{dbname}.log"):
        wait_for(long_over, timeout=long_s + 120, step=0.5, what="the long crawl's end")
    [(long_start, long_end)] = rows(conn, "SELECT started_at, finished_at FROM spider_runs WHERE job = 'long'")
    [(first,)] = rows(conn, "SELECT min(started_at) FROM spider_runs")  # the first decision: every job due
    short = rows(conn, "SELECT job, started_at, status FROM spider_runs WHERE job <> 'long' ORDER BY job, started_at")
    conn.close()
    by_job: dict[str, list[Any]] = {f"short_{i:02d}": [] for i in range(1, shorts + 1)}
    for job, started, status in short:
        by_job[job].append((started, status))
    worst, completed = 0.0, 0
    for starts in by_job.values():
        due = first  # when each start became due: the first decision, then a success's start + 10 s
        for started, status in starts:
            if long_start <= started <= long_end:
                worst = max(worst, (started - due).total_seconds())
                completed += status == "completed"
            if status == "completed":
                due = started + timedelta(seconds=SHORT_EVERY_S)
        if due < long_end and not any(due <= s <= long_end for s, _ in starts):
            worst = max(worst, (long_end - due).total_seconds())  # still waiting when the long crawl ended
    # With 20 short jobs they share the one slot the long crawl leaves and wait their turn: the
    # overdue says how long. With a few, it says what the loop adds to a due job's start.
    return {"long_s": long_s, "short_jobs": len(by_job), "short_crawls_while_long_ran": completed,
            "worst_overdue_s": round(worst, 3), "tick_s": MIXED_TICK_S}  # fmt: skip
