"""How the loop's plan takes a calendar (issue 21): a cron job through decide_calendar inside
plan_job (due with its slot, else due again at its wake time), an interval job held by its window,
pauses as for every job, and the ledger's causes of missed slots. Pure: `now` is passed in."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from daemon.loop.slot_ledger import missed_cause, missed_rows
from daemon.plan.calendar import Calendar, Window
from daemon.plan.decision import Cadence, Plan, SpiderHistory, plan_job

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
DAILY_8 = Calendar("0 8 * * *", NY)  # 13:00 UTC in winter
PUBLISHED = datetime(2027, 1, 10, 12, tzinfo=UTC)
SLOT_10 = datetime(2027, 1, 10, 13, tzinfo=UTC)
DAY = timedelta(days=1)
H4 = timedelta(hours=4)
RETRY = timedelta(minutes=15)


def cron(calendar: Calendar = DAILY_8, **more) -> Cadence:
    return Cadence(H4, RETRY, calendar=calendar, published_at=PUBLISHED, **more)


def history(success=None, failures=0, failed_at=None) -> SpiderHistory:
    return SpiderHistory("news", success, failures, failed_at)


@pytest.mark.parametrize(
    ("name", "hist", "now", "cadence", "reason", "due_at", "slot", "due"),
    [
        ("before the first slot: waits for it", history(), SLOT_10 - timedelta(minutes=1), cron(),
         "waiting_slot", SLOT_10, None, False),
        ("the slot has come: due, covering it", history(), SLOT_10, cron(), "slot", SLOT_10, SLOT_10, True),
        ("covered by a crawl at the slot: the next one", history(SLOT_10), SLOT_10 + timedelta(hours=1), cron(),
         "waiting_slot", SLOT_10 + DAY, None, False),
        ("a run-now at 07:59 does not cover 08:00", history(SLOT_10 - timedelta(minutes=1)), SLOT_10, cron(),
         "slot", SLOT_10, SLOT_10, True),
        ("three days down: the latest slot", history(SLOT_10), SLOT_10 + 3 * DAY + timedelta(seconds=30), cron(),
         "slot", SLOT_10 + 3 * DAY, SLOT_10 + 3 * DAY, True),
        ("failed after the slot: retried after the backoff", history(None, 1, SLOT_10 + timedelta(minutes=1)),
         SLOT_10 + timedelta(minutes=5), cron(), "waiting_retry", SLOT_10 + timedelta(minutes=16), None, False),
        ("paused until resumed: never due", history(), SLOT_10, cron(paused=True), "paused", None, None, False),
        ("too late: waits for the next slot", history(SLOT_10), SLOT_10 + DAY + timedelta(hours=2),
         cron(Calendar("0 8 * * *", NY, catch_up_within=timedelta(hours=1))), "too_late", SLOT_10 + 2 * DAY, None,
         False),
        ("a schedule never published: owed from now", history(), SLOT_10 + timedelta(hours=1),
         Cadence(H4, RETRY, calendar=DAILY_8), "waiting_slot", SLOT_10 + DAY, None, False),
    ],
)
def test_a_cron_job_is_planned_by_its_calendar(name, hist, now, cadence, reason, due_at, slot, due):
    p = plan_job(hist, now, cadence)
    assert (p.reason, p.due_at, p.slot if due else None) == (reason, due_at, slot), name
    assert (p.spider in Plan(now, (p,)).due) is due, name


def test_a_window_that_shut_holds_a_due_interval_job_until_it_opens():
    night = Cadence(H4, RETRY, calendar=Calendar(None, ZoneInfo("UTC"), Window(time(7), time(22))))
    at_night = datetime(2027, 6, 1, 23, tzinfo=UTC)
    p = plan_job(history(at_night - 5 * H4), at_night, night)
    assert (p.reason, p.due_at) == ("waiting_window", datetime(2027, 6, 2, 7, tzinfo=UTC))
    assert Plan(at_night, (p,)).due == () and Plan(at_night, (p,)).next_due_at == datetime(2027, 6, 2, 7, tzinfo=UTC)
    in_the_day = datetime(2027, 6, 2, 9, tzinfo=UTC)
    assert plan_job(history(at_night - 5 * H4), in_the_day, night).reason == "interval"
    assert plan_job(history(), at_night, night).reason == "waiting_window"  # never ran: at the opening


def test_an_interval_job_without_a_calendar_keeps_todays_plan_exactly():
    now = datetime(2027, 6, 1, 23, tzinfo=UTC)
    assert plan_job(history(now - 5 * H4), now, Cadence(H4, RETRY)) == plan_job(
        history(now - 5 * H4), now, Cadence(H4, RETRY, calendar=None))
    assert plan_job(history(now - 5 * H4), now, Cadence(H4, RETRY)).slot is None


UP = datetime(2027, 1, 13, 13, 0, 30, tzinfo=UTC)
OUTAGE = (datetime(2027, 1, 14, tzinfo=UTC), datetime(2027, 1, 14, 18, tzinfo=UTC))


@pytest.mark.parametrize(
    ("slot", "hist", "cause"),
    [
        (UP - DAY, history(), "daemon_down"),
        (OUTAGE[0] + timedelta(hours=13), history(), "db_down"),
        (UP + 2 * DAY, history(None, 2, UP + 2 * DAY + timedelta(minutes=3)), "error"),  # the kind unknown
        (UP + 2 * DAY, SpiderHistory("news", None, 1, UP + 2 * DAY + timedelta(minutes=3), "timeout"), "timeout"),
        (UP + 2 * DAY, SpiderHistory("news", None, 1, UP + 2 * DAY + timedelta(minutes=3), "too_few_items"),
         "too_few_items"),
        (UP + 2 * DAY, history(None, 2, UP + 2 * DAY - timedelta(minutes=3)), "busy"),  # failed before it
        (UP + 2 * DAY, history(), "busy"),
    ],
)
def test_a_missed_slot_gets_the_first_cause_that_applies(slot, hist, cause):
    assert missed_cause(slot, up_since=UP, outages=[OUTAGE], history=hist) == cause


def test_a_daemon_that_never_decided_missed_every_slot_by_being_down():
    assert missed_cause(UP, up_since=None, outages=[], history=None) == "daemon_down"


def test_missed_slots_the_plan_lists_are_one_row_each_and_the_last_stands_for_the_rest():
    slots = [SLOT_10 + n * DAY for n in range(3)]
    rows = missed_rows(slots, 10, ["daemon_down"] * 3)
    assert [(r.slot_at, r.state, r.cause, n) for r, n in rows] == [
        (slots[0], "missed", "daemon_down", 1), (slots[1], "missed", "daemon_down", 1),
        (slots[2], "missed", "daemon_down", 8)]  # fmt: skip
    assert missed_rows([], 0, []) == []


def test_the_overdue_alert_and_the_interval_on_metrics_take_a_cron_jobs_longest_gap_between_slots():
    from daemon.jobs.catalog import Catalog, cadence
    from tests.unit.test_calendar_jobfile import ENV
    from daemon.jobs.jobfile import make_job

    weekdays = make_job(name="news", spider="news", defaults=ENV, calendar=Calendar("0 8 * * 1-5", NY))
    windowed = make_job(name="prices", spider="prices", defaults=ENV, every=timedelta(hours=2),
                        calendar=Calendar(None, NY, Window(time(7), time(22))))  # fmt: skip
    catalog = Catalog(None, ENV, lambda: [], jobs=[weekdays, windowed], spiders=None)
    # Friday to Monday, an hour longer when the clocks fall back in between
    assert catalog.alert_limits((), timedelta(hours=1)) == {"news": 2 * timedelta(days=3, hours=1),
                                                             "prices": timedelta(hours=52)}  # fmt: skip
    assert cadence(weekdays, {}).every == timedelta(days=3, hours=1)
    assert cadence(windowed, {}).every == timedelta(hours=2)  # an interval job keeps its interval


def test_a_slot_while_the_window_was_shut_is_excused_not_missed():
    hourly = Calendar("0 * * * *", ZoneInfo("UTC"), Window(time(7), time(22)))
    night, day = datetime(2027, 1, 12, 3, tzinfo=UTC), datetime(2027, 1, 12, 9, tzinfo=UTC)
    causes = [missed_cause(s, up_since=UP, outages=[], history=None, calendar=hourly) for s in (night, day)]
    assert causes == ["outside_window", "daemon_down"]
    rows = missed_rows([night, day], 2, causes)
    assert [(r.state, r.cause) for r, _ in rows] == [("excused", "outside_window"), ("missed", "daemon_down")]


def test_the_slots_of_a_pause_the_daemon_saw_are_excused_and_so_are_only_they():
    from daemon.loop.slot_ledger import SlotLedger

    ledger, daily = SlotLedger(), cron()
    ledger.watch_pauses({"news": daily, "prices": Cadence(H4, RETRY, paused=True)}, SLOT_10 - DAY)
    ledger.watch_pauses({"news": cron(paused=True)}, SLOT_10 + DAY)
    ledger.watch_pauses({"news": daily}, SLOT_10 + 3 * DAY)
    assert ledger.pauses == {"news": [(SLOT_10 + DAY, SLOT_10 + 3 * DAY)]}  # an interval job's pause: not watched
    causes = [missed_cause(slot, up_since=UP - 9 * DAY, outages=[], history=None, paused=ledger.pauses["news"])
              for slot in (SLOT_10, SLOT_10 + 2 * DAY, SLOT_10 + 3 * DAY)]  # fmt: skip
    assert causes == ["busy", "paused", "busy"]
    assert [r.state for r, _ in missed_rows([SLOT_10 + 2 * DAY], 1, ["paused"])] == ["excused"]


def test_a_wall_clock_jump_or_a_sleep_over_a_slot_is_its_cause_and_an_ntp_step_is_not_a_jump():
    from daemon.loop.slot_ledger import SlotLedger

    ledger = SlotLedger()
    ledger.deciding(UP, 100.0)
    ledger.deciding(UP + timedelta(seconds=30), 130.5)  # an NTP step of half a second
    ledger.deciding(UP + 2 * DAY, 131.0)  # two days on the wall clock, half a second of monotonic time
    assert ledger.jumps == [(UP + timedelta(seconds=30), UP + 2 * DAY)]
    slot = UP + DAY
    assert missed_cause(slot, up_since=UP, outages=[], history=None, jumps=ledger.jumps) == "clock_jump"
    assert missed_cause(slot, up_since=UP, outages=[], history=None) == "busy"
    assert missed_cause(slot, up_since=UP, outages=[], history=None, jumps=ledger.jumps,
                        paused=[(UP, UP + 3 * DAY)]) == "paused"  # fmt: skip
