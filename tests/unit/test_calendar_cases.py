"""The worked cases of shared/design/calendar-cases.md (1-31; 32 needs the database's unique index,
which is not built yet), each a row of a table, plus cases of our own."""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from daemon.plan.calendar import COUNT_LIMIT, Calendar, latest_slot, next_slot, open_at, parse_window, slots_after, window_on
from daemon.plan.calendar_decision import decide_calendar, interval_start
from daemon.ask.calendar_words import describe_cron

Z = timezone.utc
BOGOTA, NY, BERLIN = ZoneInfo("America/Bogota"), ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")
LONG_AGO = datetime(2020, 1, 1, tzinfo=Z)


def at(tz, *parts, fold=0):
    return datetime(*parts, tzinfo=tz, fold=fold)


def utc(*parts):
    return datetime(*parts, tzinfo=Z)


def plan(cron, tz, last, now, *, published=LONG_AGO, window=None, catch_up=None, **failures):
    calendar = Calendar(cron, tz, parse_window(window) if window else None, catch_up)
    return decide_calendar(calendar, now, published_at=published, last_success_at=last, **failures)


# (case, expression, zone, L, now, due, the slot it covers / would cover, due_at, next slot after now)
DECISIONS = [
    (1, "0 8 * * *", BOGOTA, at(BOGOTA, 2026, 12, 6, 8, 0, 5), at(BOGOTA, 2026, 12, 7, 7, 59),
     False, utc(2026, 12, 7, 13), utc(2026, 12, 7, 13), utc(2026, 12, 7, 13)),
    (2, "0 8 * * *", BOGOTA, at(BOGOTA, 2026, 12, 6, 8, 0, 5), at(BOGOTA, 2026, 12, 7, 8),
     True, utc(2026, 12, 7, 13), utc(2026, 12, 7, 13), utc(2026, 12, 8, 13)),
    (3, "0 8 * * *", BOGOTA, at(BOGOTA, 2026, 12, 7, 7, 59, 59, 900000), at(BOGOTA, 2026, 12, 7, 8, 30),
     True, utc(2026, 12, 7, 13), utc(2026, 12, 7, 13), utc(2026, 12, 8, 13)),
    (8, "30 2 * * *", NY, at(NY, 2026, 3, 7, 2, 30, 10), at(NY, 2026, 3, 8, 12),
     True, utc(2026, 3, 8, 7), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)),
    (9, "30 1 * * *", NY, at(NY, 2026, 10, 31, 1, 30, 10), at(NY, 2026, 11, 1, 12),
     True, utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),
    (10, "30 1 * * *", NY, utc(2026, 11, 1, 5, 30, 5), utc(2026, 11, 1, 6, 45),
     False, utc(2026, 11, 2, 6, 30), utc(2026, 11, 2, 6, 30), utc(2026, 11, 2, 6, 30)),
    (11, "30 1 * * *", NY, utc(2026, 11, 1, 6, 10), utc(2026, 11, 1, 6, 45),
     False, utc(2026, 11, 2, 6, 30), utc(2026, 11, 2, 6, 30), utc(2026, 11, 2, 6, 30)),
    (12, "30 2 * * *", BERLIN, at(BERLIN, 2026, 3, 28, 2, 30, 10), at(BERLIN, 2026, 3, 29, 12),
     True, utc(2026, 3, 29, 1), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)),
    (13, "30 2 * * *", BERLIN, at(BERLIN, 2026, 10, 24, 2, 30, 10), at(BERLIN, 2026, 10, 25, 12),
     True, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
    (14, "0 * * * *", BERLIN, utc(2026, 10, 25, 0, 0, 5), utc(2026, 10, 25, 1, 30),
     True, utc(2026, 10, 25, 1), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)),
    (19, "0 1 * * 0", ZoneInfo("Europe/Dublin"), at(ZoneInfo("Europe/Dublin"), 2021, 3, 21, 1), utc(2021, 3, 22),
     False, utc(2021, 3, 28, 1), utc(2021, 3, 28, 1), utc(2021, 3, 28, 1)),
    (20, "0 0 * * *", ZoneInfo("Asia/Hebron"), at(ZoneInfo("Asia/Hebron"), 2022, 3, 26), at(ZoneInfo("Asia/Hebron"), 2022, 3, 26, 12),
     False, at(ZoneInfo("Asia/Hebron"), 2022, 3, 27, 1), at(ZoneInfo("Asia/Hebron"), 2022, 3, 27, 1),
     at(ZoneInfo("Asia/Hebron"), 2022, 3, 27, 1)),
    (21, "45 1 * * *", ZoneInfo("Australia/Lord_Howe"), utc(2026, 4, 3, 14, 45), at(ZoneInfo("Australia/Lord_Howe"), 2026, 4, 5, 12),
     True, utc(2026, 4, 4, 14, 45), utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)),
    (22, "0 8 29 2 *", BOGOTA, at(BOGOTA, 2024, 2, 29, 8, 0, 5), at(BOGOTA, 2026, 12, 7),
     False, at(BOGOTA, 2028, 2, 29, 8), at(BOGOTA, 2028, 2, 29, 8), at(BOGOTA, 2028, 2, 29, 8)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "cron", "tz", "last", "now", "due", "slot", "due_at", "upcoming"), DECISIONS,
                         ids=[f"case{row[0]}" for row in DECISIONS])  # fmt: skip
