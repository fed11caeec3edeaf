"""The runs under way at once (daemon/loop/runs.py), with the engine, the store and the lease as fakes:
each crawl's end ends only its own run, and a run is ended once all its crawls have; giving way
drops every open run at once; a stop ends each run as its crawls end."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from daemon.engines.engine import RemoteRun
from daemon.jobs.crawl import CrawlOutcome
from daemon.jobs.jobfile import JobDefaults, default_jobs
from daemon.loop.runs import OpenRuns
from tests.unit.fakes import Counter, FakeClock

H = timedelta(hours=1)
JOBS = {job.name: job for job in default_jobs(["long", "quick", "flaky"], JobDefaults(H, 2 * H, H, 0, 0, timedelta(0)))}


class Engine:
    """Crawls that end when the test says so."""

    def __init__(self) -> None:
        self.under_way: dict[str, tuple[Any, Any]] = {}  # job -> (token, on_finish)
        self.ending: list[tuple[str, bool]] = []

    not_started = None

    def launch(self, job, on_start, on_finish, on_spawn=lambda token, pid: None, on_dispatch=None) -> bool:
        token = on_start(job)
        if token is None:
            return False
        self.under_way[job.name] = (token, on_finish)
        return True

    @property
    def busy(self) -> int:
        return len(self.under_way)

    def free(self) -> int:
        return 2 - len(self.under_way)

    def poll(self) -> int:
        ended, self.ending = self.ending, []
        for name, ok in ended:
            token, on_finish = self.under_way.pop(name)
            on_finish(token, CrawlOutcome(name, ok, None if ok else "error", "m", 0, "finished", 1, 0, None, 1.0))
        return len(ended)


class Store:
    def __init__(self) -> None:
        self.runs: list[int] = []
        self.crawls = 0
        self.finished: list[int] = []

    def start_run(self, now, count, owner) -> int:
        self.runs.append(len(self.runs) + 1)
        return self.runs[-1]

    def start_spider(self, run_id, spider, now, **kwargs) -> int:
        self.crawls += 1
        return self.crawls

    def finish_spider(self, spider_run_id, *args) -> tuple[bool, None]:
        self.finished.append(spider_run_id)
        return True, None  # written; no baseline verdict


class Lease:
    def __init__(self, store: Store) -> None:
        self.store, self.me = store, "host:1"
        self.giving_way = threading.Event()
        self.open: list[list[int]] = []
        self.gave = 0

    def runner_store(self) -> Store:
        return self.store

    def runs_open(self, ids) -> None:
        self.open.append(list(ids))

    def gave_way(self) -> bool:
        self.gave += 1
        return True


class History:
    def __init__(self) -> None:
        self.folded: list[str] = []

    def invalidate(self) -> None:
        pass

    def fold(self, results) -> None:
        self.folded += [r.spider for r in results]


def open_runs():
    engine, store = Engine(), Store()
    lease, ended = Lease(store), []
    runs = OpenRuns(engine, lease, History(), Counter(), FakeClock(), threading.Event(), None,  # type: ignore[arg-type]
                    verdict=lambda due, outcomes, left, why: (all(o.ok for o in outcomes) and len(outcomes) == len(due), None),
                    end=lambda recorder, due, outcomes, ok, error: ended.append((recorder.run_id, ok)) or True)  # fmt: skip
    return runs, engine, store, lease, ended


def test_each_crawls_end_ends_only_its_own_run_and_the_lease_watches_every_open_run():
    runs, engine, store, lease, ended = open_runs()
    assert runs.start(store, [JOBS["long"]], FakeClock().now())  # type: ignore[arg-type]
    assert runs.start(store, [JOBS["quick"]], FakeClock().now())  # type: ignore[arg-type]
    assert runs.running() == {"long", "quick"} and runs.free() == 0 and lease.open[-1] == [1, 2]
    engine.ending = [("quick", True)]
    assert runs.collect() == 1
    assert ended == [(2, True)] and runs.running() == {"long"} and runs.free() == 1 and lease.open[-1] == [1]
    assert runs.start(store, [JOBS["flaky"]], FakeClock().now())  # type: ignore[arg-type]
    engine.ending = [("flaky", False), ("long", True)]
    runs.collect()
    assert sorted(ended) == [(1, True), (2, True), (3, False)] and not runs.busy and lease.open[-1] == []


def test_a_daemon_that_gives_way_drops_every_open_run_once_its_crawls_are_killed():
    runs, engine, store, lease, ended = open_runs()
    runs.start(store, [JOBS["long"], JOBS["quick"]], FakeClock().now())  # type: ignore[arg-type]
    lease.giving_way.set()
    engine.ending = [("quick", False)]
    runs.collect()
    assert runs.busy and lease.gave == 0  # a crawl is still being killed
    engine.ending = [("long", False)]
    runs.collect()
    assert not runs.busy and lease.gave == 1 and ended == []  # the new runner fails the runs


def test_a_run_none_of_whose_crawls_could_be_recorded_is_ended_at_once():
    runs, engine, store, lease, ended = open_runs()
    store.start_spider = lambda *args, **kwargs: None  # type: ignore[method-assign]
    refusing = {"launch": lambda self, job, on_start, on_finish, on_spawn=None, on_dispatch=None: False}
    runs.runner = type("Refusing", (Engine,), refusing)()
    assert runs.start(store, [JOBS["quick"]], FakeClock().now()) is False  # type: ignore[arg-type]
    assert ended == [(1, False)] and not runs.busy


def test_the_running_flag_stays_up_until_the_last_open_runs_crawls_end():
    runs, engine, store, lease, ended = open_runs()
    runs.start(store, [JOBS["long"]], FakeClock().now())  # type: ignore[arg-type]
    runs.start(store, [JOBS["quick"]], FakeClock().now())  # type: ignore[arg-type]
    engine.ending = [("quick", True)]
    runs.collect()
    assert runs.observer.named("run_stopped") == []  # type: ignore[attr-defined]
    engine.ending = [("long", True)]
    runs.collect()
    assert runs.observer.named("run_stopped") == [()]  # type: ignore[attr-defined]


def test_a_stop_that_leaves_remote_crawls_on_their_nodes_ends_each_open_run_saying_how_many_were_left():
    runs, engine, store, lease, ended = open_runs()
    verdicts: list[tuple[int, int]] = []
    runs.verdict = lambda due, outcomes, left, why: verdicts.append((len(outcomes), left)) or (False, None)
    runs.start(store, [JOBS["long"]], FakeClock().now())  # type: ignore[arg-type]
    runs.start(store, [JOBS["quick"], JOBS["flaky"]], FakeClock().now())  # type: ignore[arg-type]
    engine.ending = [("quick", True)]
    runs.collect()
    assert runs.busy and verdicts == []
    engine.under_way.clear()  # the Scrapyd engine's stop: every crawl left on its node, none told ended
    runs.collect()
    assert not runs.busy and sorted(verdicts) == [(0, 1), (1, 1)] and sorted(ended) == [(1, False), (2, False)]


def test_the_remote_crawls_a_former_daemon_left_are_re_attached_as_part_of_the_next_run_beside_its_new_crawls():
    runs, engine, store, lease, ended = open_runs()
    attached: list[Any] = []

    def attach(run, on_finish, on_dispatch=None) -> None:
        attached.append(run.jobid)
        engine.under_way[run.job.name] = (run.token, on_finish)

    engine.attach = attach  # type: ignore[attr-defined]
    left = RemoteRun(77, JOBS["long"], "http://a:6800", "long-1", 5.0)
    assert runs.start(store, [JOBS["quick"]], FakeClock().now(), left=[(left, FakeClock().now())])  # type: ignore[arg-type]
    assert attached == ["long-1"] and runs.running() == {"long", "quick"} and store.crawls == 1  # one new row
    engine.ending = [("quick", True)]
    runs.collect()
    assert ended == [] and runs.running() == {"long"}
    engine.ending = [("long", True)]
    runs.collect()
    assert ended == [(1, True)] and not runs.busy


class Journal:
    def __init__(self) -> None:
        self.lines: list[tuple] = []

    def start_run(self, now, names, owner) -> str:
        self.lines.append(("run", tuple(names)))
        return f"j-{len(self.lines)}"

    def spawned(self, run, spider, started_at, pid, **kwargs) -> None:
        self.lines.append(("spawn", run, pid))

    def spider(self, run, started_at, finished_at, outcome, **kwargs) -> None:
        self.lines.append(("spider", run, outcome.name))

    def end_run(self, run, finished_at, ok, error) -> None:
        self.lines.append(("end", run, ok, error))


def test_the_fail_safes_runs_overlap_too_each_recorded_in_the_journal_and_ended_by_its_own_crawls():
    runs, engine, store, lease, ended = open_runs()
    runs.journal = Journal()  # type: ignore[assignment]
    ends: list[tuple] = []
    runs.end = lambda recorder, due, outcomes, ok, error: ends.append((recorder.run, ok)) or True  # type: ignore[assignment]
    assert runs.start_offline([JOBS["long"]], FakeClock().now())  # type: ignore[arg-type]
    assert runs.start_offline([JOBS["quick"]], FakeClock().now())  # type: ignore[arg-type]
    assert runs.running() == {"long", "quick"} and not runs.online and lease.open[-1] == [None, None]
    engine.ending = [("quick", True)]
    runs.collect()
    assert ends == [("j-2", True)] and runs.running() == {"long"} and store.crawls == 0  # nothing in PostgreSQL
    assert ("spider", "j-2", "quick") in runs.journal.lines  # type: ignore[attr-defined]


def test_a_fail_safe_run_under_way_when_this_daemon_gives_way_is_journaled_failed_never_left_open():
    runs, engine, store, lease, ended = open_runs()
    runs.journal = Journal()  # type: ignore[assignment]
    runs.start_offline([JOBS["long"]], FakeClock().now())  # type: ignore[arg-type]
    lease.giving_way.set()
    engine.ending = [("long", False)]
    runs.collect()
    assert not runs.busy and lease.gave == 1
    [(_, run, ok, error)] = [line for line in runs.journal.lines if line[0] == "end"]  # type: ignore[attr-defined]
    assert (run, ok) == ("j-1", False) and "another daemon took the runner lock" in error


def test_the_fail_safe_learns_each_crawl_as_it_ends_not_at_its_runs_end_so_it_never_runs_it_again_meanwhile():
    runs, engine, store, lease, ended = open_runs()
    runs.journal = Journal()  # type: ignore[assignment]
    runs.end = lambda recorder, due, outcomes, ok, error: True  # type: ignore[assignment]
    runs.start_offline([JOBS["long"], JOBS["quick"]], FakeClock().now())  # type: ignore[arg-type]
    engine.ending = [("quick", True)]
    runs.collect()
    assert runs.history.folded == ["quick"] and runs.running() == {"long"}  # type: ignore[attr-defined]


def test_a_fail_safe_run_adopted_once_postgres_is_back_ends_in_postgres_and_its_job_stays_under_way():
    runs, engine, store, lease, ended = open_runs()
    runs.journal = Journal()  # type: ignore[assignment]
    runs.start_offline([JOBS["long"], JOBS["quick"]], FakeClock().now())  # type: ignore[arg-type]
    for job, pid in (("long", 301), ("quick", 302)):
        runs.runs[0].recorder.spawned(engine.under_way[job][0], pid)
    engine.ending = [("quick", True)]
    runs.collect()
    [journal_id] = runs.journaled()
    runs.adopt({journal_id: (41, {301: 7})})  # the take-over wrote the run 41, long's crawl as row 7
    assert runs.online and not runs.journaled() and lease.open[-1] == [41] and runs.running() == {"long"}
    engine.ending = [("long", True)]
    runs.collect()
    assert store.finished == [7] and ended == [(41, True)]  # both crawls in the verdict, ended in PostgreSQL
    assert not any(line[0] == "end" for line in runs.journal.lines)  # type: ignore[attr-defined]
