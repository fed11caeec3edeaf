"""Calendar schedules: a cron expression's slots in a job's time zone, and its window. Pure.

The jobs file's `cron`, `timezone` and `window` keys (daemon/jobs/calendar_keys.py) become a `Calendar`;
this module says when its slots are, as UTC instants, and when its window is open. The decision that
uses them is daemon/plan/calendar_decision.py. Parsing and iterating are `cronsim`'s (pinned: requirements.txt),
wrapped here and only here, so that what it does at DST is decided once:

- A slot is an instant in UTC. A local time that does not exist (clocks spring forward) is the first
  instant after the gap, never skipped; a fixed local time that happens twice (clocks fall back) is
  one slot, its first occurrence; an expression with `*` in its minute or hour field follows real
  time (`0 * * * *` runs in both passes of a repeated hour). cronsim does all three itself.
- cronsim 2.8 has two defects, guarded here: started inside the second pass of a repeated hour,
  `next()` may return a time *before* the start (the slot would run twice), so `next()` is called
  again until its answer lies strictly after the start; and iterating in reverse misses the first
  pass of a repeated hour, so nothing here iterates backwards: the latest slot at or before a moment
  is found by iterating forward from a point before it.

A window ("Mon-Fri 07:00-22:00", "07:00-22:00", "22:00-06:00" crossing midnight) is [start, end) in
the job's time zone, resolved on each local date separately, the way the slots are: an edge that does
not exist that day is the first instant after the gap, an edge that happens twice is its first
occurrence. The days name the local date the window opens on.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

UTC = timezone.utc

# The spellings of cron's @-names that run something (Debian cron's; @reboot is refused: a daemon
# restart is not a schedule).
ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}  # fmt: skip
CRON_ALLOWED = (
    "5 fields (minute hour day-of-month month day-of-week) with Debian cron semantics, "
    "or @yearly, @monthly, @weekly, @daily, @hourly"
)
WINDOW_ALLOWED = 'optional days and a time range such as "Mon-Fri 07:00-22:00", "07:00-22:00" or "22:00-06:00"'
# An expression is checked for an occurrence from this fixed date (not the clock: parsing is pure);
# cronsim looks 50 years ahead, so leap days (`0 0 29 2 *`) and fifth Mondays are found.
OCCURRENCE_FROM = datetime(2000, 1, 1, tzinfo=UTC)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
_TIME = r"([01]\d|2[0-3]):([0-5]\d)"
_WINDOW = re.compile(rf"(?:(?P<days>[A-Za-z,\- ]+?)\s+)?{_TIME}\s*-\s*{_TIME}")
_NAMED_FIELD = re.compile(r"^[A-Za-z_]+=")  # CRON_TZ=..., TZ=..., MAILTO=...
# Counting the slots a long downtime missed stops here: each costs ~12 us of cronsim, so an
# every-minute job down for a year would take 1.2 s of a tick to count exactly; 10,000 take ~0.12 s.
# The ledger writes at most 100 rows and a summary, which then says "at least".
COUNT_LIMIT = 10_000


class CalendarError(ValueError):
    """A cron expression or a window that is not allowed; its text says why, in a few words."""


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """[start, end) of local time on the days given (None: every day); end <= start crosses midnight."""

    start: time
    end: time
    days: frozenset[int] | None = None  # date.weekday() numbers of the date the window opens on

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


@dataclasses.dataclass(frozen=True, slots=True)
class Calendar:
    """A job's calendar: its expression (None: an interval job with a window or a time zone only),
    its time zone, its window and how late a slot may still be caught up (None: always)."""

    cron: str | None
    tz: ZoneInfo
    window: Window | None = None
    catch_up_within: timedelta | None = None


def parse_cron(text: str) -> str:
    """The expression as cronsim reads it (an @-name spelled out); CalendarError when it is not
    allowed: not 5 fields (a sixth, seconds, included), @reboot, a CRON_TZ=/TZ= prefix, a field
    cronsim refuses, or no occurrence at all."""
    from cronsim import CronSim, CronSimError  # only when a jobs file has a calendar job

    stripped = " ".join(text.split())
    if stripped.lower() == "@reboot":
        raise CalendarError("@reboot is not a schedule (a restart of the daemon is not a slot)")
    if _NAMED_FIELD.match(stripped):
        raise CalendarError("a CRON_TZ=/TZ= prefix is not read: set the job's timezone instead")
    expr = ALIASES.get(stripped.lower(), stripped)
    if expr.startswith("@"):
        raise CalendarError(f"unknown @-name; {CRON_ALLOWED}")
    if len(expr.split()) != 5:
        raise CalendarError(f"{len(expr.split())} fields; {CRON_ALLOWED}")
    try:
        it = CronSim(expr, OCCURRENCE_FROM)
    except CronSimError as exc:
        fields = expr.split()
        if str(exc) == "Bad day-of-month" and _parses(" ".join(fields[:3] + ["*", fields[4]])):
            raise CalendarError("no time ever matches it: that day never falls in those months") from None
        raise CalendarError(f"{str(exc).lower()} field; {CRON_ALLOWED}") from None
    try:
        next(it)
    except StopIteration:
        raise CalendarError("no time ever matches it") from None
    return expr


def _parses(expr: str) -> bool:
    from cronsim import CronSim, CronSimError

    try:
        CronSim(expr, OCCURRENCE_FROM)
    except CronSimError:
        return False
    return True


def parse_window(text: str) -> Window:
    """ "Mon-Fri 07:00-22:00", "Sat,Sun 09:00-12:00", "07:00-22:00", "22:00-06:00"; CalendarError
    otherwise (bad days, bad times, start = end)."""
    match = _WINDOW.fullmatch(text.strip())
    if not match:
        raise CalendarError(WINDOW_ALLOWED)
    start = time(int(match[2]), int(match[3]))
    end = time(int(match[4]), int(match[5]))
    if start == end:
        raise CalendarError("start = end: an empty window (a window of a whole day is no window)")
    days = _days(match["days"]) if match["days"] else None
    return Window(start, end, days)


def _days(text: str) -> frozenset[int]:
    """ "Mon-Fri", "Sat,Sun", "Mon,Wed-Fri", "Fri-Mon" (a range may wrap past Sunday)."""
    days: set[int] = set()
    for part in text.replace(" ", "").lower().split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(end[:3] not in DAYS or len(end) < 3 for end in ends):
            raise CalendarError("bad days: use Mon Tue Wed Thu Fri Sat Sun, ranges such as Mon-Fri, commas")
        first, last = DAYS.index(ends[0][:3]), DAYS.index(ends[-1][:3])
        days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return frozenset(days)


# ----------------------------------------------------------------- slots
def slots_after(cron: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The slots strictly after `after`, in order, each a UTC instant, strictly increasing. Forward
    iteration only, every answer checked against the last (cronsim's second-pass defect)."""
    from cronsim import CronSim

    floor = after.astimezone(UTC)
    # cronsim drops microseconds and answers strictly after the second it starts from.
    it = CronSim(cron, floor.astimezone(tz).replace(microsecond=0))
    while True:
        try:
            slot = next(it).astimezone(UTC)
        except StopIteration:  # nothing within cronsim's 50 years
            return
        if slot > floor:
            yield slot
            floor = slot


