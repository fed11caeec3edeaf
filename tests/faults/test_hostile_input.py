"""Rows 18-20 of the fault matrix: hostile settings, hostile spider names, and a canary password."""

from __future__ import annotations

import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import Settings
from daemon.errors import ConfigError
from tests.conftest import PG_PASSWORD, ROOT, TEST_PROJECT

pytestmark = pytest.mark.faults

HOSTILE = ["0", "-4", "abc", "4h", "nan", "inf", "-inf", "1e999", "0x10", "１", "4 4", "\x00", "$(id)",
           "'; DROP TABLE scheduler_state; --", "9" * 40, "True False", "٣"]  # fmt: skip
NUMERIC = {
    "DB_PORT", "SCHEDULER_INTERVAL_HOURS", "SCHEDULER_CONCURRENCY", "SCHEDULER_SPIDER_TIMEOUT_MINUTES",
    "SCHEDULER_RETRY_DELAY_MINUTES", "SCHEDULER_MAX_SPIDER_ERRORS", "SCHEDULER_STOP_GRACE_SECONDS",
    "SCHEDULER_TICK_SECONDS", "DB_WAIT_TIMEOUT_SECONDS", "SCHEDULER_HISTORY_RETENTION_DAYS",
    "SCHEDULER_ALERT_AFTER_HOURS", "SCHEDULER_OVERDUE_CHECK_MINUTES", "SCHEDULER_JITTER_MINUTES",
    "CACHE_CLEANUP_INTERVAL_HOURS", "CACHE_MAX_MB", "SCHEDULER_HTTP_PORT",
}  # fmt: skip
CHOICES = {"SCHEDULER_ENABLED", "SCHEDULER_TIMEZONE", "SCHEDULER_MAX_INSTANCES", "LOG_LEVEL", "LOG_FORMAT",
           "SCHEDULER_SPIDERS", "SCRAPY_PROJECT_DIR"}  # fmt: skip
VALID_WORDS = {"SCHEDULER_ENABLED": {"true", "1", "yes", "on", "false", "0", "no", "off"}}


def build(**env):
    return Settings.from_mapping({"SCRAPY_PROJECT_DIR": str(TEST_PROJECT), **env})


def rejected(name: str, value: str) -> list[str] | None:
    try:
        build(**{name: value})
    except ConfigError as exc:
        return exc.lines()
    return None


@pytest.mark.parametrize("name", sorted(NUMERIC | CHOICES))
def test_every_variable_rejects_hostile_values_with_one_line_naming_it(name):
    refused = 0
    for value in HOSTILE:
        lines = rejected(name, value)
        if lines is None:
            continue  # e.g. "0" is a valid DB_WAIT_TIMEOUT_SECONDS or SCHEDULER_ENABLED
        refused += 1
        assert len(lines) == 1 and lines[0].startswith(f"config error: {name}=")
        assert "\n" not in lines[0] and "\x00" not in lines[0]
    assert refused >= 10


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(NUMERIC)), st.text(alphabet=string.printable + "éß١𝟘\u200b", max_size=30))
def test_generated_values_are_either_valid_numbers_or_one_clear_line(name, value):
    lines = rejected(name, value)
    if lines is None:
        return  # a valid number (or empty: the default)
    assert len(lines) == 1 and lines[0].startswith(f"config error: {name}=")


def run_daemon(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SCRAPY_PROJECT_DIR": str(TEST_PROJECT), **env}
    return subprocess.run([sys.executable, "-m", "daemon"], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


@pytest.mark.parametrize("name", sorted(NUMERIC | CHOICES))
def test_the_process_exits_2_with_no_traceback(name, tmp_path):
    done = run_daemon({name: "$(id)"}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"config error: {name}=") and "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    "spiders",
    ["x; rm -rf /", "a' OR 1=1 --", "$(touch {canary})", "`touch {canary}`", "ok,ok", "a" * 200, "ok;touch {canary}"],
)
def test_hostile_spider_names_are_rejected_and_nothing_runs(spiders, tmp_path):
    canary = tmp_path / "canary"
    done = run_daemon({"SCHEDULER_SPIDERS": spiders.format(canary=canary)}, tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("config error: SCHEDULER_SPIDERS=")
    assert not canary.exists()


def test_a_canary_password_never_shows_in_errors_reprs_or_healthcheck_output(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text(PG_PASSWORD + "\n")
    s = build(DB_PASSWORD_FILE=str(secret))
    assert PG_PASSWORD not in repr(s) + str(s) + repr(s.db_password)
    for env in ({"DB_PASSWORD": PG_PASSWORD, "DB_PASSWORD_FILE": str(secret)},
                {"DB_PASSWORD": PG_PASSWORD, "DB_PORT": "1", "DB_WAIT_TIMEOUT_SECONDS": "0.5"},
                {"DB_PASSWORD_FILE": str(secret), "DB_HOST": "127.0.0.1", "DB_PORT": "1",
                 "DB_WAIT_TIMEOUT_SECONDS": "0.5"}):  # fmt: skip
        for command in ([], ["healthcheck"], ["wait-db"], ["migrate"]):
            full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SCRAPY_PROJECT_DIR": str(TEST_PROJECT), **env}
            done = subprocess.run([sys.executable, "-m", "daemon", *command], cwd=tmp_path, env=full,
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            assert done.returncode != 0
            assert PG_PASSWORD not in done.stdout + done.stderr
