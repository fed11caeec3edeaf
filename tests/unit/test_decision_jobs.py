"""The decision per job: each by its own interval and retry delay, paused jobs never due, and the
most overdue (by its own interval) first after an outage."""

from __future__ import annotations

from datetime import timedelta

import pytest

from daemon.plan.decision import Cadence, SpiderHistory, decide, decide_jobs
from tests.unit.fakes import T0

H = timedelta(hours=1)
M = timedelta(minutes=1)
RETRY = 15 * M


def cadence(hours: float, **kwargs) -> Cadence:
    return Cadence(hours * H, RETRY, **kwargs)


@pytest.mark.parametrize(
    ("history", "job_cadence", "due", "due_at"),
    [
        (SpiderHistory("j", T0 - 3 * H), cadence(2), True, T0 - H),
        (SpiderHistory("j", T0 - 3 * H), cadence(6), False, T0 + 3 * H),
        (SpiderHistory("j"), cadence(6), True, None),
        (SpiderHistory("j", T0 - 9 * H, 2, T0 - 10 * M), cadence(6), False, T0 + 20 * M),  # backoff 30 min
        (SpiderHistory("j", T0 - 9 * H), cadence(2, paused=True), False, None),  # paused until resumed
        (SpiderHistory("j", T0 - 9 * H), cadence(2, paused=True, paused_until=T0 + H), False, T0 + H),
        (SpiderHistory("j", T0 - H), cadence(2, paused=True, paused_until=T0 + 10 * M), False, T0 + H),
        (SpiderHistory("j", T0 - 9 * H), cadence(2, paused=True, paused_until=T0 - M), True, T0 - 7 * H),  # expired
        (SpiderHistory("j"), cadence(2, paused=True), False, None),  # never ran, yet paused: not due
    ],
    ids=["due by its own 2 h", "not due by its own 6 h", "never ran", "its own retry backoff",
         "paused", "paused until a time", "paused, then due later by its interval", "a pause that expired",
         "paused before it ever ran"],  # fmt: skip
)
def test_each_job_is_due_by_its_own_cadence(history, job_cadence, due, due_at):
    plan = decide_jobs([history], T0, {"j": job_cadence}, cadence(4))
    assert (plan.due == ("j",)) is due
    assert plan.spiders[0].due_at == due_at


def test_a_job_without_a_cadence_of_its_own_takes_the_default():
    plan = decide_jobs([SpiderHistory("j", T0 - 3 * H)], T0, {}, cadence(2))
    assert plan.due == ("j",)


def test_after_an_outage_the_most_overdue_by_its_own_interval_runs_first():
    histories = [
        SpiderHistory("hourly", T0 - 3 * H),  # 2 intervals overdue
        SpiderHistory("daily", T0 - 30 * H),  # 0.25 of an interval overdue
        SpiderHistory("new"),  # never ran: first of all
        SpiderHistory("six", T0 - 30 * H),  # 4 intervals overdue
    ]
    cadences = {"hourly": cadence(1), "daily": cadence(24), "six": cadence(6)}
    plan = decide_jobs(histories, T0, cadences, cadence(4))
    assert plan.most_overdue_first == ("new", "six", "hourly", "daily")
    assert plan.due == ("hourly", "daily", "new", "six")  # the plain order stays the input order


def test_a_paused_job_never_counts_as_due_nor_as_the_next_due():
    histories = [SpiderHistory("p", T0 - 9 * H), SpiderHistory("q", T0 - H)]
    plan = decide_jobs(histories, T0, {"p": cadence(2, paused=True)}, cadence(2))
    assert plan.due == () and plan.most_overdue_first == ()
    assert plan.next_due_at == T0 + H


def test_one_interval_for_all_is_the_same_as_a_cadence_for_each():
    histories = [SpiderHistory("a", T0 - 5 * H), SpiderHistory("b", T0 - H, 1, T0 - M), SpiderHistory("c")]
    assert decide(histories, T0, 4 * H, RETRY).due == decide_jobs(histories, T0, {}, cadence(4)).due
