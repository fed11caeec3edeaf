"""Per-job `notify` tags in the jobs file, the secret-file rules of SCHEDULER_NOTIFY_CONFIG, and the
pure parts of the channels: which channels an alert's tags choose, a title kept to one line, a
failure's reason with the channel's URL taken out, and a channel's name that never shows a token."""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta

import pytest

from daemon.telemetry import notify_apprise
from daemon.telemetry.channels import Channel, chosen, one_line
from daemon.settings.notify_config import read_config
from daemon.settings.config import Settings
from daemon.system.errors import ConfigError, JobsFileError
from daemon.jobs.jobfile import JobDefaults
from daemon.jobs.rules import parse

ENV = JobDefaults(every=timedelta(hours=4), timeout=timedelta(hours=2), retry_delay=timedelta(minutes=15),
                  max_errors=0, min_items=0, jitter=timedelta(0), notify_tags=frozenset({"oncall", "team-data"}))


def jobs(text: str, defaults: JobDefaults = ENV):  # noqa: ANN201
    return {job.name: job for job in parse(text, "schedule.toml", defaults, {"quotes", "books"})}


def problems(text: str, defaults: JobDefaults = ENV) -> list[str]:
    with pytest.raises(JobsFileError) as caught:
        parse(text, "schedule.toml", defaults, {"quotes", "books"})
    return caught.value.problems


def test_a_jobs_notify_tags_come_from_the_job_else_from_defaults_else_none():
    found = jobs('[defaults]\nnotify = ["team-data"]\n[jobs.quotes]\nnotify = ["oncall", "oncall"]\n[jobs.books]\n')
    assert found["quotes"].notify == ("oncall",)
    assert found["books"].notify == ("team-data",)
    assert jobs("[jobs.quotes]\n")["quotes"].notify == ()


@pytest.mark.parametrize(("text", "expected"), [
    ('[jobs.quotes]\nnotify = ["oncal"]', [
        "schedule.toml: job 'quotes': notify='oncal' is not allowed: a tag of the alert channels (oncall, team-data)"]),
    ('[defaults]\nnotify = ["pager"]\n[jobs.quotes]', [
        "schedule.toml: [defaults]: notify='pager' is not allowed: a tag of the alert channels (oncall, team-data)"]),
    ('[jobs.quotes]\nnotify = "oncall"', [
        "schedule.toml: job 'quotes': notify='oncall' is not allowed: a list of channel tags such as [\"oncall\", "
        "\"team-data\"] (each 1-64 letters, digits, _ . -)"]),
    ('[jobs.quotes]\nnotify = ["a\\nb"]', [
        "schedule.toml: job 'quotes': notify=[...] is not allowed: a list of channel tags such as [\"oncall\", "
        "\"team-data\"] (each 1-64 letters, digits, _ . -)"]),
])  # fmt: skip
def test_an_unknown_or_malformed_tag_is_one_jobs_file_problem_line(text, expected):
    assert problems(text) == expected


def test_without_channels_any_tag_is_unknown_and_a_command_that_does_not_know_them_checks_only_the_form():
    none = dataclasses.replace(ENV, notify_tags=frozenset())
    assert problems('[jobs.quotes]\nnotify = ["oncall"]', none) == [
        "schedule.toml: job 'quotes': notify='oncall' is not allowed: a tag of the alert channels (none: "
        "SCHEDULER_NOTIFY_CONFIG has no tagged channel)"]  # fmt: skip
    unknown = dataclasses.replace(ENV, notify_tags=None)
    assert jobs('[jobs.quotes]\nnotify = ["anything"]', unknown)["quotes"].notify == ("anything",)


@pytest.mark.parametrize(("channel_tags", "alert_tags", "gets_it"), [
    ((), ("oncall",), True),  # an untagged channel gets every alert
    (("oncall",), (), True),  # an alert without tags goes everywhere
    (("oncall",), ("oncall", "x"), True),
    (("team-data",), ("oncall",), False),
])  # fmt: skip
def test_an_alerts_tags_choose_its_channels_the_same_on_both_sides(channel_tags, alert_tags, gets_it):
    assert chosen(Channel("json", channel_tags), alert_tags) is gets_it
    assert notify_apprise.chosen(set(channel_tags), list(alert_tags)) is gets_it


def test_a_title_is_one_line_whatever_a_job_or_a_message_holds():
    assert one_line("quotes: failed\r\nBcc: victim@example.com\x00") == "quotes: failed Bcc: victim@example.com"
    assert len(one_line("x" * 1000)) == 200


def test_a_failures_reason_loses_every_piece_of_the_channels_url():
    url = "json://user:pa55word@hooks.example.com:8080/path/T0K3N?key=s3cr3tvalue"
    message = "Failed to send to hooks.example.com with T0K3N (key s3cr3tvalue) user pa55word via json://x/y"
    why = notify_apprise.scrubbed(message, url)
    for secret in ("T0K3N", "s3cr3tvalue", "pa55word", "hooks.example.com", "json://"):
        assert secret not in why
    assert why.startswith("Failed to send to <hidden>")


