"""The two pure rules beside decide(): jitter's hold-back, and folding an offline run into the history."""

from __future__ import annotations

from datetime import timedelta

import pytest

from daemon.plan.decision import CrawlResult, SpiderHistory, decide, fold, hold_back
from daemon.leadership.lease import TRANSITIONS, Role
from tests.unit.fakes import T0

H = timedelta(hours=1)
INTERVAL, RETRY = 4 * H, timedelta(minutes=15)
M = timedelta(minutes=1)

HISTORIES = {
    "interval": SpiderHistory("interval", T0 - 4 * H - 2 * M),  # due 2 min ago by its interval
    "never": SpiderHistory("never"),
    "retry": SpiderHistory("retry", T0 - 5 * H, 1, T0 - 20 * M),  # due 5 min ago, a retry
    "later": SpiderHistory("later", T0 - H),
}


@pytest.mark.parametrize(
    ("delays", "requested", "runs", "held_until"),
    [
        ({}, set(), ("interval", "never", "retry"), None),
        ({("interval", T0 - 2 * M): 1 * M}, set(), ("interval", "never", "retry"), None),  # delay already over
        ({("interval", T0 - 2 * M): 5 * M}, set(), ("never", "retry"), T0 + 3 * M),
        ({("interval", T0 - 2 * M): 5 * M}, {"interval"}, ("interval", "never", "retry"), None),  # run-now
        ({("never", T0): 5 * M, ("retry", T0 - 5 * M): 9 * M}, set(), ("interval", "never", "retry"), None),
        ({("interval", T0 - 3 * M): 5 * M}, set(), ("interval", "never", "retry"), None),  # another due time
    ],
    ids=["no delays", "delay over", "held back", "run-now is never held", "first runs and retries never held",
         "a delay belongs to one due time"],  # fmt: skip
)
def test_hold_back_delays_only_runs_due_by_their_interval(delays, requested, runs, held_until):
    plan = decide(list(HISTORIES.values()), T0, INTERVAL, RETRY)
    assert hold_back(plan, plan.due, requested, delays) == (runs, held_until)


def ok(spider, started, finished):
    return CrawlResult(spider, True, None, started, finished)


def failed(spider, kind, started, finished):
    return CrawlResult(spider, False, kind, started, finished)


@pytest.mark.parametrize(
    ("results", "after"),
    [
        ([], SpiderHistory("s", T0 - 5 * H, 0, None)),
        ([ok("s", T0, T0 + M)], SpiderHistory("s", T0, 0, None)),
        ([failed("s", "error", T0, T0 + M)], SpiderHistory("s", T0 - 5 * H, 1, T0 + M, "error")),
        ([failed("s", "timeout", T0, T0 + M)], SpiderHistory("s", T0 - 5 * H, 1, T0 + M, "timeout")),
        ([failed("s", "interrupted", T0, T0 + M)], SpiderHistory("s", T0 - 5 * H, 0, None)),
        ([failed("s", "error", T0, T0 + M), failed("s", "error", T0 + 20 * M, T0 + 21 * M)],
         SpiderHistory("s", T0 - 5 * H, 2, T0 + 21 * M, "error")),  # fmt: skip
        ([failed("s", "error", T0, T0 + M), ok("s", T0 + 20 * M, T0 + 21 * M)], SpiderHistory("s", T0 + 20 * M, 0, None)),
        ([ok("gone", T0, T0 + M)], SpiderHistory("s", T0 - 5 * H, 0, None)),  # not in the history: ignored
    ],
    ids=["nothing ran", "a success", "an error", "a timeout", "cut short by the daemon", "two errors",
         "an error then a success", "another spider"],  # fmt: skip
)
def test_fold_applies_an_offline_runs_results_as_the_database_would_count_them(results, after):
    assert fold([SpiderHistory("s", T0 - 5 * H)], results) == [after]


def test_a_folded_success_makes_the_spider_not_due_for_an_interval():
    [h] = fold([SpiderHistory("s", T0 - 5 * H)], [ok("s", T0, T0 + M)])
    assert decide([h], T0 + M, INTERVAL, RETRY).due == ()
    assert decide([h], T0 + INTERVAL, INTERVAL, RETRY).due == ("s",)


@pytest.mark.parametrize(
    ("role", "reachable"),
    [
        (Role.STANDBY, {Role.TAKING_OVER}),
        (Role.LEADING, {Role.OFFLINE, Role.GIVING_WAY, Role.STANDBY}),
        (Role.GIVING_WAY, {Role.STANDBY}),
        (Role.SETTLING, {Role.LEADING, Role.STANDBY}),
    ],
)
def test_the_runner_roles_move_only_along_their_transitions(role, reachable):
    assert TRANSITIONS[role] == reachable


def test_every_role_can_get_back_to_standby_and_only_leading_reaches_offline_directly_from_a_lock():
    for role in Role:
        seen, frontier = {role}, [role]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert Role.STANDBY in seen or role is Role.STANDBY
    assert [r for r in Role if Role.OFFLINE in TRANSITIONS[r]] == [Role.RESUMING, Role.LEADING]
