"""Properties of the slots across random time zones and dates, DST transitions included: they strictly
increase, a fixed local time gives exactly one slot per matching local date (never two, none skipped),
and `*` expressions follow real time; and the calendar decision covers the latest slot that has come."""

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.plan.calendar import Calendar, Window, is_open, open_at, resolve_local, slots_after
from daemon.plan.calendar_decision import decide_calendar

Z = timezone.utc
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))
zones = st.sampled_from(ZONES).map(ZoneInfo)
# 1990-2036, where the zones change their clocks most (and the transitions tzdata still knows).
moments = st.integers(min_value=631152000, max_value=2082758400).map(lambda s: datetime.fromtimestamp(s, Z))


def take(cron, tz, start, count):
    return [s for _, s in zip(range(count), slots_after(cron, tz, start))]


@settings(max_examples=300, deadline=None)
@given(zones, moments, st.sampled_from(["0 * * * *", "*/15 * * * *", "30 2 * * *", "0 0 * * *", "45 1 * * 0",
                                        "0 3,4 * * *", "0 8 * * 1-5", "* 2 * * *"]))  # fmt: skip
def test_slots_are_utc_instants_strictly_after_the_start_and_strictly_increasing(tz, start, cron):
    slots = take(cron, tz, start, 40)
    assert slots and all(s.tzinfo is Z for s in slots)
    assert slots[0] > start
    assert all(a < b for a, b in zip(slots, slots[1:]))


@settings(max_examples=300, deadline=None)
@given(zones, moments, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59]))
def test_a_fixed_local_time_is_exactly_one_slot_on_every_local_date(tz, start, hour, minute):
    """Never two slots for one date (a repeated hour), none skipped (a time in a spring-forward gap is
    the first instant after it): the slots are the dates' local time resolved as daemon.plan.calendar does."""
    slots = take(f"{minute} {hour} * * *", tz, start, 45)
    first = start.astimezone(tz).date()
    expected = [resolve_local(first + timedelta(days=i), time(hour, minute), tz) for i in range(47)]
    expected = [s for s in expected if s > start][:45]
    assert slots == expected


@settings(max_examples=150, deadline=None)
@given(zones, moments)
def test_an_hourly_expression_follows_real_time_through_every_transition(tz, start):
    """`0 * * * *`: a slot at every real instant whose local minute is 0, none other (both passes of a
    repeated hour included; a skipped hour has none)."""
    slots = take("0 * * * *", tz, start, 30)
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    found = set(slots)
    while minute <= slots[-1]:
        assert (minute in found) == (minute.astimezone(tz).minute == 0), minute
        minute += timedelta(minutes=1)


@settings(max_examples=200, deadline=None)
@given(zones, moments, st.integers(0, 40 * 86400), st.integers(0, 40 * 86400),
       st.sampled_from(["0 8 * * *", "30 2 * * *", "0 */6 * * *", "0 0 * * 1"]))  # fmt: skip
def test_a_due_calendar_job_covers_the_latest_slot_that_has_come_and_owes_nothing_before_it(tz, published, gap, wait,
                                                                                            cron):  # fmt: skip
    last = published + timedelta(seconds=gap)
    now = last + timedelta(seconds=wait)
    p = decide_calendar(Calendar(cron, tz), now, published_at=published, last_success_at=last)
    owed = [s for s in take(cron, tz, last, 400) if s <= now]
    if owed:
        assert p.due and p.slot == owed[-1] and p.missed_count == len(owed) - 1
        assert p.missed == tuple(owed[:-1][:100])
    else:
        assert not p.due and p.due_at == p.next_slot and p.due_at > now
    assert p.next_slot > now


windows = st.builds(
    lambda start, length, days: Window(time(*divmod(start, 60)), time(*divmod((start + length) % 1440, 60)), days),
    st.integers(0, 1439), st.integers(1, 1439),
    st.none() | st.frozensets(st.integers(0, 6), min_size=1),
)


@settings(max_examples=300, deadline=None)
@given(zones, moments, windows)
def test_a_window_opens_at_the_first_open_instant_at_or_after_a_moment(tz, moment, window):
    """The answer is open, and the minute before it (when later than the moment) is shut: no earlier
    opening is passed over; an open moment is its own answer."""
    moment = moment.replace(second=0)
    opens = open_at(window, tz, moment)
    assert opens is not None and opens >= moment and is_open(window, tz, opens)
    if opens > moment:
        assert not is_open(window, tz, opens - timedelta(minutes=1))
        assert opens - moment <= timedelta(days=8)


@settings(max_examples=200, deadline=None)
@given(zones, moments, st.integers(0, 10 * 86400), windows, st.sampled_from(["0 8 * * *", "30 2 * * *", "0 */6 * * *"]))
def test_a_due_calendar_job_is_due_only_inside_its_window(tz, last, wait, window, cron):
    now = last + timedelta(seconds=wait)
    p = decide_calendar(Calendar(cron, tz, window), now, published_at=last, last_success_at=last)
    if p.due:
        assert is_open(window, tz, now)
    elif p.reason == "waiting_window":
        assert p.due_at > now and is_open(window, tz, p.due_at)
