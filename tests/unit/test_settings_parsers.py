"""The settings' parsers are pure: text in, a value out, or Invalid with what is allowed; nothing
they decide looks at the file system (the probes do, apart)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from daemon.settings import addresses as a, parsers as p
from daemon.settings.secret import Secret

REFUSED = object()

CASES = [
    (p.integer(1, 65535), "1", 1), (p.integer(1, 65535), "+5", 5), (p.integer(1, 65535), "65535", 65535),
    (p.integer(1, 65535), "0", REFUSED), (p.integer(1, 65535), "1e3", REFUSED), (p.integer(1, 65535), "0x10", REFUSED),
    (p.number("hours"), "0.5", 0.5), (p.number("hours"), ".5", 0.5), (p.number("hours"), "1e2", 100.0),
    (p.number("hours"), "0", REFUSED), (p.number("hours"), "nan", REFUSED), (p.number("hours"), "inf", REFUSED),
    (p.number("hours"), "-1", REFUSED), (p.number("hours", allow_zero=True), "0", 0.0),
    (p.number("seconds", high=300), "301", REFUSED), (p.duration("minutes"), "1.5", timedelta(seconds=90)),
    (p.boolean(), "YES", True), (p.boolean(), "off", False), (p.boolean(), "maybe", REFUSED),
    (p.choice("auto", "json"), "JSON", "json"), (p.choice("DEBUG", "INFO", upper=True), "info", "INFO"),
    (p.choice("auto", "json"), "xml", REFUSED), (p.only("1"), "1", 1), (p.only("1"), "2", REFUSED),
    (a.host(), "db.example.com", "db.example.com"), (a.host(), "fe80::1%eth0", "fe80::1%eth0"),
    (a.host(), "1.2.3", REFUSED), (a.host(), "[::1]", REFUSED),
    (a.db_host(), "/var/run/postgresql", "/var/run/postgresql"), (a.db_host(), "db:5432", REFUSED),
    (p.pg_name(), "é" * 31, "é" * 31), (p.pg_name(), "é" * 32, REFUSED), (p.pg_name(), "a\u200bb", REFUSED),
    (p.password(), " spaced ", Secret(" spaced ")), (p.password(), "pw\r", REFUSED),
    (p.spiders(), "ok, boom", ("ok", "boom")), (p.spiders(), "ok,ok", REFUSED), (p.spiders(), ",", REFUSED),
    (a.url(), "https://h.example/x?y=1", Secret("https://h.example/x?y=1")), (a.url(), "ftp://h.example/", REFUSED),
    (a.url(query_allowed=False), "https://h.example/x?y=1", REFUSED),
    # Pure: a path that does not exist parses; whether it will do is the probes' to say.
    (p.absolute_path("a path"), "/nonexistent/dir", Path("/nonexistent/dir")),
    (p.absolute_path("a path"), "rel", REFUSED),
    (p.project_dir(), "/nonexistent", Path("/nonexistent")), (p.password_file(), "/nonexistent", Path("/nonexistent")),
]  # fmt: skip


@pytest.mark.parametrize(("parser", "text", "expected"), CASES)
def test_each_parser_turns_text_into_a_value_or_refuses_it(parser, text, expected):
    if expected is REFUSED:
        with pytest.raises(ValueError):
            parser.parse(text)
    else:
        assert parser.parse(text) == expected


@pytest.mark.parametrize(
    ("parser", "text", "line"),
    [
        (p.integer(1, 64), "0", "X='0' is not allowed: a whole number from 1 to 64"),
        (p.password(), "pw\n", "X=<hidden> is not allowed: a password without control characters"),
        (a.url(), "https://u:T0K3N@h.example:8080/T0K3N", "X='https://h.example:8080/...' is not allowed: an http://"),
        (a.url(), "https://[::1/T0K3N", "X=<hidden> is not allowed"),
        (p.absolute_path("a path", relative="this path is relative"), "rel",
         "X='rel' is not allowed: a path (this path is relative)"),
        (a.db_host(), "/tmp/\x1b[2J", "X='/tmp/\\x1b[2J' is not allowed: a host name"),
    ],
)  # fmt: skip
def test_a_refused_value_is_one_line_naming_what_is_allowed_and_never_a_secret(parser, text, line):
    with pytest.raises(ValueError) as refused:
        parser.parse(text)
    told = parser.problem("X", text, getattr(refused.value, "detail", None))
    assert told.startswith(line) and "T0K3N" not in told and "\n" not in told


def test_a_socket_directory_must_leave_room_for_the_socket_file():
    fits = "/" + "d" * (107 - len("/.s.PGSQL.5432") - 1)
    assert a.socket_path_problem(fits, 5432) is None
    assert a.socket_path_problem(fits, 15432) == "the socket path, 108 bytes, must fit in 107"
    assert a.socket_path_problem("db.example.com", 5432) is None  # not a directory
