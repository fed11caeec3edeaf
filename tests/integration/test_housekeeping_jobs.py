"""Housekeeping jobs: history retention in batches, overdue/failed/zero-item alerts, errors kept
inside the job, and runs anchored to Postgres across restarts."""

from __future__ import annotations

from datetime import timedelta

from structlog.testing import capture_logs

from daemon.system.clock import OffsetClock
from daemon.settings.config import Settings
from daemon.loop.housekeeping import Housekeeping
from daemon.records.store import Store
from tests.helpers import SchedulerThread, hours, insert_completed, rows, utcnow, wait_for


def jobs_for(env, conn, spiders=None) -> Housekeeping:
    """Jobs as the daemon builds them; `spiders` are those it runs (by default SCHEDULER_SPIDERS)."""
    store = Store(conn)
    settings = Settings.from_mapping(env)
    return Housekeeping(settings, OffsetClock(), lambda: store, spiders=settings.spiders if spiders is None else spiders)


def test_history_retention_deletes_old_runs_in_batches_with_their_spider_rows(base_env, db):
    now = utcnow()
    rows(db, """
        INSERT INTO scheduler_state (last_run_at, spider_count, status)
        SELECT %(now)s - make_interval(days => 100 + g %% 50), 2, 'completed' FROM generate_series(1, 2500) g;
        INSERT INTO spider_runs (run_id, spider, status, started_at)
        SELECT id, s, 'completed', last_run_at FROM scheduler_state, unnest(ARRAY['ok', 'other']) s;
    """, {"now": now})  # fmt: skip
    insert_completed(db, ["ok"], now - timedelta(days=10))
    rows(db, "INSERT INTO job_runs (job, started_at, finished_at, status, message) "
             "SELECT 'overdue_check', %(now)s - make_interval(days => 91 + g), %(now)s, 'completed', '' "
             "FROM generate_series(1, 300) g; "
             "INSERT INTO run_requests (spiders, taken_at) VALUES (NULL, %(now)s - interval '100 days'), "
             "(NULL, %(now)s - interval '1 day'), (NULL, NULL); "
             "INSERT INTO actions (at, action, job, actor, source, result, message) VALUES "
             "(%(now)s - interval '100 days', 'pause', 'ok', 'cli:me', 'cli', 'done', 'old'), "
             "(%(now)s - interval '1 day', 'resume', 'ok', 'cli:me', 'cli', 'done', 'recent')", {"now": now})  # fmt: skip
    jobs = jobs_for({**base_env, "SCHEDULER_HISTORY_RETENTION_DAYS": "90"}, db)
    with capture_logs() as logs:
        jobs.run_pending()  # first pass: anchored to an empty job_runs, so every job runs at once
    [done] = [e for e in logs if e["event"] == "history_retention_deleted"]
    assert (done["runs"], done["spider_runs"], done["job_runs"], done["run_requests"]) == (2500, 5000, 300, 1)
    assert rows(db, "SELECT count(*) FROM run_requests") == [(2,)]  # the recent one and the pending one
    assert done["actions"] == 1 and rows(db, "SELECT message FROM actions") == [("recent",)]  # the audit, alike
    assert rows(db, "SELECT count(*) FROM scheduler_state") == [(1,)]
    assert rows(db, "SELECT count(*) FROM spider_runs") == [(1,)]
    assert rows(db, "SELECT job, status FROM job_runs ORDER BY job") == [
        ("cache_cleanup", "completed"),
        ("history_retention", "completed"),
        ("overdue_check", "completed"),
    ]


def test_a_restarted_daemon_does_not_rerun_a_job_that_ran_within_its_period(base_env, db):
    jobs_for(base_env, db).run_pending()
    with capture_logs() as logs:
        jobs_for(base_env, db).run_pending()
    assert not [e for e in logs if e["event"] == "job_finished"]
    assert rows(db, "SELECT count(*) FROM job_runs") == [(3,)]


