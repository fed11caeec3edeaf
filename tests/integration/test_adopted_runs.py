"""The fail-safe's runs under way when PostgreSQL comes back (issue "every job on its own clock"):
the lock's holder writes the journal's ended runs at once and adopts those under way, written
'running' and ended in PostgreSQL from then on. Nothing is lost and nothing written twice: not by a
second replay of the same journal, nor after a daemon that died mid-adoption, nor when PostgreSQL
refuses the adoption."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

import psycopg2
import pytest

from daemon.jobs.crawl import judge
from daemon.jobs.jobfile import JobDefaults, default_jobs
from daemon.leadership import identity
from daemon.leadership.takeover import TakeOver
from daemon.loop.recording import DatabaseRecorder, JournalRecorder
from daemon.records.journal import Journal
from daemon.records.store import Store
from tests.helpers import hours, rows, utcnow
from tests.unit.fakes import FakeClock

JOBS = {job.name: job for job in default_jobs(["long", "quick", "early"], JobDefaults(hours(1), hours(2), hours(1),
                                                                                       0, 0, hours(0)))}  # fmt: skip


def outcome(job: str, pid: int):
    crawl = judge(job, exit_code=0, stats={"finish_reason": "finished", "item_scraped_count": 3},
                  timed_out=False, interrupted=False, max_errors=0, timeout_minutes=1, duration_s=1)  # fmt: skip
    return dataclasses.replace(crawl, pid=pid)


class UnderWay:
    """What OpenRuns tells the take-over: the fail-safe's runs under way, and what it adopted."""

    def __init__(self, *recorders: JournalRecorder) -> None:
        self.recorders = recorders
        self.adopted: dict[str, tuple[int, Mapping[Any, int]]] = {}

    def journaled(self) -> frozenset[str]:
        return frozenset(r.run for r in self.recorders)

    def adopt(self, adopted: Mapping[str, tuple[int, Mapping[Any, int]]]) -> None:
        self.adopted.update(adopted)


def offline(tmp_path, owner: str) -> tuple[Journal, JournalRecorder]:
    """A fail-safe that ran 'early' to its end, and runs 'long' and 'quick' in a second run, of which
    'quick' has ended and 'long' is under way."""
    journal, clock = Journal(tmp_path), FakeClock(utcnow() - hours(0.1))
    ended = JournalRecorder(journal, clock, journal.start_run(clock.now(), ["early"], owner))
    token = ended.started(JOBS["early"])
    ended.spawned(token, 101)
    ended.finished(token, outcome("early", 101))
    journal.end_run(ended.run, clock.now(), True, None)
    clock.advance(60)
    open_run = JournalRecorder(journal, clock, journal.start_run(clock.now(), ["long", "quick"], owner))
    for job, pid in (("long", 201), ("quick", 202)):
        open_run.spawned(open_run.started(JOBS[job]), pid)
    clock.advance(5)
    open_run.finished(2, outcome("quick", 202))
    return journal, open_run


def dead_owner() -> str:
    """The identity of a daemon of this machine that is gone."""
    child = subprocess.Popen(["true"])  # noqa: S603,S607
    child.wait()
    return re.sub(r"pid=\d+", f"pid={child.pid}", identity.this_process())


def crawls(db) -> list[tuple]:
    return rows(db, "SELECT r.status, s.job, s.status, s.pid FROM spider_runs s JOIN scheduler_state r "
                    "ON r.id = s.run_id ORDER BY s.id")  # fmt: skip


def test_the_ended_runs_are_written_and_the_run_under_way_is_adopted_running_its_ended_crawls_as_they_ended(db,
                                                                                                       tmp_path):  # fmt: skip
    journal, open_run = offline(tmp_path, identity.this_process())
    under_way = UnderWay(open_run)
    assert TakeOver(journal).recover(Store(db), utcnow(), under_way)
    assert crawls(db) == [("completed", "early", "completed", 101), ("running", "quick", "completed", 202),
                          ("running", "long", "running", 201)]  # fmt: skip
    [(run_id, owner, journal_id)] = rows(db, "SELECT id, owner, journal_id::text FROM scheduler_state "
                                             "WHERE status = 'running'")  # fmt: skip
    [long_row] = rows(db, "SELECT id FROM spider_runs WHERE job = 'long'")[0]
    assert under_way.adopted == {open_run.run: (run_id, {201: long_row})}
    assert (owner, journal_id) == (identity.this_process(), open_run.run)
    assert rows(db, "SELECT age < 10 FROM (SELECT EXTRACT(EPOCH FROM clock_timestamp() - heartbeat_at) AS age "
                    "FROM scheduler_state WHERE id = %(id)s) lease", {"id": run_id}) == [(True,)]  # fmt: skip
    assert list(tmp_path.glob("journal-*")) == []  # all of it is in PostgreSQL now