def test_a_calendar_job_is_due_exactly_when_its_owed_slot_has_come(case, cron, tz, last, now, due, slot, due_at,
                                                                   upcoming):  # fmt: skip
    p = plan(cron, tz, last, now)
    assert (p.due, p.slot, p.due_at, p.next_slot) == (due, slot, due_at, upcoming)
    assert p.missed == () and p.missed_count == 0


def test_case4_after_downtime_one_crawl_covers_the_latest_slot_and_the_earlier_ones_are_missed():
    p = plan("0 8 * * *", BOGOTA, at(BOGOTA, 2026, 12, 3, 8, 1), at(BOGOTA, 2026, 12, 7, 10))
    assert p.due and p.slot == at(BOGOTA, 2026, 12, 7, 8)
    assert p.missed == tuple(at(BOGOTA, 2026, 12, d, 8) for d in (4, 5, 6)) and p.missed_count == 3
    assert p.next_slot == at(BOGOTA, 2026, 12, 8, 8)
    after = plan("0 8 * * *", BOGOTA, at(BOGOTA, 2026, 12, 7, 10), at(BOGOTA, 2026, 12, 7, 10, 5))
    assert not after.due and after.due_at == at(BOGOTA, 2026, 12, 8, 8)


def test_case5_a_new_calendar_job_waits_for_its_first_slot():
    published = at(BOGOTA, 2026, 12, 7, 15)
    p = plan("0 8 * * *", BOGOTA, None, published, published=published)
    assert (p.due, p.reason, p.due_at, p.slot) == (False, "waiting_slot", utc(2026, 12, 8, 13), utc(2026, 12, 8, 13))


def test_case6_a_success_dated_in_the_future_makes_the_job_due_now():
    p = plan("0 8 * * *", BOGOTA, utc(2026, 12, 7, 13), utc(2026, 12, 7, 11))
    assert (p.due, p.reason, p.due_at) == (True, "clock_skew", utc(2026, 12, 7, 11))


def test_case7_an_every_minute_job_down_two_hours_runs_once_and_lists_100_of_its_111_missed_slots():
    p = plan("* * * * *", Z, utc(2026, 12, 7, 8, 29), utc(2026, 12, 7, 10, 21))
    assert p.due and p.slot == utc(2026, 12, 7, 10, 21)
    assert p.missed_count == 111 and len(p.missed) == 100
    assert p.missed[0] == utc(2026, 12, 7, 8, 30) and p.missed[-1] == utc(2026, 12, 7, 10, 9)


