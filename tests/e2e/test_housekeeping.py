"""The housekeeping jobs as the running daemon does them: a real `python -m daemon` process against
the test's PostgreSQL, and a Scrapy filesystem HTTP cache written by real `scrapy crawl`s of the
local site."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import TEST_PROJECT
from tests.e2e.test_alerts_and_pings import Receiver
from tests.helpers import events, hours, insert_completed, json_lines, rows, utcnow, wait_for

pytestmark = pytest.mark.e2e


def cache_env(base_env: dict[str, str], cache: Path) -> dict[str, str]:
    """The test project with Scrapy's filesystem HTTP cache on (entries expire after 10 minutes)."""
    return {**base_env, "TEST_HTTPCACHE_DIR": str(cache), "TEST_HTTPCACHE_EXPIRATION_SECS": "600"}


def crawl_into_cache(env: dict[str, str], spider: str) -> list[Path]:
    """Crawl the local site with the real `scrapy crawl` (not through the daemon); return the cache
    entries the crawl wrote (one directory per response, judged by its pickled_meta's mtime)."""
    subprocess.run([sys.executable, "-m", "scrapy", "crawl", spider], cwd=TEST_PROJECT, check=True,
                   capture_output=True, timeout=120, env={**os.environ, **env})  # fmt: skip
    entries = sorted((Path(env["TEST_HTTPCACHE_DIR"]) / spider).glob("*/*/pickled_meta"))
    assert len(entries) == 3  # the site's three pages
    return [meta.parent for meta in entries]


def size(entry: Path) -> int:
    return sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())


def expire(entries: list[Path]) -> None:
    """Make entries an hour old: past the 10 minutes' expiration, so Scrapy would not use them again."""
    old = time.time() - 3600
    for entry in entries:
        os.utime(entry / "pickled_meta", (old, old))


def seed_cache_stats(db, hits: int, misses: int) -> None:
    """The latest crawls' HTTP cache stats, as the daemon's stats collector records them."""
    rows(db, "UPDATE spider_runs SET stats = jsonb_build_object('httpcache/hit', %(h)s::int, 'httpcache/miss', "
             "%(m)s::int)", {"h": hits, "m": misses})  # fmt: skip


