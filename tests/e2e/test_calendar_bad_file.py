"""The daemon as a real process refuses a jobs file with a bad calendar key (issue 21): exit 2 with
one line naming the file, the job, the key, its value and what is allowed, before it waits for
PostgreSQL."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import PG_PASSWORD, TEST_PROJECT, free_port
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("cron", '"0 8 * * 1-5 *"', "6 fields; 5 fields (minute hour day-of-month month day-of-week)"),
        ("timezone", '"Mars/Olympus"', None),
        ("window", '"07:00-07:00"', None),
    ],
)
def test_a_bad_calendar_key_exits_2_with_one_line_naming_file_job_key_value_and_what_is_allowed(
        tmp_path, key, value, allowed):  # fmt: skip
    jobs = tmp_path / "schedule.toml"
    cron = "" if key == "cron" else 'cron = "0 8 * * 1-5"\n'
    jobs.write_text(f'[jobs.news-morning]\nspider = "ok"\n{cron}{key} = {value}\n')
    env = {"DB_PASSWORD": PG_PASSWORD, "DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()),
           "DB_WAIT_TIMEOUT_SECONDS": "1", "SCRAPY_PROJECT_DIR": str(TEST_PROJECT),
           "SCHEDULER_STATE_DIR": str(tmp_path / "state"), "SCHEDULER_JOBS_FILE": str(jobs)}  # fmt: skip
    done = run_cli([sys.executable, "-m", "daemon"], env, tmp_path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"config error: {jobs}: job 'news-morning': {key}={value.strip(chr(34))!r} is not allowed: ")
    if allowed is not None:
        assert allowed in line
    assert "Traceback" not in done.stderr + done.stdout and PG_PASSWORD not in done.stderr + done.stdout
