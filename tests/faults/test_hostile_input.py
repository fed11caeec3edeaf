"""Rows 18-20 of the fault matrix: hostile settings, hostile spider names, and a canary password."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import string
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.settings.config import Settings
from daemon.system.errors import ConfigError
from tests.conftest import PG_PASSWORD, ROOT, TEST_PROJECT
from tests.helpers import count, wait_for

pytestmark = pytest.mark.faults

HOSTILE = ["0", "-4", "abc", "4h", "nan", "inf", "-inf", "1e999", "0x10", "１", "4 4", "\x00", "$(id)",
           "'; DROP TABLE scheduler_state; --", "9" * 40, "True False", "٣"]  # fmt: skip
NUMERIC = {
    "DB_PORT", "SCHEDULER_INTERVAL_HOURS", "SCHEDULER_CONCURRENCY", "SCHEDULER_SPIDER_TIMEOUT_MINUTES",
    "SCHEDULER_RETRY_DELAY_MINUTES", "SCHEDULER_MAX_SPIDER_ERRORS", "SCHEDULER_STOP_GRACE_SECONDS",
    "SCHEDULER_TICK_SECONDS", "DB_WAIT_TIMEOUT_SECONDS", "SCHEDULER_HISTORY_RETENTION_DAYS",
    "SCHEDULER_ALERT_AFTER_HOURS", "SCHEDULER_OVERDUE_CHECK_MINUTES", "SCHEDULER_JITTER_MINUTES",
    "CACHE_CLEANUP_INTERVAL_HOURS", "CACHE_MAX_MB", "SCHEDULER_HTTP_PORT", "SCRAPYD_NODE_SLOTS",
    "SCRAPYD_LOST_AFTER_SECONDS", "SCHEDULER_HTTP_THREADS", "SCHEDULER_HTTP_MAX_CONNECTIONS",
    "SCHEDULER_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "SCHEDULER_HTTP_HEADER_TIMEOUT_SECONDS",
    "SCHEDULER_HTTP_IDLE_TIMEOUT_SECONDS", "SCHEDULER_WARM_PARENT_CRAWLS",
}  # fmt: skip
CHOICES = {"SCHEDULER_ENABLED", "SCHEDULER_TIMEZONE", "SCHEDULER_MAX_INSTANCES", "LOG_LEVEL", "LOG_FORMAT",
           "SCHEDULER_SPIDERS", "SCRAPY_PROJECT_DIR", "SCHEDULER_ENGINE", "SCHEDULER_CRAWL_START",
           "SCHEDULER_HTTP_READONLY"}  # fmt: skip

# The free-text settings, each with values that must all be refused. "{tmp}" is a directory of
# hostile files (see `hostile_files`); "T0K3N" and "canary" stand for what must never be shown.
HOSTS = ["localhost:9464", "http://0.0.0.0", "[::1]", "256.0.0.1", "1.2.3", "0.0.0.0/0", "*", "-host", "host-",
         "a..b", "a" * 64 + ".example", "host name", "::1%$(id)", "例え.jp", "$(id)", "db1,db2", "\x00", "\udcff"]  # fmt: skip
NAMES = ["\x00", "a\nb", "a\rb", "tab\there", "\x1b[31mred", "del\x7f", "zero\u200bwidth", "\u202eevil", "n" * 64,
         "é" * 32, "名" * 22, "bad\udcffbyte", "line\u2028sep", "nb\u00a0sp"]  # fmt: skip
URLS = ["ftp://hooks.example.com/T0K3N", "hooks.example.com/T0K3N", "https:///T0K3N", "https://user:T0K3N@h.example/",
        "https://hooks.example.com:99999/T0K3N", "https://hooks.example.com:0/T0K3N", "https://h.example:x/T0K3N",
        "https://hooks.example.com/T0K3N here", "https://hooks.example.com/\x1bT0K3N", "https://hooks.example.com/T0K3N/é",
        "https://[::1/T0K3N", "https://-h.example/T0K3N", "javascript:alert('T0K3N')", "file:///T0K3N",
        "https://h.example/T0K3N\x00"]  # fmt: skip
FREE_TEXT = {
    "DB_HOST": [*HOSTS, "postgresql://postgres/db", "host=evil sslmode=disable", "run/postgresql", "/" + "s" * 100,
                "/tmp/\x1b[31m"],
    "SCHEDULER_HTTP_HOST": [*HOSTS, "/tmp/socket"],
    "DB_NAME": NAMES,
    "DB_USER": NAMES,
    "DB_PASSWORD": ["pw\r", "pw\n", "\tpw", "p\x1bw", "p\x7fw", "p\x08w", "p\x0cw", "p\x85w", "p\x9bw", "p\udcffw",
                    "p\x00w"],
    "DB_PASSWORD_FILE": ["{tmp}/missing", "{tmp}/dir", "{tmp}/fifo", "/dev/null", "/dev/zero", "{tmp}/socket",
                         "{tmp}/empty", "{tmp}/blank-first-line", "{tmp}/not-utf8", "{tmp}/control-in-line",
                         "{tmp}/huge", "{tmp}/file/below-a-file", "{tmp}/loop", "{tmp}/" + "n" * 300, "{tmp}/\x01"],
    "SCHEDULER_STATE_DIR": ["state", "./state", "~/state", "{tmp}/file", "{tmp}/file/sub", "/dev/null", "{tmp}/fifo",
                            "{tmp}/socket", "{tmp}/loop/sub", "/tmp/" + "n" * 300, "{tmp}/\x1b[2J", "\x00"],
    "SCHEDULER_JOBS_FILE": ["schedule.toml", "./schedule.toml", "~/schedule.toml", "../schedule.toml", "jobs/a.toml",
                            "$(id).toml", "C:\\jobs.toml", "{tmp}/\x1b[2J", "/tmp/a\nb.toml", "/tmp/\x07.toml", "\x00"],
    "SCHEDULER_HTTP_USER": ["a:b", ":", "user:T0K3N", "\x00", "a\nb", "tab\there", "\x1b[31mred", "del\x7f",
                            "u" * 257, "bad\udcffbyte"],
    "SCHEDULER_HTTP_PASSWORD": ["pw\r", "pw\n", "\tpw", "p\x1bw", "p\x7fw", "p\x08w", "p\x0cw", "p\x85w", "p\x9bw",
                                "p\udcffw", "p\x00w"],
    "SCHEDULER_HTTP_PASSWORD_FILE": ["{tmp}/missing", "{tmp}/dir", "{tmp}/fifo", "/dev/null", "/dev/zero",
                                     "{tmp}/socket", "{tmp}/empty", "{tmp}/blank-first-line", "{tmp}/not-utf8",
                                     "{tmp}/control-in-line", "{tmp}/huge", "{tmp}/loop", "{tmp}/\x01"],
    "SCHEDULER_HTTP_ALLOWED_HOSTS": ["http://0.0.0.0", "256.0.0.1", "1.2.3", "0.0.0.0/0", "*", "-host", "host-",
                                     "a..b", "host name", "例え.jp", "$(id)", "\x00", "host:0", "host:65536",
                                     "host:port", "a,b c", ":80", ",,", "\udcff"],
    "ALERT_WEBHOOK_URL": URLS,
    "SCRAPYD_NODES": [*URLS, "http://h.example:6800?T0K3N", "http://h.example:6800=0", "http://h.example:6800=T0K3N",
                      "http://h.example:6800=1001", "http://h.example:6800,http://h.example:6800/", ",", " , ",
                      "scrapyd-1:6800", "http://h.example:6800=2=3", "http://h.example:6800 http://b:6800"],
    "SCRAPYD_USERNAME": ["a:b", ":", "user:T0K3N", "\x00", "a\nb", "tab\there", "\x1b[31mred", "del\x7f",
                         "u" * 257, "bad\udcffbyte"],
    "SCRAPYD_PASSWORD": ["pw\r", "pw\n", "\tpw", "p\x1bw", "p\x7fw", "p\x08w", "p\x0cw", "p\x85w", "p\x9bw",
                         "p\udcffw", "p\x00w"],
    "SCRAPYD_PASSWORD_FILE": ["{tmp}/missing", "{tmp}/dir", "{tmp}/fifo", "/dev/null", "/dev/zero", "{tmp}/socket",
                              "{tmp}/empty", "{tmp}/blank-first-line", "{tmp}/not-utf8", "{tmp}/control-in-line",
                              "{tmp}/huge", "{tmp}/loop", "{tmp}/\x01"],
    "SCRAPYD_PROJECT": ["0", "-p", "a b", "../etc", "a/b", "$(id)", "p" * 101, "\x00", "é", "p?x", "p#x"],
    "HEALTHCHECK_PING_URL": [*URLS, "https://hc-ping.com/T0K3N?rid=1", "https://hc-ping.com/T0K3N#x"],
    "SCHEDULER_PUBLIC_URL": [*URLS, "https://scheduler.example.com/?T0K3N", "https://scheduler.example.com/#T0K3N"],
    "SCHEDULER_NOTIFY_CONFIG": ["{tmp}/missing", "{tmp}/dir", "{tmp}/fifo", "/dev/null", "/dev/zero", "{tmp}/socket",
                                "{tmp}/empty", "{tmp}/not-utf8", "{tmp}/huge", "{tmp}/loop", "{tmp}/\x01"],
}  # fmt: skip
SECRET_SHOWN_AS = {"DB_PASSWORD": "config error: DB_PASSWORD=<hidden> is not allowed",
                   "SCHEDULER_HTTP_PASSWORD": "config error: SCHEDULER_HTTP_PASSWORD=<hidden> is not allowed",
                   "SCRAPYD_PASSWORD": "config error: SCRAPYD_PASSWORD=<hidden> is not allowed"}
VARIABLES = NUMERIC | CHOICES | set(FREE_TEXT)
# Read too, only for where the default state directory lives: the platform's, not the daemon's own.
PLATFORM = {"XDG_STATE_HOME", "HOME"}
STATE_HOME: Path  # the module's XDG_STATE_HOME (see `_own_state_home`)


@pytest.fixture(scope="module", autouse=True)
def _own_state_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The default state directory is the tests' own, never the machine's /tmp or home."""
    global STATE_HOME
    STATE_HOME = tmp_path_factory.mktemp("state-home")


