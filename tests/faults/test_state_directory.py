"""The attack on the state directory (issue: forged runs from a shared /tmp), against the real
daemon, the real PostgreSQL and real crawls: another user's directory stops the daemon at start;
in the daemon's own directory, a journal, a stats file or a heartbeat that the daemon did not write
is refused, never replayed or followed, and the spider really runs."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from tests.helpers import count, crawls_writing_to, json_lines, rows, run_cli, side_channel, wait_for
from tests.unit.test_statedir import FORGED_STATS, ROOT_ONLY, forged_journal, give_to_nobody

pytestmark = pytest.mark.faults


def refusals(output: str) -> dict[str, str]:
    """file -> reason, from the daemon's `state_file_refused` events."""
    return {e["file"]: e["reason"] for e in json_lines(output) if e["event"] == "state_file_refused"}


def crawled(env: dict[str, str], spider: str) -> list[int]:
    """The pids of the crawls of `spider` that really ran to their end (the spiders' own record)."""
    ended = [(kind, pid) for kind, _, pid, name in side_channel(Path(env["SPIDER_SIDE_CHANNEL"])) if name == spider]
    return [pid for kind, pid in ended if kind == "end"]


@ROOT_ONLY
def test_a_state_directory_another_user_made_writable_by_all_stops_the_daemon_at_start(base_env, db, daemon_factory):
    state = Path(base_env["SCHEDULER_STATE_DIR"])
    state.mkdir()
    state.chmod(0o777)
    forged_journal(state / "journal-1-deadbeef.jsonl")
    for path in (state, state / "journal-1-deadbeef.jsonl"):
        give_to_nobody(path)
    d = daemon_factory({**base_env, "SCHEDULER_SPIDERS": "ok"}).start()
    assert d.wait(timeout=60) == 2
    [line] = d.output().splitlines()
    nobody = f"nobody (uid {state.stat().st_uid})"
    assert line == (
        f"config error: SCHEDULER_STATE_DIR={str(state)!r} is not allowed: an absolute path to a directory the daemon "
        f"can write, or can create ({state} is owned by {nobody} with mode 0777; required: owned by root (uid 0), "
        "the user the daemon runs as, and writable by nobody else (e.g. mode 0700))"
    )
    assert count(db, "true") == 0 and count(db, "true", "spider_runs") == 0  # nothing replayed, nothing run


@pytest.mark.parametrize("planted", ["owned by another user", "a symbolic link"])
def test_a_forged_journal_in_the_daemons_own_directory_is_refused_and_the_spider_really_runs(
    planted, base_env, db, daemon_factory, tmp_path
):
    if planted == "owned by another user" and os.geteuid() != 0:
        pytest.skip("giving a file to another user (nobody) needs root")
    state = Path(base_env["SCHEDULER_STATE_DIR"])
    state.mkdir(mode=0o700)
    journal = state / "journal-1-deadbeef.jsonl"
    if planted == "a symbolic link":
        forged_journal(tmp_path / "forged.jsonl")
        journal.symlink_to(tmp_path / "forged.jsonl")
    else:
        forged_journal(journal)
        give_to_nobody(journal)
    env = {**base_env, "SCHEDULER_SPIDERS": "ok"}
    d = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'completed'") == 1, timeout=60, what="the run of ok")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    # Without the check, the forged run was replayed as a completed crawl of ok and ok was not
    # crawled for a whole interval.
    assert count(db, "journal_id IS NOT NULL") == 0
    assert count(db, "message = 'forged' OR items_scraped = 999", "spider_runs") == 0
    [pid] = crawled(env, "ok")
    assert rows(db, "SELECT spider, status, items_scraped FROM spider_runs WHERE pid = %(p)s", {"p": pid}) == [
        ("ok", "completed", 15)
    ]
    reason = refusals(d.output())[str(journal)]
    expected = "it is a symbolic link" if planted == "a symbolic link" else "it is owned by nobody (uid "
    assert reason.startswith(expected)
    assert journal.is_symlink() or journal.exists()  # left where it is, for whoever looks into it


def test_a_symlinked_stats_path_is_not_followed_and_the_crawl_is_not_judged_a_success_from_it(
    base_env, db, daemon_factory, tmp_path
):
    env = {**base_env, "SCHEDULER_SPIDERS": "slow", "SLOW_SECONDS": "4"}
    target, forged = tmp_path / "somebody-elses-file", tmp_path / "forged-stats.json"
    target.write_text("untouched\n")
    forged.write_text(json.dumps(FORGED_STATS))
    d = daemon_factory(env).start()
    [crawl] = wait_for(lambda: crawls_writing_to(Path(env["SPIDER_SIDE_CHANNEL"])), timeout=60, what="the crawl")
    argv = Path(f"/proc/{crawl}/cmdline").read_bytes().decode().split("\0")
    [stats] = [Path(arg.split("=", 1)[1]) for arg in argv if arg.startswith("SCHEDULER_STATS_FILE=")]
    # While it crawls: a link where it will write its stats, and one where the daemon will read them.
    Path(f"{stats}.tmp").symlink_to(target)
    stats.symlink_to(forged)
    wait_for(lambda: count(db, "finished_at IS NOT NULL", "spider_runs") == 1, timeout=60, what="the crawl's end")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    [(status, items, message)] = rows(db, "SELECT status, items_scraped, message FROM spider_runs")
    assert (status, items) == ("failed", None)  # the forged stats said 999 items, finished
    assert message == "wrote no crawl stats (the crawl did not finish normally)"
    assert target.read_text() == "untouched\n" and json.loads(forged.read_text()) == FORGED_STATS
    assert refusals(d.output())[str(stats)] == "it is a symbolic link"
    assert not stats.is_symlink()  # the link went, not what it pointed to


def test_a_symlinked_heartbeat_is_never_touched_and_the_spider_still_runs(base_env, db, daemon_factory, tmp_path):
    state = Path(base_env["SCHEDULER_STATE_DIR"])
    state.mkdir(mode=0o700)
    target = tmp_path / "somebody-elses-file"
    target.write_text("untouched\n")
    os.utime(target, (1_000_000, 1_000_000))
    (state / "heartbeat").symlink_to(target)
    env = {**base_env, "SCHEDULER_SPIDERS": "ok"}
    d = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'completed'") == 1, timeout=60, what="the run of ok")
    health = run_cli([sys.executable, "-m", "daemon", "healthcheck"], env, tmp_path)
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    assert target.stat().st_mtime == 1_000_000 and target.read_text() == "untouched\n"
    assert refusals(d.output())[str(state / "heartbeat")] == "it is a symbolic link"
    assert (health.returncode, health.stdout.strip()) == (1, f"unhealthy: no heartbeat at {state / 'heartbeat'}")
    assert len(crawled(env, "ok")) == 1


def test_without_a_state_directory_set_the_daemon_keeps_its_state_under_the_users_home_mode_0700(
    base_env, db, daemon_factory, tmp_path
):
    env = {k: v for k, v in base_env.items() if k != "SCHEDULER_STATE_DIR"}
    env.update(HOME=str(tmp_path / "home"), SCHEDULER_SPIDERS="ok")
    state = tmp_path / "home" / ".local" / "state" / "persistent-scheduler"
    d = daemon_factory(env).start()
    wait_for(lambda: (state / "heartbeat").exists(), timeout=60, what="the heartbeat in the default directory")
    health = run_cli([sys.executable, "-m", "daemon", "healthcheck"], env, tmp_path)
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o700 and state.stat().st_uid == os.geteuid()
    assert health.returncode == 0 and health.stdout.startswith("healthy")
