"""The jobs file: what runs, with which arguments and settings, how often.

A job is a spider plus its arguments and settings plus its own cadence. The file is TOML, read
with the stdlib `tomllib`; its path is SCHEDULER_JOBS_FILE, else `schedule.toml` at the root of
the Scrapy project if it exists (`resolve_path`). Without a file every spider of the project is
one job named after it (`default_jobs`): the daemon's behaviour before jobs existed.

The shape is a contract (users and tests depend on these names):

    [defaults]                 # optional; any key of a job may appear here
    every = "4h"               # a duration: "90m", "4h", "1d", "1h30m", "45s", or a number of hours
    timeout = "2h"             # a crawl running longer is stopped and fails
    retry_delay = "15m"        # the wait after a failure (it backs off from there)
    max_errors = 0             # more logged errors than this fails a crawl
    min_items = 0              # a crawl that scraped fewer items is not a success
    jitter = "0m"              # a random delay of up to this much before a due crawl (0 allowed)

    [jobs.python-remote]       # the job's name
    spider = "indeed"          # default: the job's name
    args = { q = "python", l = "remote" }   # -> -a q=python -a l=remote
    settings = { DOWNLOAD_DELAY = 2 }       # -> -s DOWNLOAD_DELAY=2
    every = "2h"
    paused = false             # a paused job stays in the file and never runs
    # Calendar keys (daemon/jobs/calendar_keys.py): cron = "0 8 * * 1-5" (instead of every), timezone,
    # window = "Mon-Fri 07:00-22:00", catch_up_within = "12h". Checked, carried as `Job.calendar`;
    # refused by `jobrules.load` until the loop acts on them.
    notify = ["oncall"]        # the tags of SCHEDULER_NOTIFY_CONFIG's channels its alerts go to
    alert_after = 3            # a failure is alerted from the 3rd in a row (default 1: every one)
    baseline = { items_below = 0.5, duration_above = 3.0 }   # or false: see README "Alerts"

Layering, weakest first: the environment settings (the caller's `JobDefaults`), `[defaults]`, the
job. `args` and `settings` of `[defaults]` are merged key by key with the job's (the job wins).

Rules (checked by daemon/jobs/rules.py; each broken rule is one line naming the file, the job, the key
and what is allowed; every problem is reported at once, in one `JobsFileError`, exit 2):
- The top level holds only `[defaults]` and `[jobs.<name>]`; a file lists at least one job.
- A job's name is 1-100 of `A-Z a-z 0-9 _ . -` and starts with a letter, a digit or `_` (a name
  starting with `-` would read as an option to the commands). Two names that differ only by case
  are refused: `status`, the commands and the history would tell them apart only by case, which
  a person reading them does not. (TOML itself refuses a table declared twice.)
- `spider` is a spider name (`daemon.settings.parsers.SPIDER_NAME`) and, when the project's spiders are
  known, one of them.
- `args` keys are identifiers (`[A-Za-z_][A-Za-z0-9_]*`, Scrapy sets them as spider attributes);
  `settings` names are Scrapy-style (`[A-Z][A-Z0-9_]*`), except those the scheduler passes to
  every crawl itself (`daemon.jobs.crawl.crawl_command`). Values are strings, numbers or booleans, never
  arrays, tables or dates; a string holds no NUL and at most 64 KiB; a number is finite. They are
  kept as the strings `scrapy crawl` receives: booleans as `True`/`False` (what Scrapy's `getbool`
  reads), numbers by their round-tripping `repr`.
- `notify` is a list of tags that SCHEDULER_NOTIFY_CONFIG's channels carry (an unknown tag is an
  error; without channels, every tag is); untagged channels get every alert anyway. `alert_after`
  is a whole number from 1 to 1000. `baseline` is `false` or a table of `items_below` (a number
  above 0 and at most 1) and `duration_above` (at least 1), each optional.
- Durations are positive (jitter may be 0) and at most 100 years (jitter at most 1 day, as
  SCHEDULER_JITTER_MINUTES); `max_errors` and `min_items` are whole numbers from 0.

Nothing here runs anything: `crawl_arguments` gives the extra argv items of a job's crawl, each a
separate item, never a shell string.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from daemon.plan.calendar import Calendar
from daemon.jobs.crawl import crawl_command

if TYPE_CHECKING:
    from daemon.settings.config import Settings

DEFAULT_FILE_NAME = "schedule.toml"

JOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,99}")
# "1d", "4h", "90m", "45s", "1h30m", "1d12h": whole numbers with units, largest first, each once.
DURATION = re.compile(r"(?=\d)(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?")

MAX_DURATION = timedelta(days=36500)
MAX_JITTER = timedelta(days=1)
MAX_COUNT = 10**9
MAX_VALUE_BYTES = 64 * 1024  # one argv item may hold 128 KiB (Linux MAX_ARG_STRLEN)
MAX_FILE_BYTES = 16 * 1024 * 1024
SHOWN_CHARS = 80

DURATION_KEYS = ("every", "timeout", "retry_delay", "jitter")
COUNT_KEYS = ("max_errors", "min_items")
CALENDAR_KEYS = ("cron", "timezone", "window", "catch_up_within")  # daemon/jobs/calendar_keys.py
JOB_KEYS = ("spider", "args", "settings", *DURATION_KEYS, *COUNT_KEYS, "paused", "notify", "alert_after", "baseline",
            *CALENDAR_KEYS)
# A success with fewer items than this times the job's usual (the median of its last 20 successes),
# or a duration above this times its usual, is `suspect` (sql/017).
BASELINE = (0.5, 3.0)
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
TOP_KEYS = ("defaults", "jobs")

DURATION_ALLOWED = "a duration such as 90m, 4h, 1d, 1h30m, or a number of hours"
SPIDER_ALLOWED = "a spider name (letters, digits, _ . -, starting with a letter or _, at most 100 characters)"
VALUE_ALLOWED = (
    f"a string (without NUL, at most {MAX_VALUE_BYTES // 1024} KiB), a finite number or a boolean; "
    "not an array, a table or a date"
)

# The settings every crawl gets from the scheduler: a job may not replace them (its crawl would
# no longer write the stats its verdict is read from, or would open a console).
_CRAWL = crawl_command("spider", Path("stats.json"))
RESERVED_SETTINGS = frozenset(item.split("=", 1)[0] for flag, item in zip(_CRAWL, _CRAWL[1:]) if flag == "-s")
# With SCHEDULER_ENGINE=scrapyd, schedule.json reads these form fields itself (or adds them: `_job`): a spider argument of the same
# name would be swallowed or shadowed, never reach the spider (measured: docs/scrapyd-facts.md).
RESERVED_ARGS = frozenset({"project", "spider", "_version", "jobid", "priority", "setting", "_job"})


@dataclasses.dataclass(frozen=True, slots=True)
class JobDefaults:
    """The values a job gets when neither it nor `[defaults]` sets them."""

    every: timedelta
    timeout: timedelta
    retry_delay: timedelta
    max_errors: int
    min_items: int
    jitter: timedelta
    engine: str = "local"  # SCHEDULER_ENGINE: with scrapyd, the argument names Scrapyd swallows are refused
    timezone: ZoneInfo = ZoneInfo("UTC")  # SCHEDULER_TIMEZONE: a calendar job's zone unless it names one
    notify: tuple[str, ...] = ()
    alert_after: int = 1
    baseline: tuple[float, float] | None = BASELINE  # (items_below, duration_above); None: off
    # The tags of SCHEDULER_NOTIFY_CONFIG's channels that `notify` may name; None: not known here (a
    # command reading the jobs without asking Apprise), every well-formed tag passes.
    notify_tags: frozenset[str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, notify_tags: frozenset[str] | None = None) -> JobDefaults:
        """The environment's SCHEDULER_* settings, as every job had them before the jobs file."""
        return cls(
            every=settings.interval,
            timeout=settings.spider_timeout,
            retry_delay=settings.retry_delay,
            max_errors=settings.max_spider_errors,
            min_items=0,
            jitter=settings.jitter,
            engine=settings.engine,
            timezone=settings.timezone,
            notify_tags=notify_tags,
        )


