"""How a calendar is said: the expression's English wording, the window, and explain's DST sentences."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from daemon.calendar import Calendar, next_slot, parse_window
from daemon.calendar_words import describe, describe_cron, describe_window, dst_note

NY, BERLIN = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")
Z = timezone.utc


@pytest.mark.parametrize(("cron", "said"), [
    ("0 8 * * 1-5", "At 08:00 on Monday through Friday"),
    ("0 8 * * *", "At 08:00 every day"),
    ("* * * * *", "Every minute"),
    ("0 0 * * MON#1", "At 00:00 on the first Monday of the month"),
])  # fmt: skip
def test_an_expression_is_worded_in_english(cron, said):
    assert describe_cron(cron) == said


@pytest.mark.parametrize(("window", "said"), [
    ("Mon-Fri 07:00-22:00", "starts crawls only 07:00-22:00 on Mon-Fri"),
    ("07:00-22:00", "starts crawls only 07:00-22:00 every day"),
    ("Sat,Sun 22:00-06:00", "starts crawls only 22:00-06:00 (past midnight) on Sat, Sun"),
])  # fmt: skip
def test_a_window_is_worded_with_its_days_and_whether_it_crosses_midnight(window, said):
    assert describe_window(parse_window(window)) == said


def test_a_calendar_is_one_sentence_with_its_zone_window_and_catch_up():
    calendar = Calendar("0 8 * * 1-5", ZoneInfo("America/Bogota"), parse_window("Mon-Fri 07:00-22:00"),
                        timedelta(hours=12))  # fmt: skip
    assert describe(calendar) == (
        "At 08:00 on Monday through Friday (America/Bogota); starts crawls only 07:00-22:00 on Mon-Fri; "
        "a slot missed by more than 12h is recorded, not run."
    )
    assert describe(Calendar(None, NY, parse_window("07:00-22:00"))) == (
        "Times in America/New_York; starts crawls only 07:00-22:00 every day."
    )


def test_a_slot_moved_out_of_the_spring_forward_gap_is_explained():
    slot = next_slot("30 2 * * *", NY, datetime(2027, 3, 13, 12, tzinfo=NY))
    assert dst_note("30 2 * * *", NY, slot) == (
        "02:30 does not exist on 2027-03-14 in America/New_York: this slot is at 03:00 EDT."
    )


def test_two_times_in_one_gap_are_named_together():
    slot = next_slot("0,30 2 * * *", BERLIN, datetime(2026, 3, 28, 12, tzinfo=BERLIN))
    assert slot == datetime(2026, 3, 29, 1, tzinfo=Z)
    assert dst_note("0,30 2 * * *", BERLIN, slot) == (
        "02:00 and 02:30 do not exist on 2026-03-29 in Europe/Berlin: this slot is at 03:00 CEST."
    )


def test_a_repeated_time_is_explained_as_one_slot_the_first():
    slot = next_slot("30 1 * * *", NY, datetime(2026, 10, 31, 12, tzinfo=NY))
    assert dst_note("30 1 * * *", NY, slot) == (
        "01:30 happens twice on 2026-11-01 in America/New_York: this slot is the first, 01:30 EDT; "
        "01:30 EST is not a slot."
    )


@pytest.mark.parametrize(("cron", "tz", "after"), [
    ("30 2 * * *", NY, datetime(2027, 3, 15, tzinfo=NY)),  # an ordinary day
    ("0 * * * *", NY, datetime(2026, 11, 1, 5, 30, tzinfo=Z)),  # `*` follows real time: nothing to say
    ("0 3 * * *", NY, datetime(2027, 3, 13, 12, tzinfo=NY)),  # 03:00 exists on the day clocks spring forward
])  # fmt: skip
def test_an_ordinary_slot_has_no_dst_sentence(cron, tz, after):
    assert dst_note(cron, tz, next_slot(cron, tz, after)) is None