def test_an_adopted_runs_crawl_and_end_are_written_to_postgres_once(db, tmp_path):
    journal, open_run = offline(tmp_path, identity.this_process())
    under_way, store = UnderWay(open_run), Store(db)
    TakeOver(journal).recover(store, utcnow(), under_way)
    [(run_id, rows_)] = under_way.adopted.values()
    recorder = DatabaseRecorder(lambda: store, FakeClock(utcnow()), run_id)
    recorder.started_at[rows_[201]] = utcnow() - hours(0.1)
    recorder.finished(rows_[201], outcome("long", 201))
    assert store.finish_run(run_id, utcnow(), ok=True, error=None)
    assert crawls(db)[1:] == [("completed", "quick", "completed", 202), ("completed", "long", "completed", 201)]
    assert rows(db, "SELECT count(*) FROM spider_runs WHERE job = 'long'") == [(1,)]


def test_a_second_replay_of_the_same_journal_writes_nothing(db, tmp_path):
    journal, open_run = offline(tmp_path, identity.this_process())
    kept = tmp_path / "kept"
    kept.mkdir()
    shutil.copy(journal.path, kept / "journal-1-dead.jsonl")  # as a daemon that died before removing it
    TakeOver(journal).recover(Store(db), utcnow(), UnderWay(open_run))
    before = crawls(db)
    pending = Journal(kept).pending()
    assert Store(db).replay(pending.runs(), pending.finishes()) == 0
    assert crawls(db) == before


def test_a_daemon_that_died_mid_adoption_leaves_a_journal_the_next_holder_replays_its_crawl_under_way_stale(
        db, tmp_path):  # fmt: skip
    """Adopted, then dead before the journal was removed: the next lock holder writes nothing twice,
    and the crawl that died with its daemon is failed as stale, as any other."""
    journal, open_run = offline(tmp_path, dead_owner())
    pending = journal.pending()
    under_way = [run for run in pending.runs() if run["run"] == open_run.run]
    Store(db).replay([run for run in pending.runs() if run["run"] != open_run.run], pending.finishes())
    Store(db).adopt(under_way)  # and the daemon dies here, its journal left whole
    journal._fh.close()  # its flock goes with it
    journal._fh = None
    assert TakeOver(Journal(tmp_path)).recover(Store(db), utcnow())
    assert crawls(db) == [("completed", "early", "completed", 101), ("failed", "quick", "completed", 202),
                          ("failed", "long", "failed", 201)]  # fmt: skip
    assert rows(db, "SELECT failure FROM spider_runs WHERE job = 'long'") == [("stale",)]
    assert list(tmp_path.glob("journal-*")) == []


def test_an_adoption_postgres_refuses_leaves_the_runs_journaled_and_nothing_written_twice(db, tmp_path):
    """The adoption's transaction refused (here: a row its trigger rejects): the ended runs are in,
    the run under way and its journal stay as they were, and the next take-over writes each once."""
    journal, open_run = offline(tmp_path, identity.this_process())
    rows(db, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "RAISE EXCEPTION 'refused' USING ERRCODE = '53100'; END $$; "
             "CREATE TRIGGER refuse BEFORE INSERT ON spider_runs FOR EACH ROW WHEN (NEW.status = 'running') "
             "EXECUTE FUNCTION refuse(); SELECT 1")  # fmt: skip
    under_way = UnderWay(open_run)
    with pytest.raises(psycopg2.Error):
        TakeOver(journal).recover(Store(db), utcnow(), under_way)
    assert under_way.adopted == {} and journal.path.exists()
    assert crawls(db) == [("completed", "early", "completed", 101)]
    rows(db, "DROP TRIGGER refuse ON spider_runs; SELECT 1")
    assert TakeOver(journal).recover(Store(db), utcnow(), under_way)
    assert [crawl[1:3] for crawl in crawls(db)] == [("early", "completed"), ("quick", "completed"),
                                                    ("long", "running")]  # fmt: skip
