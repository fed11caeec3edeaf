"""Decision lines per job (issue 20): with jobs of their own cadences, `last_run_checked`, `run_due`
and `run_not_due` name the job and its own interval; with one interval they read as before."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from daemon.plan.decision import Cadence, SpiderHistory, decide_jobs
from daemon.telemetry.job_narration import say_every
from daemon.telemetry.narration import log_decision
from tests.unit.fakes import T0

UTC = ZoneInfo("UTC")
DEFAULT = Cadence(timedelta(hours=4), timedelta(minutes=15))


@pytest.mark.parametrize("every, said", [
    (timedelta(seconds=15), "15 seconds"), (timedelta(seconds=1), "1 second"), (timedelta(seconds=90), "90 seconds"),
    (timedelta(minutes=30), "30 minutes"), (timedelta(hours=4), "4 hours"), (timedelta(days=1), "1 day"),
    (timedelta(seconds=1.5), "1.5 seconds"),
])  # fmt: skip
def test_an_interval_is_said_in_the_largest_unit_that_divides_it(every, said):
    assert say_every(every) == said


def lines(histories, cadences, now=T0):
    with capture_logs() as logs:
        log_decision(decide_jobs(histories, now, cadences, DEFAULT), histories, 4, UTC)
    return logs


def test_each_due_job_is_named_with_its_own_cadence_and_the_next_due_job_with_its_own():
    cadences = {"quick": Cadence(timedelta(seconds=15), timedelta(seconds=6)), "long": DEFAULT}
    histories = [SpiderHistory("quick", T0 - timedelta(seconds=36)), SpiderHistory("long", T0 - timedelta(hours=1))]
    logs = lines(histories, cadences)
    [checked] = [e for e in logs if e["event"] == "last_run_checked"]
    assert checked["job"] == "quick" and checked["message"] == "Last run of quick was 0.01 hours ago (required: 15 seconds)"
    [due] = [e for e in logs if e["event"] == "run_due"]
    assert due["job"] == "quick" and "Time threshold met or exceeded" in due["message"]
    [not_due] = [e for e in logs if e["event"] == "run_not_due"]
    assert not_due["job"] == "long" and "Recent run detected for long (required: 4 hours)" in not_due["message"]
    assert "skipping immediate execution" in not_due["message"] and "(in 3.00 hours)" in not_due["message"]


def test_a_job_that_never_ran_is_said_so_by_name():
    cadences = {"quick": Cadence(timedelta(seconds=15), timedelta(seconds=6))}
    logs = lines([SpiderHistory("quick")], cadences)
    [checked] = [e for e in logs if e["event"] == "last_run_checked"]
    assert checked["message"] == "Last run of quick was never: no completed run on record (required: 15 seconds)"
    assert not [e for e in logs if e["event"] == "run_not_due"]


def test_with_one_interval_for_every_job_the_lines_read_as_they_always_did():
    histories = [SpiderHistory("a", T0 - timedelta(hours=1)), SpiderHistory("b", T0 - timedelta(hours=2))]
    logs = lines(histories, {"a": DEFAULT, "b": DEFAULT})
    [checked] = [e for e in logs if e["event"] == "last_run_checked"]
    assert checked["message"] == "Last run was 2.00 hours ago (required: 4 hours)" and "job" not in checked
    [not_due] = [e for e in logs if e["event"] == "run_not_due"]
    assert not_due["message"].startswith("Recent run detected, skipping immediate execution; next run due at")
