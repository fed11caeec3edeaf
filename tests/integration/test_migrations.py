"""Migrations: each file once, in one transaction with its ledger row; edits refused; serialized."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2.errors
import pytest

from daemon.settings.config import Settings
from daemon.system.errors import MigrationError
from daemon.records.migrations import SQL_DIR, apply_migrations
from tests.conftest import ROOT, TEST_PROJECT
from tests.helpers import rows


def settings_for(pg_server, name):
    return Settings.from_mapping({**pg_server.env(name), "SCRAPY_PROJECT_DIR": str(TEST_PROJECT)})


def copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(SQL_DIR, target)
    return target


def test_each_file_is_applied_once_and_a_second_pass_does_nothing(pg_server, empty_database):
    settings = settings_for(pg_server, empty_database)
    first = apply_migrations(settings)
    assert first == sorted(p.name for p in SQL_DIR.glob("[0-9][0-9][0-9]_*.sql"))
    assert apply_migrations(settings) == []
    conn = pg_server.connect(empty_database)
    assert [r[0] for r in rows(conn, "SELECT filename FROM schema_migrations ORDER BY 1")] == first
    conn.close()


def test_five_processes_migrating_at_once_apply_each_file_once(pg_server, empty_database):
    env = {**pg_server.env(empty_database), "SCRAPY_PROJECT_DIR": str(TEST_PROJECT), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "daemon", "migrate"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(5)
    ]  # fmt: skip
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, results
    conn = pg_server.connect(empty_database)
    [(count, distinct)] = rows(conn, "SELECT count(*), count(DISTINCT filename) FROM schema_migrations")
    assert count == distinct == len(list(SQL_DIR.glob("[0-9][0-9][0-9]_*.sql")))
    conn.close()


def test_a_file_with_a_bad_second_statement_applies_nothing_and_names_the_file(pg_server, empty_database, tmp_path):
    sql = copy_sql(tmp_path)
    # The second statement fails when it runs (a syntax error would be refused before anything ran).
    (sql / "900_broken.sql").write_text("CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1 / 0);\n")
    settings = settings_for(pg_server, empty_database)
    with pytest.raises(MigrationError) as caught:
        apply_migrations(settings, sql)
    assert "sql/900_broken.sql" in str(caught.value) and "nothing of it was applied" in str(caught.value)
    conn = pg_server.connect(empty_database)
    assert rows(conn, "SELECT to_regclass('half_done')") == [(None,)]
    assert rows(conn, "SELECT count(*) FROM schema_migrations WHERE filename = '900_broken.sql'") == [(0,)]
    conn.close()


def test_an_applied_file_that_was_edited_is_refused(pg_server, empty_database, tmp_path):
    sql = copy_sql(tmp_path)
    settings = settings_for(pg_server, empty_database)
    apply_migrations(settings, sql)
    with (sql / "001_scheduler_state.sql").open("a") as fh:
        fh.write("\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match=r"sql/001_scheduler_state.sql was edited after it was applied"):
        apply_migrations(settings, sql)


def test_only_numbered_files_are_migrations(pg_server, empty_database):
    apply_migrations(settings_for(pg_server, empty_database))
    conn = pg_server.connect(empty_database)
    assert rows(conn, "SELECT count(*) FROM schema_migrations WHERE filename = 'monitoring.sql'") == [(0,)]
    conn.close()


def test_scheduler_state_is_the_designs_table_with_its_index(db):
    columns = dict(rows(db, "SELECT column_name, data_type || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END "
                            "FROM information_schema.columns WHERE table_name = 'scheduler_state'"))  # fmt: skip
    assert {name: columns[name] for name in ("id", "last_run_at", "spider_count", "status", "created_at",
                                             "updated_at")} == {  # fmt: skip
        "id": "integer not null",
        "last_run_at": "timestamp with time zone not null",
        "spider_count": "integer not null",
        "status": "character varying not null",
        "created_at": "timestamp with time zone not null",
        "updated_at": "timestamp with time zone not null",
    }
    assert rows(db, "SELECT character_maximum_length FROM information_schema.columns "
                    "WHERE table_name = 'scheduler_state' AND column_name = 'status'") == [(50,)]  # fmt: skip
    assert rows(db, "SELECT pg_get_serial_sequence('scheduler_state', 'id') IS NOT NULL") == [(True,)]
    indexes = [r[0] for r in rows(db, "SELECT indexdef FROM pg_indexes WHERE tablename = 'scheduler_state'")]
    assert any(d.endswith("USING btree (last_run_at)") for d in indexes), indexes


def test_spider_runs_recorded_before_jobs_become_runs_of_the_job_named_after_their_spider(
    pg_server, empty_database, tmp_path
):
    before_jobs = tmp_path / "sql"
    before_jobs.mkdir()
    for path in SQL_DIR.glob("[0-9][0-9][0-9]_*.sql"):
        if path.name < "012_jobs.sql":
            shutil.copy(path, before_jobs / path.name)
    settings = settings_for(pg_server, empty_database)
    apply_migrations(settings, before_jobs)
    conn = pg_server.connect(empty_database)
    rows(conn, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 2, 'completed')")
    rows(conn, "INSERT INTO spider_runs (run_id, spider, status, started_at) "
               "SELECT max(id), s, 'completed', now() FROM scheduler_state, unnest(ARRAY['ok', 'other']) s "
               "GROUP BY s")  # fmt: skip
    assert apply_migrations(settings) == ["012_jobs.sql"] + [
        p.name for p in sorted(SQL_DIR.glob("[0-9][0-9][0-9]_*.sql")) if p.name > "012_jobs.sql"
    ]
    assert rows(conn, "SELECT job, spider, args, settings FROM spider_runs ORDER BY job") == [
        ("ok", "ok", None, None),
        ("other", "other", None, None),
    ]
    assert rows(conn, "SELECT is_nullable FROM information_schema.columns "
                      "WHERE table_name = 'spider_runs' AND column_name = 'job'") == [("NO",)]  # fmt: skip
    conn.close()


def _spider_run(conn, job: str, spider: str, status: str = "completed", failure: str | None = None) -> None:
    rows(conn, "INSERT INTO spider_runs (run_id, job, spider, status, failure, started_at) "
               "SELECT max(id), %(job)s, %(spider)s, %(status)s, %(failure)s, now() FROM scheduler_state",
         {"job": job, "spider": spider, "status": status, "failure": failure})  # fmt: skip


def test_two_jobs_of_one_spider_may_run_in_one_run_but_one_job_only_once(db):
    rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 2, 'running')")
    _spider_run(db, "python-remote", "indeed")
    _spider_run(db, "data-bogota", "indeed")
    with pytest.raises(psycopg2.errors.UniqueViolation, match="spider_runs_one_per_run"):
        _spider_run(db, "python-remote", "indeed")
    assert rows(db, "SELECT count(*) FROM spider_runs WHERE spider = 'indeed'") == [(2,)]


@pytest.mark.parametrize("failure", ["error", "timeout", "too_few_items", "cancelled", "interrupted", "stale"])
def test_every_failure_kind_of_a_job_is_accepted(db, failure):
    rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 1, 'running')")
    _spider_run(db, "job", "ok", "failed", failure)
    assert rows(db, "SELECT failure FROM spider_runs") == [(failure,)]


def test_a_failure_kind_nobody_defined_is_refused(db):
    rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 1, 'running')")
    with pytest.raises(psycopg2.errors.CheckViolation, match="spider_runs_failure_check"):
        _spider_run(db, "job", "ok", "failed", "bored")



def test_a_writer_that_knows_nothing_of_jobs_records_a_run_of_the_job_named_after_its_spider(db):
    rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 2, 'running')")
    rows(db, "INSERT INTO spider_runs (run_id, spider, status, started_at) "
             "SELECT max(id), 'ok', 'running', now() FROM scheduler_state")  # fmt: skip
    _spider_run(db, "python-remote", "indeed")
    assert rows(db, "SELECT job, spider FROM spider_runs ORDER BY id") == [("ok", "ok"), ("python-remote", "indeed")]
