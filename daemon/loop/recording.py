"""Recording a run while it happens: in PostgreSQL, or in the local journal when it is unreachable.

Both recorders give the runner the same callbacks (started, spawned or dispatched, finished) and log the
canonical line of each spider run, wherever its record goes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg2
import psycopg2.errors
import structlog

from daemon.records import db
from daemon.system.clock import Clock
from daemon.jobs.crawl import CrawlOutcome
from daemon.plan.decision import CrawlResult
from daemon.jobs.jobfile import Job
from daemon.records.journal import Journal
from daemon.records.ledger import SlotRecord
from daemon.telemetry.narration import log_spider_outcome
from daemon.records.store import Store

log = structlog.get_logger("daemon.scheduler")


@dataclass
class Finished:
    spider_run_id: int
    started_at: datetime
    finished_at: datetime
    outcome: CrawlOutcome
    suspect: str | None = None  # a success judged against the job's baseline as it was written (sql/017)

    def result(self) -> CrawlResult:
        o = self.outcome
        return CrawlResult(o.name, o.ok, o.failure, self.started_at, self.finished_at)


class Recorder(Protocol):
    """What a run needs of a recorder: the runner's three callbacks, and what was recorded."""

    run_id: int | None  # the database run; None for a run recorded in the journal
    results: list[Finished]

    def started(self, job: Job) -> Any: ...

    def spawned(self, token: Any, pid: int) -> None: ...

    def finished(self, token: Any, outcome: CrawlOutcome) -> None: ...

    def dispatched(self, token: Any, node: str, remote_jobid: str, log_url: str) -> bool: ...


class DatabaseRecorder:
    """Writes each spider's row as it starts and finishes. A finish that cannot be written now
    (the connection is being replaced) is kept for the end of the run."""

    def __init__(self, store: Callable[[], Store | None], clock: Clock, run_id: int,
                 slots: Mapping[str, datetime] | None = None) -> None:  # fmt: skip
        self.store = store  # the current store, or None while the runner lock is not ours
        self.clock = clock
        self.run_id = run_id
        self.slots = slots or {}  # job -> the calendar slot its crawl covers (spider_runs.slot_at)
        self.slot_of: dict[int, tuple[str, datetime]] = {}  # crawl -> (job, slot), for its ledger row
        self.started_at: dict[int, datetime] = {}
        self.unwritten: list[Finished] = []
        self.results: list[Finished] = []

    def started(self, job: Job) -> int | None:
        store = self.store()
        if store is None:
            return None
        now = self.clock.now()
        slot = self.slots.get(job.name)
        try:
            spider_run_id = store.start_spider(run_id=self.run_id, spider=job.spider, now=now, job=job.name,
                                               args=dict(job.args), settings=dict(job.settings), slot_at=slot)  # fmt: skip
        except psycopg2.errors.UniqueViolation:
            # spider_runs_one_crawl_per_slot: another crawl (another daemon's) covers or is covering
            # this slot. Not an error: nothing starts, and the next decision reads that crawl.
            log.info("slot_already_covered", message="Another crawl already covers this slot; not starting it",
                     job=job.name, slot_at=slot.isoformat() if slot else None)  # fmt: skip
            return None
        except psycopg2.Error as exc:
            log.error("record_failed", message="Could not record a spider's start; not starting it",
                      spider=job.spider, job=job.name, error=db.first_line(exc))  # fmt: skip
            return None
        self.started_at[spider_run_id] = now
        if slot is not None:
            self.slot_of[spider_run_id] = (job.name, slot)
        return spider_run_id

    def spawned(self, spider_run_id: int, pid: int) -> None:
        store = self.store()
        if store is None:
            return
        try:
            store.set_spider_pid(spider_run_id, pid)
        except psycopg2.Error:
            pass  # the pid is a convenience; the lock probe deals with the connection

    def dispatched(self, spider_run_id: int, node: str, remote_jobid: str, log_url: str) -> bool:
        """A remote crawl's node and job id, committed before it is sent; False: not recorded, so
        not sent (a crawl nobody could find again)."""
        store = self.store()
        if store is None:
            return False
        try:
            return store.set_spider_remote(spider_run_id, node, remote_jobid, log_url)
        except psycopg2.Error as exc:
            log.error("record_failed", message="Could not record where a crawl goes; not sending it",
                      node=node, jobid=remote_jobid, error=db.first_line(exc))  # fmt: skip
            return False

    def finished(self, spider_run_id: int, outcome: CrawlOutcome) -> None:
        log_spider_outcome(self.run_id, outcome)
        done = Finished(spider_run_id, self.started_at[spider_run_id], self.clock.now(), outcome)
        self.results.append(done)
        store = self.store()
        if store is not None:
            try:
                _, done.suspect = store.finish_spider(spider_run_id, done.finished_at, outcome)
                self._kept(store, spider_run_id, done)
                return
            except psycopg2.Error as exc:
                log.warning("record_deferred", message="Could not record a spider's result yet; will retry",
                            spider=outcome.spider, error=db.first_line(exc))  # fmt: skip
        self.unwritten.append(done)

    def flush(self, store: Store) -> None:
        while self.unwritten:
            done = self.unwritten[0]
            _, done.suspect = store.finish_spider(done.spider_run_id, done.finished_at, done.outcome)
            self._kept(store, done.spider_run_id, done)
            self.unwritten.pop(0)

    def _kept(self, store: Store, spider_run_id: int, done: Finished) -> None:
        """A calendar crawl that succeeded keeps its slot: its ledger row (written once)."""
        if not done.outcome.ok or spider_run_id not in self.slot_of:
            return
        job, slot = self.slot_of[spider_run_id]
        late = max(0.0, (done.started_at - slot).total_seconds())
        store.record_slots(job, [SlotRecord(slot, "kept", run_id=spider_run_id, late_s=late)], done.finished_at)


