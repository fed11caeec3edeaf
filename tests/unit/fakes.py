"""Fakes for the loop's collaborators: a clock that never sleeps and a store with no server.

Only what the unit tests of the loop and the lease need; everything else is real (the lease, the
take-over, the history copy, the decision, jitter, observation).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2

from daemon.plan.decision import SpiderHistory

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
ELSEWHERE = "host=elsewhere boot=x pid=1 start=1"  # a holder that cannot be proven dead


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.wall = now
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.is_set()

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def unreachable() -> psycopg2.OperationalError:
    return psycopg2.OperationalError("could not connect to server: Connection refused")


@dataclass
class FakeStore:
    """The database as the loop sees it. `fail` (an exception) makes every statement raise it."""

    lock_free: bool = True
    previous_holder: str | None = None
    histories_by_spider: dict[str, SpiderHistory] = field(default_factory=dict)
    running: list[tuple[int, str | None, float]] = field(default_factory=list)
    run_still_ours: bool = True
    requests: list[tuple[int, list[str] | None]] = field(default_factory=list)
    fail: Exception | None = None
    closed: bool = False
    calls: list[str] = field(default_factory=list)
    published: list[tuple[str, ...]] = field(default_factory=list)

    def publish_jobs(self, jobs: Any, **kwargs: Any) -> None:
        self._call("publish_jobs")
        self.published.append(tuple(job.name for job in jobs))

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail is not None:
            raise self.fail

    def take_runner_lock(self, owner: str) -> tuple[bool, str | None]:
        self._call("take_runner_lock")
        return (True, self.previous_holder) if self.lock_free else (False, None)

    def touch_run(self, run_id: int) -> bool:
        self._call("touch_run")
        return self.run_still_ours

    def running_runs(self) -> list[tuple[int, str | None, float]]:
        self._call("running_runs")
        return list(self.running)

    def mark_stale(self, now: datetime) -> tuple[list[int], list[tuple[int, str]]]:
        self._call("mark_stale")
        return [], []

    def histories(self, spiders: Any) -> list[SpiderHistory]:
        self._call("histories")
        return [self.histories_by_spider.get(s, SpiderHistory(s)) for s in spiders]

    def idle_and_quiet(self) -> bool:
        return self.fail is None

    def take_requests(self, now: datetime) -> list[tuple[int, list[str] | None]]:
        self._call("take_requests")
        taken, self.requests = self.requests, []
        return taken

    def forget_runner_holder(self, owner: str) -> None:
        self._call("forget_runner_holder")

    def release_runner_lock(self) -> None:
        self._call("release_runner_lock")

    def close(self) -> None:
        self.closed = True


class Connector:
    """The lease's `connect`: hands out the one fake store, or raises while `down` is set."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.down: Exception | None = None
        self.count = 0

    def __call__(self, timeout: float | None) -> FakeStore:
        if self.down is not None:
            raise self.down
        self.count += 1
        self.store.closed = False
        return self.store


class FakeJournal:
    def pending(self) -> None:
        return None

    def own_pending(self) -> None:
        return None


class FakeRequests:
    def __init__(self) -> None:
        self.pending = threading.Event()
        self.asked: set[str] = set()
        self.pauses: dict[str, datetime | None] = {}

    def start(self) -> None:
        pass

    def new_term(self) -> None:
        self.pending.set()

    def take(self, store: Any, resolve: Any, now: datetime) -> set[str]:
        if not self.pending.is_set():
            return set()
        self.pending.clear()
        taken, self.asked = self.asked, set()
        return resolve(sorted(taken))


class FakeBatches:
    """Records what the loop asked to run; `during` runs inside an online run (as the runner's poll).

    `slots` None: each run is crawled to its end inside `online` (the Scrapyd engine). A number: runs
    overlap on that many slots, as on the local runner; a started job stays under way until the
    test `end`s it."""

    def __init__(self, slots: int | None = None) -> None:
        self.online_runs: list[tuple[str, ...]] = []
        self.offline_runs: list[datetime] = []
        self.during: Any = None
        self.offline_result = True
        self.left_running: set[str] = set()
        self.left: set[str] = set()
        self.reattached: list[tuple[str, ...]] = []
        self.slots = slots
        self.under_way: list[str] = []
        self.drained = False

    def online(self, store: Any, due: Any, now: datetime, slots: Any = None) -> bool:
        self.online_runs.append(tuple(job.name for job in due))
        self.reattached.append(tuple(sorted(self.left)))
        self.left = set()
        if self.slots is not None:
            assert len(self.under_way) + len(due) <= self.slots, "more crawls than slots"
            assert not {job.name for job in due} & set(self.under_way), "two crawls of one job"
            self.under_way += [job.name for job in due]
        if self.during is not None:
            self.during()
        return True

    def offline(self, now: datetime, cadences: Any) -> bool:
        if self.under_way:
            return False  # nothing beside runs recorded in PostgreSQL
        self.offline_runs.append(now)
        return self.offline_result

    def journaled(self) -> frozenset[str]:
        return frozenset()  # no run of the fail-safe under way

    def adopt(self, adopted: Any) -> None:
        raise AssertionError("nothing to adopt")

    def find_left_running(self, store: Any, now: datetime) -> None:
        """The remote crawls a former daemon left running: `left_running`, set by the test."""
        self.left = set(self.left_running)

    def reattaching(self) -> frozenset[str]:
        return frozenset(self.left)

    @property
    def busy(self) -> bool:
        return bool(self.under_way)

    def running(self) -> frozenset[str]:
        return frozenset(self.under_way) | self.reattaching()

    def free(self) -> int | None:
        return None if self.slots is None else self.slots - len(self.under_way)

    def end(self, name: str) -> None:
        """The test's crawl of `name` ended (its history is the test's to set)."""
        self.under_way.remove(name)

    def collect(self) -> int:
        return 0

    def drain(self, wake: Any) -> None:
        self.drained = True
        self.under_way.clear()


class Counter:
    """Any call counts: housekeeping's run_pending, a heartbeat's beat, a notifier's ping."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]
