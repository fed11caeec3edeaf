"""Settings: every variable validated at start-up, every problem reported at once, no secret shown."""

import json
import os
import pwd
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.settings.config import Settings
from daemon.records.db import connect_kwargs
from daemon.system.errors import ConfigError

PROJECT = str(Path(__file__).resolve().parents[1] / "scrapy_project")
STATE_HOME: Path  # this test's XDG_STATE_HOME (see `_own_state_home`)


@pytest.fixture(autouse=True)
def _own_state_home():
    """Each test's default state directory is its own, never the machine's /tmp or home: a place
    that does not exist yet, in a directory any user may write (as `nobody` too)."""
    global STATE_HOME
    STATE_HOME = Path(tempfile.mkdtemp(prefix="config-state-"))
    STATE_HOME.chmod(0o1777)
    yield
    shutil.rmtree(STATE_HOME)


def build(**env):
    return Settings.from_mapping({"SCRAPY_PROJECT_DIR": PROJECT, "XDG_STATE_HOME": str(STATE_HOME), **env})


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
    assert connect_kwargs(s)["password"] == "file-secret"
    assert "file-secret" not in repr(s) and "file-secret" not in str(s)


def test_a_missing_password_file_is_a_config_error(tmp_path):
    [line] = problems(DB_PASSWORD_FILE=str(tmp_path / "missing"))
    assert line.startswith("config error: DB_PASSWORD_FILE=") and "regular, readable UTF-8 file" in line
    assert "No such file or directory" in line


def test_the_password_is_the_first_line_of_its_file_without_a_byte_order_mark_or_carriage_return(tmp_path):
    secret = tmp_path / "pw"
    secret.write_bytes(b"\xef\xbb\xbf  spaced pw \r\nsecond line\n")
    assert connect_kwargs(build(DB_PASSWORD_FILE=str(secret)))["password"] == "  spaced pw "


def test_a_password_file_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    [line] = problems(DB_PASSWORD_FILE=str(fifo))  # reading it would block the start for ever
    assert line.startswith(f"config error: DB_PASSWORD_FILE={str(fifo)!r}") and "(it is a FIFO)" in line


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "its first line is empty"),
        (b"\ncanary-second-line\n", "its first line is empty"),
        (b"   \ncanary-second-line\n", "its first line is empty"),
        (b"canary\x00pw\n", "its first line holds control characters"),
        (b"canary\x1b[2Jpw\n", "its first line holds control characters"),
        (b"canary-\xff\xfe-pw\n", "it is not UTF-8 text"),
        (b"canary-pw" * 8000, "it holds more than 64 KiB"),
    ],
)
def test_a_password_file_that_cannot_hold_a_password_is_refused_never_showing_its_content(tmp_path, content, reason):
    secret = tmp_path / "pw"
    secret.write_bytes(content)
    [line] = problems(DB_PASSWORD_FILE=str(secret))
    assert line.startswith("config error: DB_PASSWORD_FILE=") and f"({reason})" in line
    assert "canary" not in line


@pytest.mark.parametrize("value", ["pw\r", "pw\n", "\tpw", "p\x1bw", "p\udcffw"])
def test_a_password_with_control_characters_or_undecodable_bytes_is_refused_and_hidden(value):
    [line] = problems(DB_PASSWORD=value)
    assert line.startswith("config error: DB_PASSWORD=<hidden> is not allowed")
    assert "pw" not in line.split("is not allowed")[0] and "p\\x1bw" not in line


def as_nobody(**env) -> list[str]:
    """The problems the settings report to a process running as `nobody` (root may write and read
    anything, so the test forks and drops to an unprivileged user)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            try:
                build(**env)
                lines = []
            except ConfigError as exc:
                lines = exc.lines()
            os.write(write, json.dumps(lines).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        answer = fh.read()
    os.waitpid(pid, 0)
    return json.loads(answer)


@pytest.fixture
def shared_dir():
    """A directory anyone may enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="config-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_a_password_file_the_daemon_may_not_read_is_refused_naming_why(shared_dir):
    secret = shared_dir / "pw"
    secret.write_text("canary-pw\n")
    secret.chmod(0o600)
    [line] = as_nobody(DB_PASSWORD_FILE=str(secret))
    assert line.startswith("config error: DB_PASSWORD_FILE=") and "(Permission denied)" in line
    assert "canary" not in line


