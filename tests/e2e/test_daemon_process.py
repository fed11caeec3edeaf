"""The daemon as a real process: its command line, its start-up errors, and its acceptance test."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import PG_PASSWORD, ROOT, free_port
from tests.helpers import alive, crawl_intervals, json_lines, rows, run_cli, wait_for

pytestmark = pytest.mark.e2e


def test_help_lists_the_subcommands(tmp_path):
    done = run_cli([sys.executable, "-m", "daemon", "--help"], {}, tmp_path)
    assert done.returncode == 0
    for command in ("run", "migrate", "wait-db", "healthcheck"):
        assert command in done.stdout


def test_bad_settings_exit_2_with_one_line_each_and_no_traceback(tmp_path):
    env = {"SCHEDULER_INTERVAL_HOURS": "4h", "SCHEDULER_TIMEZONE": "Nowhere/Land", "DB_PASSWORD": PG_PASSWORD,
           "SCHEDULER_MAX_INSTANCES": "3"}  # fmt: skip
    done = run_cli([sys.executable, "-m", "daemon"], env, tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "config error: SCHEDULER_INTERVAL_HOURS",
        "config error: SCHEDULER_TIMEZONE",
        "config error: SCHEDULER_MAX_INSTANCES",
    ]
    assert "Traceback" not in done.stderr + done.stdout and PG_PASSWORD not in done.stderr + done.stdout


def test_settings_come_from_a_dotenv_file_in_the_working_directory(tmp_path):
    (tmp_path / ".env").write_text("SCHEDULER_INTERVAL_HOURS=0\n")
    done = run_cli([sys.executable, "-m", "daemon", "healthcheck"], {}, tmp_path)
    assert done.returncode == 2 and "SCHEDULER_INTERVAL_HOURS='0'" in done.stderr


def test_an_unknown_spider_in_scheduler_spiders_is_a_start_up_error(base_env, tmp_path):
    done = run_cli([sys.executable, "-m", "daemon"], {**base_env, "SCHEDULER_SPIDERS": "ok,nosuch"}, tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("config error: SCHEDULER_SPIDERS=") and "no spider named nosuch" in line


def test_an_unreachable_database_exits_3_naming_host_and_port_never_the_password(base_env, tmp_path):
    port = free_port()
    env = {**base_env, "DB_PORT": str(port), "DB_WAIT_TIMEOUT_SECONDS": "1.5"}
    done = run_cli([sys.executable, "-m", "daemon", "wait-db"], env, tmp_path)
    assert done.returncode == 3
    [line] = done.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}" in line and "did not accept a connection within 1.5 s" in line
    assert PG_PASSWORD not in done.stderr + done.stdout
    assert any(e["event"] == "database_unavailable" for e in json_lines(done.stdout))


def test_the_entrypoint_applies_the_migrations_and_then_runs_the_command(pg_server, empty_database, tmp_path):
    env = {**pg_server.env(empty_database), "SCRAPY_PROJECT_DIR": str(ROOT / "tests" / "scrapy_project"),
           "LOG_FORMAT": "json", "PYTHON": sys.executable}  # fmt: skip
    done = run_cli([str(ROOT / "docker-entrypoint.sh"), "sh", "-c", "echo command-ran"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("command-ran")
    conn = pg_server.connect(empty_database)
    assert rows(conn, "SELECT count(*) FROM schema_migrations")[0][0] >= 3
    conn.close()
    again = run_cli([str(ROOT / "docker-entrypoint.sh"), "true"], env, tmp_path)
    assert again.returncode == 0
    assert [e["applied_now"] for e in json_lines(again.stdout) if e["event"] == "migrations_up_to_date"] == [0]


def test_without_a_command_the_entrypoint_becomes_one_daemon_that_warms_waits_and_migrates(pg_server, empty_database,
                                                                                              site, tmp_path):  # fmt: skip
    """The container's default: no shell-driven wait and migrate, one process. Its warm parent has
    imported Scrapy while PostgreSQL was down; once it answers, the migrations are applied and the
    never-run job's first crawl starts."""
    env = {**pg_server.env(empty_database), "SCRAPY_PROJECT_DIR": str(ROOT / "tests" / "scrapy_project"),
           "LOG_FORMAT": "json", "PYTHON": sys.executable, "SCHEDULER_SPIDERS": "ok", "TEST_SITE_URL": site,
           "SCHEDULER_STATE_DIR": str(tmp_path / "state"), "DB_WAIT_TIMEOUT_SECONDS": "60",
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # fmt: skip
    out = tmp_path / "out.log"
    pg_server.stop("fast")
    try:
        with out.open("w") as fh:
            proc = subprocess.Popen([str(ROOT / "docker-entrypoint.sh")], env=env, cwd=tmp_path, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        events = lambda: [e["event"] for e in json_lines(out.read_text())]  # noqa: E731
        wait_for(lambda: "warm_parent_started" in events(), timeout=60, what="the warm parent, PostgreSQL down")
        cmdline = open(f"/proc/{proc.pid}/cmdline", "rb").read().split(b"\0")
        assert cmdline[1:5] == [b"-m", b"daemon", b"run", b"--migrate"]  # the entrypoint exec'd it
        assert "migrations_up_to_date" not in events()
    finally:
        pg_server.start()
    try:
        wait_for(lambda: "spider_started" in events(), timeout=60, what="the first crawl")
        seen = events()
        assert seen.index("warm_parent_started") < seen.index("database_available") \
            < seen.index("migrations_up_to_date") < seen.index("runner_lock_acquired")  # fmt: skip
        assert "crawl_start_cold" not in seen
        conn = pg_server.connect(empty_database)
        assert rows(conn, "SELECT count(*) FROM schema_migrations")[0][0] >= 3
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_acceptance_runs_happen_and_survive_sigterm_and_sigkill_mid_run(base_env, db, daemon_factory):
    env = {**base_env, "SCHEDULER_INTERVAL_HOURS": "0.001", "SLOW_SECONDS": "2", "SCHEDULER_SPIDERS": "slow"}
    completed = lambda: rows(db, "SELECT count(*) FROM scheduler_state WHERE status = 'completed'")[0][0]  # noqa: E731
    running = lambda: rows(db, "SELECT count(*) FROM spider_runs WHERE status = 'running'")[0][0]  # noqa: E731

    # Runs happen, one interval (3.6 s) apart.
    first = daemon_factory(env).start()
    wait_for(lambda: completed() >= 2, timeout=60, what="two completed runs")

    # SIGTERM in the middle of a run: exit 0 within the grace, the run recorded as interrupted.
    wait_for(running, timeout=30, what="a run in progress")
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=15) == 0
    # The runner lock went with it.
    assert rows(
        db,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
        "database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    ) == [(0,)]
    [(status, failure)] = rows(db, "SELECT status, failure FROM spider_runs ORDER BY id DESC LIMIT 1")
    assert (status, failure) == ("failed", "interrupted")
    assert rows(db, "SELECT status FROM scheduler_state ORDER BY id DESC LIMIT 1") == [("failed",)]
    # No crawl outlived it. A crawl stopped while Scrapy was still starting writes no `end` (warm
    # crawls reach that point within 0.1 s of their start), so an open span is checked by its process.
    assert not [s for s in crawl_intervals(base_env_path(env)) if alive_span(s) and alive(pid_of(env, s[0]))]

    # SIGKILL in the middle of a run: the next daemon fails the stale rows and runs the spider again.
    second = daemon_factory(env).start()
    wait_for(running, timeout=30, what="a run in progress")
    before = completed()
    second.signal(signal.SIGKILL)
    second.wait()
    time.sleep(0.5)
    assert running() == 1  # left behind by the dead daemon
    third = daemon_factory(env).start()
    wait_for(lambda: completed() > before, timeout=60, what="the run after the restart")
    assert rows(db, "SELECT failure FROM spider_runs WHERE failure = 'stale'") == [("stale",)]
    third.signal(signal.SIGTERM)
    assert third.wait(timeout=15) == 0
    assert running() == 0
    # No crawl outlived its daemon, and no two crawls ever overlapped.
    spans = crawl_intervals(base_env_path(env))
    assert all(end != float("inf") or not alive(pid_of(env, start)) for start, end, _ in spans)
    for (_, e1, _), (s2, _, _) in zip(spans, spans[1:]):
        assert s2 >= e1 or e1 == float("inf")
    output = first.output() + second.output() + third.output()
    assert PG_PASSWORD not in output
    events = [e["event"] for e in json_lines(third.output())]
    assert "stale_runs_failed" in events


def test_a_second_signal_stops_at_once_without_waiting_for_the_grace(base_env, db, daemon_factory):
    env = {**base_env, "SLOW_SECONDS": "60", "SCHEDULER_SPIDERS": "hang", "SCHEDULER_STOP_GRACE_SECONDS": "60"}
    d = daemon_factory(env).start()
    wait_for(lambda: rows(db, "SELECT 1 FROM spider_runs WHERE status = 'running'"), timeout=30, what="the crawl")
    wait_for(lambda: crawl_intervals(base_env_path(env)), timeout=30, what="the crawl to open")
    d.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert d.proc.poll() is None  # the hanging crawl ignores SIGTERM; the daemon waits for its grace
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=10) == 0
    [(status, failure)] = rows(db, "SELECT status, failure FROM spider_runs")
    assert (status, failure) == ("failed", "interrupted")
    [(start, _, _)] = crawl_intervals(base_env_path(env))
    assert not alive(pid_of(env, start))


def base_env_path(env):
    from pathlib import Path

    return Path(env["SPIDER_SIDE_CHANNEL"])


def pid_of(env, start):
    from tests.helpers import side_channel

    return next(pid for kind, stamp, pid, _ in side_channel(base_env_path(env)) if kind == "start" and stamp == start)


def alive_span(span):
    return span[1] == float("inf")


def test_from_a_checkout_the_entrypoint_finds_the_virtualenv_by_itself(pg_server, empty_database, tmp_path):
    # README: "from a checkout with DB_* set, ./docker-entrypoint.sh true just migrates" - in a
    # plain shell, whose python3 has none of the dependencies.
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in this checkout (tests/run.sh builds one)")
    env = {**pg_server.env(empty_database), "SCRAPY_PROJECT_DIR": str(ROOT / "tests" / "scrapy_project"),
           "LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run([str(ROOT / "docker-entrypoint.sh"), "true"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [e["applied_now"] for e in json_lines(done.stdout) if e["event"] == "migrations_up_to_date"] != []


def test_sigterm_while_waiting_for_postgres_at_start_exits_0(base_env, daemon_factory):
    d = daemon_factory({**base_env, "DB_PORT": str(free_port()), "DB_WAIT_TIMEOUT_SECONDS": "120",
                        "SCHEDULER_SPIDERS": "ok"}).start()  # fmt: skip
    wait_for(lambda: '"database_unavailable"' in d.output(), timeout=30, what="waiting for PostgreSQL")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0, d.output()[-2000:]
