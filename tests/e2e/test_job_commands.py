"""`status`, `run-now`, `pause`, `resume` and `cancel` per job, as real processes against a real
PostgreSQL, with the jobs published the way the lock holder publishes them (Store.publish_jobs)."""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import datetime, timedelta

import pytest

from daemon.jobs.jobfile import Job
from daemon.records.store import Store
from tests.conftest import figure
from tests.helpers import hours, rows, run_cli, utcnow

pytestmark = pytest.mark.e2e


def job(name: str, spider: str, **values) -> Job:
    fields = {
        "args": (), "settings": (), "every": hours(4), "timeout": hours(2), "retry_delay": timedelta(minutes=15),
        "max_errors": 0, "min_items": 0, "jitter": timedelta(0), "paused": False,
    }  # fmt: skip
    return Job(name=name, spider=spider, **(fields | values))


JOBS = [
    job("python-remote", "ok", args=(("q", "python"), ("l", "remote")), settings=(("DOWNLOAD_DELAY", "2"),),
        every=hours(2)),
    job("data-bogota", "ok", args=(("q", "data"), ("l", "Bogotá")), every=hours(6)),
    job("other", "other", paused=True),
]  # fmt: skip


def publish(db, jobs=JOBS, error: str | None = None) -> None:
    Store(db).publish_jobs(jobs, path="/project/schedule.toml", error=error, spiders=["ok", "other"], now=utcnow(),
                           owner="host:1")  # fmt: skip