@pytest.mark.parametrize(
    "value",
    ["postgres", "db.example.com", "db.example.com.", "my_db", "PG-1", "127.0.0.1", "::1", "fe80::1%eth0",
     "/var/run/postgresql", "/tmp"],
)  # fmt: skip
def test_the_database_host_may_be_a_host_name_an_ip_address_or_a_socket_directory(value):
    assert build(DB_HOST=value).db_host == value


def test_a_socket_directory_must_leave_room_for_the_socket_file_within_107_bytes():
    # libpq connects to <directory>/.s.PGSQL.<port>; a longer path fails every connection.
    fits = "/" + "d" * (107 - len("/.s.PGSQL.5432") - 1)
    assert build(DB_HOST=fits).db_host == fits
    [line] = problems(DB_HOST=fits + "d")
    assert "(the socket path, 108 bytes, must fit in 107)" in line
    [line] = problems(DB_HOST=fits, DB_PORT="15432")  # one more digit in the socket's name
    assert line.startswith("config error: DB_HOST=")


@pytest.mark.parametrize("value", ["0.0.0.0", "::", "127.0.0.1", "localhost", "scheduler.internal"])
def test_the_http_host_may_be_an_ip_address_or_a_host_name(value):
    assert build(SCHEDULER_HTTP_HOST=value).http_host == value


@pytest.mark.parametrize("name", ["DB_NAME", "DB_USER"])
def test_a_database_or_user_name_longer_than_postgresql_keeps_is_refused_counting_bytes(name):
    # PostgreSQL cuts names to 63 bytes without a word, and would connect to another database.
    attribute = name.lower()
    assert getattr(build(**{name: "n" * 63}), attribute) == "n" * 63
    assert getattr(build(**{name: "é" * 31}), attribute) == "é" * 31  # 62 bytes
    for too_long in ("n" * 64, "é" * 32):
        [line] = problems(**{name: too_long})
        assert line.startswith(f"config error: {name}=") and "at most 63 bytes" in line


def test_a_state_directory_that_does_not_exist_yet_is_accepted_and_not_created(tmp_path):
    state = tmp_path / "not" / "yet"
    assert build(SCHEDULER_STATE_DIR=str(state)).state_dir == state
    assert not (tmp_path / "not").exists()


@pytest.mark.parametrize("value", ["state", "./state", "~/state"])
def test_a_relative_state_directory_is_refused(value):
    [line] = problems(SCHEDULER_STATE_DIR=value)
    assert line == (f"config error: SCHEDULER_STATE_DIR={value!r} is not allowed: an absolute path to a directory "
                    "the daemon can write, or can create (this path is relative)")  # fmt: skip


def test_a_state_directory_the_daemon_may_not_write_is_refused(shared_dir):
    state = shared_dir / "state"
    state.mkdir()
    state.chmod(0o555)
    [line] = as_nobody(SCHEDULER_STATE_DIR=str(state))
    assert line.startswith("config error: SCHEDULER_STATE_DIR=") and f"({state} is not writable by this user)" in line
    [line] = as_nobody(SCHEDULER_STATE_DIR=str(state / "sub"))  # nor could it create one there
    assert f"({state} is not writable by this user)" in line
    shared_dir.chmod(0o777)
    assert as_nobody(SCHEDULER_STATE_DIR=str(shared_dir / "elsewhere")) == []  # the same user, a writable parent


@pytest.mark.parametrize(
    "url",
    ["https://user:T0K3N@hooks.example.com/x", "https://hooks.example.com:99999/T0K3N",
     "https://hooks.example.com/T0K3N here", "https://hooks.example.com/\x01T0K3N", "ftp://hooks.example.com/T0K3N",
     "hooks.example.com/T0K3N", "https:///T0K3N", "https://hooks.example.com/T0K3N/é", "https://[::1/T0K3N",
     "https://hooks.example.com:0/T0K3N", "https://T0K3N@/x"],
)  # fmt: skip
def test_a_bad_webhook_url_never_shows_its_path_query_or_user_info(url):
    [line] = problems(ALERT_WEBHOOK_URL=url)
    assert line.startswith("config error: ALERT_WEBHOOK_URL=") and "http:// or https:// URL" in line
    assert "T0K3N" not in line


