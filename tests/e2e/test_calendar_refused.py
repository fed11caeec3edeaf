"""The daemon as a real process refuses a jobs file using calendar keys (issue 21) until its loop acts on
them: exit 2 with one line, before it waits for PostgreSQL."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import PG_PASSWORD, TEST_PROJECT, free_port
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e


def test_a_jobs_file_with_cron_exits_2_with_one_line_naming_the_file_and_the_job(tmp_path):
    jobs = tmp_path / "schedule.toml"
    jobs.write_text('[jobs.news-morning]\nspider = "ok"\ncron = "0 8 * * 1-5"\n')
    env = {"DB_PASSWORD": PG_PASSWORD, "DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()),
           "DB_WAIT_TIMEOUT_SECONDS": "1", "SCRAPY_PROJECT_DIR": str(TEST_PROJECT),
           "SCHEDULER_STATE_DIR": str(tmp_path / "state"), "SCHEDULER_JOBS_FILE": str(jobs)}  # fmt: skip
    done = run_cli([sys.executable, "-m", "daemon"], env, tmp_path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(
        f"config error: {jobs}: job 'news-morning': cron, window and catch_up_within are not allowed yet"
    )
    assert "Traceback" not in done.stderr + done.stdout and PG_PASSWORD not in done.stderr + done.stdout
