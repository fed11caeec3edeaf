"""The page's buttons (daemon/web/forms.py) by a job's state, their tokens per action, and hostile
names and notices kept as text."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from daemon.records.audit import Action
from daemon.web import forms


def actions_of(html: str) -> list[str]:
    return re.findall(r'<form class="act" method="post" action="/jobs/[^"]*/([a-z-]+)"', html)


@pytest.mark.parametrize("paused, in_file, running, offered", [
    (False, False, False, ["run-now", "pause"]),
    (False, False, True, ["run-now", "pause", "cancel"]),
    (True, False, False, ["resume"]),
    (True, False, True, ["resume", "cancel"]),
    (True, True, False, []),  # paused in the jobs file: the file says so, not a button
])  # fmt: skip
def test_the_buttons_follow_the_jobs_state(paused, in_file, running, offered):
    html = forms.controls("news", lambda action: f"tok-{action}", paused=paused, in_file=in_file, running=running,
                          back="job")  # fmt: skip
    assert actions_of(html) == offered
    for action in offered:
        assert f'action="/jobs/news/{action}"><input type="hidden" name="token" value="tok-{action}">' in html
    assert ("paused in the jobs file" in html) == in_file


def test_pause_offers_an_hour_four_hours_a_day_and_until_resumed():
    html = forms.controls("news", str, paused=False, in_file=False, running=False, back="overview")
    assert re.findall(r'name="for" value="([^"]*)">([^<]*)<', html) == [
        ("1h", "1 h"), ("4h", "4 h"), ("1d", "1 day"), ("", "until resumed")]
    assert html.count('name="back" value="overview"') == 2


def test_a_hostile_job_name_stays_text_in_the_forms_action_and_the_notice():
    name = '"><script>alert(1)</script>'
    html = forms.controls(name, lambda action: '"><b>', paused=False, in_file=False, running=True, back="job")
    assert "<script" not in html and "<b>" not in html
    assert 'action="/jobs/%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E/pause"' in html
    at = datetime(2026, 12, 7, tzinfo=timezone.utc)
    done = Action(1, at, "pause", name, None, "alice", "page", "127.0.0.1", "done", f"paused {name} until resumed")
    assert "<script" not in forms.notice(done) + forms.audit_table([done], timezone.utc)
    assert 'class="notice refused"' in forms.notice(Action(*[*done.__dict__.values()][:8], "refused", "no"))
    assert forms.notice(None) == ""