def test_case11_raw_cronsim_would_run_the_slot_again_from_the_second_pass_and_ours_does_not():
    start = utc(2026, 11, 1, 6, 10).astimezone(NY)
    assert next(CronSim("30 1 * * *", start)).astimezone(Z) == utc(2026, 11, 1, 5, 30)  # the defect, as found
    assert next_slot("30 1 * * *", NY, start) == utc(2026, 11, 2, 6, 30)


def test_case13_the_repeated_half_hour_in_berlin_is_one_slot():
    slots = list(_take(slots_after("30 2 * * *", BERLIN, at(BERLIN, 2026, 10, 24, 12)), 2))
    assert slots == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


# (case, expression, zone, from, the slots that follow)
SEQUENCES = [
    (15, "0 3 * * *", ZoneInfo("Europe/Riga"), at(ZoneInfo("Europe/Riga"), 2021, 3, 27, 1, 30),
     ["2021-03-27T03:00:00+02:00", "2021-03-28T04:00:00+03:00", "2021-03-29T03:00:00+03:00"]),
    (16, "1 2 * * *", ZoneInfo("Europe/Paris"), at(ZoneInfo("Europe/Paris"), 2020, 3, 29, 1, 59, 55),
     ["2020-03-29T03:00:00+02:00", "2020-03-30T02:01:00+02:00"]),
    (17, "30 2 * * *", ZoneInfo("Pacific/Auckland"), at(ZoneInfo("Pacific/Auckland"), 2017, 9, 23, 12),
     ["2017-09-24T03:00:00+13:00"]),
    (18, "30 2 * * *", ZoneInfo("Pacific/Auckland"), at(ZoneInfo("Pacific/Auckland"), 2017, 4, 1, 12),
     ["2017-04-02T02:30:00+13:00", "2017-04-03T02:30:00+12:00"]),
    (22, "0 8 29 2 *", BOGOTA, at(BOGOTA, 2026, 12, 7),
     ["2028-02-29T08:00:00-05:00", "2032-02-29T08:00:00-05:00"]),
    (23, "0 0 1,15 * 5", Z, utc(2026, 12, 2),
     ["2026-12-04T00:00:00+00:00", "2026-12-11T00:00:00+00:00", "2026-12-15T00:00:00+00:00", "2026-12-18T00:00:00+00:00"]),
    (24, "0 0 */2 * 5", Z, utc(2026, 12, 2),
     ["2026-12-11T00:00:00+00:00", "2026-12-25T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]),
    (25, "0 0 1-7 * 1", Z, utc(2026, 12, 7, 12),
     ["2026-12-14T00:00:00+00:00", "2026-12-21T00:00:00+00:00", "2026-12-28T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]),
    (25, "0 0 * * MON#1", Z, utc(2026, 12, 7, 12), ["2027-01-04T00:00:00+00:00", "2027-02-01T00:00:00+00:00"]),
    (26, "0 0 31 2 MON", Z, utc(2026, 12, 2), ["2027-02-01T00:00:00+00:00", "2027-02-08T00:00:00+00:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "cron", "tz", "start", "expected"), SEQUENCES,
                         ids=[f"case{row[0]}-{row[1]}" for row in SEQUENCES])  # fmt: skip
def test_the_slots_from_a_moment_are_those_the_sources_give(case, cron, tz, start, expected):
    got = [s.astimezone(tz).isoformat() for s in _take(slots_after(cron, tz, start), len(expected))]
    assert got == expected
    assert all(s.tzinfo is Z for s in _take(slots_after(cron, tz, start), len(expected)))


def test_case18_the_repeated_time_in_auckland_is_the_instant_systemd_gives():
    first = next_slot("30 2 * * *", ZoneInfo("Pacific/Auckland"), at(ZoneInfo("Pacific/Auckland"), 2017, 4, 1, 12))
    assert first.timestamp() == 1491053400


def test_case25_the_wording_says_the_day_fields_are_either_or():
    assert describe_cron("0 0 1-7 * 1") == "At 00:00 on every day of month from 1 through 7 and on Monday"


def test_case27_an_interval_job_due_at_night_waits_for_its_window_to_open():
    calendar = Calendar(None, BOGOTA, parse_window("07:00-22:00"))
    due_at = at(BOGOTA, 2026, 12, 7, 21, 30) + timedelta(hours=2)
    assert interval_start(calendar, due_at) == (utc(2026, 12, 8, 12), "waiting_window")
    assert interval_start(calendar, at(BOGOTA, 2026, 12, 7, 9)) == (at(BOGOTA, 2026, 12, 7, 9), "interval")


def test_case28_a_slot_missed_at_night_runs_when_the_window_opens_unless_too_late():
    args = ("0 8 * * *", BOGOTA, at(BOGOTA, 2026, 12, 6, 8), at(BOGOTA, 2026, 12, 7, 23))
    p = plan(*args, window="07:00-22:00")
    assert (p.due, p.reason, p.due_at, p.slot) == (False, "waiting_window", at(BOGOTA, 2026, 12, 8, 7),
                                                   at(BOGOTA, 2026, 12, 7, 8))  # fmt: skip
    at_seven = plan(*args[:3], at(BOGOTA, 2026, 12, 8, 7), window="07:00-22:00")
    assert at_seven.due and at_seven.slot == at(BOGOTA, 2026, 12, 7, 8)  # kept, late
    then = plan(*args[:2], at(BOGOTA, 2026, 12, 8, 7, 0, 1), at(BOGOTA, 2026, 12, 8, 7, 30), window="07:00-22:00")
    assert (then.due, then.due_at) == (False, at(BOGOTA, 2026, 12, 8, 8))
    late = plan(*args, window="07:00-22:00", catch_up=timedelta(hours=12))
    assert (late.due, late.reason, late.too_late, late.due_at) == (False, "too_late", at(BOGOTA, 2026, 12, 7, 8),
                                                                   at(BOGOTA, 2026, 12, 8, 8))  # fmt: skip


@pytest.mark.parametrize(("day", "opens", "closes"), [
    (date(2026, 3, 8), utc(2026, 3, 8, 6), utc(2026, 3, 8, 7)),  # 02:00-03:00 does not exist: 1 h
    (date(2026, 11, 1), utc(2026, 11, 1, 5), utc(2026, 11, 1, 8)),  # 01:00-02:00 happens twice: 3 h
    (date(2026, 6, 1), utc(2026, 6, 1, 5), utc(2026, 6, 1, 7)),
])  # fmt: skip
def test_case29_window_edges_are_resolved_on_each_local_date(day, opens, closes):
    assert window_on(parse_window("01:00-03:00"), day, NY) == (opens, closes)


def test_case30_retries_back_off_from_the_last_failure_capped_at_the_gap_to_the_next_slot():
    args = ("0 8 * * *", BOGOTA, at(BOGOTA, 2026, 12, 6, 8), at(BOGOTA, 2026, 12, 7, 8, 30))
    p = plan(*args, failures=2, last_failure_at=at(BOGOTA, 2026, 12, 7, 8, 26), retry_delay=timedelta(minutes=15))
    assert (p.due, p.reason, p.due_at, p.slot) == (False, "waiting_retry", at(BOGOTA, 2026, 12, 7, 8, 56),
                                                   at(BOGOTA, 2026, 12, 7, 8))  # fmt: skip
    many = plan(*args, failures=30, last_failure_at=at(BOGOTA, 2026, 12, 7, 8, 26), retry_delay=timedelta(minutes=15))
    assert many.due_at == at(BOGOTA, 2026, 12, 8, 8, 26)  # 24 h: the gap between two slots
    done = plan(*args[:3], at(BOGOTA, 2026, 12, 7, 8, 56), failures=2, last_failure_at=at(BOGOTA, 2026, 12, 7, 8, 26),
                retry_delay=timedelta(minutes=15))  # fmt: skip
    assert (done.due, done.reason, done.slot) == (True, "retry", at(BOGOTA, 2026, 12, 7, 8))


# ----------------------------------------------------------------- our own
def test_a_retry_starts_only_inside_the_window():
    p = plan("0 21 * * *", BOGOTA, at(BOGOTA, 2026, 12, 6, 21), at(BOGOTA, 2026, 12, 7, 21, 50), window="07:00-22:00",
             failures=3, last_failure_at=at(BOGOTA, 2026, 12, 7, 21, 40), retry_delay=timedelta(minutes=15))  # fmt: skip
    assert (p.due, p.reason, p.due_at) == (False, "waiting_window", at(BOGOTA, 2026, 12, 8, 7))


def test_a_failure_for_an_earlier_slot_does_not_hold_back_the_new_slot():
    p = plan("0 8 * * *", BOGOTA, at(BOGOTA, 2026, 12, 5, 8), at(BOGOTA, 2026, 12, 7, 8, 1),
             failures=5, last_failure_at=at(BOGOTA, 2026, 12, 6, 23), retry_delay=timedelta(hours=1))  # fmt: skip
    assert (p.due, p.reason, p.slot) == (True, "slot", at(BOGOTA, 2026, 12, 7, 8))
    assert p.missed == (at(BOGOTA, 2026, 12, 6, 8),)


def test_a_window_crossing_midnight_is_open_after_midnight_on_the_day_after_it_opened():
    night = parse_window("Fri 22:00-06:00")
    assert open_at(night, BOGOTA, at(BOGOTA, 2026, 12, 12, 3)) == at(BOGOTA, 2026, 12, 12, 3)  # Saturday 03:00
    assert open_at(night, BOGOTA, at(BOGOTA, 2026, 12, 12, 7)) == at(BOGOTA, 2026, 12, 18, 22)  # the next Friday


def test_the_latest_slot_is_found_forward_even_a_year_back():
    assert latest_slot("0 8 29 2 *", BOGOTA, LONG_AGO, at(BOGOTA, 2026, 12, 7)) == at(BOGOTA, 2024, 2, 29, 8)


def _take(iterator, count):
    return [value for _, value in zip(range(count), iterator)]


def test_a_schedule_published_ahead_of_the_clock_is_owed_from_now_not_from_then():
    now = at(BOGOTA, 2026, 12, 7, 9)
    p = plan("0 8 * * *", BOGOTA, None, now, published=now + timedelta(days=30))
    assert (p.due, p.due_at) == (False, at(BOGOTA, 2026, 12, 8, 8))


def test_counting_the_slots_a_long_downtime_missed_stops_at_the_limit_and_takes_figured_time():
    import time as clock

    from tests.conftest import figure

    started = clock.perf_counter()
    p = plan("* * * * *", Z, utc(2025, 12, 7), utc(2026, 12, 7))
    elapsed = clock.perf_counter() - started
    assert p.due and p.slot == utc(2026, 12, 7) and p.missed_count == COUNT_LIMIT - 1 and len(p.missed) == 100
    figure(f"calendar: an every-minute job down a year decided in {elapsed * 1000:.0f} ms (counting stops at {COUNT_LIMIT})")
    started = clock.perf_counter()
    for minute in range(1000):
        plan("0 8 * * *", BOGOTA, at(BOGOTA, 2026, 12, 7, 8), at(BOGOTA, 2026, 12, 7, 9) + timedelta(minutes=minute))
    figure(f"calendar: a daily job's plan, nothing owed: {(clock.perf_counter() - started):.3f} ms each (1,000 decided)")
