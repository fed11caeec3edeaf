"""The one action path (daemon/ask/actions.py) and the audit (daemon/records/audit.py) on a real
PostgreSQL: each action's effect on the board, its result and its audit row; a job's last actions,
each job's last one, and retention."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from daemon.ask import actions
from daemon.jobs.jobfile import Job
from daemon.records import audit
from daemon.records.store import Store
from tests.helpers import hours, rows, utcnow

PAGE = actions.Actor("alice", "page", "192.0.2.7")


def job(name: str, paused: bool = False) -> Job:
    return Job(name=name, spider="ok", args=(), settings=(), every=hours(4), timeout=hours(2),
               retry_delay=timedelta(minutes=15), max_errors=0, min_items=0, jitter=timedelta(0), paused=paused)


JOBS = [job("news"), job("frozen", paused=True)]


def running(db, name: str) -> None:
    [(run_id,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) VALUES (now(), 1, "
                           "'running') RETURNING id")  # fmt: skip
    rows(db, "INSERT INTO spider_runs (run_id, job, spider, status, started_at) VALUES (%(r)s, %(j)s, 'ok', "
             "'running', now())", {"r": run_id, "j": name})  # fmt: skip


@pytest.mark.parametrize("arrange, action, name, result, message, board", [
    ([], "pause", "news", "done", "paused news until resumed", "SELECT job, until FROM job_pauses"),
    ([("pause", "news")], "resume", "news", "done", "resumed news", "SELECT count(*) FROM job_pauses"),
    ([], "resume", "news", "nothing", "news was not paused", "SELECT count(*) FROM job_pauses"),
    ([], "resume", "frozen", "refused", "frozen is paused in the jobs file (paused = true): set paused = false there "
                                        "to resume it", "SELECT count(*) FROM job_pauses"),
    ([], "run-now", "news", "done", None, "SELECT spiders FROM run_requests"),
    ([("pause", "news")], "run-now", "news", "refused", "news is paused: resume it first",
     "SELECT count(*) FROM run_requests"),
    ([], "run-now", "frozen", "refused", "frozen is paused: set paused = false in the jobs file",
     "SELECT count(*) FROM run_requests"),
    ([], "cancel", "news", "nothing", "news is not running: nothing to cancel", "SELECT count(*) FROM cancel_requests"),
    ([("running", "news")], "cancel", "news", "done", "cancel requested: news", "SELECT job FROM cancel_requests"),
])  # fmt: skip
def test_each_action_changes_the_board_or_says_why_not_and_is_audited(db, arrange, action, name, result, message,
                                                                       board):  # fmt: skip
    store, now = Store(db), utcnow()
    for what, who in arrange:
        store.pause(who, None, now) if what == "pause" else running(db, who)
    outcome = actions.act(store, JOBS, action, name, PAGE, now, timezone.utc)
    assert outcome.result == result
    if message:
        assert outcome.message == message
    expected = {"SELECT job, until FROM job_pauses": [("news", None)], "SELECT spiders FROM run_requests": [(["news"],)],
                "SELECT job FROM cancel_requests": [("news",)]}.get(board, [(0,)])  # fmt: skip
    assert rows(db, board) == expected
    [row] = audit.of_job(db, name)
    assert (row.id, row.action, row.actor, row.source, row.address, row.result, row.message) == (
        outcome.audit_id, action, "alice", "page", "192.0.2.7", result, outcome.message)


def test_a_pause_for_an_hour_records_until_when_in_the_audit_and_on_the_board(db):
    now = utcnow()
    outcome = actions.act(Store(db), JOBS, "pause", "news", PAGE, now, timezone.utc, pause_for=hours(1))
    assert outcome.until == now + hours(1)
    assert rows(db, "SELECT until FROM job_pauses") == [(now + hours(1),)]
    assert audit.one(db, outcome.audit_id).detail == (now + hours(1)).isoformat(timespec="seconds")


def test_the_job_page_reads_its_last_twenty_newest_first_and_status_each_jobs_last(db):
    store, now = Store(db), utcnow()
    for i in range(25):
        actions.pause(store, "news", None, PAGE, now + timedelta(seconds=i), timezone.utc)
    actions.cancel(store, "other", actions.Actor("cli:bob", "cli"), now)
    shown = audit.of_job(db, "news")
    assert len(shown) == 20 and shown[0].at == now + timedelta(seconds=24) and shown[-1].at == now + timedelta(seconds=5)
    last = audit.last_per_job(db, ["news", "other", "never"])
    assert set(last) == {"news", "other"} and last["news"].at == now + timedelta(seconds=24)
    assert (last["other"].actor, last["other"].source, last["other"].address) == ("cli:bob", "cli", None)


def test_actions_older_than_the_cutoff_go_with_the_history(db):
    store, now = Store(db), utcnow()
    actions.resume(store, "news", PAGE, now - timedelta(days=100))
    actions.resume(store, "news", PAGE, now)
    assert audit.delete_old(db, now - timedelta(days=90)) == 1
    assert [a.at for a in audit.of_job(db, "news")] == [now]
