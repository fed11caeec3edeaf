"""The per-spider queries find each spider's newest row through the spider indexes, however the
history is laid out (issue "Performance": the decision query within 5 ms at 10 million rows)."""

from __future__ import annotations

import json

import pytest

from daemon.records import board_queries, queries
from tests.helpers import rows

SPIDERS = [f"s{n:02d}" for n in range(20)]


def _query(name: str) -> str:
    """A named query of the loop (daemon/records/queries.py) or of the board (daemon/records/board_queries.py)."""
    return getattr(queries, name, None) or getattr(board_queries, name)


def _scans(db, sql: str, params: dict) -> list[tuple[str, str | None]]:
    """(node type, index) of every plan node that reads spider_runs or one of its indexes."""
    [(plan,)] = rows(db, "EXPLAIN (FORMAT JSON) " + sql, params)
    plan = plan if isinstance(plan, list) else json.loads(plan)
    found: list[tuple[str, str | None]] = []

    def walk(node: dict) -> None:
        if node.get("Relation Name") == "spider_runs" or str(node.get("Index Name", "")).startswith("spider_runs"):
            found.append((node["Node Type"], node.get("Index Name")))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


@pytest.mark.parametrize("name", ["SPIDER_HISTORY", "LATEST_SPIDER_RUNS"])
def test_a_spiders_newest_row_is_found_through_a_spider_index_never_by_walking_the_table(db, name):
    # 20 spiders taking turns for 18,000 rows, then only s00 and s01 for the newest 2,000: the
    # statistics say every spider is everywhere, yet s02..s19 have no row among the newest. That
    # layout made the planner walk the primary key backwards (bench/: 140 ms at 200,000 rows).
    rows(db, "ALTER TABLE spider_runs DROP CONSTRAINT spider_runs_run_id_fkey")  # rows need no runs here
    rows(db, "INSERT INTO spider_runs (run_id, spider, status, started_at, finished_at) "
             "SELECT n, 's' || lpad((n %% CASE WHEN n <= 18000 THEN 20 ELSE 2 END)::text, 2, '0'), "
             "'completed', now(), now() FROM generate_series(1, 20000) AS n")  # fmt: skip
    rows(db, "ANALYZE spider_runs")
    scans = _scans(db, _query(name), {"spiders": [*SPIDERS, "never_ran"]})
    assert any(index and index.startswith("spider_runs_spider") for _, index in scans), scans
    assert not [s for s in scans if s[0] == "Seq Scan" or s[1] == "spider_runs_pkey"], scans


def test_the_failures_since_the_last_success_are_counted_through_their_own_index(db):
    rows(db, "ALTER TABLE spider_runs DROP CONSTRAINT spider_runs_run_id_fkey")
    rows(db, "INSERT INTO spider_runs (run_id, spider, status, failure, started_at, finished_at) "
             "SELECT n, 's' || lpad((n %% 20)::text, 2, '0'), CASE WHEN n %% 10 = 0 THEN 'failed' ELSE 'completed' END, "
             "CASE WHEN n %% 10 = 0 THEN 'error' END, now(), now() FROM generate_series(1, 20000) AS n")  # fmt: skip
    rows(db, "ANALYZE spider_runs")
    scans = _scans(db, queries.SPIDER_HISTORY, {"spiders": SPIDERS})
    assert any(index == "spider_runs_spider_failures" for _, index in scans), scans


def test_the_daemons_connections_never_jit_compile_its_small_queries(base_env):
    from daemon.records import db
    from daemon.settings.config import Settings

    conn = db.connect(Settings.from_mapping(base_env))
    try:
        assert rows(conn, "SHOW jit") == [("off",)]
    finally:
        conn.close()


JOBS = [f"j{n:02d}" for n in range(20)]


@pytest.mark.parametrize("name", ["JOB_HISTORY", "LATEST_JOB_RUNS", "LAST_SUCCESSES"])
def test_a_jobs_newest_row_is_found_through_a_job_index_never_by_walking_the_table(db, name):
    # The layout above, per job: 20 jobs of two spiders take turns, then only j00 and j01 run.
    rows(db, "ALTER TABLE spider_runs DROP CONSTRAINT spider_runs_run_id_fkey")
    rows(db, "INSERT INTO spider_runs (run_id, job, spider, status, started_at, finished_at) "
             "SELECT n, 'j' || lpad((n %% CASE WHEN n <= 18000 THEN 20 ELSE 2 END)::text, 2, '0'), "
             "'s' || (n %% 2)::text, 'completed', now(), now() FROM generate_series(1, 20000) AS n")  # fmt: skip
    rows(db, "ANALYZE spider_runs")
    scans = _scans(db, _query(name), {"jobs": [*JOBS, "never_ran"], "spiders": [*JOBS, "never_ran"]})
    assert any(index and index.startswith("spider_runs_job_") for _, index in scans), scans
    assert not [s for s in scans if s[0] == "Seq Scan" or s[1] == "spider_runs_pkey"], scans


def test_a_jobs_failures_since_its_last_success_are_counted_through_their_own_index(db):
    rows(db, "ALTER TABLE spider_runs DROP CONSTRAINT spider_runs_run_id_fkey")
    rows(db, "INSERT INTO spider_runs (run_id, job, spider, status, failure, started_at, finished_at) "
             "SELECT n, 'j' || lpad((n %% 20)::text, 2, '0'), 's' || (n %% 2)::text, "
             "CASE WHEN n %% 10 = 0 THEN 'failed' ELSE 'completed' END, "
             "(ARRAY[NULL, 'error', 'timeout', 'too_few_items', 'cancelled'])[CASE WHEN n %% 10 = 0 THEN 2 + n %% 4 "
             "ELSE 1 END], now(), now() FROM generate_series(1, 20000) AS n")  # fmt: skip
    rows(db, "ANALYZE spider_runs")
    scans = _scans(db, queries.JOB_HISTORY, {"jobs": JOBS})
    assert any(index == "spider_runs_job_success" for _, index in scans), scans
    assert any(index == "spider_runs_job_failures" for _, index in scans), scans
