"""Jobs through the real loop: a real PostgreSQL, real `scrapy crawl`s of the test project, a jobs
file on disk. Only the clock may be moved."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from structlog.testing import capture_logs

from daemon.records.store import Store
from tests.helpers import SchedulerThread, crawl_intervals, events, hours, rows, utcnow, wait_for


def write_jobs(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = time.time_ns() + 10**9  # a new mtime even within the file system's time resolution
    os.utime(path, ns=(stamp, stamp))


def succeeded(db, job: str, spider: str, started: datetime) -> None:
    """Arrange history: a completed crawl of `job` that started at `started`."""
    [(run_id,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status, finished_at) "
                           "VALUES (%(t)s, 1, 'completed', %(t)s) RETURNING id", {"t": started})  # fmt: skip
    rows(db, "INSERT INTO spider_runs (run_id, spider, job, status, started_at, finished_at, items_scraped) "
             "VALUES (%(r)s, %(s)s, %(j)s, 'completed', %(t)s, %(t)s, 1)",
         {"r": run_id, "s": spider, "j": job, "t": started})  # fmt: skip


def crawls(db, job: str | None = None) -> list[tuple]:
    """(job, status, failure, args) of the daemon's crawls (those with a pid), oldest first."""
    return rows(db, "SELECT job, status, failure, args FROM spider_runs WHERE pid IS NOT NULL "
                    "AND (%(j)s::text IS NULL OR job = %(j)s) ORDER BY id", {"j": job})  # fmt: skip


def finished(db, n: int):
    return lambda: len([c for c in crawls(db) if c[1] != "running"]) >= n


def test_each_job_is_due_by_its_own_interval_and_its_arguments_and_settings_reach_the_spider(base_env, db,
                                                                                             tmp_path):  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    jobs = tmp_path / "schedule.toml"
    write_jobs(jobs, f"""
[jobs.python-remote]
spider = "args"
args = {{ q = "python", l = "remote; $(touch {tmp_path}/canary)", out = "{out}/python.json" }}
settings = {{ DOWNLOAD_DELAY = 0, USER_AGENT = "it's \\"quoted\\"" }}
every = "2h"

[jobs.data-bogota]
spider = "args"
args = {{ q = "data", l = "Bogotá", out = "{out}/data.json" }}
every = "6h"
""")
    for job in ("python-remote", "data-bogota"):
        succeeded(db, job, "args", utcnow() - hours(3))
    with SchedulerThread({**base_env, "SCHEDULER_JOBS_FILE": str(jobs)}):
        wait_for(finished(db, 1), what="the 2-hourly job's crawl")
        time.sleep(1)  # a second tick: the 6-hourly job stays not due
    assert crawls(db) == [("python-remote", "completed", None,
                           {"q": "python", "l": f"remote; $(touch {tmp_path}/canary)", "out": f"{out}/python.json"})]  # fmt: skip
    seen = json.loads((out / "python.json").read_text())
    assert seen["args"]["l"] == f"remote; $(touch {tmp_path}/canary)" and seen["args"]["q"] == "python"
    assert seen["settings"]["USER_AGENT"] == 'it\'s "quoted"' and seen["settings"]["DOWNLOAD_DELAY"] == "0"
    assert not (out / "data.json").exists() and not (tmp_path / "canary").exists()


def test_two_jobs_of_one_spider_run_side_by_side_within_the_concurrency(base_env, db, tmp_path):
    jobs = tmp_path / "schedule.toml"
    write_jobs(jobs, '[jobs.a]\nspider = "slow"\nargs = { q = "a" }\n\n[jobs.b]\nspider = "slow"\nargs = { q = "b" }\n')
    env = {**base_env, "SCHEDULER_JOBS_FILE": str(jobs), "SCHEDULER_CONCURRENCY": "2", "SLOW_SECONDS": "3"}
    with SchedulerThread(env):
        wait_for(finished(db, 2), timeout=60, what="both jobs' crawls")
    assert sorted(c[:3] for c in crawls(db)) == [("a", "completed", None), ("b", "completed", None)]
    [(first_start, first_end, _), (second_start, _, _)] = crawl_intervals(Path(base_env["SPIDER_SIDE_CHANNEL"]))
    assert second_start < first_end, "the second job's crawl started only after the first one ended"
    [(runs,)] = rows(db, "SELECT count(DISTINCT run_id) FROM spider_runs")
    assert runs == 1


