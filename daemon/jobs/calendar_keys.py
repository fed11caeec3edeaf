"""The jobs file's calendar keys (`cron`, `timezone`, `window`, `catch_up_within`): each value checked
and parsed, and a job's `Calendar` made from its own keys and those of `[defaults]`.

    [defaults]
    timezone = "America/Bogota"      # IANA name; default: SCHEDULER_TIMEZONE (itself UTC by default)

    [jobs.news-morning]
    cron = "0 8 * * 1-5"             # 5 fields, Debian cron semantics; @daily/@hourly/@weekly/@monthly/@yearly
    window = "Mon-Fri 07:00-22:00"   # optional, for cron and every jobs: crawls START only inside it
    catch_up_within = "12h"          # optional, cron jobs only: a slot missed by more than this is recorded, not run

`every` and `cron` exclude each other in one table; a job's own `cron` replaces an `every` inherited
from `[defaults]` or the environment, and a job's own `every` replaces a `cron` of `[defaults]`.
Used by daemon/jobs/rules.py, whose problem lines these texts complete ("... is not allowed: <text>").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.plan.calendar import Calendar, CalendarError, parse_cron, parse_window
from daemon.jobs.jobfile import DURATION_ALLOWED, MAX_DURATION, parse_duration

CALENDAR_KEYS = ("cron", "timezone", "window", "catch_up_within")
TIMEZONE_ALLOWED = "an IANA time zone name such as UTC or America/Bogota"
BOTH = (
    "every and cron are both set: a job has one of them (a job's own cron replaces an every inherited "
    "from [defaults] or the environment)"
)
CATCH_UP_ONLY_WITH_CRON = "catch_up_within is allowed only for a job with cron (an every job is never late by slots)"
# Until the loop acts on them (issue 21), a jobs file using these keys is refused where the daemon
# reads it (daemon/jobs/rules.py `load`), rather than run as if they were not there.
NOT_YET_ACTED_ON = ("cron", "window", "catch_up_within")


def check(key: str, value: Any) -> Any:
    """The parsed value of a calendar key; CalendarError with what is allowed otherwise."""
    if key == "catch_up_within":
        try:
            duration = parse_duration(value)
        except ValueError:
            duration = timedelta(0)
        if not duration or duration > MAX_DURATION:
            raise CalendarError(f"{DURATION_ALLOWED}, greater than 0 and at most 100 years")
        return duration
    if key == "cron":
        if not isinstance(value, str):
            raise CalendarError("a string: 5 cron fields or an @-name such as @daily")
        return parse_cron(value)
    if key == "window":
        if not isinstance(value, str):
            raise CalendarError('a string such as "Mon-Fri 07:00-22:00"')
        return parse_window(value)
    if key == "timezone":
        return zone(value)
    raise KeyError(key)


def zone(value: Any) -> ZoneInfo:
    if not isinstance(value, str) or not value or value != value.strip():
        raise CalendarError(TIMEZONE_ALLOWED)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: odd path-like names
        raise CalendarError(TIMEZONE_ALLOWED) from None


def calendar_of(own: Mapping[str, Any], shared: Mapping[str, Any], own_raw: Mapping[str, Any],
                default_tz: ZoneInfo) -> Calendar | None:  # fmt: skip
    """A job's calendar from its checked keys (`own`), those of [defaults] (`shared`) and the keys the
    job's table names at all (`own_raw`: a bad own `every` still hides a default `cron`). None: an
    interval job without a window, decided as before calendars existed."""
    if "cron" in own_raw:
        cron = own.get("cron")
    elif "every" in own_raw:
        cron = None
    else:
        cron = shared.get("cron")
    values = {**shared, **own}
    window = values.get("window")
    if cron is None and window is None:
        return None
    catch_up: timedelta | None = values.get("catch_up_within") if cron is not None else None
    return Calendar(cron, values.get("timezone", default_tz), window, catch_up)


def table_problems(where: str, table: Mapping[str, Any], *, is_job: bool) -> list[str]:
    """The problems of one table's combination of keys (each key's value is checked on its own)."""
    problems = []
    if "every" in table and "cron" in table:
        problems.append(f"{where}: {BOTH}")
    if is_job and "catch_up_within" in table and "every" in table:
        problems.append(f"{where}: {CATCH_UP_ONLY_WITH_CRON}")
    return problems

