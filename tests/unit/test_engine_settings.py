"""SCHEDULER_ENGINE and the SCRAPYD_* settings: validated like every other, the password never shown."""

from __future__ import annotations

import pytest

from daemon.settings.addresses import Node
from tests.unit.test_config import _own_state_home, build, problems  # noqa: F401 (the fixture, used by name)


def test_the_engine_is_local_unless_told_and_needs_no_nodes_then():
    s = build()
    assert s.engine == "local" and s.scrapyd_nodes == () and s.scrapyd_project == "default"
    assert s.scrapyd_username is None and not s.scrapyd_password and s.scrapyd_lost_after_seconds == 300


def test_the_scrapyd_engine_without_nodes_exits_with_one_line_naming_scrapyd_nodes():
    lines = problems(SCHEDULER_ENGINE="scrapyd")
    assert len(lines) == 1 and lines[0].startswith("config error: SCRAPYD_NODES='' is not allowed")
    assert "required with SCHEDULER_ENGINE=scrapyd" in lines[0]


def test_a_node_without_its_own_slots_gets_scrapyd_node_slots():
    s = build(SCHEDULER_ENGINE="SCRAPYD", SCRAPYD_NODES=" http://a:6800=4 , http://b:6800/ ", SCRAPYD_NODE_SLOTS="2")
    assert s.engine == "scrapyd"
    assert s.scrapyd_nodes == (Node("http://a:6800", 4), Node("http://b:6800", 2))


@pytest.mark.parametrize(
    ("value", "shown", "why"),
    [
        ("http://bob:T0K3N@a:6800", "'http://a:6800'", "without user:password@"),
        ("http://a:6800/T0K3N?x", "'http://a:6800'", "query or fragment"),
        ("http://a:6800=0", "'http://a:6800=0'", "[=SLOTS]"),
        ("http://a:6800=T0K3N", "'http://a:6800=?'", "[=SLOTS]"),
        ("http://a:6800,http://a:6800/", "'http://a:6800,http://a:6800'", "http://a:6800 listed twice"),
        ("ftp://a/T0K3N", "'ftp://a'", "not http(s)://host:port"),
    ],
)
def test_a_bad_node_list_is_one_line_showing_each_url_by_scheme_host_and_port_only(value, shown, why):
    lines = problems(SCRAPYD_NODES=value)
    assert len(lines) == 1 and lines[0].startswith(f"config error: SCRAPYD_NODES={shown} is not allowed")
    assert why in lines[0] and "T0K3N" not in lines[0] and "bob" not in lines[0]


def test_the_nodes_basic_auth_needs_a_user_and_a_password_or_neither():
    assert problems(SCRAPYD_USERNAME="bob") == [
        "config error: SCRAPYD_USERNAME='bob' is not allowed without SCRAPYD_PASSWORD or its _FILE: basic auth needs "
        "both a user and a password"
    ]
    assert problems(SCRAPYD_PASSWORD="canary") == [
        "config error: SCRAPYD_PASSWORD=<hidden> is not allowed without SCRAPYD_USERNAME: basic auth needs both a "
        "user and a password"
    ]


def test_the_nodes_password_comes_from_its_file_and_never_shows(tmp_path):
    secret = tmp_path / "scrapyd-password"
    secret.write_text("canary-pw\n")
    s = build(SCRAPYD_USERNAME="bob", SCRAPYD_PASSWORD_FILE=str(secret))
    assert s.scrapyd_password.reveal() == "canary-pw" and "canary" not in repr(s)
    lines = problems(SCRAPYD_USERNAME="bob", SCRAPYD_PASSWORD="canary-pw", SCRAPYD_PASSWORD_FILE=str(secret))
    assert len(lines) == 1 and "are both set" in lines[0] and "canary" not in lines[0]


def test_every_engine_problem_is_reported_at_once():
    lines = problems(SCHEDULER_ENGINE="kubernetes", SCRAPYD_NODE_SLOTS="0", SCRAPYD_PROJECT="../x",
                     SCRAPYD_LOST_AFTER_SECONDS="-1")  # fmt: skip
    assert [line.split("=")[0] for line in lines] == [
        "config error: SCHEDULER_ENGINE", "config error: SCRAPYD_NODE_SLOTS", "config error: SCRAPYD_PROJECT",
        "config error: SCRAPYD_LOST_AFTER_SECONDS",
    ]  # fmt: skip
