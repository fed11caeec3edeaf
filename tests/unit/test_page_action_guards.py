"""The guards of the page's actions, as pure pieces (daemon/web/guard.py): failed logins limited
per address, form tokens bound to user, action and job with an expiry, the origin check, and the
signing key kept in the state directory."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

from daemon.system.statedir import RefusedFile
from daemon.web import guard

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=timezone.utc)
KEY = b"k" * 32


def test_an_address_is_blocked_after_ten_failures_in_a_minute_and_free_again_after_it():
    limiter = guard.LoginLimiter()
    for n in range(1, 11):
        assert not limiter.blocked("10.0.0.1", NOW)
        assert limiter.failed("10.0.0.1", NOW + timedelta(seconds=n)) == n
    assert limiter.blocked("10.0.0.1", NOW + timedelta(seconds=30))
    assert not limiter.blocked("10.0.0.2", NOW + timedelta(seconds=30)), "another address is not held back"
    assert not limiter.blocked("10.0.0.1", NOW + timedelta(seconds=61))
    assert limiter.failed("10.0.0.1", NOW + timedelta(seconds=61)) == 1, "a new window counts from one"


def test_the_limiters_memory_stays_bounded(monkeypatch):
    monkeypatch.setattr(guard, "ADDRESSES_KEPT", 5)
    limiter = guard.LoginLimiter(allowed=1)
    for n in range(20):
        limiter.failed(f"10.0.0.{n}", NOW)
    assert len(limiter._failures) == 5 and limiter.blocked("10.0.0.19", NOW) and not limiter.blocked("10.0.0.0", NOW)


@pytest.mark.parametrize("user, action, job, at, why", [
    ("alice", "pause", "news", NOW + timedelta(minutes=59), None),
    ("bob", "pause", "news", NOW, "a token for another user, action or job"),
    ("alice", "resume", "news", NOW, "a token for another user, action or job"),
    ("alice", "pause", "other", NOW, "a token for another user, action or job"),
    ("alice", "pause", "news", NOW + timedelta(minutes=61), "an expired token (reload the page)"),
])  # fmt: skip
def test_a_token_is_good_only_for_its_user_action_and_job_for_an_hour(user, action, job, at, why):
    tokens = guard.Tokens(KEY)
    token = tokens.make("alice", "pause", "news", NOW)
    assert tokens.problem(token, user, action, job, at) == why


@pytest.mark.parametrize("token", [None, "", "abc", "123", ".deadbeef", "99999999999999.00", "1.2.3"])
def test_a_missing_or_malformed_token_is_refused(token):
    assert guard.Tokens(KEY).problem(token, "alice", "pause", "news", NOW) is not None


def test_a_token_signed_with_another_key_is_refused_and_the_key_never_shows():
    token = guard.Tokens(b"x" * 32).make("alice", "pause", "news", NOW)
    assert guard.Tokens(KEY).problem(token, "alice", "pause", "news", NOW) is not None
    assert "k" * 8 not in repr(guard.Tokens(KEY))


@pytest.mark.parametrize("host, origin, fetch_site, required, refused", [
    ("127.0.0.1:9464", "http://127.0.0.1:9464", None, True, False),
    ("127.0.0.1:9464", "http://127.0.0.1:9465", "same-origin", True, True),  # another port: another origin
    ("127.0.0.1:9464", "http://evil.example", None, True, True),
    ("127.0.0.1:9464", "null", None, True, True),
    ("127.0.0.1:9464", "null", "same-origin", True, False),  # Chromium's own form under no-referrer
    ("127.0.0.1:9464", "null", "cross-site", True, True),  # a sandboxed frame elsewhere
    ("127.0.0.1:9464", "file://x", None, True, True),
    ("127.0.0.1:9464", None, "same-origin", True, False),
    ("127.0.0.1:9464", None, "cross-site", True, True),
    ("127.0.0.1:9464", None, "same-site", True, True),
    ("127.0.0.1:9464", None, None, True, True),  # a form says where it comes from
    ("127.0.0.1:9464", None, None, False, False),  # a script's JSON need not
    ("127.0.0.1:9464", "http://evil.example", None, False, True),
    ("Sched.example:443", "https://sched.example:443", None, True, False),
])  # fmt: skip
def test_only_the_pages_own_origin_passes(host, origin, fetch_site, required, refused):
    assert (guard.origin_problem(host, origin, fetch_site, required=required) is not None) == refused


def test_the_key_is_made_once_private_and_read_again(tmp_path):
    first = guard.load_key(tmp_path)
    assert len(first) == 32 and guard.load_key(tmp_path) == first
    assert stat.S_IMODE(os.stat(tmp_path / guard.KEY_FILE).st_mode) == 0o600


def test_a_key_file_that_is_a_symbolic_link_or_short_is_refused(tmp_path):
    (tmp_path / "elsewhere").write_bytes(KEY)
    (tmp_path / guard.KEY_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RefusedFile):
        guard.load_key(tmp_path)
    (tmp_path / guard.KEY_FILE).unlink()
    (tmp_path / guard.KEY_FILE).write_bytes(b"short")
    with pytest.raises(RefusedFile):
        guard.load_key(tmp_path)