def test_a_crawl_with_fewer_items_than_min_items_fails_and_does_not_reset_the_clock(base_env, db, tmp_path):
    jobs = tmp_path / "schedule.toml"
    write_jobs(jobs, '[jobs.empty-board]\nspider = "empty"\nmin_items = 1\nretry_delay = "1h"\n')
    with SchedulerThread({**base_env, "SCHEDULER_JOBS_FILE": str(jobs)}):
        wait_for(finished(db, 1), what="the empty crawl")
        time.sleep(1)  # the retry waits its hour: no second crawl
    [history] = Store(db).histories(["empty-board"])
    assert [c[:3] for c in crawls(db)] == [("empty-board", "failed", "too_few_items")]
    assert (history.last_success_at, history.consecutive_failures) == (None, 1)


def test_after_an_outage_the_most_overdue_job_by_its_own_interval_runs_first(base_env, db, tmp_path):
    jobs = tmp_path / "schedule.toml"
    write_jobs(jobs, '[jobs.daily]\nspider = "ok"\nevery = "1d"\n\n[jobs.hourly]\nspider = "ok"\nevery = "1h"\n\n'
                     '[jobs.six]\nspider = "other"\nevery = "6h"\n')  # fmt: skip
    for job, spider in (("daily", "ok"), ("hourly", "ok"), ("six", "other")):
        succeeded(db, job, spider, utcnow() - hours(30))  # daily 0.25, hourly 29, six 4 intervals overdue
    with SchedulerThread({**base_env, "SCHEDULER_JOBS_FILE": str(jobs)}):
        wait_for(finished(db, 3), timeout=60, what="the three crawls")
    assert [c[0] for c in crawls(db)] == ["hourly", "six", "daily"]


def test_a_reloaded_file_takes_effect_a_bad_one_keeps_the_last_good_jobs_and_a_removed_job_finishes_its_crawl(
    base_env, db, tmp_path
):
    jobs = tmp_path / "schedule.toml"
    write_jobs(jobs, '[jobs.long]\nspider = "slow"\n\n[jobs.quick]\nspider = "ok"\nevery = "4h"\n')
    succeeded(db, "quick", "ok", utcnow() - hours(1))
    env = {**base_env, "SCHEDULER_JOBS_FILE": str(jobs), "SLOW_SECONDS": "4"}
    with capture_logs() as logs, SchedulerThread(env) as sched:
        wait_for(lambda: crawls(db, "long"), what="the long job's crawl to start")
        write_jobs(jobs, '[jobs.quick]\nspider = "ok"\nevery = "30m"\n')  # long removed mid-crawl; quick every 30 min
        wait_for(lambda: crawls(db, "quick"), timeout=30, what="quick, due by its new interval")
        wait_for(finished(db, 2), timeout=30, what="both crawls recorded")
        write_jobs(jobs, '[jobs.quick]\nspider = "ok"\nevery = "forever"\n')
        wait_for(lambda: events(logs, "jobs_file_invalid"), what="the bad file reported")
        sched.clock.jump(hours(1))  # quick is due again by its last good interval
        wait_for(lambda: len(crawls(db, "quick")) == 2, timeout=30, what="the last good jobs still running")
    assert crawls(db, "long")[0][1] == "completed" and len(crawls(db, "long")) == 1
    [(error,)] = rows(db, "SELECT error FROM jobs_source")
    assert "every" in error and "forever" in error
    assert [name for (name,) in rows(db, "SELECT name FROM jobs ORDER BY position")] == ["quick"]