class _Server:
    def __init__(self, url: str) -> None:
        self._url = url

    def url(self, privacy: bool = False) -> str:
        return self._url


@pytest.mark.parametrize(("url", "name"), [
    ("json://127.0.0.1:8080/hook?x=1", "json://127.0.0.1:8080"),
    ("mailtos://smtp.example.com/ops%40example.com", "mailtos://smtp.example.com"),
    ("tgram://1...C/456/", "tgram"),  # the host is the bot's token
    ("discord://1234/t...n/", "discord"),
])  # fmt: skip
def test_a_channels_name_shows_a_host_only_where_it_is_a_servers_name(url, name):
    assert notify_apprise.name_of(_Server(url)) == name


@pytest.mark.parametrize(("mode", "why"), [
    (0o644, "others may read it (mode 0644; chmod o-r)"),
    (0o604, "others may read it (mode 0604; chmod o-r)"),
])  # fmt: skip
def test_a_config_file_others_may_read_is_refused(tmp_path, mode, why):
    path = tmp_path / "apprise.txt"
    path.write_text("json://127.0.0.1/x")
    path.chmod(mode)
    assert read_config(path) == (why, "")


def test_a_config_file_is_read_whole_when_it_keeps_the_rules(tmp_path):
    path = tmp_path / "apprise.txt"
    path.write_text("\ufeffoncall=json://127.0.0.1/x\n")
    path.chmod(0o640)
    assert read_config(path) == (None, "oncall=json://127.0.0.1/x\n")
    os.mkfifo(tmp_path / "fifo")
    assert read_config(tmp_path / "fifo") == ("it is not a regular file", "")
    assert read_config(tmp_path / "missing")[0] == "No such file or directory"


def test_the_settings_hold_the_config_text_as_a_secret_and_show_only_the_path(tmp_path):
    path = tmp_path / "apprise.txt"
    path.write_text("json://127.0.0.1/T0K3N")
    path.chmod(0o600)
    settings = Settings.from_mapping({"SCHEDULER_NOTIFY_CONFIG": str(path), "SCHEDULER_STATE_DIR": str(tmp_path)})
    assert settings.notify_config.text.reveal() == "json://127.0.0.1/T0K3N"
    assert "T0K3N" not in repr(settings)
    path.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        Settings.from_mapping({"SCHEDULER_NOTIFY_CONFIG": str(path), "SCHEDULER_STATE_DIR": str(tmp_path)})
    [line] = caught.value.problems
    assert line.startswith("SCHEDULER_NOTIFY_CONFIG=") and "T0K3N" not in line


def test_alert_after_comes_from_the_job_else_defaults_else_1_and_is_from_1_to_1000():
    found = jobs("[defaults]\nalert_after = 3\n[jobs.quotes]\nalert_after = 5\n[jobs.books]\n")
    assert (found["quotes"].alert_after, found["books"].alert_after) == (5, 3)
    assert jobs("[jobs.quotes]\n")["quotes"].alert_after == 1
    assert problems("[jobs.quotes]\nalert_after = 0") == [
        "schedule.toml: job 'quotes': alert_after=0 is not allowed: a whole number from 1 to 1000 (failures in a row "
        "before an alert)"]  # fmt: skip


@pytest.mark.parametrize(("kind", "fields", "alert_after", "is_held"), [
    ("spider_failed", {"failures": 1}, 1, False),  # default: every failure, as before
    ("spider_failed", {"failures": 2}, 3, True),
    ("spider_failed", {"failures": 3}, 3, False),
    ("spider_failed", {"failures": 4}, 3, False),
    ("recovered", {"failures": 2}, 3, True),  # the streak was never told: nor its end
    ("recovered", {"failures": 3}, 3, False),
    ("overdue", {}, 3, False),  # not a crawl's alert: alert_after is not its policy
])  # fmt: skip
def test_a_failure_is_held_below_the_jobs_alert_after_and_so_is_the_recovery_of_a_streak_never_told(
    kind, fields, alert_after, is_held
):  # fmt: skip
    from daemon.telemetry.outbox import held

    assert held(kind, fields, alert_after) is is_held


@pytest.mark.parametrize(("text", "baseline"), [
    ("", (0.5, 3.0)),
    ("baseline = false", None),
    ("baseline = { items_below = 0.25 }", (0.25, 3.0)),
    ("baseline = { duration_above = 5 }", (0.5, 5.0)),
])  # fmt: skip
def test_a_jobs_baseline_is_the_defaults_its_own_thresholds_or_off(text, baseline):
    assert jobs(f"[jobs.quotes]\n{text}\n")["quotes"].baseline == baseline


@pytest.mark.parametrize("text", [
    "baseline = true", "baseline = { items_below = 0 }", "baseline = { items_below = 2 }",
    "baseline = { duration_above = 0.5 }", "baseline = { items = 0.5 }", "baseline = { items_below = 'half' }",
])  # fmt: skip
def test_a_baseline_that_is_not_false_or_sane_thresholds_is_one_problem_line(text):
    [line] = problems(f"[jobs.quotes]\n{text}\n")
    assert line.startswith("schedule.toml: job 'quotes': baseline=") and "is not allowed: false, or a table" in line
