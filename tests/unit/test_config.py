"""Settings: every variable validated at start-up, every problem reported at once, no secret shown."""

from datetime import timedelta
from pathlib import Path

import pytest

from daemon.config import Settings
from daemon.errors import ConfigError

PROJECT = str(Path(__file__).resolve().parents[1] / "scrapy_project")


def build(**env):
    return Settings.from_mapping({"SCRAPY_PROJECT_DIR": PROJECT, **env})


def problems(**env):
    with pytest.raises(ConfigError) as caught:
        build(**env)
    return caught.value.lines()


def test_defaults_follow_the_design():
    s = build()
    assert s.interval == timedelta(hours=4)
    assert s.db_port == 5432 and s.db_name == "jobsearchtools" and s.db_user == "postgres"
    assert s.enabled is True and s.concurrency == 1 and s.max_spider_errors == 0
    assert s.spider_timeout == timedelta(minutes=120) and s.retry_delay == timedelta(minutes=15)
    assert s.stop_grace_seconds == 20 and s.tick_seconds == 30 and s.db_wait_timeout_seconds == 60


def test_interval_accepts_decimals():
    assert build(SCHEDULER_INTERVAL_HOURS="0.001").interval == timedelta(seconds=3.6)


@pytest.mark.parametrize("value", ["0", "-4", "abc", "4h", "nan", "inf", "1e400", "", " 4 4", "0x10"])
def test_a_bad_interval_names_the_variable_the_value_and_what_is_allowed(value):
    if value.strip() == "":
        assert build(SCHEDULER_INTERVAL_HOURS=value).interval == timedelta(hours=4)  # empty = default
        return
    [line] = problems(SCHEDULER_INTERVAL_HOURS=value)
    assert line.startswith("config error: SCHEDULER_INTERVAL_HOURS=")
    assert repr(value.strip()) in line
    assert "greater than 0" in line


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("DB_PORT", "70000", "whole number from 1 to 65535"),
        ("SCHEDULER_ENABLED", "maybe", "true or false"),
        ("SCHEDULER_TIMEZONE", "Mars/Olympus", "IANA time zone"),
        ("SCHEDULER_TIMEZONE", "../../etc/passwd", "IANA time zone"),
        ("SCHEDULER_MAX_INSTANCES", "2", "only 1"),
        ("SCHEDULER_CONCURRENCY", "0", "whole number from 1"),
        ("SCHEDULER_SPIDER_TIMEOUT_MINUTES", "-1", "greater than 0"),
        ("SCHEDULER_RETRY_DELAY_MINUTES", "soon", "greater than 0"),
        ("SCHEDULER_MAX_SPIDER_ERRORS", "-1", "whole number from 0"),
        ("SCHEDULER_STOP_GRACE_SECONDS", "0", "greater than 0"),
        ("SCHEDULER_TICK_SECONDS", "1000", "at most 300"),
        ("DB_WAIT_TIMEOUT_SECONDS", "-5", "0 or more"),
        ("LOG_LEVEL", "LOUD", "one of DEBUG"),
        ("LOG_FORMAT", "xml", "one of auto"),
        ("SCRAPY_PROJECT_DIR", "/nonexistent", "Scrapy project"),
        ("SCHEDULER_SPIDERS", "x; rm -rf /", "spider names"),
        ("SCHEDULER_SPIDERS", "ok,ok", "distinct"),
        ("SCHEDULER_SPIDERS", "a" * 200, "at most 100 characters"),
    ],
)
def test_each_bad_value_is_one_line_naming_the_variable(name, value, allowed):
    [line] = problems(**{name: value})
    assert line.startswith(f"config error: {name}=")
    assert allowed in line
    assert "\n" not in line


def test_every_problem_is_reported_at_once():
    lines = problems(SCHEDULER_INTERVAL_HOURS="0", DB_PORT="x", LOG_LEVEL="LOUD")
    assert [line.split("=")[0] for line in lines] == [
        "config error: DB_PORT",
        "config error: SCHEDULER_INTERVAL_HOURS",
        "config error: LOG_LEVEL",
    ]


def test_password_and_password_file_together_are_rejected_without_showing_the_password(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("file-secret\n")
    [line] = problems(DB_PASSWORD="env-secret", DB_PASSWORD_FILE=str(secret))
    assert "DB_PASSWORD and DB_PASSWORD_FILE" in line
    assert "env-secret" not in line and "file-secret" not in line


def test_password_file_is_read_and_never_shown(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("file-secret\n")
    s = build(DB_PASSWORD_FILE=str(secret))
    assert s.dsn_kwargs()["password"] == "file-secret"
    assert "file-secret" not in repr(s) and "file-secret" not in str(s)


def test_a_missing_password_file_is_a_config_error(tmp_path):
    [line] = problems(DB_PASSWORD_FILE=str(tmp_path / "missing"))
    assert line.startswith("config error: DB_PASSWORD_FILE=") and "readable file" in line


def test_the_settings_repr_hides_the_password():
    s = build(DB_PASSWORD="hunter2-canary")
    assert "hunter2-canary" not in repr(s)
    assert "<SECRET>" in repr(s)


@pytest.mark.parametrize("word", ["true", "True", "1", "yes", "on"])
def test_enabled_accepts_true_words(word):
    assert build(SCHEDULER_ENABLED=word).enabled is True


@pytest.mark.parametrize("word", ["false", "False", "0", "no", "off"])
def test_enabled_accepts_false_words(word):
    assert build(SCHEDULER_ENABLED=word).enabled is False


def test_spiders_subset_is_parsed_in_order():
    assert build(SCHEDULER_SPIDERS="ok, boom ,empty").spiders == ("ok", "boom", "empty")


def test_alerts_default_to_twice_the_interval_and_jobs_have_their_defaults():
    s = build(SCHEDULER_INTERVAL_HOURS="3")
    assert s.alert_after == timedelta(hours=6)
    assert s.history_retention_days == 90 and s.overdue_check_every == timedelta(minutes=5)
    assert build(SCHEDULER_ALERT_AFTER_HOURS="1.5").alert_after == timedelta(hours=1.5)


def test_a_retention_shorter_than_two_intervals_is_refused_naming_both_settings():
    [line] = problems(SCHEDULER_INTERVAL_HOURS="48", SCHEDULER_HISTORY_RETENTION_DAYS="3")
    assert "SCHEDULER_HISTORY_RETENTION_DAYS='3'" in line and "SCHEDULER_INTERVAL_HOURS='48'" in line
    assert build(SCHEDULER_INTERVAL_HOURS="48", SCHEDULER_HISTORY_RETENTION_DAYS="4").history_retention_days == 4


def test_an_interval_longer_than_the_default_retention_allows_names_the_interval():
    [line] = problems(SCHEDULER_INTERVAL_HOURS="5000")
    assert line.startswith("config error: SCHEDULER_INTERVAL_HOURS='5000' is not allowed with "
                           "SCHEDULER_HISTORY_RETENTION_DAYS='90'")  # fmt: skip