def test_the_daemon_deletes_exactly_the_runs_older_than_the_retention(base_env, db, daemon_factory):
    now = utcnow()
    # 2,500 runs of two spiders between 31 and 80 days old, and one just past the 30 days.
    rows(db, """
        INSERT INTO scheduler_state (last_run_at, spider_count, status)
        SELECT %(now)s - make_interval(days => 31 + g %% 50), 2, 'completed' FROM generate_series(1, 2500) g;
        INSERT INTO scheduler_state (last_run_at, spider_count, status)
        VALUES (%(now)s - interval '30 days 1 hour', 2, 'failed');
        INSERT INTO spider_runs (run_id, spider, status, started_at)
        SELECT id, s, 'completed', last_run_at FROM scheduler_state, unnest(ARRAY['ok', 'other']) s;
    """, {"now": now})  # fmt: skip
    # Kept: a run just inside the 30 days, runs of the last weeks, and the latest, an hour ago (so
    # nothing is due and the daemon turns to its jobs at once).
    kept = [insert_completed(db, ["ok", "other"], now - timedelta(days=30) + hours(1))]
    kept += [insert_completed(db, ["ok", "other"], now - timedelta(days=d)) for d in range(1, 29, 3)]
    kept.append(insert_completed(db, ["ok", "other"], now - hours(1)))
    kept_spider_runs = rows(db, "SELECT id FROM spider_runs WHERE run_id = ANY(%(k)s) ORDER BY id", {"k": kept})
    assert rows(db, "SELECT count(*) FROM scheduler_state") == [(2501 + len(kept),)]
    env = {**base_env, "SCHEDULER_SPIDERS": "ok,other", "SCHEDULER_HISTORY_RETENTION_DAYS": "30"}
    d = daemon_factory(env).start()
    wait_for(lambda: events(json_lines(d.output()), "history_retention_deleted"), timeout=60,
             what="the retention job")  # fmt: skip
    [done] = events(json_lines(d.output()), "history_retention_deleted")
    assert (done["runs"], done["spider_runs"], done["job_runs"], done["run_requests"]) == (2501, 5002, 0, 0)
    assert [r for (r,) in rows(db, "SELECT id FROM scheduler_state ORDER BY id")] == kept
    assert rows(db, "SELECT id FROM spider_runs ORDER BY id") == kept_spider_runs
    assert rows(db, "SELECT status FROM job_runs WHERE job = 'history_retention'") == [("completed",)]
    assert not events(json_lines(d.output()), "spider_started")  # nothing was due: only the jobs ran
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_the_daemon_cleans_exactly_the_expired_entries_out_of_the_http_cache(base_env, db, daemon_factory, tmp_path):
    env = cache_env(base_env, tmp_path / "httpcache")
    expired = crawl_into_cache(env, "ok")
    fresh = crawl_into_cache(env, "other")
    expire(expired)
    freed, left = sum(size(e) for e in expired), sum(size(e) for e in fresh)
    insert_completed(db, ["ok", "other"], utcnow() - hours(1))  # nothing is due: the daemon crawls nothing
    seed_cache_stats(db, hits=3, misses=1)
    d = daemon_factory({**env, "SCHEDULER_SPIDERS": "ok,other"}).start()
    wait_for(lambda: events(json_lines(d.output()), "cache_cleanup_done"), timeout=60, what="the cache cleanup")
    [done] = events(json_lines(d.output()), "cache_cleanup_done")
    assert done["entries_removed"] == 3
    assert done["kb_freed"] == round(freed / 1024, 1) and done["cache_mb"] == round(left / 2**20, 2)
    assert done["hit_rate_percent"] == 75.0 and done["duration_ms"] >= 0
    assert not any(e.exists() for e in expired)
    assert all(e.exists() and size(e) for e in fresh)
    assert sorted(m.parent for m in (tmp_path / "httpcache").glob("*/*/*/pickled_meta")) == fresh
    assert not events(json_lines(d.output()), "spider_started")  # the cleanup alone removed them
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_a_nearly_full_cache_and_a_low_hit_rate_reach_the_webhook_once_while_they_last(base_env, db, daemon_factory,
                                                                                      tmp_path):  # fmt: skip
    receiver = Receiver()
    try:
        env = cache_env(base_env, tmp_path / "httpcache")
        crawl_into_cache(env, "ok")
        insert_completed(db, ["ok"], utcnow() - hours(1))
        seed_cache_stats(db, hits=1, misses=3)  # 25 %
        env = {**env, "SCHEDULER_SPIDERS": "ok", "CACHE_MAX_MB": "0.001",  # the three pages hold more
               "CACHE_CLEANUP_INTERVAL_HOURS": "0.0003",  # about every second
               "ALERT_WEBHOOK_URL": f"{receiver.url}/hooks/T0K3N"}  # fmt: skip
        d = daemon_factory(env).start()
        wait_for(lambda: len(events(json_lines(d.output()), "cache_cleanup_done")) >= 3, timeout=60,
                 what="three cache cleanups")  # fmt: skip
        logs = json_lines(d.output())
        # Every cleanup still WARNs in the log under the same event names...
        assert len(events(logs, "cache_nearly_full")) >= 3 and len(events(logs, "cache_hit_rate_low")) >= 3
        assert {e["level"] for e in events(logs, "cache_nearly_full") + events(logs, "cache_hit_rate_low")} == {
            "warning"}  # fmt: skip
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0  # queued notifications are flushed before it exits
        # ...but the webhook is told once: nothing changed since (SCHEDULER_ALERT_AFTER_HOURS is 8 h).
        hooks = [body for path, body in receiver.requests if path == "/hooks/T0K3N"]
        assert sorted(a["kind"] for a in hooks) == ["cache_hit_rate_low", "cache_nearly_full"]
        full = next(a for a in hooks if a["kind"] == "cache_nearly_full")
        low = next(a for a in hooks if a["kind"] == "cache_hit_rate_low")
        assert "CACHE_MAX_MB" in full["text"] and full["limit_mb"] == 0.001 and full["level"] == "warning"
        assert "25.0%" in low["text"] and low["hit_rate_percent"] == 25.0 and low["level"] == "warning"
        assert "T0K3N" not in d.output()
    finally:
        receiver.server.shutdown()
