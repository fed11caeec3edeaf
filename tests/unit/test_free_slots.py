"""Every job on its own clock (issue 20): the loop never waits for a run. A slot that frees is given
at once to the most overdue due job, beside the crawls still under way; a job under way is never
started twice. Driven through `step(now)` with runs that overlap on a fixed number of slots."""

from __future__ import annotations

from datetime import timedelta

from structlog.testing import capture_logs

from daemon.plan.decision import SpiderHistory
from daemon.leadership.lease import Role
from daemon.loop.runs import POLL_SECONDS
from tests.unit.fakes import T0, FakeStore, unreachable
from tests.unit.test_loop import TICK, Loop


def succeeded(loop: Loop, name: str) -> None:
    """`name`'s crawl ended well now: its slot is free and its history says so."""
    loop.batches.end(name)
    loop.store.histories_by_spider[name] = SpiderHistory(name, loop.clock.now())
    loop.history.invalidate()


def test_the_most_overdue_due_jobs_take_the_free_slots_and_the_rest_wait_for_one():
    store = FakeStore(histories_by_spider={"a": SpiderHistory("a", T0 - timedelta(hours=5)),
                                           "b": SpiderHistory("b", T0 - timedelta(hours=9))})  # fmt: skip
    loop = Loop(store, spiders=("a", "b", "c"), slots=2)
    assert loop.step() == 0
    assert loop.batches.online_runs == [("c", "b")]  # never ran, then the most overdue
    assert loop.step() == TICK  # every slot taken: the wait ends at a crawl's end, a request or the tick
    assert loop.batches.online_runs == [("c", "b")]


def test_a_slot_freed_by_a_short_crawl_goes_at_once_to_the_job_waiting_while_a_long_crawl_goes_on():
    loop = Loop(FakeStore(), spiders=("long", "quick", "flaky"), slots=2)
    loop.step()
    [first] = loop.batches.online_runs
    waiting = ({"long", "quick", "flaky"} - set(first)).pop()
    short = next(name for name in first if name != "long") if "long" in first else first[0]
    loop.clock.advance(1)
    succeeded(loop, short)
    assert loop.step() == 0
    assert loop.batches.online_runs[1] == (waiting,)  # a new run beside the one under way
    assert short not in loop.batches.running()


def test_a_job_whose_crawl_is_under_way_is_never_started_again_however_overdue_it_becomes():
    loop = Loop(FakeStore(), spiders=("long", "quick"), slots=2)
    loop.step()
    assert sorted(loop.batches.online_runs[0]) == ["long", "quick"]
    for _ in range(3):
        succeeded(loop, "quick")
        loop.clock.advance(5 * 3600)  # past the 4 h interval of both
        loop.history.invalidate()
        loop.step()
        assert loop.batches.online_runs[-1] == ("quick",)
    assert [run for run in loop.batches.online_runs if "long" in run] == [loop.batches.online_runs[0]]


def test_a_run_now_request_made_while_every_slot_is_taken_waits_and_takes_the_next_free_slot():
    store = FakeStore(histories_by_spider={"b": SpiderHistory("b", T0 - timedelta(hours=1))})
    loop = Loop(store, spiders=("a", "b"), slots=1)
    loop.step()
    assert loop.batches.online_runs == [("a",)]
    loop.requests.asked = {"b"}
    loop.requests.pending.set()
    loop.step()
    assert loop.batches.online_runs == [("a",)]  # no slot: the request is kept, not dropped
    loop.clock.advance(2)
    succeeded(loop, "a")
    loop.step()
    assert loop.batches.online_runs == [("a",), ("b",)]


def test_housekeeping_waits_while_due_jobs_wait_for_a_slot_and_runs_once_nothing_is_due():
    loop = Loop(FakeStore(), spiders=("a", "b"), slots=1)
    loop.step()
    loop.step()
    assert loop.housekeeping.named("run_pending") == []
    succeeded(loop, "a")
    loop.step()
    succeeded(loop, "b")
    loop.step()
    assert loop.housekeeping.named("run_pending") == [()]


def test_postgresql_lost_while_crawls_run_lets_them_go_on_and_starts_nothing_offline_beside_them():
    loop = Loop(FakeStore(), spiders=("long", "quick"), slots=1)
    loop.step()
    assert loop.batches.online_runs == [("long",)]
    loop.store.fail = unreachable()
    with capture_logs() as logs:
        assert loop.step() == POLL_SECONDS
        assert loop.step() == POLL_SECONDS  # collecting the crawls under way; the probe re-takes the lock
    assert loop.lease.role is Role.OFFLINE and loop.batches.offline_runs == []
    assert [e["event"] for e in logs if e["event"] == "runner_lock_connection_lost"] == ["runner_lock_connection_lost"]
    loop.batches.end("long")  # once nothing runs, the fail-safe may run what is due
    loop.step()
    assert loop.batches.offline_runs
