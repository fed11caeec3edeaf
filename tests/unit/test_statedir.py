"""The state directory is trusted only while it is this user's alone, and nothing in it that the
daemon did not write is read, replayed or followed (issue: forged runs from a shared /tmp)."""

from __future__ import annotations

import json
import os
import pwd
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.system import statedir
from daemon.telemetry import heartbeat
from daemon.settings.config import Settings
from daemon.system.errors import ConfigError
from daemon.records.journal import Journal
from daemon.engines.local import _read_stats
from tests.conftest import TEST_PROJECT
from tests.helpers import events

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user (nobody) needs root")
FORGED_STATS = {"finish_reason": "finished", "item_scraped_count": 999, "log_count/ERROR": 0}


def build(**env):
    return Settings.from_mapping({"SCRAPY_PROJECT_DIR": str(TEST_PROJECT), **env})


def problems(**env) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build(**env)
    return caught.value.lines()


def give_to_nobody(path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)


def forged_journal(path: Path) -> None:
    """The issue's forged file: a run, an `ok` crawl that "succeeded", and the run's end, all "now"."""
    now = datetime.now(timezone.utc).isoformat()
    run = {"run": "11111111-2222-3333-4444-555555555555"}
    lines = [
        {"kind": "run", **run, "started_at": now, "planned": ["ok"], "owner": "forger"},
        {"kind": "spider", **run, "spider": "ok", "started_at": now, "finished_at": now, "ok": True, "failure": None,
         "exit_code": 0, "finish_reason": "finished", "items_scraped": 999, "error_count": 0, "message": "forged",
         "stats": {}, "pid": 4242},
        {"kind": "end", **run, "finished_at": now, "ok": True, "error": None},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_STATE_HOME": "/x/state", "HOME": "/home/u"}, "/x/state/persistent-scheduler"),
        ({"HOME": "/home/u"}, "/home/u/.local/state/persistent-scheduler"),
        ({"XDG_STATE_HOME": "relative/state", "HOME": "/home/u"}, "/home/u/.local/state/persistent-scheduler"),
        ({"XDG_STATE_HOME": " ", "HOME": "/home/u/"}, "/home/u/.local/state/persistent-scheduler"),
        ({"XDG_STATE_HOME": "/x/\x1b[2J", "HOME": "/home/u"}, "/home/u/.local/state/persistent-scheduler"),
    ],
)
def test_the_default_state_directory_is_private_to_the_user_never_in_tmp(env, expected):
    assert statedir.default_directory(env) == Path(expected)


def test_without_a_home_in_the_environment_the_default_is_under_the_users_home_from_the_password_database():
    home = pwd.getpwuid(os.geteuid()).pw_dir
    assert statedir.default_directory({}) == Path(home) / ".local" / "state" / "persistent-scheduler"


def test_the_settings_take_the_default_from_the_mapping_they_are_given(tmp_path):
    assert build(XDG_STATE_HOME=str(tmp_path)).state_dir == tmp_path / "persistent-scheduler"
    assert build(HOME=str(tmp_path)).state_dir == tmp_path / ".local" / "state" / "persistent-scheduler"
    assert not (tmp_path / "persistent-scheduler").exists()  # checked, not created


def test_a_state_directory_others_may_write_is_refused_naming_the_owner_the_mode_and_what_is_required(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    me = pwd.getpwuid(os.geteuid()).pw_name
    [line] = problems(SCHEDULER_STATE_DIR=str(state))
    assert line.startswith(f"config error: SCHEDULER_STATE_DIR={str(state)!r} is not allowed: ")
    assert f"{state} is owned by {me} (uid {os.geteuid()}) with mode 0777" in line
    assert "required: owned by" in line and "writable by nobody else (e.g. mode 0700)" in line
    state.chmod(0o720)  # the group may write: refused too
    [line] = problems(SCHEDULER_STATE_DIR=str(state))
    assert "with mode 0720" in line
    state.chmod(0o755)  # others may read, not write: like PostgreSQL's 0750, accepted
    assert build(SCHEDULER_STATE_DIR=str(state)).state_dir == state


@ROOT_ONLY
def test_a_state_directory_owned_by_another_user_is_refused_even_when_nobody_else_may_write_it(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    give_to_nobody(state)
    [line] = problems(SCHEDULER_STATE_DIR=str(state))
    assert f"{state} is owned by nobody (uid {pwd.getpwnam('nobody').pw_uid}) with mode 0700" in line
    assert "required: owned by root (uid 0), the user the daemon runs as" in line


def test_the_daemon_creates_its_state_directories_with_mode_0700(tmp_path):
    old = os.umask(0)  # even where the umask would let everyone write
    try:
        statedir.make_directory(tmp_path / "a" / "state")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "state").stat().st_mode) == 0o700


def test_a_directory_of_the_state_that_is_a_symbolic_link_is_not_taken(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "stats").symlink_to(elsewhere)
    with pytest.raises(statedir.UntrustedDirectory, match="is a symbolic link"):
        statedir.make_directory(tmp_path / "stats", follow_symlink=False)