@pytest.fixture
def hostile_files(tmp_path: Path) -> Iterator[Path]:
    """Files a password file or a state directory must not be: each holds "canary" if anything."""
    files = tmp_path / "hostile"
    files.mkdir()
    (files / "dir").mkdir()
    os.mkfifo(files / "fifo")
    (files / "empty").write_bytes(b"")
    (files / "blank-first-line").write_bytes(b"\ncanary-pw\n")
    (files / "not-utf8").write_bytes(b"canary-\xff\xfe-pw\n")
    (files / "control-in-line").write_bytes(b"canary\x00pw\n")
    (files / "huge").write_bytes(b"canary-pw" * 8000)
    (files / "file").write_bytes(b"canary-pw\n")
    (files / "loop").symlink_to(files / "loop")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(files / "socket"))
    yield files
    server.close()


def hostile(name: str, files: Path) -> list[str]:
    return [value.replace("{tmp}", str(files)) for value in FREE_TEXT[name]]


def build(**env):
    return Settings.from_mapping({"SCRAPY_PROJECT_DIR": str(TEST_PROJECT), "XDG_STATE_HOME": str(STATE_HOME), **env})


def rejected(name: str, value: str) -> list[str] | None:
    try:
        build(**{name: value})
    except ConfigError as exc:
        return exc.lines()
    return None


