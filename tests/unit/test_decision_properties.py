"""Property test of the scheduling decision over any history, interval, clock and skew."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.decision import CLOCK_SKEW_TOLERANCE, SpiderHistory, decide

EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
moments = st.integers(min_value=0, max_value=10 * 365 * 86400).map(lambda s: EPOCH + timedelta(seconds=s))
intervals = st.integers(min_value=1, max_value=30 * 86400).map(lambda s: timedelta(seconds=s))
delays = st.integers(min_value=1, max_value=86400).map(lambda s: timedelta(seconds=s))


@st.composite
def histories(draw):
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=6, unique=True))
    out = []
    for name in names:
        success = draw(st.none() | moments)
        failures = draw(st.integers(min_value=0, max_value=200))
        failed_at = draw(moments) if failures else None
        out.append(SpiderHistory(name, success, failures, failed_at))
    return out


@settings(max_examples=500, deadline=None)
@given(histories(), moments, intervals, delays)
def test_due_exactly_when_the_rules_say_and_never_a_wait_longer_than_the_interval(hist, now, interval, delay):
    plan = decide(hist, now, interval, delay)
    due = set(plan.due)
    for h, p in zip(hist, plan.spiders):
        if h.consecutive_failures == 0:
            if h.last_success_at is None:
                assert h.spider in due  # no history: run now
            elif h.last_success_at - now > CLOCK_SKEW_TOLERANCE:
                assert h.spider in due and p.clock_skew  # clock set back: run now, never later
            else:
                assert (h.spider in due) == (now - h.last_success_at >= interval)
        if p.due_at is not None:
            assert p.due_at - now <= interval + CLOCK_SKEW_TOLERANCE  # never waits beyond one interval
    # The plan lists each spider once, in order: two runs of one spider cannot be planned.
    assert [p.spider for p in plan.spiders] == [h.spider for h in hist]
    if plan.next_due_at is not None:
        assert plan.next_due_at > now and set(plan.due) != {h.spider for h in hist}
