"""Row 4: the daemon killed after a crawl ended but before its result, or the run's final state,
was written. At-least-once: what was not written is repeated, and the duplicates are counted."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import figure
from tests.helpers import count, crawl_intervals, rows, side_channel, wait_for

pytestmark = pytest.mark.faults

SLOW_WRITE = """
CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$;
CREATE TRIGGER slow_write BEFORE UPDATE ON {table} FOR EACH ROW
  WHEN (OLD.status = 'running' AND NEW.status <> 'running') EXECUTE FUNCTION slow_write();
"""


def writing(db, table: str) -> bool:
    return bool(rows(db, "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                         "AND query LIKE %(q)s",
                     {"q": f"%UPDATE {table}%SET status%"}))  # fmt: skip


def ended_crawls(env, spider: str) -> int:
    return sum(
        1 for kind, _, _, name in side_channel(Path(env["SPIDER_SIDE_CHANNEL"])) if kind == "end" and name == spider
    )


def test_killed_before_a_crawls_result_is_written_repeats_that_spider(base_env, db, daemon_factory):
    rows(db, SLOW_WRITE.replace("{table}", "spider_runs"))
    env = {**base_env, "SCHEDULER_SPIDERS": "ok"}
    d = daemon_factory(env).start()
    wait_for(lambda: writing(db, "spider_runs"), timeout=30, what="the result being written")
    assert ended_crawls(env, "ok") == 1  # the crawl is over; its result is not yet recorded
    d.signal(signal.SIGKILL)
    d.wait()
    time.sleep(0.5)
    rows(db, "DROP TRIGGER slow_write ON spider_runs")
    assert count(db, "status = 'running'", "spider_runs") == 1  # the write died with its client
    again = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'completed'") == 1, timeout=60, what="the repeated run")
    again.signal(signal.SIGTERM)
    assert again.wait(timeout=30) == 0
    duplicates = ended_crawls(env, "ok") - 1
    figure(f"killed between a crawl's end and its record: {duplicates} duplicate crawl(s) of ok (at-least-once)")
    assert duplicates == 1
    assert count(db, "failure = 'stale'", "spider_runs") == 1


def test_killed_before_the_runs_final_write_fails_the_run_and_keeps_the_recorded_results(base_env, db,
                                                                                        daemon_factory):  # fmt: skip
    rows(db, SLOW_WRITE.replace("{table}", "scheduler_state"))
    # Two slots: both crawls are one decision's, so one run (with one slot each would be a run).
    env = {**base_env, "SCHEDULER_SPIDERS": "ok,other", "SCHEDULER_CONCURRENCY": "2"}
    d = daemon_factory(env).start()
    wait_for(lambda: writing(db, "scheduler_state"), timeout=60, what="the run's final write")
    assert count(db, "status = 'completed'", "spider_runs") == 2
    d.signal(signal.SIGKILL)
    d.wait()
    time.sleep(0.5)
    rows(db, "DROP TRIGGER slow_write ON scheduler_state")
    assert count(db, "status = 'running'") == 1
    again = daemon_factory(env).start()
    wait_for(lambda: '"run_not_due"' in again.output(), timeout=60, what="the decision after the restart")
    again.signal(signal.SIGTERM)
    assert again.wait(timeout=30) == 0
    [(status, error)] = rows(db, "SELECT status, error FROM scheduler_state")
    assert status == "failed" and "daemon stopped during the run" in error
    # Both crawls' results were durable: nothing needed repeating.
    assert len(crawl_intervals(Path(env["SPIDER_SIDE_CHANNEL"]))) == 2


REFUSE_ENDS = """
CREATE FUNCTION refuse_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
CREATE TRIGGER refuse_end BEFORE UPDATE ON {table} FOR EACH ROW
  WHEN (OLD.status = 'running' AND NEW.status <> 'running') EXECUTE FUNCTION refuse_end();
"""


@pytest.mark.parametrize("table", ["spider_runs", "scheduler_state"])
def test_a_run_end_the_database_refuses_is_journaled_and_written_once_it_takes_writes(base_env, db,
                                                                                      daemon_factory, table):  # fmt: skip
    """The disk fills up while a crawl runs: the crawl's result and the run's end are refused
    (SQLSTATE 53100). Nothing is lost: they go to the journal, and are written, exactly once and as
    they happened, when space is back, even if another daemon failed the run as stale meanwhile."""
    rows(db, REFUSE_ENDS.replace("{table}", table))
    env = {**base_env, "SCHEDULER_SPIDERS": "ok"}
    d = daemon_factory(env).start()
    wait_for(lambda: '"run_journaled"' in d.output(), timeout=60, what="the run's end journaled")
    assert '"sqlstate": "53100"' in d.output()
    assert ended_crawls(env, "ok") == 1
    time.sleep(2)  # it keeps trying, backing off, while the disk stays full
    rows(db, f"DROP TRIGGER refuse_end ON {table}")
    wait_for(lambda: count(db, "status = 'completed'") == 1, timeout=60, what="the journaled end written")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    [(status, items, pid)] = rows(db, "SELECT status, items_scraped, pid FROM spider_runs")
    assert status == "completed" and items == 15
    [(kind, _, side_pid, _)] = [e for e in side_channel(Path(env["SPIDER_SIDE_CHANNEL"])) if e[0] == "end"]
    assert pid == side_pid, "the crawl that ran is the one recorded"
    assert ended_crawls(env, "ok") == 1, "the spider ran once: its result was not lost, so not repeated"
    assert count(db, "status = 'running'") == 0
    assert not list(Path(env["SCHEDULER_STATE_DIR"]).glob("journal-*.jsonl"))
