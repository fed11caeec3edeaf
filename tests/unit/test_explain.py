"""`explain`: the rule in force for a job and its paragraph, from the daemon's own decision code.

T0 is 2026-12-01 12:00 UTC, 07:00 in America/Bogota (UTC-5), where every time below is shown."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from daemon.ask import explain as why
from daemon.plan.calendar import Calendar, Window
from daemon.plan.decision import Cadence, SpiderHistory, decide_jobs
from daemon.jobs.jobfile import Job
from tests.unit.fakes import T0

H = timedelta(hours=1)
M = timedelta(minutes=1)
BOGOTA = ZoneInfo("America/Bogota")
HOLDER = why.Holder(True, "host=box boot=b1 pid=4242 start=99", T0 - 30 * H)  # took the lock 2026-11-30 01:00
FREE = why.Holder(False)
CRASHED = why.Holder(False, "host=old-box boot=b0 pid=77 start=5", T0 - 50 * H)


def job(**values) -> Job:
    fields = {
        "name": "python-remote", "spider": "ok", "args": (), "settings": (), "every": 4 * H, "timeout": 2 * H,
        "retry_delay": 15 * M, "max_errors": 0, "min_items": 0, "jitter": timedelta(0), "paused": False,
    }  # fmt: skip
    return Job(**(fields | values))


def explained(history: SpiderHistory, facts: why.Facts | None = None, holder: why.Holder = HOLDER, *,
              the_job: Job | None = None, cadence: Cadence | None = None) -> why.Explanation:  # fmt: skip
    """As the command does it: the plan from decide_jobs with the job's cadence (and pause)."""
    facts = facts or why.Facts()
    the_job = the_job or job()
    cadence = cadence or Cadence(the_job.every, the_job.retry_delay, paused=the_job.paused)
    [plan] = decide_jobs([history], T0, {the_job.name: cadence}, Cadence(4 * H, 15 * M)).spiders
    return why.explain(the_job, plan, history, facts, holder, T0, BOGOTA)


def ok(started, items=12) -> why.Crawl:
    return why.Crawl(started, "completed", started + 10 * M, items=items)


def failed(started, failure="error", message="exit code 1") -> why.Crawl:
    return why.Crawl(started, "failed", started + 5 * M, failure, message)