@dataclasses.dataclass(frozen=True, slots=True)  # slots: one per job, 10,000 of them in a large file
class Job:
    name: str
    spider: str
    args: tuple[tuple[str, str], ...]  # in file order, values as `scrapy crawl` receives them
    settings: tuple[tuple[str, str], ...]
    every: timedelta
    timeout: timedelta
    retry_delay: timedelta
    max_errors: int
    min_items: int
    jitter: timedelta
    paused: bool
    notify: tuple[str, ...] = ()  # the tags choosing its alerts' channels
    alert_after: int = 1  # failures in a row before one is alerted (and its recovery told)
    baseline: tuple[float, float] | None = BASELINE  # (items_below, duration_above) of its verdicts; None: off
    calendar: Calendar | None = None  # cron, time zone, window, catch-up (None: an interval job, no window)


def resolve_path(jobs_file_setting: str | None, project_dir: Path) -> Path | None:
    """SCHEDULER_JOBS_FILE if set; else the project's schedule.toml if it exists; else None (no file:
    `default_jobs`). Whether the file can be read is `jobrules.load`'s to say."""
    if jobs_file_setting and jobs_file_setting.strip():
        return Path(jobs_file_setting.strip())
    candidate = project_dir / DEFAULT_FILE_NAME
    return candidate if os.path.lexists(candidate) else None