def assert_one_clear_line(name: str, lines: list[str]) -> None:
    assert len(lines) == 1 and lines[0].startswith(f"config error: {name}=")
    assert lines[0].isprintable()  # no newline, NUL, escape sequence or undecodable byte reaches a terminal
    assert "T0K3N" not in lines[0] and "canary" not in lines[0]
    if name in SECRET_SHOWN_AS:
        assert lines[0].startswith(SECRET_SHOWN_AS[name])


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


@pytest.mark.parametrize("name", sorted(FREE_TEXT))
def test_every_free_text_variable_refuses_each_of_its_hostile_values_with_one_line_naming_it(name, hostile_files):
    values = hostile(name, hostile_files)
    assert len(set(values)) >= 10
    for value in values:
        lines = rejected(name, value)
        assert lines is not None, f"{name}={value!r} was accepted"
        assert_one_clear_line(name, lines)


def test_every_variable_the_settings_read_has_hostile_values():
    class Recording(dict):
        def __init__(self, values: dict[str, str]) -> None:
            super().__init__(values)
            self.asked: set[str] = set()

        def get(self, key, default=None):
            self.asked.add(key)
            return super().get(key, default)

    env = Recording({"SCRAPY_PROJECT_DIR": str(TEST_PROJECT), "XDG_STATE_HOME": str(STATE_HOME)})
    Settings.from_mapping(env)
    assert env.asked - PLATFORM == VARIABLES


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(NUMERIC | CHOICES)), st.text(alphabet=string.printable + "éß١𝟘\u200b", max_size=30))
def test_generated_values_are_either_valid_numbers_or_one_clear_line(name, value):
    lines = rejected(name, value)
    if lines is None:
        return  # a valid value (or empty: the default)
    assert len(lines) == 1 and lines[0].startswith(f"config error: {name}=")