NAME = "python-remote"
CASES = [
    pytest.param(
        SpiderHistory(NAME), why.Facts(), HOLDER, {}, ("due_first_run",),
        ["python-remote is due now", "it has never run", "without jitter", "host box, pid 4242",
         "since 2026-11-30 01:00", "within a tick"],
        id="never run: due at once"),
    pytest.param(
        SpiderHistory(NAME, T0 - 4 * H - 10 * M), why.Facts(last_crawl=ok(T0 - 4 * H - 10 * M)), HOLDER,
        {"jitter": 30 * M}, ("due_interval",),
        ["has been due since 2026-12-01 06:50 (10 min ago)", "last success started at 2026-12-01 02:50",
         "every 4 h", "held back by up to 30 min (jitter)", "starts by 2026-12-01 07:20 at the latest",
         "completed with 12 items after 10 min"],
        id="due by its interval, within its jitter"),
    pytest.param(
        SpiderHistory(NAME, T0 - 40 * H), why.Facts(last_crawl=ok(T0 - 40 * H)), HOLDER, {"jitter": 30 * M},
        ("due_catch_up",),
        ["has been due since 2026-11-29 19:00 (1 d 12 h ago)", "took it at 2026-11-30 01:00", "catch-up",
         "without jitter", "most overdue"],
        id="due since before the lock holder took the lock: its catch-up"),
    pytest.param(
        SpiderHistory(NAME, T0 - H - 50 * M), why.Facts(last_crawl=ok(T0 - H - 50 * M, items=7)), HOLDER,
        {"jitter": 5 * M}, ("waiting_interval",),
        ["waits until 2026-12-01 09:10 (in 2 h 10 min)", "last success started at 2026-12-01 05:10",
         "every 4 h", "held back by up to 5 min (jitter)", "completed with 7 items"],
        id="waiting for its interval"),
    pytest.param(
        SpiderHistory(NAME, T0 - 9 * H, 3, T0 - 20 * M), why.Facts(last_crawl=failed(T0 - 25 * M)), HOLDER, {},
        ("waiting_backoff",),
        ["waits until 2026-12-01 07:40 (in 40 min)", "3 failures in a row", "the latest at 2026-12-01 06:40",
         "backoff of 1 h", "retry delay of 15 min", "failed (error) after 5 min: exit code 1."],
        id="backing off after 3 failures"),
    pytest.param(
        SpiderHistory(NAME, T0 - 9 * H, 1, T0 - 20 * M), why.Facts(last_crawl=failed(T0 - 25 * M, "timeout")),
        HOLDER, {}, ("due_retry",),
        ["has been due since 2026-12-01 06:55 (5 min ago)", "1 failure in a row", "backoff of 15 min",
         "failed (timeout)"],
        id="its retry is due"),
    pytest.param(
        SpiderHistory(NAME, T0 + 2 * H), why.Facts(), HOLDER, {}, ("due_clock_skew",),
        ["is due now", "recorded at 2026-12-01 09:00, in the future", "clock was set back"],
        id="its last run is in the future"),
    pytest.param(
        SpiderHistory(NAME, T0 - 9 * H), why.Facts(paused_until=T0 + 2 * H), HOLDER, {"cadence_until": T0 + 2 * H},
        ("paused", "due_interval"),
        ["is paused until 2026-12-01 09:00 (in 2 h)", "then it is due at once", "By its own rule"],
        id="paused by the command until a time"),
    pytest.param(
        SpiderHistory(NAME, T0 - H), why.Facts(paused_until=T0 + 10 * M), HOLDER, {"cadence_until": T0 + 10 * M},
        ("paused", "waiting_interval"),
        ["is paused until 2026-12-01 07:10 (in 10 min)", "then it is due at 2026-12-01 10:00"],
        id="paused until a time, due later by its interval"),
    pytest.param(
        SpiderHistory(NAME, T0 - H), why.Facts(), HOLDER, {"cadence_until": None}, ("paused", "waiting_interval"),
        ["paused until resumed (python -m daemon resume python-remote)"],
        id="paused until resumed"),
    pytest.param(
        SpiderHistory(NAME, T0 - H), why.Facts(), HOLDER, {"paused": True}, ("paused", "waiting_interval"),
        ["paused in the jobs file (paused = true)"],
        id="paused in the jobs file"),
    pytest.param(
        SpiderHistory(NAME, T0 - 5 * H), why.Facts(), FREE, {}, ("no_runner", "due_interval"),
        ["No daemon holds the runner lock (the last one stopped cleanly)", "due since 2026-12-01 06:00 (1 h ago)"],
        id="no daemon holds the runner lock"),
    pytest.param(
        SpiderHistory(NAME, T0 - H), why.Facts(), CRASHED, {}, ("no_runner", "waiting_interval"),
        ["No daemon holds the runner lock", "host old-box, pid 77, since 2026-11-29 05:00", "did not stop cleanly",
         "journals them (the fail-safe)"],
        id="the last holder did not stop cleanly"),
    pytest.param(
        SpiderHistory(NAME, T0 - H), why.Facts(run_now_at=T0 - 5 * M), HOLDER, {}, ("due_run_now", "waiting_interval"),
        ["run-now request for python-remote, made at 2026-12-01 06:55 (5 min ago)", "without jitter",
         "By its own rule it waits until 2026-12-01 10:00 (in 3 h)"],
        id="a run-now request waits"),
    pytest.param(
        SpiderHistory(NAME, T0 - 5 * H), why.Facts(run=why.RunUnderWay(T0 - 10 * M, 5, 3, 2), concurrency=2),
        HOLDER, {}, ("waiting_slot", "due_interval"),
        ["waits for a concurrency slot", "since 2026-12-01 06:50", "started 3 of its 5 crawls, 2 running",
         "at most 2 at a time"],
        id="due, waiting for a concurrency slot"),
    pytest.param(
        SpiderHistory(NAME, T0 - 4 * H - 5 * M), why.Facts(run=why.RunUnderWay(T0 - 10 * M, 2, 2, 1)), HOLDER, {},
        ("waiting_run", "due_interval"),
        ["waits for the run under way since 2026-12-01 06:50 (1 crawl running) to end"],
        id="due during the run under way"),
    pytest.param(
        SpiderHistory(NAME, T0 - H), why.Facts(last_crawl=why.Crawl(T0 - 12 * M, "running")), HOLDER, {},
        ("running",),
        ["python-remote is running", "started at 2026-12-01 06:48 (12 min ago)", "timeout of 2 h",
         "at 2026-12-01 08:48"],
        id="its crawl is under way"),
    pytest.param(
        SpiderHistory(NAME, T0 - H), why.Facts(last_crawl=why.Crawl(T0 - 12 * M, "running")), CRASHED, {},
        ("running",),
        ["python-remote is running", "no daemon holds the runner lock", "failed (stale)"],
        id="a crawl recorded running with no lock holder"),
    pytest.param(
        SpiderHistory(NAME, T0 - 5 * H),
        why.Facts(file_error="/p/schedule.toml: job 'python-remote': every='soon' is not allowed: a duration; "
                             "/p/schedule.toml: job 'other': unknown key 'evry'"),
        HOLDER, {}, ("file_error", "due_interval"),
        ["problem with python-remote", "every='soon' is not allowed", "As last loaded, python-remote has been due"],
        id="the jobs file has a problem with this job"),
    pytest.param(
        SpiderHistory(NAME, T0 - 24 * H), why.Facts(last_crawl=ok(T0 - 24 * H), schedule_since=T0 - 240 * H), HOLDER,
        {"calendar": Calendar("0 7 * * *", BOGOTA)}, ("due_calendar",),
        ["python-remote is due now: its schedule is at 07:00 every day (America/Bogota)",
         "Due for the slot of 2026-12-01 07:00 -05 (12:00 UTC)."],
        id="a calendar job due for its slot"),
    pytest.param(
        SpiderHistory(NAME, T0 - 72 * H + H), why.Facts(schedule_since=T0 - 240 * H), HOLDER,
        {"calendar": Calendar("0 8 * * *", BOGOTA)}, ("due_calendar",),
        ["Due for the slot of 2026-11-30 08:00 -05 (13:00 UTC).",
         "1 earlier slot was missed (the first 2026-11-29 08:00 -05 (13:00 UTC)); one crawl covers the latest."],
        id="a calendar job after a downtime: one crawl for the latest slot"),
    pytest.param(
        SpiderHistory(NAME, T0), why.Facts(last_crawl=ok(T0), schedule_since=T0 - 240 * H), HOLDER,
        {"calendar": Calendar("0 8 * * *", BOGOTA)}, ("waiting_calendar",),
        ["python-remote waits until 2026-12-01 08:00 (in 1 h): its schedule is at 08:00 every day (America/Bogota)",
         "Not due: its next slot is 2026-12-01 08:00 -05 (13:00 UTC)."],
        id="a calendar job waiting for its next slot"),
    pytest.param(
        SpiderHistory(NAME, T0 - 40 * H), why.Facts(), HOLDER,
        {"calendar": Calendar(None, BOGOTA, Window(time(8), time(20)))}, ("waiting_calendar",),
        ["waits until 2026-12-01 08:00 (in 1 h)", "starts crawls only 08:00-20:00 every day (America/Bogota): it "
         "waits for its window to open at 2026-12-01 08:00 -05 (13:00 UTC)."],
        id="an interval job due outside its window"),
]  # fmt: skip