def test_a_heartbeat_is_a_regular_file_of_this_user_and_its_age_is_read(tmp_path):
    path = tmp_path / "state" / "heartbeat"
    heartbeat.beat(path)
    assert stat.S_ISREG(path.lstat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o600
    os.utime(path, (time.time() - 100, time.time() - 100))
    assert heartbeat.age_seconds(path) > 99
    heartbeat.beat(path)
    assert heartbeat.age_seconds(path) < 99


def test_a_symlinked_heartbeat_is_refused_and_its_target_never_touched(tmp_path):
    target = tmp_path / "somebody-elses-file"
    target.write_text("untouched\n")
    os.utime(target, (1_000_000, 1_000_000))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "heartbeat").symlink_to(target)
    with capture_logs() as logs:
        heartbeat.beat(state / "heartbeat")
        heartbeat.beat(state / "heartbeat")
    assert target.stat().st_mtime == 1_000_000 and target.read_text() == "untouched\n"
    [refused] = events(logs, "state_file_refused")  # once, not on every beat
    assert refused["file"] == str(state / "heartbeat") and refused["reason"] == "it is a symbolic link"
    assert heartbeat.age_seconds(state / "heartbeat") is None  # a link is no heartbeat: unhealthy


def test_a_symlinked_stats_file_is_not_followed_so_the_crawl_has_no_stats(tmp_path):
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(FORGED_STATS))
    stats = tmp_path / "stats" / "ok-1.json"
    stats.parent.mkdir()
    stats.symlink_to(forged)
    with capture_logs() as logs:
        assert _read_stats(stats) is None
    [refused] = events(logs, "state_file_refused")
    assert refused["file"] == str(stats) and refused["reason"] == "it is a symbolic link"
    assert not stats.is_symlink() and json.loads(forged.read_text()) == FORGED_STATS  # the link went, not its target


@ROOT_ONLY
def test_a_stats_file_owned_by_another_user_is_refused(tmp_path):
    stats = tmp_path / "ok-1.json"
    stats.write_text(json.dumps(FORGED_STATS))
    give_to_nobody(stats)
    with capture_logs() as logs:
        assert _read_stats(stats) is None
    [refused] = events(logs, "state_file_refused")
    assert refused["reason"].startswith("it is owned by nobody")


def test_the_crawls_stats_writer_never_writes_through_a_symbolic_link(tmp_path):
    from scrapy.utils.test import get_crawler

    from daemon.scrapy_stats import JsonFileStatsCollector

    target = tmp_path / "somebody-elses-file"
    target.write_text("untouched\n")
    stats = tmp_path / "ok-1.json"
    Path(f"{stats}.tmp").symlink_to(target)
    crawler = get_crawler(settings_dict={"SCHEDULER_STATS_FILE": str(stats), "STATS_DUMP": False})
    collector = JsonFileStatsCollector(crawler)
    collector.set_value("finish_reason", "finished")
    collector.close_spider(reason="finished")
    assert target.read_text() == "untouched\n" and not stats.exists()  # no stats: the crawl counts as failed
    Path(f"{stats}.tmp").unlink()
    stats.symlink_to(target)  # a link at the final name is replaced, never written through
    collector.close_spider(reason="finished")
    assert target.read_text() == "untouched\n"
    assert not stats.is_symlink() and json.loads(stats.read_text())["finish_reason"] == "finished"


def test_a_symlinked_journal_is_never_replayed_and_is_left_where_it_is(tmp_path):
    forged = tmp_path / "forged.jsonl"
    forged_journal(forged)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "journal-1-deadbeef.jsonl").symlink_to(forged)
    with capture_logs() as logs:
        assert Journal(state).pending() is None
    [refused] = events(logs, "state_file_refused")
    assert refused["file"] == str(state / "journal-1-deadbeef.jsonl") and refused["reason"] == "it is a symbolic link"
    assert (state / "journal-1-deadbeef.jsonl").is_symlink() and forged.exists()


@ROOT_ONLY
def test_a_journal_owned_by_another_user_is_never_replayed(tmp_path):
    forged_journal(tmp_path / "journal-1-deadbeef.jsonl")
    give_to_nobody(tmp_path / "journal-1-deadbeef.jsonl")
    mine = Journal(tmp_path)
    mine.start_run(datetime.now(timezone.utc), ["ok"], "me")
    with capture_logs() as logs:
        pending = mine.pending()
    assert pending is not None and [r["owner"] for r in pending.runs()] == ["me"]  # only our own
    [refused] = events(logs, "state_file_refused")
    assert refused["file"] == str(tmp_path / "journal-1-deadbeef.jsonl")
    assert refused["reason"].startswith("it is owned by nobody (uid ") and "not by root (uid 0)" in refused["reason"]
    pending.done()
    assert (tmp_path / "journal-1-deadbeef.jsonl").exists()  # never read, never removed