class JournalRecorder:
    """Records a run made while PostgreSQL is unreachable in the local journal."""

    run_id = None  # not in the database

    def __init__(self, journal: Journal, clock: Clock, run: str) -> None:
        self.journal = journal
        self.clock = clock
        self.run = run
        self.results: list[Finished] = []
        self._tokens = 0
        self._started: dict[int, datetime] = {}
        self._jobs: dict[int, Job] = {}
        self._remote: dict[int, dict[str, str]] = {}  # a remote crawl's node, job id and log URL
        self._pids: dict[int, int] = {}

    def started(self, job: Job) -> int:
        self._tokens += 1
        self._started[self._tokens] = self.clock.now()
        self._jobs[self._tokens] = job
        return self._tokens

    def spawned(self, token: int, pid: int) -> None:
        # A crawl that dies with its daemon never reaches finished(): this line is what records it.
        job = self._jobs[token]
        self._pids[token] = pid
        self.journal.spawned(self.run, job.spider, self._started[token], pid, job=_recorded(job))

    def dispatched(self, token: int, node: str, remote_jobid: str, log_url: str) -> bool:
        job, remote = self._jobs[token], {"node": node, "remote_jobid": remote_jobid, "log_url": log_url}
        self._remote[token] = remote
        self.journal.dispatched(self.run, job.spider, self._started[token], remote, job=_recorded(job))
        return True

    def finished(self, token: int, outcome: CrawlOutcome) -> None:
        log_spider_outcome(None, outcome)
        done = Finished(token, self._started[token], self.clock.now(), outcome)
        self.journal.spider(self.run, done.started_at, done.finished_at, outcome,
                            job={**_recorded(self._jobs[token]), **self._remote.get(token, {})})  # fmt: skip
        self.results.append(done)

    def under_way(self) -> dict[int, tuple[Any, datetime]]:
        """token -> (the crawl as the journal knows it: its Scrapyd job id, else its pid; its start),
        of each crawl started and not ended."""
        ended = {done.spider_run_id for done in self.results}
        return {token: (self._remote[token]["remote_jobid"] if token in self._remote else self._pids.get(token), at)
                for token, at in self._started.items() if token not in ended}  # fmt: skip


def _recorded(job: Job) -> dict[str, Any]:
    """What a journal line keeps of a job: its name and what its crawl ran with."""
    return {"job": job.name, "args": dict(job.args), "settings": dict(job.settings)}
