"""The loop's rules, driven through `step(now)` with fakes for the database, the runs and the clock.

The lease, the take-over, the history copy, the decision, jitter and observation are the real ones;
nothing here sleeps or starts a process.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from daemon.jobs.catalog import Catalog
from daemon.plan.decision import Cadence, SpiderHistory
from daemon.loop.history import HistoryCopy
from daemon.plan.jitter import Jitter
from daemon.jobs.jobfile import JobDefaults, default_jobs
from daemon.leadership.lease import SETTLE_SECONDS, Lease, Role
from daemon.telemetry.metrics import Metrics, UnreadMetrics
from daemon.telemetry.observation import Observer
from daemon.loop.scheduler import Scheduler
from daemon.leadership.takeover import TakeOver
from tests.unit.fakes import (
    ELSEWHERE,
    T0,
    Connector,
    Counter,
    FakeBatches,
    FakeClock,
    FakeJournal,
    FakeRequests,
    FakeStore,
    unreachable,
)

INTERVAL = timedelta(hours=4)
TICK = 30.0


class Loop:
    """A Scheduler over fakes, and handles on them."""

    def __init__(self, store: FakeStore, spiders=("a", "b"), *, jitter=timedelta(0), draw=lambda high: high,
                 enabled=True, slots: int | None = None) -> None:  # fmt: skip
        self.clock = FakeClock()
        self.store = store
        self.connector = Connector(store)
        self.requests = FakeRequests()
        self.batches = FakeBatches(slots)
        self.housekeeping = Counter()
        self.heartbeat = Counter()
        self.notifier = Counter()
        self.jitter = Jitter(lambda name: jitter, draw=draw)
        observer = Observer(UnreadMetrics(), self.notifier, self.clock, every_s=INTERVAL.total_seconds(),  # type: ignore[arg-type]
                            interval_hours=4, timezone=ZoneInfo("UTC"))  # fmt: skip

        def new_term() -> None:
            self.requests.new_term()
            observer.new_term()
            self.jitter.new_term()

        self.lease = Lease(self.connector, self.clock, on_taken=new_term)  # type: ignore[arg-type]
        self.history = HistoryCopy(self.clock, Cadence(INTERVAL, timedelta(minutes=15)))
        defaults = JobDefaults(INTERVAL, 2 * INTERVAL, timedelta(minutes=15), 0, 0, jitter)
        self.catalog = Catalog(None, defaults, lambda: list(spiders), jobs=default_jobs(spiders, defaults),
                               spiders=spiders)  # fmt: skip
        settings = SimpleNamespace(enabled=enabled, tick_seconds=TICK, interval_hours=4, concurrency=1)
        self.reload = threading.Event()
        self.scheduler = Scheduler(
            settings, self.catalog, clock=self.clock, stop=threading.Event(), reload=self.reload,  # type: ignore[arg-type]
            wake=threading.Event(), lease=self.lease, takeover=TakeOver(FakeJournal()),  # type: ignore[arg-type]
            history=self.history, jitter=self.jitter, requests=self.requests, batches=self.batches,  # type: ignore[arg-type]
            observer=observer, housekeeping=self.housekeeping, heartbeat=self.heartbeat, notifier=self.notifier,
        )  # fmt: skip

    def step(self) -> float:
        return self.scheduler.step(self.clock.now())


def ran_recently(spider: str, hours_ago: float) -> SpiderHistory:
    return SpiderHistory(spider, T0 - timedelta(hours=hours_ago))


# ----------------------------------------------------------------- taking the lock, settling
def test_a_fresh_daemon_with_a_free_lock_runs_what_never_ran_at_its_first_step():
    loop = Loop(FakeStore())
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a", "b")]
    assert loop.lease.role is Role.LEADING


def test_a_daemon_whose_lock_is_held_elsewhere_stands_by_and_runs_nothing():
    loop = Loop(FakeStore(lock_free=False))
    assert loop.step() == TICK
    assert loop.lease.role is Role.STANDBY
    assert loop.batches.online_runs == []


def test_a_lock_taken_from_a_holder_that_may_still_run_settles_before_running_anything():
    loop = Loop(FakeStore(previous_holder=ELSEWHERE))
    wait = loop.step()
    assert wait == pytest.approx(SETTLE_SECONDS)
    assert loop.lease.role is Role.SETTLING
    loop.clock.advance(SETTLE_SECONDS - 1)
    assert loop.step() == pytest.approx(1.0)
    assert loop.batches.online_runs == []
    loop.clock.advance(1)
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a", "b")]


def test_a_lock_taken_from_a_holder_that_stopped_cleanly_costs_no_settle():
    loop = Loop(FakeStore(previous_holder=None))
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a", "b")]


def test_remote_crawls_left_running_are_re_attached_beside_what_is_due_and_never_sent_again():
    loop = Loop(FakeStore(previous_holder=None))
    loop.batches.left_running = {"a"}  # a's crawl still runs on its Scrapyd node
    assert loop.step() == 0
    assert loop.batches.online_runs == [("b",)]  # b starts at once, a is not sent a second time
    assert loop.batches.reattached == [("a",)]


def test_remote_crawls_left_running_are_re_attached_even_when_nothing_else_is_due():
    store = FakeStore(previous_holder=None, histories_by_spider={"a": ran_recently("a", 0), "b": ran_recently("b", 0)})
    loop = Loop(store)
    loop.batches.left_running = {"b"}
    loop.step()
    assert loop.batches.online_runs == [()] and loop.batches.reattached == [("b",)]
    assert loop.step() > 0 and loop.batches.online_runs == [()]  # re-attached once, then idle


def test_a_run_still_leased_by_a_live_daemon_is_waited_for_before_taking_over():
    store = FakeStore(running=[(7, ELSEWHERE, 2.0)])
    loop = Loop(store)
    assert loop.step() == 1.0
    assert loop.lease.role is Role.TAKING_OVER and "mark_stale" not in store.calls
    store.running = [(7, ELSEWHERE, 11.0)]  # its lease went stale
    assert loop.step() == 0
    assert "mark_stale" in store.calls and loop.batches.online_runs == [("a", "b")]


def test_a_run_now_request_made_while_settling_waits_for_the_settle_then_runs_a_spider_not_due():
    store = FakeStore(previous_holder=ELSEWHERE, histories_by_spider={"a": ran_recently("a", 1),
                                                                      "b": ran_recently("b", 1)})  # fmt: skip
    loop = Loop(store)
    loop.step()
    loop.requests.asked = {"b"}
    loop.requests.pending.set()
    assert not loop.scheduler._request_to_take()  # the loop still waits: a settling daemon leaves requests
    loop.clock.advance(SETTLE_SECONDS)
    assert loop.step() == 0
    assert loop.batches.online_runs == [("b",)]


# ----------------------------------------------------------------- jitter
def test_jitter_holds_back_a_run_due_by_its_interval_by_the_drawn_delay():
    store = FakeStore(histories_by_spider={"a": ran_recently("a", 3.5), "b": ran_recently("b", 1)})
    loop = Loop(store, jitter=timedelta(minutes=10), draw=lambda high: 120.0)
    assert loop.step() == pytest.approx(1800)  # the first decision: nothing due yet, a due in 30 min
    loop.clock.advance(1800)
    wait = loop.step()
    assert loop.batches.online_runs == [] and wait == pytest.approx(120)
    loop.clock.advance(120)
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a",)]


def test_jitter_never_holds_back_a_catch_up_at_the_first_decision_of_a_term():
    store = FakeStore(histories_by_spider={"a": ran_recently("a", 5), "b": ran_recently("b", 1)})
    loop = Loop(store, jitter=timedelta(minutes=10), draw=lambda high: 120.0)
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a",)]


def test_jitter_never_holds_back_a_run_now_request():
    store = FakeStore(histories_by_spider={"a": ran_recently("a", 3.9), "b": ran_recently("b", 1)})
    loop = Loop(store, jitter=timedelta(minutes=10), draw=lambda high: 500.0)
    loop.step()
    loop.clock.advance(0.1 * 3600)
    loop.requests.asked = {"a"}
    loop.requests.pending.set()
    assert loop.step() == 0
    assert loop.batches.online_runs == [("a",)]


# ----------------------------------------------------------------- giving way, the fail-safe
def test_a_runner_whose_run_was_failed_by_another_daemon_gives_way_mid_run_and_stands_by():
    store = FakeStore(run_still_ours=False)
    loop = Loop(store)

    def poll() -> None:
        loop.lease.runs_open([41])
        loop.clock.advance(2)
        loop.lease.keep()
        loop.lease.runs_open([])

    loop.batches.during = poll
    loop.step()
    assert loop.lease.role is Role.GIVING_WAY and loop.lease.giving_way.is_set()
    assert loop.lease.gave_way()
    assert loop.lease.role is Role.STANDBY and not loop.lease.giving_way.is_set() and store.closed


def test_the_daemon_that_was_running_the_spiders_runs_offline_when_postgresql_goes_away():
    store = FakeStore(histories_by_spider={"a": ran_recently("a", 1), "b": ran_recently("b", 1)})
    loop = Loop(store)
    loop.step()
    store.fail = unreachable()
    loop.connector.down = unreachable()
    assert loop.step() == 0
    assert loop.lease.role is Role.OFFLINE and len(loop.batches.offline_runs) == 1


def test_a_standby_never_runs_offline():
    store = FakeStore(lock_free=False)
    loop = Loop(store)
    loop.step()
    store.fail = unreachable()
    loop.step()
    assert loop.batches.offline_runs == [] and loop.lease.role is Role.STANDBY


def test_a_daemon_still_taking_over_never_runs_offline():
    store = FakeStore(running=[(7, ELSEWHERE, 2.0)])
    loop = Loop(store)
    loop.step()
    assert loop.lease.role is Role.TAKING_OVER
    store.fail = unreachable()
    loop.step()
    assert loop.batches.offline_runs == [] and loop.lease.role is Role.STANDBY


def test_a_statement_refused_with_a_sqlstate_is_no_reason_to_run_offline():
    store = FakeStore()
    loop = Loop(store)
    loop.step()
    class Refused(psycopg2.errors.DiskFull):  # type: ignore[name-defined,misc]
        pgcode = "53100"  # as the server sends it: a refusal, not an unreachable server

    store.fail = Refused("could not extend file")
    wait = loop.step()
    assert loop.batches.offline_runs == [] and 0 < wait <= TICK


def test_the_heartbeat_stops_while_postgresql_is_unreachable_and_the_backoff_grows_to_a_tick():
    store = FakeStore(lock_free=False)
    loop = Loop(store)
    store.fail = unreachable()
    loop.connector.down = unreachable()
    waits = [loop.step() for _ in range(8)]
    assert waits == sorted(waits) and waits[0] == 1.0 and waits[-1] == TICK
    assert loop.scheduler.db_failures == 8


def test_a_leader_that_reconnects_resumes_without_settling_and_keeps_running():
    store = FakeStore(histories_by_spider={"a": ran_recently("a", 1), "b": ran_recently("b", 1)})
    loop = Loop(store)
    loop.step()
    store.fail = unreachable()
    loop.step()
    store.fail = None
    store.previous_holder = loop.lease.me
    loop.step()
    assert loop.lease.role is Role.LEADING


def test_a_disabled_daemon_never_touches_the_database():
    loop = Loop(FakeStore(), enabled=False)
    assert loop.step() == TICK
    assert loop.connector.count == 0 and loop.batches.online_runs == []


def test_housekeeping_runs_only_when_no_spider_is_due():
    store = FakeStore()
    loop = Loop(store)
    loop.step()
    assert loop.housekeeping.named("run_pending") == []
    store.histories_by_spider = {"a": ran_recently("a", 0), "b": ran_recently("b", 0)}
    loop.history.invalidate()
    loop.step()
    assert len(loop.housekeeping.named("run_pending")) == 1


# ----------------------------------------------------------------- what the alerting rules read
def watched(loop: Loop) -> Metrics:
    """Real metrics in place of the unread ones, to read back what the loop reported."""
    metrics = Metrics()
    loop.scheduler.observer.metrics = metrics
    return metrics


def gauge(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_the_database_gauge_goes_to_0_while_postgresql_is_unreachable_and_back_to_1_when_it_returns():
    store = FakeStore(histories_by_spider={"a": ran_recently("a", 1), "b": ran_recently("b", 1)})
    loop = Loop(store)
    metrics = watched(loop)
    loop.step()
    assert gauge(metrics, "scheduler_database_up") == 1
    store.fail = unreachable()
    loop.connector.down = unreachable()
    loop.step()
    assert gauge(metrics, "scheduler_database_up") == 0
    loop.step()
    assert gauge(metrics, "scheduler_database_up") == 0
    store.fail = None
    loop.connector.down = None
    store.previous_holder = loop.lease.me
    loop.step()
    assert gauge(metrics, "scheduler_database_up") == 1


def test_the_database_shows_up_during_the_first_run_already_a_catch_up_that_may_last_hours():
    loop = Loop(FakeStore())
    metrics = watched(loop)
    seen: list[float | None] = []
    loop.batches.during = lambda: seen.append(gauge(metrics, "scheduler_database_up"))
    loop.step()
    assert seen == [1]


def test_a_disabled_daemon_never_reports_its_database_down():
    loop = Loop(FakeStore(), enabled=False)
    loop.connector.down = unreachable()
    metrics = watched(loop)
    loop.step()
    assert gauge(metrics, "scheduler_database_up") == 1


def test_each_job_exports_its_interval_its_pause_and_its_failure_streak():
    failing = SpiderHistory("a", T0 - timedelta(hours=9), consecutive_failures=3,
                            last_failure_at=T0 - timedelta(minutes=1))  # fmt: skip
    loop = Loop(FakeStore(histories_by_spider={"a": failing, "b": ran_recently("b", 1)}))
    loop.requests.pauses = {"b": None}
    metrics = watched(loop)
    loop.step()
    assert gauge(metrics, "scheduler_job_interval_seconds", job="a", spider="a") == INTERVAL.total_seconds()
    assert gauge(metrics, "scheduler_job_interval_seconds", job="b", spider="b") == INTERVAL.total_seconds()
    assert gauge(metrics, "scheduler_job_consecutive_failures", job="a", spider="a") == 3
    assert gauge(metrics, "scheduler_job_consecutive_failures", job="b", spider="b") == 0
    assert gauge(metrics, "scheduler_job_paused", job="a") == 0
    assert gauge(metrics, "scheduler_job_paused", job="b") == 1
    loop.requests.pauses = {}
    loop.step()
    assert gauge(metrics, "scheduler_job_paused", job="b") == 0


def test_a_job_no_longer_scheduled_leaves_no_series_behind_so_it_never_alerts():
    loop = Loop(FakeStore(histories_by_spider={"a": ran_recently("a", 1), "b": ran_recently("b", 1)}))
    metrics = watched(loop)
    loop.step()
    assert gauge(metrics, "scheduler_last_success_timestamp_seconds", job="b", spider="b") is not None
    a, _ = loop.catalog.jobs
    loop.catalog.jobs = (dataclasses.replace(a, spider="other"),)  # b removed, a now runs another spider
    loop.step()
    for name in ("scheduler_job_interval_seconds", "scheduler_job_consecutive_failures",
                 "scheduler_last_success_timestamp_seconds"):  # fmt: skip
        assert gauge(metrics, name, job="b", spider="b") is None
        assert gauge(metrics, name, job="a", spider="a") is None
        assert gauge(metrics, name, job="a", spider="other") is not None
    assert gauge(metrics, "scheduler_job_paused", job="b") is None
    assert gauge(metrics, "scheduler_job_paused", job="a") == 0
