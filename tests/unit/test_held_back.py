"""The soak's and the scenario's count of jobs held back (tests/helpers.held_back, issue 20): a job
due by its own records that was not started while a slot was free, for longer than the grace,
outside the windows of a fault and the recovery after it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import held_back

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
S = timedelta(seconds=1)
H = timedelta(hours=4)
CADENCES = {"long": (H, 6 * S), "quick": (10 * S, 6 * S), "flaky": (H, 6 * S)}


def crawl(job: str, start: float, end: float | None, status: str = "completed", failure: str | None = None) -> tuple:
    return (job, status, failure, T0 + start * S, None if end is None else T0 + end * S)


@pytest.mark.parametrize("slots, crawls, until, quiet, held", [
    # The bug: quick due at 10 s, a slot free beside long's crawl, not started until 40 s.
    (2, [crawl("long", 0, 60), crawl("quick", 0, 1), crawl("quick", 40, 41)], 45, [], [("quick", 10, 30)]),
    # The same with quick started when due: nothing held.
    (2, [crawl("long", 0, 60), crawl("quick", 0, 1), crawl("quick", 10.5, 11.5), crawl("quick", 20.5, 21)], 30, [],
     []),
    # A fault and its recovery cover the wait: not counted.
    (2, [crawl("long", 0, 60), crawl("quick", 0, 1), crawl("quick", 40, 41)], 45, [(5, 45)], []),
    # No slot free: one slot, long's crawl holds it; quick waits for it without being held back.
    (1, [crawl("long", 0, 60), crawl("quick", 0.1, None, "running")], 60, [], []),
    (1, [crawl("quick", 0, 1), crawl("long", 1, 60), crawl("quick", 60.2, 61)], 62, [], []),
    # A failure of its own is retried after its delay (6 s after it ended): late by 13 s.
    (2, [crawl("flaky", 0, 1, "failed", "error"), crawl("flaky", 20, 21, "failed", "error")], 25, [],
     [("flaky", 7, 13)]),
    # Its second failure doubles the delay (12 s): started 12.5 s after it ended, not held.
    (2, [crawl("flaky", 0, 1, "failed", "error"), crawl("flaky", 7.5, 8, "failed", "error"),
         crawl("flaky", 20.5, None, "running")], 60, [], []),
    # A crawl cut short by the daemon is no failure of the job's: due again at once.
    (2, [crawl("flaky", 0, 1, "failed", "interrupted"), crawl("flaky", 10, 11)], 12, [], [("flaky", 1, 9)]),
    # Never run and due from the first crawl's start; still not started at the end of the records.
    (3, [crawl("quick", 0, 1), crawl("long", 20, None, "running")], 20, [], [("long", 0, 20), ("quick", 10, 10)]),
    (3, [crawl("quick", 0, 1)], 5, [], []),
])  # fmt: skip
def test_a_job_due_and_not_started_while_a_slot_is_free_beyond_the_grace_is_held_back(slots, crawls, until, quiet,
                                                                                       held):  # fmt: skip
    cadences = {job: CADENCES[job] for job in {c[0] for c in crawls}}
    found = held_back(crawls, cadences, slots=slots, grace=S, until=T0 + until * S,
                      quiet=[(T0 + a * S, T0 + b * S) for a, b in quiet])  # fmt: skip
    assert sorted((job, (at - T0).total_seconds(), round(seconds, 1)) for job, at, seconds in found) == sorted(held)


def test_a_job_that_never_ran_is_due_from_the_first_crawls_start():
    found = held_back([crawl("quick", 0, 1)], CADENCES, slots=3, grace=S, until=T0 + 5 * S)
    assert sorted((job, (at - T0).total_seconds()) for job, at, _ in found) == [("flaky", 0.0), ("long", 0.0)]
