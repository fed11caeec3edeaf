"""The page's model of a job's lane: deadlines, overdue spans, gaps, chips and sentences, from
generated histories and the daemon's own decision code."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from daemon.plan.decision import Cadence, SpiderHistory, decide_jobs
from daemon.web.timeline import Crawl, duration, lane, moment
from tests.page_history import Planned, failed, steady, to_crawls
from tests.unit.fakes import T0

H = timedelta(hours=1)
M = timedelta(minutes=1)
D = timedelta(days=1)
UTC = timezone.utc
GRACE = 90 * timedelta(seconds=1)


def history_of(name: str, crawls: list[Crawl]) -> SpiderHistory:
    """The history as JOB_HISTORY reads it: the last success, the job's own failures since."""
    ok = [c for c in crawls if c.status == "completed"]
    last = ok[-1].started_at if ok else None
    since = [c for c in crawls if c.kind == "failed" and (last is None or c.started_at > last)]
    return SpiderHistory(name, last, len(since), max((c.finished_at for c in since), default=None))


def lane_of(planned: list[Planned], *, every=4 * H, now=T0, days=7, paused=False, paused_until=None,
            success_before=None, retry=15 * M):  # fmt: skip
    crawls = to_crawls("j", "j", planned, now)
    history = history_of("j", crawls)
    cadence = Cadence(every, retry, paused=paused, paused_until=paused_until)
    [plan] = decide_jobs([history], now, {"j": cadence}, cadence).spiders
    return lane("j", crawls, history=history, plan=plan, every=every, retry_delay=retry, grace=GRACE,
                success_before=success_before, since=now - days * D, now=now, tz=UTC)  # fmt: skip


@pytest.mark.parametrize(
    ("planned", "kwargs", "state", "text"),
    [
        (steady(4 * H, 21 * H + 50 * M, 1 * H + 50 * M), {}, "ok", "ok, due in 2 h 10 min"),
        ([Planned(33 * H)], {}, "overdue", "overdue 1 d 5 h"),
        ([Planned(20 * H), failed(2 * H), failed(90 * M), failed(43 * M)], {"now": T0 + 2 * H}, "retry",
         "retry at 14:20 (3 failures)"),
        ([Planned(20 * H), failed(2 * H)], {}, "retry", "retry due now (1 failure)"),
        ([Planned(1 * H)], {"paused": True}, "paused", "paused until resumed"),
        ([Planned(1 * H)], {"paused": True, "paused_until": T0 + 21 * H}, "paused", "paused until 2026-12-02 09:00"),
        ([failed(5 * H), failed(1 * H)], {}, "never", "never succeeded"),
        ([], {}, "never", "never succeeded"),
        ([Planned(4 * H + 30 * timedelta(seconds=1))], {}, "ok", "ok, due now"),  # within a tick and a minute
    ],
    ids=["on time", "overdue", "retried", "retry due", "paused", "paused until a time", "never succeeded",
         "never ran", "just due"],  # fmt: skip
)
def test_each_chip_says_where_the_job_stands_in_a_few_words(planned, kwargs, state, text):
    chip = lane_of(planned, **kwargs).chip
    assert (chip.state, chip.text) == (state, text)


def test_a_steady_job_has_its_deadline_one_interval_after_its_last_success_and_no_marks():
    result = lane_of(steady(4 * H, 7 * 24 * H - 2 * H, 2 * H))
    assert len(result.crawls) == 42
    assert result.deadline == T0 - 2 * H + 4 * H
    assert result.overdue is None and result.gaps == () and result.sentence is None


def test_two_successes_more_than_an_interval_apart_are_a_gap_from_the_deadline_to_the_next_success():
    planned = [Planned(50 * H), failed(45 * H, "error"), failed(40 * H, "timeout"), Planned(30 * H),
               Planned(26 * H), Planned(22 * H)]  # fmt: skip
    [gap] = lane_of(planned).gaps
    assert (gap.start, gap.end) == (T0 - 46 * H, T0 - 30 * H)
    assert "20 h between the successes" in gap.why
    assert "2 failed crawls (error ×1, timeout ×1)" in gap.why