# Pieces that free text is built from: what hosts, paths, URLs and names are made of, and what
# breaks them.
PIECES = ["/", ":", "@", ".", "%", "[", "]", "?", "#", "-", "_", "~", ",", "=", " ", "\t", "\r", "\n", "\x00", "\x1b",
          "\x7f", "\x85", "\u200b", "\u202e", "\u00a0", "é", "例", "\udcff", "localhost", "127.0.0.1", "::1", "http://",
          "https://", "T0K3N", "..", "/tmp", "/dev/null", "n" * 40, "0", "65536", "$(id)", "'", '"', "\\"]  # fmt: skip


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(FREE_TEXT)),
    st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=8).map("".join),
)
def test_generated_free_text_is_either_accepted_or_one_clear_line_that_shows_no_secret(name, value):
    lines = rejected(name, value)
    if lines is None:
        return  # a valid value (or empty: the default)
    assert len(lines) == 1 and lines[0].startswith(f"config error: {name}=") and lines[0].isprintable()
    if name in SECRET_SHOWN_AS:
        assert lines[0].startswith(SECRET_SHOWN_AS[name])
    if name.endswith("_URL"):  # at most the scheme, host and port: never a path, query or user info
        shown = lines[0].split("=", 1)[1].split(" is not allowed")[0]
        assert shown == "<hidden>" or (shown.endswith("/...'") and shown.count("/") == 3 and "@" not in shown)


def run_daemon(env: dict[str, str], cwd: Path, *command: str) -> subprocess.CompletedProcess:
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SCRAPY_PROJECT_DIR": str(TEST_PROJECT),
            "XDG_STATE_HOME": str(cwd / "state-home"), **env}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "daemon", *command], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("name", sorted(NUMERIC | CHOICES))
def test_the_process_exits_2_with_no_traceback(name, tmp_path):
    done = run_daemon({name: "$(id)"}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"config error: {name}=") and "Traceback" not in done.stderr + done.stdout


