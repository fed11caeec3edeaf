"""How a calendar is said: the expression's English wording, the window, and explain's DST sentences."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from daemon.plan.calendar import Calendar, next_slot, parse_window
from daemon.plan.calendar_decision import decide_calendar
from daemon.ask.calendar_words import describe, describe_cron, describe_window, dst_note, explain_plan

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


BOGOTA = ZoneInfo("America/Bogota")


def explained(cron, tz, last, now, window=None, catch_up=None, **failures):
    calendar = Calendar(cron, tz, parse_window(window) if window else None, catch_up)
    plan = decide_calendar(calendar, now, published_at=datetime(2020, 1, 1, tzinfo=Z), last_success_at=last,
                           **failures)  # fmt: skip
    return explain_plan(calendar, plan)


@pytest.mark.parametrize(("args", "sentences"), [
    (("0 8 * * *", BOGOTA, datetime(2026, 12, 3, 8, 1, tzinfo=BOGOTA), datetime(2026, 12, 7, 10, tzinfo=BOGOTA)), [
        "Due for the slot of 2026-12-07 08:00 -05 (13:00 UTC).",
        "3 earlier slots were missed (the first 2026-12-04 08:00 -05 (13:00 UTC)); one crawl covers the latest.",
    ]),
    (("0 8 * * *", BOGOTA, datetime(2026, 12, 7, 8, tzinfo=BOGOTA), datetime(2026, 12, 7, 9, tzinfo=BOGOTA)), [
        "Not due: its next slot is 2026-12-08 08:00 -05 (13:00 UTC).",
    ]),
    (("0 8 * * *", BOGOTA, datetime(2026, 12, 6, 8, tzinfo=BOGOTA), datetime(2026, 12, 7, 23, tzinfo=BOGOTA),
      "07:00-22:00"), [
        "Due for the slot of 2026-12-07 08:00 -05 (13:00 UTC), but it starts crawls only 07:00-22:00 every day: "
        "its window opens at 2026-12-08 07:00 -05 (12:00 UTC).",
    ]),
    (("0 8 * * *", BOGOTA, datetime(2026, 12, 6, 8, tzinfo=BOGOTA), datetime(2026, 12, 7, 23, tzinfo=BOGOTA),
      "07:00-22:00", timedelta(hours=12)), [
        "The slot of 2026-12-07 08:00 -05 (13:00 UTC) is more than 12h late (catch_up_within): recorded, not run; "
        "the next slot is 2026-12-08 08:00 -05 (13:00 UTC).",
    ]),
    (("30 2 * * *", NY, datetime(2027, 3, 13, 2, 30, tzinfo=NY), datetime(2027, 3, 14, 3, 10, tzinfo=NY)), [
        "Due for the slot of 2027-03-14 03:00 EDT (07:00 UTC).",
        "02:30 does not exist on 2027-03-14 in America/New_York: this slot is at 03:00 EDT.",
    ]),
])  # fmt: skip
def test_explain_says_which_slot_why_and_what_dst_did(args, sentences):
    assert explained(*args) == sentences


def test_explain_says_when_a_retry_of_the_slot_comes():
    assert explained("0 8 * * *", BOGOTA, datetime(2026, 12, 6, 8, tzinfo=BOGOTA),
                     datetime(2026, 12, 7, 8, 30, tzinfo=BOGOTA), failures=2, last_failure_at=datetime(2026, 12, 7, 8, 26, tzinfo=BOGOTA),
                     retry_delay=timedelta(minutes=15)) == [  # fmt: skip
        "Retrying the slot of 2026-12-07 08:00 -05 (13:00 UTC) after a failure: at 2026-12-07 08:56 -05 (13:56 UTC) "
        "(the backoff is capped at the gap to the next slot)."
    ]
