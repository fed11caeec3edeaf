"""Runs: the crawls started by one decision, recorded as they happen.

Both engines overlap their runs (daemon/loop/runs.py: the loop never waits for one), online and
offline alike. A run's end is written here (`_end`): to PostgreSQL or, when it does not take it,
to the journal; a run of the offline fail-safe (PostgreSQL unreachable) to the journal, unless
PostgreSQL came back while it ran (it was adopted: its end is written to PostgreSQL).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg2
import structlog

from daemon.records import db
from daemon.system.clock import Clock
from daemon.jobs.catalog import Catalog
from daemon.jobs.crawl import CrawlOutcome
from daemon.engines.engine import Engine, RemoteRun
from daemon.plan.decision import Cadence
from daemon.loop.history import HistoryCopy
from daemon.jobs.jobfile import Job, make_job
from daemon.records.journal import Journal
from daemon.leadership.lease import Lease
from daemon.telemetry.observation import Observer
from daemon.loop.recording import DatabaseRecorder, JournalRecorder
from daemon.loop.runs import OpenRuns
from daemon.plan.slots import take_slots, waiting
from daemon.records.store import Store

log = structlog.get_logger("daemon.scheduler")


def unreachable(exc: psycopg2.Error) -> bool:
    """The server cannot be reached at all (as opposed to refusing a statement with a SQLSTATE)."""
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) and not exc.pgcode


def verdict(due: Sequence[Job], outcomes: Sequence[CrawlOutcome], *, left_running: int = 0,
            why_not_started: str | None = None) -> tuple[bool, str | None]:  # fmt: skip
    """A run succeeds when every due job was started and succeeded. `left_running`: remote crawls
    the daemon's stop left on their nodes (the next daemon re-attaches); `why_not_started`: what the
    runner said of the jobs it did not start (None: the daemon was stopping)."""
    failed = [o for o in outcomes if not o.ok]
    not_started = len(due) - len(outcomes) - left_running
    if not failed and not not_started and not left_running:
        return True, None
    parts = [f"{o.name}: {o.message}" for o in failed]
    if left_running:
        parts.append(f"{left_running} crawl(s) left running on their Scrapyd nodes for the next daemon")
    if not_started:
        parts.append(f"{not_started} spider(s) not started: {why_not_started or 'the daemon was stopping'}")
    return False, "; ".join(parts)


class Batches:
    def __init__(self, runner: Engine, lease: Lease, journal: Journal, history: HistoryCopy,
                 observer: Observer, catalog: Catalog, clock: Clock, stop: threading.Event) -> None:  # fmt: skip
        self.runner = runner
        self.lease = lease
        self.journal = journal
        self.history = history
        self.observer = observer
        self.catalog = catalog
        self.clock = clock
        self.stop = stop
        self._left: list[tuple[RemoteRun, datetime]] = []  # remote crawls to re-attach, and their starts
        # Runs under way at once, the loop never waiting for one (daemon/loop/runs.py).
        self.open = OpenRuns(runner, lease, history, observer, clock, stop, journal,
                             verdict=lambda due, outcomes, left, why: verdict(due, outcomes, left_running=left,
                                                                              why_not_started=why),
                             end=self._end)  # fmt: skip

    # ----------------------------------------------------------------- runs under way
    @property
    def busy(self) -> bool:
        """Runs are under way beside the loop."""
        return self.open.busy

    def running(self) -> frozenset[str]:
        """The jobs not to start now: a crawl of theirs is under way, or is re-attached next."""
        return self.open.running() | self.reattaching()

    def free(self) -> int:
        """Slots free for a new run now."""
        return self.open.free()

    def collect(self) -> int:
        """The crawls that ended since the last call, their runs ended when all are over."""
        return self.open.collect()

    def drain(self, wake: threading.Event) -> None:
        """At shutdown: every crawl stopped, every run under way ended and recorded."""
        self.open.drain(wake)

    def journaled(self) -> frozenset[str]:
        """The journal ids of the fail-safe's runs under way (adopted once the lock is ours again)."""
        return self.open.journaled()

    def adopt(self, adopted: Mapping[str, tuple[int, Mapping[Any, int]]]) -> None:
        """The fail-safe's runs under way, written 'running' (Store.adopt): ended in PostgreSQL from now on."""
        self.open.adopt(adopted)

    def online(self, store: Store, due: Sequence[Job], now: datetime,
               slots: Mapping[str, datetime] | None = None) -> bool:  # fmt: skip
        """One run of `due`, recorded in PostgreSQL, together with the remote crawls a former daemon
        left running (`find_left_running`): those are re-attached, never sent again. False when not
        one of its crawls could be started. `slots`: job -> the calendar slot its crawl covers."""
        left, self._left = self._left, []
        return self.open.start(store, due, now, slots=slots, left=left)

    def offline(self, now: datetime, cadences: dict[str, Cadence]) -> bool:
        """The fail-safe: run what is due by the last history read (most overdue first, into the
        free slots, never a job under way), recorded in the journal, beside the fail-safe's runs
        under way. Nothing beside runs recorded in PostgreSQL: they are collected first (their ends
        journaled). False when nothing started."""
        plan = self.history.offline_plan(now, cadences)
        if plan is None or self.stop.is_set() or self.open.online:
            return False
        due = waiting(plan, self.running())
        if due:
            due = take_slots(due, self.free())
        return bool(due) and self.open.start_offline(self.catalog.jobs_named(due), now)

    def find_left_running(self, store: Store, now: datetime) -> None:
        """After taking the runner lock (SCHEDULER_ENGINE=scrapyd): the remote crawls a daemon left
        'running'. The next run re-attaches to them beside whatever is due then (they are watched to
        their end, or sent again if they never started); until then their jobs count as running
        (`reattaching`), so none is ever sent twice."""
        ours = {run.recorder.run_id for run in self.open.runs}  # adopted runs of the fail-safe: watched already
        rows = [row for row in (store.remote_running(now) if self.runner.reattaches else []) if row[1] not in ours]
        self._left = [(RemoteRun(row_id, self._job(job, spider), node, jobid, age_s), started_at)
                      for row_id, _, job, spider, node, jobid, started_at, age_s in rows]  # fmt: skip
        if self._left:
            log.info("remote_crawls_found", message=f"{len(rows)} remote crawl(s) left running; re-attaching",
                     crawls=[{"job": run.job.name, "node": run.node, "jobid": run.jobid} for run, _ in self._left])  # fmt: skip

    def reattaching(self) -> frozenset[str]:
        """The jobs whose remote crawls the next run re-attaches to: not due while they run."""
        return frozenset(run.job.name for run, _ in self._left)

    def _job(self, name: str, spider: str) -> Job:
        """The job of a crawl recorded earlier: as the catalog has it now, else with the defaults."""
        job = self.catalog.job(name)
        if job is not None:
            return job
        return make_job(name=name, spider=spider, defaults=self.catalog.defaults)

    def _end(self, recorder: DatabaseRecorder | JournalRecorder, due: Sequence[Job], outcomes: list[CrawlOutcome],
             ok: bool, error: str | None) -> bool:  # fmt: skip
        """Record the end of a run: a fail-safe run's in the journal (the history copy learned each of
        its crawls as it ended: daemon/loop/runs.py), a database run's in PostgreSQL."""
        if isinstance(recorder, DatabaseRecorder):
            return self._end_online(recorder, due, outcomes, ok, error)
        self.journal.end_run(recorder.run, self.clock.now(), ok, error)
        self.observer.run_ended(None, due, outcomes, ok, error)
        return bool(outcomes)

    def _end_online(self, recorder: DatabaseRecorder, due: Sequence[Job], outcomes: list[CrawlOutcome], ok: bool,
                    error: str | None) -> bool:  # fmt: skip
        """Record the end of a database run; False when not one of its crawls was started."""
        run_id, finished_at = recorder.run_id, self.clock.now()
        try:
            store = self.lease.still_runner(run_id)
            if store is None:
                self.lease.gave_way()  # another daemon has the lock: the run is its to fail
                self.observer.gave_way()
                return True
            recorder.flush(store)
            store.finish_run(run_id, finished_at, ok=ok, error=error)
        except psycopg2.Error as exc:
            # Unreachable, or refusing writes (disk full, read-only): either way the crawls' results
            # must not be lost. The run's end goes to the journal, which is written once the
            # database takes writes again (before the run could be failed as stale).
            self.journal.finish_online_run(run_id, recorder.unwritten, finished_at, ok, error)
            # The history copy learns these crawls now: else the fail-safe would run them again.
            self.history.fold([r.result() for r in recorder.results])
            log.warning("run_journaled", message="PostgreSQL did not take the run's end; it went to the journal",
                        run_id=run_id, sqlstate=getattr(exc, "pgcode", None), error=db.first_line(exc))  # fmt: skip
            self.observer.run_ended(run_id, due, outcomes, ok, error)
            if not unreachable(exc):
                raise  # a refusal (disk full, read-only): the loop logs its SQLSTATE and backs off
            self.lease.lost()
            return bool(outcomes)
        self.observer.run_ended(run_id, due, outcomes, ok, error)
        return bool(outcomes)