def test_a_gap_without_crawls_says_none_was_recorded_and_one_across_the_window_start_counts():
    [gap] = lane_of([Planned(6 * D), Planned(6 * D - 4 * H)], success_before=T0 - 8 * D).gaps
    assert (gap.start, gap.end) == (T0 - 8 * D + 4 * H, T0 - 6 * D)
    assert gap.why.endswith("no crawl was recorded")


def test_successes_one_interval_apart_give_or_take_the_grace_are_no_gap():
    late = 4 * H + 60 * timedelta(seconds=1)  # later than the interval, within the grace
    assert lane_of([Planned(9 * H), Planned(9 * H - late), Planned(1 * H)]).gaps == ()


def test_a_job_past_its_deadline_is_overdue_from_the_deadline_to_now_and_says_why():
    result = lane_of([Planned(10 * H), failed(5 * H, "timeout"), Planned(3 * H, "failed", "interrupted")])
    assert (result.overdue.start, result.overdue.end) == (T0 - 6 * H, T0)
    assert "no success for 10 h" in result.overdue.why
    assert "1 failed crawl and 1 crawl cut short by the daemon (interrupted ×1, timeout ×1) since" in result.overdue.why


def test_a_paused_job_is_never_shown_overdue_nor_late():
    result = lane_of([Planned(30 * H)], paused=True)
    assert result.deadline == T0 - 26 * H
    assert result.overdue is None and result.sentence is None


@pytest.mark.parametrize(
    ("planned", "sentence"),
    [
        ([Planned(33 * H)], ("j is overdue by 1 d 5 h: its last success started 2026-11-30 03:00, and no crawl "
                             "was recorded since.")),
        ([Planned(20 * H), failed(3 * H, message="HTTP 503"), failed(10 * M, message="boom <b>")],
         ("j is overdue by 16 h: its last success started 2026-11-30 16:00, and 2 failed crawls (error ×2) since; "
          "the next attempt is at 12:23. The last failure: error at 11:50 (boom <b>).")),
        ([Planned(3 * H), failed(10 * M, "too_few_items", "scraped 0 items")],
         ("j has failed 1 time in a row; the next attempt is at 12:08. The last failure: too_few_items at 11:50 "
          "(scraped 0 items).")),
        ([failed(10 * M)], ("j has never succeeded: 1 failure in a row; the next attempt is at 12:08. The last "
                            "failure: error at 11:50 (spider raised).")),
        (steady(4 * H, 20 * H, 1 * H), None),
    ],
    ids=["overdue, nothing ran", "overdue and failing", "failing", "never succeeded", "on time"],
)
def test_a_late_or_failing_job_gets_one_sentence_the_answer_before_the_evidence(planned, sentence):
    assert lane_of(planned).sentence == sentence


def test_a_running_crawl_is_drawn_to_now():
    [crawl] = lane_of([Planned(20 * M, "running")]).crawls
    assert crawl.kind == "running" and crawl.end(T0) == T0


def test_crawls_that_ended_before_the_window_are_left_out():
    result = lane_of([Planned(8 * D), Planned(2 * D)], days=7)
    assert [c.started_at for c in result.crawls] == [T0 - 2 * D]


@pytest.mark.parametrize(
    ("span", "text"),
    [(timedelta(0), "0 s"), (timedelta(seconds=45), "45 s"), (2 * H + 10 * M, "2 h 10 min"),
     (D + 5 * H + 3 * M, "1 d 5 h"), (D + 5 * M, "1 d"), (3 * H, "3 h"), (-H, "0 s")],  # fmt: skip
)
def test_durations_read_as_their_two_largest_units(span, text):
    assert duration(span) == text


def test_times_today_show_the_hour_and_other_days_the_date_too():
    assert moment(T0 + 2 * H, T0, UTC) == "14:00"
    assert moment(T0 - D, T0, UTC) == "2026-11-30 12:00"