def test_overdue_check_alerts_on_stale_spiders_failures_and_zero_items(base_env, db):
    now = utcnow()
    insert_completed(db, ["ok"], now - hours(9))  # 2 x interval = 8 h: overdue
    insert_completed(db, ["empty"], now - hours(3))
    run = insert_completed(db, ["empty"], now - hours(1))
    rows(db, "UPDATE spider_runs SET items_scraped = 0 WHERE run_id = %(r)s", {"r": run})
    rows(db, "INSERT INTO spider_runs (run_id, spider, status, failure, started_at, finished_at, message) "
             "VALUES (%(r)s, 'boom', 'failed', 'error', now(), now(), 'logged 1 error(s)')", {"r": run})  # fmt: skip
    env = {**base_env, "SCHEDULER_SPIDERS": "ok,empty,boom"}
    jobs = jobs_for(env, db)
    with capture_logs() as logs:
        jobs.run_pending()
    alerts = {(e["kind"], e["spider"], e["log_level"]) for e in logs if e["event"] == "alert"}
    assert alerts == {
        ("overdue", "ok", "warning"),
        ("overdue", "boom", "warning"),  # it never succeeded
        ("spider_failed", "boom", "error"),
        ("zero_items", "empty", "warning"),
    }
    # The next check a few minutes later tells nothing new: no alert is repeated.
    with capture_logs() as again:
        jobs.alerts.check(Store(db), utcnow())
    assert [e for e in again if e["event"] == "alert"] == []
    # Nor after another SCHEDULER_ALERT_AFTER_HOURS: once per episode (only empty, overdue by then, is new).
    with capture_logs() as later:
        jobs.alerts.check(Store(db), utcnow() + hours(8))
    assert {(e["kind"], e["spider"]) for e in later if e["event"] == "alert"} == {("overdue", "empty")}
    # A success ends ok's episode; overdue again, it is a new episode, told again.
    insert_completed(db, ["ok"], utcnow() + hours(8))
    with capture_logs() as recovered:
        jobs.alerts.check(Store(db), utcnow() + hours(9))
    assert [e for e in recovered if e["event"] == "alert"] == []
    with capture_logs() as again_overdue:
        jobs.alerts.check(Store(db), utcnow() + hours(17))
    assert {(e["kind"], e["spider"]) for e in again_overdue if e["event"] == "alert"} == {("overdue", "ok")}


def test_an_overdue_episode_told_before_a_restart_is_not_told_again_by_the_next_daemon(base_env, db):
    now = utcnow()
    insert_completed(db, ["ok", "other"], now - hours(9))  # both overdue (limit 8 h)
    # The daemon before told ok (its row in the outbox); other was never told.
    rows(db, "INSERT INTO alert_outbox (created_at, kind, job, level, text) "
             "VALUES (%(t)s, 'overdue', 'ok', 'warning', 'Job ok has had no successful run')", {"t": now - hours(1)})  # fmt: skip
    jobs = jobs_for({**base_env, "SCHEDULER_SPIDERS": "ok,other"}, db)
    with capture_logs() as logs:
        jobs.alerts.check(Store(db), now)
    assert {(e["kind"], e["spider"]) for e in logs if e["event"] == "alert"} == {("overdue", "other")}
    # A told episode that a success ended does not hold back the next one.
    insert_completed(db, ["ok"], now)
    with capture_logs() as later:
        jobs_for({**base_env, "SCHEDULER_SPIDERS": "ok"}, db).alerts.check(Store(db), now + hours(9))
    assert {(e["kind"], e["spider"]) for e in later if e["event"] == "alert"} == {("overdue", "ok")}