def next_slot(cron: str, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first slot strictly after `after` (None: none within 50 years)."""
    return next(slots_after(cron, tz, after), None)


GAP_SPAN = timedelta(days=400)  # longest_gap looks at the slots of this span (a yearly job: one gap)
GAP_SLOTS = 1000  # ...or this many slots, whichever ends first


@functools.lru_cache(maxsize=4096)
def longest_gap(cron: str, tz: ZoneInfo, since: datetime = datetime(2025, 1, 1, tzinfo=UTC)) -> timedelta | None:
    """The longest time between two slots over a reference year (from `since`): what the overdue
    alert allows a calendar job, twice over (a weekday job's Friday to Monday). None: fewer than two."""
    longest: timedelta | None = None
    previous: datetime | None = None
    for n, slot in enumerate(slots_after(cron, tz, since)):
        if previous is not None:
            longest = max(longest or timedelta(0), slot - previous)
        if n >= GAP_SLOTS or slot - since > GAP_SPAN:
            break
        previous = slot
    return longest


def latest_slot(cron: str, tz: ZoneInfo, after: datetime, until: datetime) -> datetime | None:
    """The latest slot in (after, until], found iterating forward from ever earlier starts (1 day
    before `until`, then 4, 16, ... never before `after`): cronsim's reverse iteration is not used."""
    lookback = timedelta(days=1)
    while True:
        start = max(after, until - lookback)
        found = None
        for slot in slots_after(cron, tz, start):
            if slot > until:
                break
            found = slot
        if found is not None or start == after:
            return found
        lookback *= 4


def owed_slots(cron: str, tz: ZoneInfo, after: datetime, until: datetime,
               keep: int = 100) -> tuple[tuple[datetime, ...], int, datetime | None]:  # fmt: skip
    """The slots in (after, until]: (the first `keep` of them, how many there are — at most
    COUNT_LIMIT, the latest of them or None)."""
    first: list[datetime] = []
    count = 0
    for slot in slots_after(cron, tz, after):
        if slot > until:
            break
        count += 1
        if count <= keep:
            first.append(slot)
        if count >= COUNT_LIMIT:
            return tuple(first), count, latest_slot(cron, tz, slot, until) or slot
    return tuple(first), count, (first[-1] if count <= keep and first else latest_slot(cron, tz, after, until))


# ----------------------------------------------------------------- local times and windows
def resolve_local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local date and time: a time in a gap (spring forward) is the first instant
    after the gap; a time that happens twice (fall back) is its first occurrence."""
    local = datetime.combine(day, at, tzinfo=tz)  # fold=0: the first occurrence
    step = 0
    while not exists(local):
        step += 1  # gaps are whole minutes (at most a day: Samoa, 2011-12-30)
        local = datetime.combine(day, at, tzinfo=tz) + timedelta(minutes=step)
    return local.astimezone(UTC)


def exists(local: datetime) -> bool:
    """Whether an aware local time happens at all (it does not in a spring-forward gap)."""
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(fold=0) == local.replace(fold=0)


def repeated(local: datetime) -> bool:
    """Whether a local time happens twice (in a fall-back overlap)."""
    naive = local.replace(tzinfo=None)
    first = naive.replace(tzinfo=local.tzinfo, fold=0)
    second = naive.replace(tzinfo=local.tzinfo, fold=1)
    return exists(first) and first.utcoffset() != second.utcoffset()


def window_on(window: Window, day: date, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    """[open, close) of the window that opens on local date `day` (None: not on that day)."""
    if window.days is not None and day.weekday() not in window.days:
        return None
    close_day = day + timedelta(days=1) if window.crosses_midnight else day
    opens, closes = resolve_local(day, window.start, tz), resolve_local(close_day, window.end, tz)
    return (opens, closes) if closes > opens else None  # both edges in one gap: shut that day


def open_at(window: Window | None, tz: ZoneInfo, moment: datetime) -> datetime | None:
    """The first instant at or after `moment` when the window is open: `moment` itself when it is
    open then (always, without a window); None when it never opens again (no days within 8 days
    cannot happen for a parsed window, but a window may be shut by a gap on its only day)."""
    if window is None:
        return moment
    today = moment.astimezone(tz).date()
    for offset in range(-1, 9):  # yesterday's window may still be open past midnight
        span = window_on(window, today + timedelta(days=offset), tz)
        if span is None or span[1] <= moment:
            continue
        return max(span[0], moment)
    return None


def is_open(window: Window | None, tz: ZoneInfo, moment: datetime) -> bool:
    return open_at(window, tz, moment) == moment


def as_record(calendar: Calendar) -> dict[str, object]:
    """The calendar as the jobs table keeps it (sql/019): JSON types only, read back by `from_record`."""
    window = calendar.window
    return {
        "cron": calendar.cron,
        "tz": calendar.tz.key,
        "window": None if window is None else {
            "start": window.start.strftime("%H:%M"), "end": window.end.strftime("%H:%M"),
            "days": None if window.days is None else sorted(window.days),
        },
        "catch_up_within_s": None if calendar.catch_up_within is None else calendar.catch_up_within.total_seconds(),
    }  # fmt: skip


def from_record(record: dict[str, object]) -> Calendar:
    """The calendar `as_record` wrote."""
    window = record.get("window")
    catch_up = record.get("catch_up_within_s")
    return Calendar(
        cron=record.get("cron"),  # type: ignore[arg-type]
        tz=ZoneInfo(str(record["tz"])),
        window=None if not isinstance(window, dict) else Window(
            time.fromisoformat(window["start"]), time.fromisoformat(window["end"]),
            None if window.get("days") is None else frozenset(window["days"]),
        ),
        catch_up_within=None if catch_up is None else timedelta(seconds=float(catch_up)),  # type: ignore[arg-type]
    )  # fmt: skip