def through_the_process(name: str) -> list[str]:
    """Three of a variable's hostile values (the first, the middle, the last that an environment can hold)."""
    values = [value for value in FREE_TEXT[name] if "\x00" not in value]
    return [values[0], values[len(values) // 2], values[-1]]


@pytest.mark.parametrize(("name", "value"), [(n, v) for n in sorted(FREE_TEXT) for v in through_the_process(n)])
def test_the_process_exits_2_with_one_line_naming_a_bad_free_text_variable(name, value, hostile_files, tmp_path):
    done = run_daemon({name: value.replace("{tmp}", str(hostile_files))}, tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert_one_clear_line(name, done.stderr.splitlines())
    assert "Traceback" not in done.stderr


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
            done = run_daemon(env, tmp_path, *command)
            assert done.returncode != 0
            assert PG_PASSWORD not in done.stdout + done.stderr


def with_canary(env: dict[str, str], through: str, tmp_path: Path) -> dict[str, str]:
    """`env` with the canary password given through DB_PASSWORD or a DB_PASSWORD_FILE."""
    env = {k: v for k, v in env.items() if k != "DB_PASSWORD"}
    if through == "DB_PASSWORD":
        return {**env, "DB_PASSWORD": PG_PASSWORD}
    secret = tmp_path / "db_password"
    secret.write_text(PG_PASSWORD + "\n")
    return {**env, "DB_PASSWORD_FILE": str(secret)}


@pytest.mark.parametrize("through", ["DB_PASSWORD", "DB_PASSWORD_FILE"])
def test_a_password_with_undecodable_bytes_is_refused_at_start_never_shown(through, tmp_path):
    # Before the check, libpq's encoder failed on it: exit 1, with the whole connection string
    # (password included) inside the exception.
    env = with_canary({}, through, tmp_path)
    if through == "DB_PASSWORD":
        env["DB_PASSWORD"] += "\udcff"  # the byte 0xff in the process environment
    else:
        Path(env["DB_PASSWORD_FILE"]).write_bytes(PG_PASSWORD.encode() + b"\xff\n")
    done = run_daemon({**env, "DB_PORT": "1", "DB_WAIT_TIMEOUT_SECONDS": "0.5"}, tmp_path, "wait-db")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"config error: {through}=")
    assert PG_PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize("through", ["DB_PASSWORD", "DB_PASSWORD_FILE"])
def test_an_unexpected_error_after_connecting_never_shows_the_canary_password(
    through, pg_server, empty_database, tmp_path
):
    # A database without the daemon's tables: `status` and `run-now` connect with the password,
    # then fail in a way no handler expects (exit 1, the boundary's catch-all).
    env = with_canary({**pg_server.env(empty_database), "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "console"}, through,
                      tmp_path)  # fmt: skip
    for command in (["status"], ["status", "--json"], ["run-now", "ok"]):
        done = run_daemon(env, tmp_path, *command)
        assert done.returncode == 1, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("unexpected error: UndefinedTable: relation ")
        assert PG_PASSWORD not in done.stdout + done.stderr


def status_failing_on_an_empty_database(pg_server, database: str, tmp_path: Path) -> BaseException:
    """What the boundary catches when `status` meets a database without tables (in-process)."""
    from daemon.ask.commands import status as cmd_status

    secret = tmp_path / "db_password"
    secret.write_text(PG_PASSWORD + "\n")
    env = {**pg_server.env(database), "DB_PASSWORD_FILE": str(secret), "SCRAPY_PROJECT_DIR": str(TEST_PROJECT),
           "XDG_STATE_HOME": str(tmp_path / "state-home")}  # fmt: skip
    del env["DB_PASSWORD"]
    settings_ = Settings.from_mapping(env)
    del env
    try:
        cmd_status(settings_, argparse.Namespace(json=False))
    except Exception as exc:
        return exc
    raise AssertionError("status succeeded on a database without tables")


def test_the_unexpected_error_its_causes_and_the_locals_of_every_frame_never_hold_the_canary(
    pg_server, empty_database, tmp_path
):
    # The boundary prints one line; a future one that printed the traceback with its locals (or a
    # crash reporter that did) would show the connection and the settings of each frame.
    exc = status_failing_on_an_empty_database(pg_server, empty_database, tmp_path)
    assert isinstance(exc, psycopg2.errors.UndefinedTable)
    told = "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
    assert "settings = Settings(" in told and "UndefinedTable" in told  # the frames and their locals were rendered
    assert PG_PASSWORD not in told + repr(exc.args) + repr(exc.cursor.connection.dsn)


@pytest.mark.parametrize("through", ["DB_PASSWORD", "DB_PASSWORD_FILE"])
def test_a_state_directory_that_turns_into_a_file_after_start_ends_the_daemon_with_exit_1_never_showing_the_canary(
    through, base_env, db, daemon_factory, tmp_path
):
    env = with_canary({**base_env, "SCHEDULER_SPIDERS": "ok", "LOG_LEVEL": "DEBUG"}, through, tmp_path)
    state = Path(env["SCHEDULER_STATE_DIR"])
    d = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'completed'") == 1, timeout=60, what="the first run")
    wait_for(lambda: (state / "heartbeat").exists(), what="a heartbeat")
    shutil.rmtree(state)
    state.write_text("not a directory any more\n")  # the next heartbeat cannot be written: no handler expects it
    assert d.wait(timeout=30) == 1
    output = d.output()
    assert "unexpected error: FileExistsError: " in output.splitlines()[-1]
    assert PG_PASSWORD not in output