def crawl(db, job_name: str, spider: str, started: datetime, status: str = "completed", items: int = 5) -> None:
    [(run_id,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (%(t)s, 1, "
                           "%(s)s) RETURNING id", {"t": started, "s": status})  # fmt: skip
    rows(db, "INSERT INTO spider_runs (run_id, job, spider, status, started_at, finished_at, items_scraped) "
             "VALUES (%(r)s, %(j)s, %(sp)s, %(s)s, %(t)s, CASE WHEN %(s)s = 'running' THEN NULL ELSE %(t)s END, "
             "%(n)s)", {"r": run_id, "j": job_name, "sp": spider, "s": status, "t": started, "n": items})  # fmt: skip


def cli(env, tmp_path, *args: str):
    return run_cli([sys.executable, "-m", "daemon", *args], env, tmp_path)


def status_json(env, tmp_path) -> dict:
    done = cli(env, tmp_path, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_status_shows_one_line_per_published_job_with_its_spider_args_cadence_and_next_due(base_env, db, tmp_path):
    publish(db)
    crawl(db, "python-remote", "ok", utcnow() - hours(1), items=12)
    before = utcnow()
    env = {**base_env, "SCHEDULER_TIMEZONE": "America/Bogota"}
    report = status_json(env, tmp_path)
    assert report["source"]["published"] is True and report["source"]["path"] == "/project/schedule.toml"
    remote, bogota, other = report["spiders"]
    assert (remote["job"], remote["spider"], remote["args"], remote["settings"], remote["every"]) == (
        "python-remote", "ok", {"q": "python", "l": "remote"}, {"DOWNLOAD_DELAY": "2"}, "2h")
    assert (remote["last_status"], remote["items"], remote["paused"], remote["running"]) == ("completed", 12, False,
                                                                                             False)  # fmt: skip
    # Succeeded an hour ago, every 2 h: due in an hour, by its own interval (not the environment's 4 h).
    assert abs(at(remote["next_due"]) - (before + hours(1))) < timedelta(minutes=1)
    assert remote["next_due"].endswith("-05:00")
    assert bogota["last_run"] is None and abs(at(bogota["next_due"]) - before) < timedelta(minutes=1)
    assert (other["paused"], other["paused_by"], other["next_due"]) == (True, "file", None)

    table = cli(env, tmp_path, "status")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:3] == ["JOB", "/", "SPIDER"] and "PAUSED" in header and "EVERY" in header
    [line] = [line for line in lines if line.startswith("python-remote / ok ")]
    assert "q=python l=remote" in line and " 2h " in line and "completed" in line and " 12 " in line
    [line] = [line for line in lines if line.startswith("other ")]
    assert "in the file" in line
    assert lines[-1].startswith("(now ") and "America/Bogota" in lines[-1] and "/project/schedule.toml" in lines[-1]


def test_status_shows_the_jobs_file_error_first_while_the_last_good_jobs_keep_running(base_env, db, tmp_path):
    publish(db, error="/project/schedule.toml: [jobs.x]: every='soon' is not allowed: a duration such as 90m\n"
                      "/project/schedule.toml: [jobs.y]: unknown key 'evry' (did you mean every?)")  # fmt: skip
    done = cli(base_env, tmp_path, "status")
    assert done.returncode == 0, done.stderr
    first, second, third, *_ = done.stdout.splitlines()
    assert first.startswith("JOBS FILE ERROR") and "last good jobs" in first
    assert "every='soon'" in second and "evry" in third
    report = status_json(base_env, tmp_path)
    assert "every='soon'" in report["source"]["error"]
    assert [s["job"] for s in report["spiders"]] == ["python-remote", "data-bogota", "other"]


def test_pause_for_two_hours_shows_paused_until_then_and_resume_clears_it(base_env, db, tmp_path):
    publish(db)
    before = utcnow()
    done = cli(base_env, tmp_path, "pause", "data-bogota", "--for", "2h")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("paused data-bogota until ")
    bogota = status_json(base_env, tmp_path)["spiders"][1]
    assert (bogota["paused"], bogota["paused_by"]) == (True, "command")
    assert abs(at(bogota["paused_until"]) - (before + hours(2))) < timedelta(minutes=1)
    # It never ran, so it is due the moment its pause ends.
    assert bogota["next_due"] == bogota["paused_until"]
    table = cli(base_env, tmp_path, "status").stdout
    [line] = [line for line in table.splitlines() if line.startswith("data-bogota / ok ")]
    assert f"until {bogota['paused_until'][:16].replace('T', ' ')}" in line

    done = cli(base_env, tmp_path, "resume", "data-bogota", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"resumed": ["data-bogota"], "not_paused": []}
    bogota = status_json(base_env, tmp_path)["spiders"][1]
    assert (bogota["paused"], bogota["paused_until"]) == (False, None)
    assert abs(at(bogota["next_due"]) - utcnow()) < timedelta(minutes=1)
    assert rows(db, "SELECT count(*) FROM job_pauses") == [(0,)]


def test_a_pause_without_a_duration_lasts_until_resumed(base_env, db, tmp_path):
    publish(db)
    done = cli(base_env, tmp_path, "pause", "python-remote", "--json")
    assert json.loads(done.stdout) == {"paused": [{"job": "python-remote", "until": None}]}
    remote = status_json(base_env, tmp_path)["spiders"][0]
    assert (remote["paused"], remote["paused_until"], remote["next_due"]) == (True, None, None)
    assert rows(db, "SELECT job, until FROM job_pauses") == [("python-remote", None)]


@pytest.mark.parametrize("duration", ["0m", "soon", "-1h", "1e400", "nan"])
def test_a_pause_for_a_duration_that_is_not_one_is_one_line_and_exit_2(base_env, db, tmp_path, duration):
    publish(db)
    done = cli(base_env, tmp_path, "pause", "python-remote", f"--for={duration}")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "--for" in line and "90m, 4h" in line
    assert rows(db, "SELECT count(*) FROM job_pauses") == [(0,)]


@pytest.mark.parametrize("command", ["run-now", "pause", "resume", "cancel"])
def test_an_unknown_job_is_one_line_naming_the_known_ones_and_exit_2(base_env, db, tmp_path, command):
    publish(db)
    done = cli(base_env, tmp_path, command, "nosuch", "--json")
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert f"{command}: no job" in line and "nosuch" in line
    assert "known: python-remote, data-bogota, other" in line
    assert rows(db, "SELECT (SELECT count(*) FROM run_requests) + (SELECT count(*) FROM job_pauses) "
                    "+ (SELECT count(*) FROM cancel_requests)") == [(0,)]  # fmt: skip


def test_many_known_jobs_are_shortened_in_the_unknown_job_line(base_env, db, tmp_path):
    publish(db, [job(f"search-{n:03d}", "ok") for n in range(300)])
    done = cli(base_env, tmp_path, "pause", "search-1000")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "known: search-000, search-001," in line and "... (300 in all)" in line and len(line) < 300


def test_run_now_by_a_spiders_name_queues_all_its_jobs(base_env, db, tmp_path):
    publish(db, [*JOBS, job("ok", "ok")])
    done = cli(base_env, tmp_path, "run-now", "ok", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    # "ok" is also a job's name: that job. "other" is a paused spider's job.
    assert answer["jobs"] == ["ok"]
    done = cli(base_env, tmp_path, "run-now", "other", "python-remote")
    assert done.returncode == 2 and "other is paused (in the jobs file): set paused = false" in done.stderr
    publish(db)
    done = cli(base_env, tmp_path, "run-now", "ok")
    assert done.returncode == 0, done.stderr
    assert "run requested" in done.stdout and "python-remote, data-bogota" in done.stdout
    assert rows(db, "SELECT spiders FROM run_requests ORDER BY id") == [(["ok"],), (["python-remote", "data-bogota"],)]


def test_run_now_skips_the_paused_jobs_of_a_spider_and_refuses_a_paused_job(base_env, db, tmp_path):
    publish(db)
    assert cli(base_env, tmp_path, "pause", "data-bogota", "--for", "1h").returncode == 0
    done = cli(base_env, tmp_path, "run-now", "ok", "--json")
    assert json.loads(done.stdout)["jobs"] == ["python-remote"]
    assert json.loads(done.stdout)["skipped_paused"] == ["data-bogota"]
    done = cli(base_env, tmp_path, "run-now", "data-bogota")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "data-bogota is paused (until " in line and "resume data-bogota" in line
    assert rows(db, "SELECT spiders FROM run_requests") == [(["python-remote"],)]


def test_resume_of_a_job_paused_in_the_file_says_where_and_changes_nothing(base_env, db, tmp_path):
    publish(db)
    done = cli(base_env, tmp_path, "resume", "other")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "paused = true" in line and "nothing was changed" in line


def test_cancel_queues_a_request_for_a_running_crawl_and_none_for_an_idle_job(base_env, db, tmp_path):
    publish(db)
    crawl(db, "python-remote", "ok", utcnow() - timedelta(minutes=5), status="running")
    done = cli(base_env, tmp_path, "cancel", "python-remote", "data-bogota", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"cancel_requested": ["python-remote"], "not_running": ["data-bogota"]}
    assert rows(db, "SELECT job, taken_at FROM cancel_requests") == [("python-remote", None)]
    assert Store(db).take_cancels(utcnow()) == ["python-remote"]


def test_before_any_daemon_published_its_jobs_the_commands_know_one_job_per_spider_of_the_history(
    base_env, db, tmp_path
):
    crawl(db, "ok", "ok", utcnow() - hours(1))
    report = status_json(base_env, tmp_path)
    assert report["source"]["published"] is False
    assert [(s["job"], s["spider"], s["every"]) for s in report["spiders"]] == [("ok", "ok", "4h")]
    done = cli(base_env, tmp_path, "pause", "other")
    assert done.returncode == 2 and "known: ok" in done.stderr


def test_status_answers_without_starting_scrapy(base_env, db, tmp_path):
    publish(db, [job(f"search-{n:03d}", "ok", args=(("q", str(n)),)) for n in range(100)])
    project = tmp_path / "broken_project"  # `scrapy list` fails here: its settings module does not exist
    project.mkdir()
    (project / "scrapy.cfg").write_text("[settings]\ndefault = no_such_module.settings\n")
    broken = {**base_env, "SCRAPY_PROJECT_DIR": str(project)}
    took = []
    for _ in range(5):
        started = time.monotonic()
        done = cli(broken, tmp_path, "status", "--json")
        took.append(time.monotonic() - started)
        assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["spiders"]) == 100
    figure(f"status --json, 100 published jobs: {statistics.median(took):.2f} s median of 5 (a whole process; "
           "target 0.3 s)")  # fmt: skip


def audit_rows(db) -> list[tuple]:
    return rows(db, "SELECT action, job, detail IS NOT NULL, actor, source, address, result FROM actions ORDER BY id")


def test_every_command_action_is_audited_as_cli_with_the_os_user_and_its_result(base_env, db, tmp_path):
    import getpass

    publish(db)
    crawl(db, "python-remote", "ok", utcnow() - timedelta(minutes=5), status="running")
    for args in (("pause", "data-bogota", "--for", "1h"), ("resume", "data-bogota"), ("resume", "data-bogota"),
                 ("cancel", "python-remote", "data-bogota"), ("run-now", "data-bogota"), ("resume", "other")):
        cli(base_env, tmp_path, *args)
    me = f"cli:{getpass.getuser()}"
    assert audit_rows(db) == [
        ("pause", "data-bogota", True, me, "cli", None, "done"),
        ("resume", "data-bogota", False, me, "cli", None, "done"),
        ("resume", "data-bogota", False, me, "cli", None, "nothing"),
        ("cancel", "python-remote", False, me, "cli", None, "done"),
        ("cancel", "data-bogota", False, me, "cli", None, "nothing"),
        ("run-now", "data-bogota", False, me, "cli", None, "done"),
        ("resume", "other", False, me, "cli", None, "refused"),
    ]


def test_status_json_shows_each_jobs_last_action(base_env, db, tmp_path):
    publish(db)
    cli(base_env, tmp_path, "pause", "data-bogota")
    by_job = {row["job"]: row for row in status_json(base_env, tmp_path)["spiders"]}
    assert by_job["python-remote"]["last_action"] is None
    last = by_job["data-bogota"]["last_action"]
    assert (last["action"], last["result"], last["detail"], last["source"]) == ("pause", "done", "until resumed", "cli")
    assert last["message"] == "paused data-bogota until resumed"
