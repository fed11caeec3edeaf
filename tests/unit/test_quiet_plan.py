"""An idle tick decides nothing anew: a plan with nothing due is moved to the tick's `now` while its
history copy, its cadences and the clock stay within its quiet span. Each thing that changes a plan
still changes it: the clock reaching a due time (or set back), a reload, a pause, a run-now request,
a finished run, an offline run's results, the periodic re-read."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from daemon.jobs.catalog import Catalog
from daemon.plan.decision import (
    CLOCK_SKEW_TOLERANCE,
    Cadence,
    CrawlResult,
    SpiderHistory,
    decide_jobs,
    moved,
    quiet_span,
)
from daemon.loop.history import HISTORY_REFRESH_SECONDS, HistoryCopy
from daemon.jobs.jobfile import JobDefaults, default_jobs
from tests.unit.fakes import T0, FakeClock, FakeStore
from tests.unit.test_loop import Loop, gauge, ran_recently, watched

H = timedelta(hours=1)
M = timedelta(minutes=1)
RETRY = 15 * M
TOL = CLOCK_SKEW_TOLERANCE


def cadence(hours: float = 4, **kwargs) -> Cadence:
    return Cadence(hours * H, RETRY, **kwargs)


DEFAULT = cadence(4)

# (histories, cadences, the quiet span at T0: (since, until), or None)
SPANS = {
    "ran an hour ago": ([SpiderHistory("a", T0 - H)], {}, (T0 - H - TOL, T0 + 3 * H)),
    "the earliest due time bounds it": (
        [SpiderHistory("a", T0 - H), SpiderHistory("b", T0 - 3 * H)], {}, (T0 - H - TOL, T0 + H)),
    "its own interval": ([SpiderHistory("a", T0 - H)], {"a": cadence(2)}, (T0 - H - TOL, T0 + H)),
    "retrying": ([SpiderHistory("a", T0 - 9 * H, 2, T0 - 10 * M)], {}, (T0 - 10 * M - TOL, T0 + 20 * M)),
    "a pause ends before the job is due": (
        [SpiderHistory("a", T0 - H)], {"a": cadence(paused=True, paused_until=T0 + 30 * M)},
        (T0 - H - TOL, T0 + 30 * M)),
    "a pause that ended": (
        [SpiderHistory("a", T0 - H)], {"a": cadence(paused=True, paused_until=T0 - 10 * M)}, (T0 - 10 * M, T0 + 3 * H)),
    "paused until resumed, never ran": ([SpiderHistory("a")], {"a": cadence(paused=True)}, (None, None)),
    "a run a little ahead of the clock": ([SpiderHistory("a", T0 + M / 2)], {}, (T0 + M / 2 - TOL, T0 + 4 * H + M / 2)),
    "due": ([SpiderHistory("a", T0 - 5 * H)], {}, None),
    "never ran": ([SpiderHistory("a")], {}, None),
    "a run far ahead of the clock": ([SpiderHistory("a", T0 + H)], {}, None),
    "a paused job ahead of the clock, the other due": (
        [SpiderHistory("a", T0 + H), SpiderHistory("b", T0 - 5 * H)], {"a": cadence(paused=True)}, None),
}  # fmt: skip


@pytest.mark.parametrize(("histories", "cadences", "span"), SPANS.values(), ids=SPANS.keys())
def test_a_plan_with_nothing_due_holds_until_the_next_due_time_a_pause_end_or_a_clock_skew_edge(
    histories, cadences, span
):
    assert quiet_span(decide_jobs(histories, T0, cadences, DEFAULT), histories, cadences, DEFAULT) == span


QUIET = {k: v for k, v in SPANS.items() if v[2] is not None and None not in v[2]}


@pytest.mark.parametrize(("histories", "cadences", "span"), QUIET.values(), ids=QUIET.keys())
def test_within_its_span_a_moved_plan_is_what_deciding_anew_gives_and_past_either_edge_it_is_not(
    histories, cadences, span
):
    plan = decide_jobs(histories, T0, cadences, DEFAULT)
    since, until = span
    tiny = timedelta(microseconds=1)
    for now in (since, since + (until - since) / 3, T0, until - tiny):
        again, at = decide_jobs(histories, now, cadences, DEFAULT), moved(plan, now)
        assert at == again
        assert (at.due, at.most_overdue_first, at.next_due_at, at.skewed) == \
            (again.due, again.most_overdue_first, again.next_due_at, again.skewed)  # fmt: skip
    for now in (since - tiny, until):
        again, at = decide_jobs(histories, now, cadences, DEFAULT), moved(plan, now)
        assert (again.spiders, again.due, again.next_due_at) != (at.spiders, at.due, at.next_due_at)


# ----------------------------------------------------------------- the history copy
def copy_and_store(**histories: SpiderHistory) -> tuple[HistoryCopy, FakeStore, FakeClock]:
    clock = FakeClock()
    return HistoryCopy(clock, DEFAULT), FakeStore(histories_by_spider=dict(histories)), clock


def test_an_idle_tick_moves_the_last_plan_without_deciding_or_reading_anew():
    copy, store, clock = copy_and_store(a=SpiderHistory("a", T0 - H), b=SpiderHistory("b", T0 - 2 * H))
    cadences: dict[str, Cadence] = {}
    first, _ = copy.plan(store, T0, ("a", "b"), cadences, fresh=False)
    clock.advance(30)
    later, _ = copy.plan(store, clock.now(), ("a", "b"), cadences, fresh=False)
    assert later.spiders is first.spiders
    assert later.now == clock.now() and later.next_due_at == T0 + 2 * H
    assert store.calls == ["histories"]


def test_new_cadences_give_a_new_decision_from_the_same_copy():
    copy, store, _ = copy_and_store(a=SpiderHistory("a", T0 - H))
    quiet, _ = copy.plan(store, T0, ("a",), {}, fresh=False)
    shorter, _ = copy.plan(store, T0, ("a",), {"a": cadence(0.5)}, fresh=False)
    assert quiet.due == () and shorter.due == ("a",)


def test_an_offline_runs_results_change_the_plan_of_the_copy():
    copy, store, _ = copy_and_store(a=SpiderHistory("a", T0 - 5 * H), b=SpiderHistory("b", T0 - H))
    cadences: dict[str, Cadence] = {}
    assert copy.plan(store, T0, ("a", "b"), cadences, fresh=False)[0].due == ("a",)
    copy.fold([CrawlResult("a", True, None, T0, T0 + M), CrawlResult("b", False, "error", T0, T0 + M)])
    plan = copy.offline_plan(T0 + M, cadences)
    assert plan is not None and plan.due == () and plan.next_due_at == T0 + 16 * M  # b's retry


def test_the_periodic_re_read_sees_what_changed_behind_the_copy():
    copy, store, clock = copy_and_store(a=SpiderHistory("a", T0 - H))
    assert copy.plan(store, T0, ("a",), {}, fresh=False)[0].due == ()
    store.histories_by_spider["a"] = SpiderHistory("a", T0 - 5 * H)  # edited with psql
    clock.advance(HISTORY_REFRESH_SECONDS - 1)
    assert copy.plan(store, clock.now(), ("a",), {}, fresh=False)[0].due == ()
    clock.advance(1)
    assert copy.plan(store, clock.now(), ("a",), {}, fresh=False)[0].due == ("a",)


# ----------------------------------------------------------------- the catalog's cadences
def test_the_catalog_gives_the_same_cadences_until_its_jobs_or_the_pauses_change():
    defaults = JobDefaults(4 * H, 8 * H, RETRY, 0, 0, timedelta(0))
    catalog = Catalog(None, defaults, lambda: ["a", "b"], jobs=default_jobs(["a", "b"], defaults), spiders=["a", "b"])
    pauses: dict[str, object] = {}
    first = catalog.cadences(pauses)
    assert catalog.cadences({}) is first and catalog.names() is catalog.names()
    pauses["a"] = None  # changed in place
    paused = catalog.cadences(pauses)
    assert paused is not first and paused["a"].paused and not first["a"].paused
    a, b = catalog.jobs
    catalog.jobs = (dataclasses.replace(a, every=H), b)
    reloaded = catalog.cadences(pauses)
    assert reloaded is not paused and reloaded["a"].every == H
    assert catalog.names() == ("a", "b")


# ----------------------------------------------------------------- through the loop
def test_the_clock_reaching_the_next_due_time_runs_the_job_after_idle_ticks():
    loop = Loop(FakeStore(histories_by_spider={"a": ran_recently("a", 3.5), "b": ran_recently("b", 1)}))
    assert loop.step() == pytest.approx(1800)
    for _ in range(3):
        loop.clock.advance(599)
        loop.step()
    assert loop.batches.online_runs == []
    loop.clock.advance(3)
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a",)]


def test_a_clock_set_back_behind_the_last_runs_makes_them_due_after_idle_ticks():
    loop = Loop(FakeStore(histories_by_spider={"a": ran_recently("a", 1), "b": ran_recently("b", 1)}))
    loop.step()
    loop.clock.advance(30)
    loop.step()
    loop.clock.wall -= 2 * H
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a", "b")]


def test_a_reload_that_shortens_an_interval_runs_the_job_at_the_next_tick():
    loop = Loop(FakeStore(histories_by_spider={"a": ran_recently("a", 3.5), "b": ran_recently("b", 1)}))
    loop.step()
    a, b = loop.catalog.jobs
    loop.catalog.jobs = (dataclasses.replace(a, every=2 * H), b)
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a",)]


def test_a_pause_and_a_resume_each_change_when_the_loop_wakes_next():
    loop = Loop(FakeStore(histories_by_spider={"a": ran_recently("a", 3.5), "b": ran_recently("b", 1)}))
    assert loop.step() == pytest.approx(1800)
    loop.requests.pauses["a"] = None
    assert loop.step() == pytest.approx(3 * 3600)  # b's due time
    loop.requests.pauses = {}
    assert loop.step() == pytest.approx(1800)


def test_a_run_now_request_reads_the_history_anew_so_what_changed_behind_the_copy_runs_too():
    store = FakeStore(histories_by_spider={"a": ran_recently("a", 1), "b": ran_recently("b", 1)})
    loop = Loop(store)
    loop.step()
    store.histories_by_spider["a"] = ran_recently("a", 5)  # edited with psql
    loop.requests.asked = {"b"}
    loop.requests.pending.set()
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a", "b")]


def test_a_finished_run_changes_the_plan_and_the_exported_failure_streak():
    store = FakeStore(histories_by_spider={"a": ran_recently("a", 3.5), "b": ran_recently("b", 1)})
    loop = Loop(store)
    metrics = watched(loop)
    loop.step()
    assert gauge(metrics, "scheduler_job_consecutive_failures", job="a", spider="a") == 0
    loop.clock.advance(1800)
    loop.step()
    assert loop.batches.online_runs == [("a",)]
    store.histories_by_spider["a"] = SpiderHistory("a", T0 - 3.5 * H, 1, loop.clock.now())  # it failed
    loop.history.invalidate()  # as a run's end does
    assert loop.step() == pytest.approx(RETRY.total_seconds())
    assert gauge(metrics, "scheduler_job_consecutive_failures", job="a", spider="a") == 1


RUNNING_SPANS = {
    "due, its crawl runs": ([SpiderHistory("a", T0 - 5 * H), SpiderHistory("b", T0 - H)], {"a"}, (T0 - H, T0 + 3 * H)),
    "never ran, its crawl runs": ([SpiderHistory("a")], {"a"}, (None, None)),
    "one due job runs, another due waits": ([SpiderHistory("a", T0 - 5 * H), SpiderHistory("b", T0 - 6 * H)], {"a"}, None),
    "a running job that is not due changes nothing": ([SpiderHistory("a", T0 - H)], {"a"}, (T0 - H - TOL, T0 + 3 * H)),
}  # fmt: skip


@pytest.mark.parametrize(("histories", "running", "span"), RUNNING_SPANS.values(), ids=RUNNING_SPANS.keys())
def test_a_plan_whose_due_jobs_all_run_holds_until_a_crawl_ends_or_the_next_due_time(histories, running, span):
    plan = decide_jobs(histories, T0, {}, DEFAULT)
    assert quiet_span(plan, histories, {}, DEFAULT, frozenset(running)) == span