def test_an_overdue_job_whose_crawl_is_under_way_is_alerted_only_if_that_crawl_does_not_succeed(base_env, db):
    now = utcnow()
    insert_completed(db, ["ok"], now - hours(20))  # overdue (limit 8 h), and its catch-up crawl runs now
    [(run,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 1, "
                        "'running') RETURNING id")  # fmt: skip
    rows(db, "INSERT INTO spider_runs (run_id, spider, status, started_at) VALUES (%(r)s, 'ok', 'running', now())",
         {"r": run})  # fmt: skip
    jobs = jobs_for({**base_env, "SCHEDULER_SPIDERS": "ok"}, db)
    with capture_logs() as during:
        jobs.alerts.check(Store(db), now)
    assert [e for e in during if e["event"] == "alert"] == []
    rows(db, "UPDATE spider_runs SET status = 'failed', failure = 'error', finished_at = now() WHERE run_id = %(r)s",
         {"r": run})  # fmt: skip
    with capture_logs() as after:
        jobs.alerts.check(Store(db), now)
    assert {(e["kind"], e["spider"]) for e in after if e["event"] == "alert"} == {("overdue", "ok"),
                                                                                  ("spider_failed", "ok")}


def test_a_spider_of_the_project_that_never_ran_is_reported_overdue(base_env, db):
    from daemon.jobs.spiders import list_spiders, resolve_spiders

    settings = Settings.from_mapping(base_env)
    assert not settings.spiders  # SCHEDULER_SPIDERS unset: the daemon runs every spider of the project
    spiders = resolve_spiders(settings, list_spiders(settings))  # as the daemon finds them (scrapy list)
    assert "hang" in spiders and len(spiders) > 2
    now = utcnow()
    insert_completed(db, [s for s in spiders if s != "hang"], now - hours(1))  # hang never ran: no row at all
    insert_completed(db, ["retired"], now - hours(20))  # a spider since removed from the project
    jobs = jobs_for(base_env, db, spiders)
    with capture_logs() as logs:
        jobs.alerts.check(Store(db), now)
    overdue = [e for e in logs if e["event"] == "alert" and e["kind"] == "overdue"]
    assert [(e["spider"], e["log_level"], e["last_success"]) for e in overdue] == [("hang", "warning", "never")]


def test_a_job_that_fails_is_logged_and_recorded_and_the_loop_goes_on(base_env, db):
    rows(db, "ALTER TABLE spider_runs RENAME TO spider_runs_moved")  # the retention job's DELETE fails
    try:
        with capture_logs() as logs:
            jobs_for(base_env, db).run_pending()
    finally:
        rows(db, "ALTER TABLE spider_runs_moved RENAME TO spider_runs")
    failed = [e for e in logs if e["event"] == "job_finished" and e["status"] == "failed"]
    assert {e["job"] for e in failed} == {"history_retention", "overdue_check"}
    assert all("UndefinedTable" in e["message"] for e in failed)
    assert rows(db, "SELECT count(*) FROM job_runs WHERE status = 'failed'") == [(2,)]


def test_the_running_daemon_runs_its_jobs_and_only_the_lock_holder_does(base_env, db):
    env = {**base_env, "SCHEDULER_OVERDUE_CHECK_MINUTES": "0.02"}  # every 1.2 s
    with SchedulerThread(env, ["ok"]), SchedulerThread(env, ["ok"]):
        wait_for(lambda: rows(db, "SELECT count(*) FROM job_runs WHERE job = 'overdue_check'")[0][0] >= 3,
                 timeout=30, what="overdue checks")  # fmt: skip
    [(starts,)] = rows(db, "SELECT count(*) FROM job_runs WHERE job = 'history_retention'")
    assert starts == 1  # the standby never ran it


def test_cache_cleanup_removes_expired_entries_and_reports_the_hit_rate(base_env, db, tmp_path):
    import os
    import time

    cache = tmp_path / "httpcache"
    env = {**base_env, "TEST_HTTPCACHE_DIR": str(cache), "TEST_HTTPCACHE_EXPIRATION_SECS": "600",
           "CACHE_MAX_MB": "0.001"}  # fmt: skip
    os.environ.update({"TEST_HTTPCACHE_DIR": str(cache), "TEST_HTTPCACHE_EXPIRATION_SECS": "600"})
    try:
        with SchedulerThread({**env, "SCHEDULER_INTERVAL_HOURS": "0.0003"}, ["ok"]):  # two crawls: miss, then hit
            wait_for(lambda: rows(db, "SELECT count(*) FROM spider_runs WHERE status = 'completed'")[0][0] >= 2,
                     timeout=60, what="two crawls")  # fmt: skip
        entries = list(cache.glob("*/*/*/pickled_meta"))
        assert len(entries) == 3
        old = time.time() - 3600
        os.utime(entries[0], (old, old))  # one entry is past its expiration
        jobs = jobs_for(env, db)
        with capture_logs() as logs:
            jobs.cache_cleanup(Store(db), utcnow())
    finally:
        os.environ.pop("TEST_HTTPCACHE_DIR")
        os.environ.pop("TEST_HTTPCACHE_EXPIRATION_SECS")
    [done] = [e for e in logs if e["event"] == "cache_cleanup_done"]
    assert done["entries_removed"] == 1 and done["kb_freed"] > 0 and done["duration_ms"] >= 0
    assert 0 < done["hit_rate_percent"] < 100
    assert len(list(cache.glob("*/*/*/pickled_meta"))) == 2
    assert [e for e in logs if e["event"] == "cache_nearly_full"]  # 0.001 MiB is less than what is left
    # Two crawls: the first misses, the second hits (50 %); a third may have hit too (67 %).
    low = [e for e in logs if e["event"] == "cache_hit_rate_low"]
    assert bool(low) == (done["hit_rate_percent"] < 60) and all(e["log_level"] == "warning" for e in low)
    sample = jobs.metrics.registry.get_sample_value
    assert sample("scheduler_cache_cleanup_runs_total") == 1.0
    assert sample("scheduler_cache_entries_removed_total") == 1.0
    assert sample("scheduler_cache_cleanup_duration_seconds_count") == 1.0


def test_cache_cleanup_says_once_that_a_project_without_a_cache_needs_nothing(base_env, db):
    jobs = jobs_for(base_env, db)
    with capture_logs() as logs:
        first = jobs.cache_cleanup(Store(db), utcnow())
        second = jobs.cache_cleanup(Store(db), utcnow())
    assert first == second == "no filesystem HTTP cache"
    assert len([e for e in logs if e["event"] == "cache_cleanup_idle"]) == 1


def test_after_a_restart_failures_since_the_last_recorded_check_are_alerted_and_job_status_is_known(base_env, db):
    now = utcnow()
    rows(db, "INSERT INTO job_runs (job, started_at, finished_at, status, message) VALUES "
             "('overdue_check', %(t)s, %(t)s, 'completed', '0 alert(s)'), "
             "('history_retention', %(t)s, %(t)s, 'failed', 'UndefinedTable: ...')", {"t": now - hours(1)})  # fmt: skip
    run = insert_completed(db, ["ok"], now - hours(2))
    # boom failed 30 minutes ago: after the last check, but long before the last check period.
    rows(db, "INSERT INTO spider_runs (run_id, spider, status, failure, started_at, finished_at, message) "
             "VALUES (%(r)s, 'boom', 'failed', 'error', %(t)s, %(t)s, 'logged 1 error(s)')",
         {"r": run, "t": now - timedelta(minutes=30)})  # fmt: skip
    jobs = jobs_for({**base_env, "SCHEDULER_SPIDERS": "ok,boom"}, db)
    with capture_logs() as logs:
        jobs.run_pending()  # overdue_check is due (an hour since the last one): it runs at once
    assert [e["spider"] for e in logs if e["event"] == "alert" and e["kind"] == "spider_failed"] == ["boom"]
    view = {j["id"]: j for j in jobs.view()}
    assert view["history_retention"]["last_status"] == "failed"  # read back from Postgres