def test_a_bad_url_shows_only_its_scheme_host_and_port():
    [line] = problems(HEALTHCHECK_PING_URL="ftp://hc-ping.example:8080/T0K3N?x=T0K3N")
    assert line.startswith("config error: HEALTHCHECK_PING_URL='ftp://hc-ping.example:8080/...' is not allowed")


@pytest.mark.parametrize("url", ["https://hc-ping.com/uuid?rid=1", "https://hc-ping.com/uuid#x", "https://hc-ping.com/uuid?"])
def test_a_ping_url_takes_no_query_or_fragment_as_start_and_fail_are_appended_to_it(url):
    [line] = problems(HEALTHCHECK_PING_URL=url)
    assert "?query or #fragment" in line
    assert build(ALERT_WEBHOOK_URL=url).alert_webhook_url.reveal() == url  # a webhook may have a query


@pytest.mark.parametrize("url", ["https://hooks.example.com/services/T/B/X", "http://127.0.0.1:8080/hook",
                                 "https://[::1]:8443/ping/abc", "http://receiver/ping/uuid-1234"])  # fmt: skip
def test_http_and_https_urls_with_a_host_are_accepted(url):
    assert build(ALERT_WEBHOOK_URL=url, HEALTHCHECK_PING_URL=url).healthcheck_ping_url.reveal() == url


def test_problems_with_free_text_settings_are_reported_at_once_with_the_others(tmp_path):
    lines = problems(DB_HOST="db:5432", DB_PORT="x", DB_NAME="n" * 64, SCHEDULER_STATE_DIR="relative",
                     ALERT_WEBHOOK_URL="hooks/T0K3N", DB_PASSWORD_FILE=str(tmp_path))  # fmt: skip
    assert [line.split("=")[0] for line in lines] == [
        "config error: DB_PORT",
        "config error: DB_HOST",
        "config error: DB_NAME",
        "config error: DB_PASSWORD_FILE",
        "config error: SCHEDULER_STATE_DIR",
        "config error: ALERT_WEBHOOK_URL",
    ]


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


def test_the_project_root_is_the_folder_that_holds_the_migrations_and_the_daemon() -> None:
    """Migrations, the default project and every crawl's PYTHONPATH are found from PROJECT_ROOT."""
    from daemon.settings.config import PROJECT_ROOT

    assert (PROJECT_ROOT / "sql" / "001_scheduler_state.sql").is_file()
    assert (PROJECT_ROOT / "daemon" / "__main__.py").is_file()


@pytest.mark.parametrize(("value", "mode"), [("", "warm"), ("cold", "cold"), ("warm", "warm"),
                                             ("Warm-Project", "warm-project")])  # fmt: skip
def test_crawls_start_warm_by_default_and_as_scheduler_crawl_start_says(value, mode):
    assert build(SCHEDULER_CRAWL_START=value).crawl_start == mode


@pytest.mark.parametrize(("value", "crawls"), [("", 100), ("1", 1), ("5000", 5000)])
def test_a_warm_parent_forks_100_crawls_by_default_or_as_many_as_set(value, crawls):
    assert build(SCHEDULER_WARM_PARENT_CRAWLS=value).warm_parent_crawls == crawls


def test_a_warm_parent_forking_no_crawl_is_refused_in_one_line():
    [line] = problems(SCHEDULER_WARM_PARENT_CRAWLS="0")
    assert "SCHEDULER_WARM_PARENT_CRAWLS='0'" in line and "whole number from 1" in line


def test_an_unknown_crawl_start_is_one_line_naming_it_the_value_and_the_choices():
    [line] = problems(SCHEDULER_CRAWL_START="hot")
    assert "SCHEDULER_CRAWL_START" in line and "'hot'" in line and "cold, warm, warm-project" in line