def test_a_spider_added_to_the_project_is_scheduled_after_sighup_without_a_restart(base_env, db, tmp_path):
    import shutil

    from tests.conftest import TEST_PROJECT

    project = tmp_path / "project"
    shutil.copytree(TEST_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**base_env, "SCRAPY_PROJECT_DIR": str(project), "SCHEDULER_SPIDERS": ""}
    for spider in ("args", "boom", "counted", "crash", "empty", "hang", "ok", "other", "segv", "slow", "slow2"):
        succeeded(db, spider, spider, utcnow())
    with SchedulerThread(env) as sched:
        time.sleep(1)
        assert crawls(db) == []
        (project / "testproject" / "spiders" / "fresh.py").write_text(
            "from testproject.spiders.local import OkSpider\n\n\nclass FreshSpider(OkSpider):\n    name = 'fresh'\n"
        )
        sched.reload.set()
        sched.scheduler.wake.set()
        wait_for(finished(db, 1), timeout=60, what="the new spider's crawl")
    assert [c[:2] for c in crawls(db)] == [("fresh", "completed")]


def test_a_pause_outlives_a_restart_and_applies_until_resumed(base_env, db, tmp_path):
    jobs = tmp_path / "schedule.toml"
    write_jobs(jobs, '[jobs.boards]\nspider = "ok"\n\n[jobs.quiet]\nspider = "other"\n')
    Store(db).pause("quiet", None, utcnow())
    env = {**base_env, "SCHEDULER_JOBS_FILE": str(jobs)}
    with SchedulerThread(env):
        wait_for(finished(db, 1), what="the unpaused job's crawl")
        time.sleep(1)
    with SchedulerThread(env):  # a restart: the pause is in PostgreSQL, not in the daemon
        time.sleep(1.5)
        assert [c[0] for c in crawls(db)] == ["boards"]
        Store(db).resume("quiet")  # heard through NOTIFY within a second
        wait_for(finished(db, 2), timeout=20, what="the resumed job's crawl")
    assert [c[:2] for c in crawls(db, "quiet")] == [("quiet", "completed")]


def test_a_pause_for_a_while_ends_by_itself(base_env, db, tmp_path):
    jobs = tmp_path / "schedule.toml"
    write_jobs(jobs, '[jobs.quiet]\nspider = "ok"\n')
    Store(db).pause("quiet", utcnow() + hours(2), utcnow())
    with SchedulerThread({**base_env, "SCHEDULER_JOBS_FILE": str(jobs)}) as sched:
        time.sleep(1)
        assert crawls(db) == []
        sched.clock.jump(hours(2))
        wait_for(finished(db, 1), what="the crawl once the pause is over")


def test_cancel_stops_a_running_crawl_which_is_recorded_cancelled_and_waits_its_retry_delay(base_env, db, tmp_path):
    jobs = tmp_path / "schedule.toml"
    write_jobs(jobs, '[jobs.long]\nspider = "slow"\nretry_delay = "1h"\n')
    env = {**base_env, "SCHEDULER_JOBS_FILE": str(jobs), "SLOW_SECONDS": "60"}
    with capture_logs() as logs, SchedulerThread(env):
        wait_for(lambda: rows(db, "SELECT 1 FROM spider_runs WHERE job = 'long' AND pid IS NOT NULL"),
                 what="the crawl under way")  # fmt: skip
        Store(db).request_cancel(["long"])
        # Well before the crawl's own 60 s: the cancel is heard while it runs.
        wait_for(finished(db, 1), timeout=20, what="the cancelled crawl recorded")
        time.sleep(1)  # the retry waits its hour
    assert [c[:3] for c in crawls(db)] == [("long", "failed", "cancelled")]
    assert any(e.get("reason") == "cancelled" for e in events(logs, "spider_stopping"))