def default_jobs(spiders: Iterable[str], defaults: JobDefaults) -> tuple[Job, ...]:
    """Without a file: one job per spider, named after it, with the environment's values."""
    return tuple(make_job(name=spider, spider=spider, defaults=defaults) for spider in spiders)


def crawl_arguments(job: Job) -> list[str]:
    """The argv items a job adds to `scrapy crawl <spider>`: `-a k=v` per argument, `-s K=V` per
    setting, each flag and each pair a separate item (no shell ever reads them)."""
    argv: list[str] = []
    for key, value in job.args:
        argv += ["-a", f"{key}={value}"]
    for key, value in job.settings:
        argv += ["-s", f"{key}={value}"]
    return argv


def parse_duration(value: Any) -> timedelta:
    """A duration as the file spells it: "90m", "4h", "1d", "1h30m", "45s" (whole numbers with units,
    largest first, each once), or a number of hours. ValueError otherwise, or when out of range
    (0 is allowed here: each caller says whether it accepts it)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0 or value > MAX_DURATION / timedelta(hours=1):
            raise ValueError(value)
        return timedelta(hours=value)
    if isinstance(value, str) and (match := DURATION.fullmatch(value)):
        days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
        total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
        if total > MAX_DURATION.total_seconds():
            raise ValueError(value)
        return timedelta(seconds=total)
    raise ValueError(value)


def format_duration(value: timedelta) -> str:
    """The shortest spelling `parse_duration` reads back, to the second: "1h30m", "1d", "45s", "0m"."""
    total = round(value.total_seconds())
    if total <= 0:
        return "0m"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def make_job(
    *,
    name: str,
    spider: str,
    defaults: JobDefaults,
    args: Mapping[str, str] | tuple[tuple[str, str], ...] | None = None,
    settings: Mapping[str, str] | tuple[tuple[str, str], ...] | None = None,
    paused: bool = False,
    calendar: Calendar | None = None,
    **values: Any,
) -> Job:
    fields = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)
              if f.name not in ("engine", "timezone", "notify_tags")} | values  # fmt: skip
    return Job(
        name=name,
        spider=spider,
        args=args if isinstance(args, tuple) else tuple((args or {}).items()),  # a tuple: as given (shared)
        settings=settings if isinstance(settings, tuple) else tuple((settings or {}).items()),
        paused=paused,
        calendar=calendar,
        **fields,
    )


