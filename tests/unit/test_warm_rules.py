"""The warm parent's pure rules (daemon/engines/warm_parent.py): the exit code a forked crawl reports is the
one the interpreter would have given the cold crawl, and a parent in a state unsafe to fork says why."""

from __future__ import annotations

import sys

import pytest

from daemon.engines import warm_parent
from daemon.engines.warm_parent import broken_rule, exit_code, open_fds

EXITS = [
    (None, 0, "execute() returned"),
    (SystemExit(None), 0, "sys.exit()"),
    (SystemExit(0), 0, "sys.exit(0), a crawl that finished"),
    (SystemExit(1), 1, "sys.exit(1), an unknown spider"),
    (SystemExit(2), 2, "sys.exit(2), a usage error"),
    (SystemExit(256 + 3), 3, "an int beyond a byte, as the kernel keeps it"),
    (SystemExit("a message"), 1, "sys.exit(str): printed, then 1"),
    (ImportError("no module"), 1, "an uncaught exception: its traceback, then 1"),
    (KeyError("Spider not found"), 1, "the spider loader's KeyError"),
]


@pytest.mark.parametrize(("ended", "code", "why"), EXITS, ids=[why for *_, why in EXITS])
def test_a_forked_crawl_exits_with_the_code_the_interpreter_would_give(ended, code, why):
    assert exit_code(ended) == code


def test_a_parent_with_one_thread_no_reactor_no_loop_and_its_own_descriptors_may_fork(monkeypatch):
    monkeypatch.delitem(sys.modules, "twisted.internet.reactor", raising=False)
    monkeypatch.setattr(warm_parent.os, "listdir", lambda path: ["1"] if path == "/proc/self/task" else [])
    monkeypatch.setattr(warm_parent, "open_fds", lambda: {"0", "1", "2", "3"})
    assert broken_rule({"0", "1", "2", "3"}) is None


@pytest.mark.parametrize(
    ("tasks", "fds", "reactor", "why"),
    [
        (["1", "2"], {"0", "1", "2"}, False, "the warm parent has 2 threads"),
        (["1"], {"0", "1", "2", "7"}, False, "the warm parent holds other descriptors (1 more, 0 fewer)"),
        (["1"], {"0", "1", "2"}, True, "a Twisted reactor is installed in the warm parent"),
    ],
)
def test_a_parent_unsafe_to_fork_says_why(monkeypatch, tasks, fds, reactor, why):
    if reactor:
        monkeypatch.setitem(sys.modules, "twisted.internet.reactor", object())
    else:
        monkeypatch.delitem(sys.modules, "twisted.internet.reactor", raising=False)
    monkeypatch.setattr(warm_parent.os, "listdir", lambda path: tasks)
    monkeypatch.setattr(warm_parent, "open_fds", lambda: fds)
    assert broken_rule({"0", "1", "2"}) == why


def test_the_descriptor_listing_leaves_out_its_own_directory_handle():
    assert open_fds() == open_fds()


def test_a_parent_holding_an_asyncio_event_loop_may_not_fork(monkeypatch):
    from types import SimpleNamespace

    policy = SimpleNamespace(_local=SimpleNamespace(_loop=object()))
    monkeypatch.setitem(sys.modules, "asyncio.events", SimpleNamespace(_event_loop_policy=policy))
    monkeypatch.delitem(sys.modules, "twisted.internet.reactor", raising=False)
    assert broken_rule(open_fds()) == "an asyncio event loop exists in the warm parent"
