"""The design's four monitoring queries run verbatim through psql and give correct answers."""

from __future__ import annotations

import os
import re
import subprocess

from tests.conftest import PG_BIN, ROOT
from tests.helpers import hours, insert_completed, rows, utcnow


def arrange(db):
    now = utcnow()
    for h in (30 * 24 + 5, 20, 8, 4):  # one older than a month, three inside the last day or so
        insert_completed(db, ["ok"], now - hours(h))
    rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (%(t)s, 2, 'failed')",
         {"t": now - hours(2)})  # fmt: skip
    return now


def psql(pg_server, database, *args):
    env = {**os.environ, "PGPASSWORD": pg_server.password}
    return subprocess.run(
        [str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(pg_server.port),
         "-U", "postgres", "-d", database, *args],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_monitoring_sql_runs_verbatim_in_psql_and_answers_correctly(pg_server, database, db):
    arrange(db)
    out = psql(pg_server, database, "-A", "-F", "|", "-f", str(ROOT / "sql" / "monitoring.sql"))
    # Unaligned output: each result is a header line, its rows, and an "(N rows)" footer.
    blocks = [b.strip() + "\n-" for b in re.split(r"\(\d+ rows?\)", out)][:4]
    assert len(blocks) == 4
    # 1. The last successful run: the one 4 hours ago.
    [last] = blocks[0].splitlines()[1:-1]
    assert last.endswith("|1|completed")
    # 2. The last 24 hours: the failed run (2 h), and completed runs 4, 8 and 20 hours ago.
    lines = [line for line in blocks[1].splitlines()[1:-1]]
    assert [line.split("|")[2] for line in lines] == ["failed", "completed", "completed", "completed"]
    hours_ago = [round(float(line.split("|")[3])) for line in lines]
    assert hours_ago == [2, 4, 8, 20]
    # 3. Counts per status in the last 30 days (the month-old run is outside).
    counts = dict(line.split("|")[:2] for line in blocks[2].splitlines()[1:-1])
    assert counts == {"completed": "3", "failed": "1"}
    # 4. Hours between completed runs, newest first.
    between = [line.split("|")[2] for line in blocks[3].splitlines()[1:-1]]
    assert [round(float(b)) if b else None for b in between] == [4, 12, 24 * 30 + 5 - 20, None]


def test_the_views_give_the_same_answers_as_the_queries(db):
    arrange(db)
    assert rows(db, "SELECT status FROM last_successful_run") == [("completed",)]
    assert len(rows(db, "SELECT * FROM runs_last_24h")) == 4
    assert dict((s, c) for s, c, *_ in rows(db, "SELECT * FROM run_status_counts_30d")) == {"completed": 3, "failed": 1}
    assert len(rows(db, "SELECT * FROM hours_between_completed_runs")) == 4


def test_the_history_views_answer_the_common_questions(db):
    now = utcnow()
    insert_completed(db, ["ok", "empty"], now - hours(10))
    insert_completed(db, ["ok"], now - hours(4))
    run = insert_completed(db, ["empty"], now - hours(2))
    rows(db, "UPDATE spider_runs SET items_scraped = 0 WHERE run_id = %(r)s", {"r": run})
    last = {s: round(float(h)) for s, _, _, h in rows(db, "SELECT * FROM spider_last_success")}
    assert last == {"ok": 4, "empty": 2}
    assert len(rows(db, "SELECT * FROM spider_runs_last_24h")) == 4
    counts = {(s, st): c for s, st, c, *_ in rows(db, "SELECT * FROM spider_status_counts_30d")}
    assert counts == {("ok", "completed"): 2, ("empty", "completed"): 2}
    between = {(s, round(float(h))) for s, _, _, h in rows(db, "SELECT * FROM spider_hours_between_successes")
               if h is not None}  # fmt: skip
    assert between == {("ok", 6), ("empty", 8)}
    assert [s for s, *_ in rows(db, "SELECT * FROM spiders_scraping_zero")] == ["empty"]


def test_the_hours_between_view_gives_exactly_the_designs_query_answer(db):
    for n in range(15):  # more than the query's 10, so its LIMIT and the first LAG matter
        insert_completed(db, ["ok"], utcnow() - hours(4 * n + n * n / 10))
    design = [q for q in (ROOT / "sql" / "monitoring.sql").read_text().split(";") if "hours_between" in q][0]
    design = "\n".join(line for line in design.splitlines() if not line.lstrip().startswith("--"))
    assert rows(db, "SELECT * FROM hours_between_completed_runs") == rows(db, design)
    assert len(rows(db, design)) == 10


def _crawl(db, run_id: int, job: str, spider: str, started, items: int, status: str = "completed") -> None:
    rows(db, "INSERT INTO spider_runs (run_id, job, spider, args, status, failure, started_at, finished_at, "
             "items_scraped) VALUES (%(r)s, %(j)s, %(s)s, '{\"q\": \"x\"}', %(st)s, "
             "CASE WHEN %(st)s = 'failed' THEN 'too_few_items' END, %(t)s, %(t)s, %(n)s)",
         {"r": run_id, "j": job, "s": spider, "st": status, "t": started, "n": items})  # fmt: skip


def test_the_per_job_views_tell_two_jobs_of_one_spider_apart(db):
    now = utcnow()
    first = insert_completed(db, [], now - hours(10))
    _crawl(db, first, "python-remote", "indeed", now - hours(10), 5)
    _crawl(db, first, "data-bogota", "indeed", now - hours(10), 7)
    second = insert_completed(db, [], now - hours(4))
    _crawl(db, second, "python-remote", "indeed", now - hours(4), 3)
    _crawl(db, second, "data-bogota", "indeed", now - hours(4), 0)
    third = insert_completed(db, [], now - hours(1))
    _crawl(db, third, "python-remote", "indeed", now - hours(1), 1, "failed")
    last = {(j, s): round(float(h)) for j, s, _, _, h in rows(db, "SELECT * FROM job_last_success")}
    assert last == {("python-remote", "indeed"): 4, ("data-bogota", "indeed"): 4}
    recent = rows(db, "SELECT job, spider, args, status, failure FROM job_runs_last_24h")
    assert recent[0] == ("python-remote", "indeed", {"q": "x"}, "failed", "too_few_items") and len(recent) == 5
    counts = {(j, st): c for j, _, st, c, *_ in rows(db, "SELECT * FROM job_status_counts_30d")}
    assert counts == {("python-remote", "completed"): 2, ("python-remote", "failed"): 1,
                      ("data-bogota", "completed"): 2}  # fmt: skip
    between = {(j, round(float(h))) for j, _, _, _, h in rows(db, "SELECT * FROM job_hours_between_successes")
               if h is not None}  # fmt: skip
    assert between == {("python-remote", 6), ("data-bogota", 6)}
    assert rows(db, "SELECT job, spider, previous_items FROM jobs_scraping_zero") == [("data-bogota", "indeed", 7)]
    # The per-spider views still see one spider.
    assert [s for s, *_ in rows(db, "SELECT * FROM spider_last_success")] == ["indeed"]
