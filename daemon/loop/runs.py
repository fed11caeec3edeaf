"""Runs under way at once, on an engine that overlaps them (both engines; issue 20).

A run is the crawls started by one decision: one `scheduler_state` row, its crawls' `spider_runs`
rows, a verdict once its last crawl has ended. The loop never waits for a run: when a slot frees it
decides again and gives the slot to the most overdue due job, as a new run beside those under way.
PostgreSQL refuses two crawls of one job 'running' at once (sql/016_runs_overlap.sql); this object
also never starts a job that has a crawl under way (`running`).

`OpenRuns` owns the runs under way: it starts them (`start`, re-attaching the remote crawls a
former daemon left running as part of the run), hears each crawl's end from the engine (`collect`),
and ends a run (its verdict, its row) once its crawls are over. A daemon that gives way (another
took the runner lock) kills its crawls, or leaves its remote crawls on their nodes, and leaves every
open run to the new runner to fail, as a blocking run did. A daemon that stops leaves its remote
crawls on their nodes for the next daemon: each run whose crawls were left so is ended failed,
saying so, its crawls' rows still 'running' for the next daemon to re-attach.

While PostgreSQL is unreachable the fail-safe's runs overlap too (`start_offline`): recorded in the
journal, each started into the slots free then, the lease probing for PostgreSQL meanwhile. The
fail-safe starts nothing beside runs recorded in PostgreSQL (their ends are journaled when it does
not take them). Once PostgreSQL is back and the lock this daemon's again, the fail-safe's runs still
under way are adopted (`adopt`), not waited for: the take-over writes the journal, these runs and
their crawls 'running' (daemon/leadership/takeover.py), and each such run is handed a database
recorder, its crawls' ends and its own written to PostgreSQL from then on. The loop then decides
beside them at once: a job under way is in `running`, and PostgreSQL's index refuses it a second
'running' crawl.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg2
import structlog

from daemon.records.db import first_line

from daemon.system.clock import Clock
from daemon.jobs.crawl import CrawlOutcome
from daemon.engines.engine import Engine, RemoteRun
from daemon.loop.history import HistoryCopy
from daemon.jobs.jobfile import Job
from daemon.leadership.lease import Lease
from daemon.telemetry.observation import Observer
from daemon.loop.recording import DatabaseRecorder, JournalRecorder
from daemon.records.journal import Journal
from daemon.records.store import Store

log = structlog.get_logger("daemon.scheduler")

# How often the crawls under way are checked between decisions (timeouts, cancels, the lease's
# probe). A crawl's end wakes the loop at once (its process's exit); this only bounds the rest.
POLL_SECONDS = 0.1

GAVE_WAY_MESSAGE = "another daemon took the runner lock; this daemon killed its crawls (never two runners)"

# (recorder, due, outcomes, ok, error) -> the run's end written (daemon.loop.batch.Batches._end)
EndRun = Callable[["DatabaseRecorder | JournalRecorder", Sequence[Job], list[CrawlOutcome], bool, "str | None"], bool]
# (due, outcomes, left_running, why_not_started) -> (ok, error) (daemon.loop.batch.verdict)
Verdict = Callable[[Sequence[Job], Sequence[CrawlOutcome], int, "str | None"], "tuple[bool, str | None]"]


@dataclass
class OpenRun:
    recorder: DatabaseRecorder | JournalRecorder  # the journal's: a run of the offline fail-safe
    due: list[Job]
    started: list[str] = field(default_factory=list)  # the jobs whose crawl began
    outcomes: list[CrawlOutcome] = field(default_factory=list)
    why_not_started: str | None = None  # what the engine said of the jobs it did not start (None: stopping)
    rows: dict[object, int] = field(default_factory=dict)  # adopted: the journal's crawl token -> its row

    @property
    def crawling(self) -> int:
        return len(self.started) - len(self.outcomes)


class OpenRuns:
    def __init__(self, runner: Engine, lease: Lease, history: HistoryCopy, observer: Observer, clock: Clock,
                 stop: threading.Event, journal: Journal, *, verdict: Verdict, end: EndRun) -> None:  # fmt: skip
        self.runner = runner
        self.lease = lease
        self.journal = journal
        self.history = history
        self.observer = observer
        self.clock = clock
        self.stop = stop
        self.verdict = verdict
        self.end = end
        self.runs: list[OpenRun] = []

    # ----------------------------------------------------------------- questions
    @property
    def busy(self) -> bool:
        """Some run is under way (its crawls, or its end still to write)."""
        return bool(self.runs)

    @property
    def online(self) -> bool:
        """Some run recorded in PostgreSQL is under way (the fail-safe starts nothing beside it)."""
        return any(run.recorder.run_id is not None for run in self.runs)

    def running(self) -> frozenset[str]:
        """The jobs with a crawl under way: never started again until it has ended."""
        names: set[str] = set()
        for run in self.runs:
            ended = {outcome.name for outcome in run.outcomes}
            names.update(name for name in run.started if name not in ended)
        return frozenset(names)

    def free(self) -> int:
        """Slots free now: the engine's (SCHEDULER_CONCURRENCY less the crawls under way; a Scrapyd
        node's slots not taken, by our crawls or others')."""
        return self.runner.free()

    # ----------------------------------------------------------------- a run's life
    def start(self, store: Store, due: Sequence[Job], now: datetime, *,
              slots: Mapping[str, datetime] | None = None,
              left: Sequence[tuple[RemoteRun, datetime]] = ()) -> bool:  # fmt: skip
        """One run of `due` (at most the free slots), its crawls started now, and of `left` (remote
        crawls a former daemon left running, and their starts: re-attached, never sent again);
        False when not one could be recorded as started (the run is then ended at once, failed).
        `slots`: job -> the calendar slot its crawl covers."""
        count = len(due) + len(left)
        log.info("run_started", message=f"Starting spider run for {count} spider(s)", spiders=[job.name for job in due],
                 spider_count=count, under_way=sorted(self.running()),
                 **({"reattach": [r.job.name for r, _ in left]} if left else {}))  # fmt: skip
        recorder = DatabaseRecorder(self.lease.runner_store, self.clock, store.start_run(now, count, self.lease.me),
                                    slots)
        run = self._open(OpenRun(recorder, [*(r.job for r, _ in left), *due]), now)
        for remote, started_at in left:
            recorder.started_at[remote.token] = started_at
            self.runner.attach(remote, lambda token, outcome, run=run: self._ended(run, token, outcome),
                               recorder.dispatched)  # fmt: skip
            run.started.append(remote.job.name)
        return self._launch(run, due)

    def start_offline(self, due: Sequence[Job], now: datetime) -> bool:
        """One run of the fail-safe (PostgreSQL unreachable): `due` (at most the free slots), its
        crawls started now and recorded in the journal; False when not one could be started."""
        names = [job.name for job in due]
        log.warning("run_started", message=f"Starting spider run for {len(due)} spider(s) while PostgreSQL is "
                    "unreachable (recorded in the local journal)", spiders=names, spider_count=len(due),
                    under_way=sorted(self.running()), offline=True)  # fmt: skip
        recorder = JournalRecorder(self.journal, self.clock, self.journal.start_run(now, names, self.lease.me))
        return self._launch(self._open(OpenRun(recorder, list(due)), now), due)

    def _open(self, run: OpenRun, now: datetime) -> OpenRun:
        self.runs.append(run)
        self._lease_runs()
        self.observer.run_started(now)
        return run

    def _launch(self, run: OpenRun, due: Sequence[Job]) -> bool:
        for job in due:
            if self.stop.is_set() or self.lease.giving_way.is_set():
                log.info("spiders_not_started", spiders=[j.name for j in due if j.name not in run.started],
                         reason="lock_lost" if self.lease.giving_way.is_set() else "stopping")  # fmt: skip
                break
            if not self.runner.launch(job, run.recorder.started, lambda token, outcome, run=run: self._ended(run, token, outcome),
                                      run.recorder.spawned, run.recorder.dispatched):  # fmt: skip
                run.why_not_started = self.runner.not_started or "their records could not be written"
                if self.runner.not_started is None:  # the engine says its own reason
                    log.warning("spiders_not_started", spiders=[j.name for j in due if j.name not in run.started],
                                reason="record_failed")  # fmt: skip
                break
            run.started.append(job.name)
        if not run.started:
            self.collect()  # nothing to wait for: its end (failed, none started) is written now
        return bool(run.started)

    def _ended(self, run: OpenRun, token: object, outcome: CrawlOutcome) -> None:
        run.recorder.finished(run.rows.get(token, token), outcome)
        run.outcomes.append(outcome)
        if isinstance(run.recorder, JournalRecorder):
            # The fail-safe's next decision reads the history copy: it learns this crawl now, not
            # at its run's end, else a crawl ended beside another of its run would run again.
            self.history.fold([run.recorder.results[-1].result()])
        else:
            self.history.invalidate()  # the next decision reads this crawl's row

    def journaled(self) -> frozenset[str]:
        """The journal ids of the fail-safe's runs under way."""
        return frozenset(run.recorder.run for run in self.runs if isinstance(run.recorder, JournalRecorder))

    def adopt(self, adopted: Mapping[str, tuple[int, Mapping[object, int]]]) -> None:
        """PostgreSQL is back and the runner lock ours: each fail-safe run in `adopted` (journal id ->
        its run's row and its crawls' rows under way, written 'running': Store.adopt) is recorded in
        PostgreSQL from now on; its crawls ended so far stay in its results, for its verdict."""
        for run in self.runs:
            journaled = run.recorder
            if not isinstance(journaled, JournalRecorder) or journaled.run not in adopted:
                continue
            run_id, rows = adopted[journaled.run]
            recorder = DatabaseRecorder(self.lease.runner_store, self.clock, run_id)
            recorder.results = list(journaled.results)
            for token, (crawl, started_at) in journaled.under_way().items():
                if crawl in rows:
                    run.rows[token] = rows[crawl]
                    recorder.started_at[rows[crawl]] = started_at
            run.recorder = recorder
            log.info("run_adopted", message="PostgreSQL is back: a run of the fail-safe under way is recorded "
                     "there from now on", run_id=run_id, journal_id=journaled.run, under_way=sorted(
                         j for j in run.started if j not in {o.name for o in run.outcomes}))  # fmt: skip
        self._lease_runs()
        self.history.invalidate()

    def collect(self) -> int:
        """Hear the crawls that ended and end the runs whose crawls are all over; how many crawls
        ended. Called between decisions, and at once when a crawl's process exits."""
        ended = self.runner.poll() if self.runner.busy else 0
        if self.lease.giving_way.is_set():
            if not self.runner.busy and self.runs:
                self._give_way()
            return ended
        # The engine holds no crawl: those of a run not ended were left on their nodes (a stop).
        left = not self.runner.busy
        for run in [r for r in self.runs if r.crawling == 0 or left]:
            self.runs.remove(run)  # before its end is written: a refusal raises, and it is not ended twice
            self._lease_runs()
            self._end(run)
        return ended

    def _end(self, run: OpenRun) -> None:
        if not self.runs:
            self.observer.run_stopped()  # the `running` gauge and flag: until the last open run's crawls end
        for r in run.recorder.results:
            self.observer.crawl_finished(r.outcome, r.started_at, r.suspect)
        ok, error = self.verdict(run.due, run.outcomes, run.crawling, run.why_not_started)
        self.end(run.recorder, run.due, run.outcomes, ok, error)

    def _give_way(self) -> None:
        """Another daemon took the runner lock: every crawl is killed; the open runs and their rows
        are the new runner's to fail. A fail-safe run's end is journaled as a failure, so the
        replay does not read it as a run whose daemon died."""
        self.observer.run_stopped()
        for run in self.runs:
            if isinstance(run.recorder, JournalRecorder):
                self.journal.end_run(run.recorder.run, self.clock.now(), False, GAVE_WAY_MESSAGE)
        self.runs.clear()
        self._lease_runs()
        self.history.invalidate()
        if self.lease.gave_way():
            self.observer.gave_way()

    def drain(self, wake: threading.Event) -> None:
        """At shutdown: the engine stops every crawl (SIGTERM, SIGKILL after the grace); each run's
        end is written as its crawls end, so nothing is left 'running'."""
        while self.runs:
            try:
                self.collect()
            except psycopg2.Error as exc:  # a refusal: that run's end went to the journal
                log.warning("run_end_refused", error=first_line(exc))
            if self.runs:
                wake.clear()
                self.clock.wait(wake, POLL_SECONDS)

    def _lease_runs(self) -> None:
        self.lease.runs_open([run.recorder.run_id for run in self.runs])
