"""The scheduling decision, table-driven: a pure function of history and `now`."""

from datetime import datetime, timedelta, timezone

import pytest

from daemon.plan.decision import SpiderHistory, decide, plan_spider, retry_backoff

NOW = datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
INTERVAL = 4 * H
RETRY = timedelta(minutes=15)


def ago(delta):
    return NOW - delta


@pytest.mark.parametrize(
    ("history", "due", "due_at"),
    [
        pytest.param(SpiderHistory("a"), True, None, id="no history runs at once"),
        pytest.param(SpiderHistory("a", ago(8 * H)), True, ago(4 * H), id="8h ago runs at once"),
        pytest.param(SpiderHistory("a", ago(2 * H)), False, NOW + 2 * H, id="2h ago waits 2h"),
        pytest.param(SpiderHistory("a", ago(4 * H)), True, NOW, id="exactly the interval is due"),
        pytest.param(
            SpiderHistory("a", ago(4 * H - timedelta(seconds=1))),
            False,
            NOW + timedelta(seconds=1),
            id="one second short of the interval waits one second",
        ),
        pytest.param(
            SpiderHistory("a", ago(8 * H), 1, ago(16 * timedelta(minutes=1))),
            True,
            NOW - timedelta(minutes=1),
            id="a failure older than the retry delay is retried now",
        ),
        pytest.param(
            SpiderHistory("a", ago(8 * H), 1, ago(5 * timedelta(minutes=1))),
            False,
            NOW + 10 * timedelta(minutes=1),
            id="first failure retries after the retry delay",
        ),
        pytest.param(
            SpiderHistory("a", ago(8 * H), 2, ago(20 * timedelta(minutes=1))),
            False,
            NOW + 10 * timedelta(minutes=1),
            id="second failure waits twice the delay",
        ),
        pytest.param(
            SpiderHistory("a", None, 1, ago(timedelta(minutes=1))),
            False,
            NOW + timedelta(minutes=14),
            id="a never-successful spider that failed still backs off",
        ),
        pytest.param(SpiderHistory("a", NOW + 3 * 24 * H), True, NOW, id="a success in the future is clock skew"),
        pytest.param(
            SpiderHistory("a", NOW + timedelta(seconds=30)),
            False,
            NOW + timedelta(seconds=30) + INTERVAL,
            id="a small backward step is tolerated",
        ),
    ],
)
def test_plan_for_one_spider(history, due, due_at):
    plan = decide([history], NOW, INTERVAL, RETRY)
    assert (plan.due == ("a",)) is due
    assert plan.spiders[0].due_at == due_at


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        (0, timedelta(0)),
        (1, timedelta(minutes=15)),
        (2, timedelta(minutes=30)),
        (3, timedelta(minutes=60)),
        (4, timedelta(minutes=120)),
        (5, timedelta(minutes=240)),
        (6, timedelta(minutes=240)),
        (10_000, timedelta(minutes=240)),
    ],
)
def test_retry_backoff_doubles_and_is_capped_at_the_interval(failures, expected):
    assert retry_backoff(failures, RETRY, INTERVAL) == expected


def test_only_due_spiders_run_and_the_next_due_is_the_earliest_of_the_rest():
    histories = [
        SpiderHistory("fresh", ago(1 * H)),
        SpiderHistory("stale", ago(5 * H)),
        SpiderHistory("half", ago(3 * H)),
    ]
    plan = decide(histories, NOW, INTERVAL, RETRY)
    assert plan.due == ("stale",)
    assert plan.next_due_at == NOW + 1 * H


def test_a_failing_spider_never_makes_the_loop_spin():
    # However many failures, the next attempt is in the future by at least the retry delay.
    for failures in range(1, 50):
        p = plan_spider(SpiderHistory("a", ago(100 * H), failures, NOW), NOW, INTERVAL, RETRY)
        assert p.due_at is not None and p.due_at - NOW >= RETRY
        assert p.due_at - NOW <= INTERVAL


def test_nothing_due_when_every_spider_is_fresh():
    plan = decide([SpiderHistory("a", ago(H)), SpiderHistory("b", ago(2 * H))], NOW, INTERVAL, RETRY)
    assert plan.due == ()
    assert plan.next_due_at == NOW + 2 * H
