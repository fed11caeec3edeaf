"""Each crawl's log: a file per crawl under the state directory, its last lines with its row in
PostgreSQL, and `python -m daemon logs`; real crawls, a real PostgreSQL, the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.engines import crawllog
from tests.conftest import ROOT
from tests.helpers import SchedulerThread, rows, wait_for

pytestmark = pytest.mark.e2e


def logs_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "daemon", "logs", *args], env=full, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def crawled(db, job: str):
    return rows(db, "SELECT id, status, log_tail FROM spider_runs WHERE job = %(j)s AND status <> 'running' "
                    "ORDER BY id", {"j": job})  # fmt: skip


def test_a_crawls_output_is_kept_in_a_file_and_its_last_lines_with_its_row(base_env, db):
    with SchedulerThread(base_env, ["ok"]):
        wait_for(lambda: crawled(db, "ok"), what="the crawl")
    [(run_id, status, tail)] = crawled(db, "ok")
    assert status == "completed" and "Spider closed (finished)" in tail
    [path] = (Path(base_env["SCHEDULER_STATE_DIR"]) / "logs" / "ok").glob("*.log")
    assert path.read_text().endswith(tail) and (path.stat().st_mode & 0o077) == 0
    shown = logs_cli(base_env, "ok")
    assert shown.returncode == 0 and str(path) in shown.stdout.splitlines()[0]
    assert "Spider closed (finished)" in shown.stdout
    path.unlink()  # gone (or the daemon runs on another machine): the tail from PostgreSQL
    again = logs_cli(base_env, "ok", "--run", str(run_id))
    assert again.returncode == 0 and "kept in PostgreSQL" in again.stdout.splitlines()[0]
    assert again.stdout.endswith(tail)


def test_logs_of_an_unknown_job_or_crawl_is_one_line_and_exit_2(base_env, db):
    with SchedulerThread(base_env, ["ok"]):
        wait_for(lambda: crawled(db, "ok"), what="the crawl")
    for args in (["nosuch"], ["ok", "--run", "999999"]):
        done = logs_cli(base_env, *args)
        [line] = done.stderr.strip().splitlines()
        assert done.returncode == 2 and line.startswith("config error: logs: no crawl"), done.stderr


def test_logs_follow_prints_a_running_crawl_until_it_ends(base_env, db):
    env = {**base_env, "SLOW_SECONDS": "4"}
    with SchedulerThread(env, ["slow"]):
        wait_for(lambda: rows(db, "SELECT 1 FROM spider_runs WHERE job = 'slow' AND pid IS NOT NULL"),
                 what="the crawl under way")  # fmt: skip
        followed = logs_cli(env, "slow", "--follow")
    assert followed.returncode == 0 and "running" in followed.stdout.splitlines()[0]
    assert "Spider closed (finished)" in followed.stdout  # printed as it came, after the command started


def test_a_crawls_tail_is_capped_and_its_file_too(tmp_path, monkeypatch):
    monkeypatch.setattr(crawllog, "FILE_MAX_BYTES", 1000)
    log = crawllog.CrawlLog(tmp_path, "big", datetime.now(timezone.utc), 4242)
    for n in range(2000):
        log.write(f"line {n} " + "x" * 40)
    tail = log.close()
    assert len(tail.encode()) <= crawllog.TAIL_MAX_BYTES and tail.endswith("line 1999 " + "x" * 40 + "\n")
    assert len(tail.splitlines()) <= crawllog.TAIL_LINES
    text = log.path.read_text()  # type: ignore[union-attr]
    assert len(text) <= 1000 + len(crawllog.CUT_NOTE) and text.endswith(crawllog.CUT_NOTE)


def test_a_planted_link_for_the_logs_directory_is_never_followed_and_the_crawl_keeps_its_tail(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "logs").symlink_to(elsewhere)
    log = crawllog.CrawlLog(state, "job", datetime.now(timezone.utc), 7)
    log.write("hello")
    assert log.close() == "hello\n" and log.path is None and list(elsewhere.iterdir()) == []


def test_history_retention_removes_crawl_log_files_as_old_as_the_history_it_deletes(tmp_path):
    now = datetime.now(timezone.utc)
    old = crawllog.CrawlLog(tmp_path, "j", now - timedelta(days=100), 1)
    old.write("old")
    old.close()
    recent = crawllog.CrawlLog(tmp_path, "j", now, 2)
    recent.write("new")
    recent.close()
    stamp = (now - timedelta(days=100)).timestamp()
    os.utime(old.path, (stamp, stamp))  # type: ignore[arg-type]
    assert crawllog.remove_older_than(tmp_path, now - timedelta(days=90)) == 1
    assert not old.path.exists() and recent.path.exists()  # type: ignore[union-attr]