@pytest.mark.parametrize(("history", "facts", "holder", "setup", "rules", "phrases"), CASES)
def test_each_rule_is_named_and_its_paragraph_names_the_numbers(history, facts, holder, setup, rules, phrases):
    the_job = job(**{k: v for k, v in setup.items() if k in ("jitter", "paused", "calendar")})
    cadence = None
    if "cadence_until" in setup:
        cadence = Cadence(the_job.every, the_job.retry_delay, paused=True, paused_until=setup["cadence_until"])
    e = explained(history, facts, holder, the_job=the_job, cadence=cadence)
    assert e.rules == rules and e.rule == rules[0]
    text = e.paragraph()
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in {text!r}"
    assert "\n" not in text and text.endswith("Times in America/Bogota.")


def test_every_rule_is_one_of_the_named_rules():
    for case in CASES:
        assert set(case.values[4]) <= set(why.RULES)
    assert {rule for case in CASES for rule in case.values[4]} == set(why.RULES)  # and each is tested above


@pytest.mark.parametrize(
    ("span", "said"),
    [(timedelta(seconds=45), "45 s"), (timedelta(seconds=59.6), "1 min"), (12 * M, "12 min"),
     (59 * M + timedelta(seconds=40), "1 h"), (2 * H + 10 * M, "2 h 10 min"), (3 * H, "3 h"),
     (29 * H + 10 * M, "1 d 5 h"), (48 * H, "2 d"), (-(40 * M), "40 min")],
)  # fmt: skip
def test_durations_are_said_the_way_people_say_them(span, said):
    assert why.humanize(span) == said


def test_the_json_names_the_rule_the_times_in_the_timezone_and_the_figures():
    e = explained(SpiderHistory(NAME, T0 - 9 * H, 3, T0 - 20 * M), why.Facts(last_crawl=failed(T0 - 25 * M)))
    data = json.loads(json.dumps(e.as_dict()))
    assert (data["rule"], data["timing"], data["due"]) == ("waiting_backoff", "waiting_backoff", False)
    assert data["due_at"] == "2026-12-01T07:40:00-05:00"
    assert (data["failures"], data["backoff_s"], data["every_s"]) == (3, 3600.0, 4 * 3600.0)
    assert data["runner"] == {"locked": True, "owner": HOLDER.owner, "since": "2026-11-30T01:00:00-05:00"}
    assert data["last_crawl"]["failure"] == "error" and data["paragraph"] == e.paragraph()


def test_the_due_time_comes_from_the_daemons_decision_code_not_from_its_own_arithmetic():
    # The decision doubles the retry delay per failure, capped at the interval: 9 failures of a job
    # every 2 h wait 2 h, not 15 min * 2**8.
    e = explained(SpiderHistory(NAME, T0 - 9 * H, 9, T0 - H), the_job=job(every=2 * H))
    assert e.own.due_at == T0 + H and e.backoff == 2 * H
    assert "backoff of 2 h" in e.paragraph() and "9 failures" in e.paragraph()


def test_hostile_text_from_the_database_stays_on_one_line_and_is_cut():
    message = "boom\n\x1b[31mred\x1b[0m " + "x" * 500
    e = explained(SpiderHistory(NAME, T0 - H), why.Facts(last_crawl=failed(T0 - H, message=message)))
    text = e.paragraph()
    assert "\n" not in text and "\x1b" not in text and "\\x1b[31mred" in text
    assert "x" * 300 not in text and "..." in text
    assert e.as_dict()["last_crawl"]["message"] == message  # --json has it whole


def test_a_job_standing_in_before_anything_was_published_says_so():
    e = explained(SpiderHistory(NAME), why.Facts(published=False))
    assert "No daemon has published its jobs yet" in e.paragraph() and "spider ok" in e.paragraph()


def test_a_jobs_file_error_about_another_job_is_a_note_not_the_rule():
    e = explained(SpiderHistory(NAME, T0 - H), why.Facts(file_error="/p/schedule.toml: job 'other': bad"))
    assert e.rule == "waiting_interval" and e.file_problems == ()
    assert "The jobs file has an error elsewhere" in e.paragraph()


@pytest.mark.parametrize(
    ("files", "runs", "said"),
    [(0, 0, None), (1, 1, "1 run waits in 1 journal file"), (2, 5, "5 runs wait in 2 journal files")],
)
def test_postgresql_unreachable_is_one_line_naming_the_fail_safe_and_the_journal(files, runs, said):
    line = why.unreachable("PostgreSQL at 127.0.0.1:5 did not accept a connection within 1 s: refused", files, runs)
    assert "\n" not in line and line.startswith("PostgreSQL at 127.0.0.1:5 did not accept")
    assert "keeps running due jobs from its last read and journals them (the fail-safe)" in line
    assert (said in line) if said else ("journal file" not in line)


def test_a_suspect_crawl_is_named_with_its_reason_whether_it_is_the_last_crawl_or_an_earlier_one():
    reason = "40 items; usual 1,000 (median of 20)"
    last = explained(SpiderHistory(NAME, T0 - H), why.Facts(last_crawl=ok(T0 - H, items=40),
                                                             last_suspect=(T0 - H, reason)))  # fmt: skip
    assert ("completed with 40 items after 10 min. That crawl succeeded but looks wrong against its baseline: "
            "40 items; usual 1,000 (median of 20) (it still counts as a success for the schedule).") in last.paragraph()
    earlier = explained(SpiderHistory(NAME, T0 - H), why.Facts(last_crawl=ok(T0 - H), last_suspect=(T0 - 9 * H, reason)))
    assert ("Its last suspect crawl, started at 2026-11-30 22:00 (9 h ago), succeeded but looks wrong against its "
            f"baseline: {reason}") in earlier.paragraph()
    assert earlier.as_dict()["last_suspect"] == {"started_at": "2026-11-30T22:00:00-05:00", "reason": reason}
    assert "suspect" not in explained(SpiderHistory(NAME, T0 - H), why.Facts(last_crawl=ok(T0 - H))).paragraph()


def test_explain_says_where_dst_moved_a_slot_that_does_not_exist():
    ny = ZoneInfo("America/New_York")
    now = datetime(2027, 3, 14, 6, tzinfo=timezone.utc)  # 01:00 EST, the night the clocks spring forward
    the_job = job(calendar=Calendar("30 2 * * *", ny))
    history = SpiderHistory(NAME, datetime(2027, 3, 13, 7, 30, tzinfo=timezone.utc))  # the day before's 02:30 EST
    cadence = Cadence(the_job.every, the_job.retry_delay, calendar=the_job.calendar, published_at=now - 240 * H)
    [plan] = decide_jobs([history], now, {NAME: cadence}, Cadence(4 * H, 15 * M)).spiders
    e = why.explain(the_job, plan, history, why.Facts(schedule_since=now - 240 * H), HOLDER, now, ny)
    assert e.rules == ("waiting_calendar",)
    text = e.paragraph()
    assert "02:30 does not exist on 2027-03-14 in America/New_York: this slot is at 03:00 EDT." in text, text
    assert "Not due: its next slot is 2027-03-14 03:00 EDT (07:00 UTC)." in text, text
