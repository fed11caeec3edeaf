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

Layering, weakest first: the environment settings (the caller's `JobDefaults`), `[defaults]`, the
job. `args` and `settings` of `[defaults]` are merged key by key with the job's (the job wins).

Rules (each broken rule is one line naming the file, the job, the key and what is allowed; every
problem is reported at once, in one `JobsFileError`, which exits 2 like a bad setting):
- The top level holds only `[defaults]` and `[jobs.<name>]`; a file lists at least one job.
- A job's name is 1-100 of `A-Z a-z 0-9 _ . -` and starts with a letter, a digit or `_` (a name
  starting with `-` would read as an option to the commands). Two names that differ only by case
  are refused: `status`, the commands and the history would tell them apart only by case, which
  a person reading them does not. (TOML itself refuses a table declared twice.)
- `spider` is a spider name (`daemon.config.SPIDER_NAME`) and, when the project's spiders are
  known, one of them.
- `args` keys are identifiers (`[A-Za-z_][A-Za-z0-9_]*`, Scrapy sets them as spider attributes);
  `settings` names are Scrapy-style (`[A-Z][A-Z0-9_]*`), except those the scheduler passes to
  every crawl itself (`daemon.crawl.crawl_command`). Values are strings, numbers or booleans, never
  arrays, tables or dates; a string holds no NUL and at most 64 KiB; a number is finite. They are
  kept as the strings `scrapy crawl` receives: booleans as `True`/`False` (what Scrapy's `getbool`
  reads), numbers by their round-tripping `repr`.
- Durations are positive (jitter may be 0) and at most 100 years (jitter at most 1 day, as
  SCHEDULER_JITTER_MINUTES); `max_errors` and `min_items` are whole numbers from 0.

Nothing here runs anything: `crawl_arguments` gives the extra argv items of a job's crawl, each a
separate item, never a shell string.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import stat
import tomllib
from collections.abc import Collection, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.config import SPIDER_NAME
from daemon.crawl import crawl_command
from daemon.errors import JobsFileError

if TYPE_CHECKING:
    from daemon.config import Settings

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
JOB_KEYS = ("spider", "args", "settings", *DURATION_KEYS, *COUNT_KEYS, "paused")
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


@dataclasses.dataclass(frozen=True)
class JobDefaults:
    """The values a job gets when neither it nor `[defaults]` sets them."""

    every: timedelta
    timeout: timedelta
    retry_delay: timedelta
    max_errors: int
    min_items: int
    jitter: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> JobDefaults:
        """The environment's SCHEDULER_* settings, as every job had them before the jobs file."""
        return cls(
            every=settings.interval,
            timeout=settings.spider_timeout,
            retry_delay=settings.retry_delay,
            max_errors=settings.max_spider_errors,
            min_items=0,
            jitter=settings.jitter,
        )


@dataclasses.dataclass(frozen=True)
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


def resolve_path(jobs_file_setting: str | None, project_dir: Path) -> Path | None:
    """SCHEDULER_JOBS_FILE if set; else the project's schedule.toml if it exists; else None (no file:
    `default_jobs`). Whether the file can be read is `load`'s to say."""
    if jobs_file_setting and jobs_file_setting.strip():
        return Path(jobs_file_setting.strip())
    candidate = project_dir / DEFAULT_FILE_NAME
    return candidate if os.path.lexists(candidate) else None


def default_jobs(spiders: Iterable[str], defaults: JobDefaults) -> tuple[Job, ...]:
    """Without a file: one job per spider, named after it, with the environment's values."""
    return tuple(_job(name=spider, spider=spider, defaults=defaults) for spider in spiders)


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


def load(path: Path, defaults: JobDefaults, known_spiders: Collection[str] | None = None) -> tuple[Job, ...]:
    """The jobs of the file at `path`; `JobsFileError` listing every problem otherwise."""
    source = str(path)
    try:
        # O_NONBLOCK: a FIFO put in the file's place must not block the daemon.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise JobsFileError([f"{source}: cannot be read: {exc.strerror or type(exc).__name__}"]) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JobsFileError([f"{source}: cannot be read: it is not a regular file"])
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:  # EIO, say
            raise JobsFileError([f"{source}: cannot be read: {exc.strerror or type(exc).__name__}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise JobsFileError([f"{source}: cannot be read: it holds more than {MAX_FILE_BYTES // 2**20} MiB"])
    try:
        text = data.decode("utf-8-sig")  # TOML is UTF-8; a byte-order mark (Windows editors) is dropped
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise JobsFileError([f"{source}: is not UTF-8 text (line {line})"]) from None
    return parse(text, source, defaults, known_spiders)


def parse(
    text: str, source_name: str, defaults: JobDefaults, known_spiders: Collection[str] | None = None
) -> tuple[Job, ...]:
    """The jobs of a jobs file's text, in file order; `source_name` names the file in problems."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobsFileError([f"{source_name}: is not valid TOML: {_located(str(exc), text)}"]) from None
    checker = _Checker(source_name, known_spiders)
    jobs = checker.document(document, defaults)
    if checker.problems:
        raise JobsFileError(checker.problems)
    return jobs


def _located(message: str, text: str) -> str:
    """tomllib's message, which ends "(at line L, column C)", or "(at end of document)" when the
    error is found there: then the line and column of the end, counted as tomllib counts them."""
    if not message.endswith("(at end of document)"):
        return message
    line = text.count("\n") + 1
    column = len(text) - text.rfind("\n")  # 1-based; rfind gives -1 on the first line
    return message.removesuffix("(at end of document)") + f"(at line {line}, column {column}: the end of the file)"


def _job(
    *,
    name: str,
    spider: str,
    defaults: JobDefaults,
    args: Mapping[str, str] | None = None,
    settings: Mapping[str, str] | None = None,
    paused: bool = False,
    **values: Any,
) -> Job:
    fields = {field.name: getattr(defaults, field.name) for field in dataclasses.fields(defaults)} | values
    return Job(
        name=name,
        spider=spider,
        args=tuple((args or {}).items()),
        settings=tuple((settings or {}).items()),
        paused=paused,
        **fields,
    )


class _Checker:
    """Walks the parsed document once, remembering every problem instead of stopping at the first."""

    def __init__(self, source: str, known_spiders: Collection[str] | None) -> None:
        self.source = source
        self.known = None if known_spiders is None else frozenset(known_spiders)
        self.problems: list[str] = []

    def document(self, document: dict[str, Any], env_defaults: JobDefaults) -> tuple[Job, ...]:
        for key in document:
            if key not in TOP_KEYS:
                self._unknown(self.source, key, TOP_KEYS, "only [defaults] and [jobs.<name>] tables")
        shared: dict[str, Any] = {}
        if "defaults" in document:
            table = document["defaults"]
            if isinstance(table, dict):
                shared = self._keys(f"{self.source}: [defaults]", table)
            else:
                self._bad(self.source, "defaults", table, "a table: [defaults] holding keys of a job")
        jobs_table = document.get("jobs")
        if jobs_table is not None and not isinstance(jobs_table, dict):
            self._bad(self.source, "jobs", jobs_table, "tables [jobs.<name>], one per job")
            return ()
        if not jobs_table:
            self.problems.append(f"{self.source}: no job: a jobs file lists at least one [jobs.<name>] table")
            return ()
        if "spider" in shared:
            self._known_spider(f"{self.source}: [defaults]", shared["spider"])
        default_spider_given = isinstance(document.get("defaults"), dict) and "spider" in document["defaults"]
        layered = dataclasses.replace(env_defaults, **{k: shared[k] for k in DURATION_KEYS + COUNT_KEYS if k in shared})
        jobs: list[Job] = []
        seen: dict[str, str] = {}
        for name, table in jobs_table.items():
            where = f"{self.source}: job {_show(name)}"
            if not JOB_NAME.fullmatch(name):
                self.problems.append(
                    f"{where}: the name is not allowed: 1 to 100 letters, digits, _ . -, starting with a letter, "
                    "a digit or _"
                )
            elif name.lower() in seen:
                self.problems.append(
                    f"{where}: the name is not allowed: it differs only by case from job {_show(seen[name.lower()])} "
                    "(job names must differ in more than case)"
                )
            else:
                seen[name.lower()] = name
            if not isinstance(table, dict):
                self.problems.append(
                    f"{where}: the value {_show(table)} is not allowed: a table [jobs.<name>] of the job's keys"
                )
                continue
            own = self._keys(where, table)
            if "spider" in own:
                spider = own["spider"]
                self._known_spider(where, spider)
            elif "spider" in table:
                continue  # a bad spider, already told
            elif "spider" in shared:
                spider = shared["spider"]  # checked once, at [defaults]
            elif default_spider_given:
                continue  # a bad default spider, already told
            elif SPIDER_NAME.fullmatch(name):
                spider = name
                self._known_spider(where, spider, implicit=True)
            else:
                self.problems.append(
                    f"{where}: spider={_show(name)} (the job's name) is not allowed: {SPIDER_ALLOWED}; "
                    'name the spider with spider = "..."'
                )
                continue
            values = {**shared, **own}
            jobs.append(
                _job(
                    name=name,
                    spider=spider,
                    defaults=layered,
                    args={**shared.get("args", {}), **own.get("args", {})},
                    settings={**shared.get("settings", {}), **own.get("settings", {})},
                    paused=values.get("paused", False),
                    **{k: own[k] for k in DURATION_KEYS + COUNT_KEYS if k in own},
                )
            )
        return tuple(jobs)

    def _keys(self, where: str, table: dict[str, Any]) -> dict[str, Any]:
        """The valid keys of a job or of [defaults], checked and converted; problems noted."""
        out: dict[str, Any] = {}
        for key, value in table.items():
            if key not in JOB_KEYS:
                self._unknown(where, key, JOB_KEYS, "one of " + ", ".join(JOB_KEYS))
            elif key == "spider":
                if isinstance(value, str) and SPIDER_NAME.fullmatch(value):
                    out[key] = value
                else:
                    self._bad(where, key, value, SPIDER_ALLOWED)
            elif key in ("args", "settings"):
                out[key] = self._pairs(where, key, value)
            elif key in DURATION_KEYS:
                duration = self._duration(value, zero_allowed=key == "jitter")
                if duration is None:
                    bounds = (
                        "0 or more and at most 1 day"
                        if key == "jitter"
                        else "greater than 0 and at most 100 years"
                    )
                    self._bad(where, key, value, f"{DURATION_ALLOWED}, {bounds}")
                else:
                    out[key] = duration
            elif key in COUNT_KEYS:
                if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
                    out[key] = value
                else:
                    self._bad(where, key, value, f"a whole number from 0 to {MAX_COUNT}")
            elif key == "paused":
                if isinstance(value, bool):
                    out[key] = value
                else:
                    self._bad(where, key, value, "true or false")
        return out

    def _duration(self, value: Any, *, zero_allowed: bool) -> timedelta | None:
        try:
            duration = parse_duration(value)
        except ValueError:
            return None
        if duration > (MAX_JITTER if zero_allowed else MAX_DURATION) or (not duration and not zero_allowed):
            return None
        return duration

    def _pairs(self, where: str, key: str, value: Any) -> dict[str, str]:
        """`args` or `settings`: names checked, values rendered as `scrapy crawl` receives them."""
        if key == "args":
            pattern = ARG_NAME
            names = "argument names of letters, digits and _, not starting with a digit, at most 100 characters"
        else:
            pattern = SETTING_NAME
            names = "Scrapy-style setting names (A-Z, 0-9 and _, starting with a letter, at most 100 characters)"
        if not isinstance(value, dict):
            self._bad(where, key, value, f"a table such as {{ NAME = value }} of {names}")
            return {}
        out: dict[str, str] = {}
        for name, item in value.items():
            if not pattern.fullmatch(name):
                self.problems.append(f"{where}: {key} name {_show(name)} is not allowed: {names}")
                continue
            if key == "settings" and name in RESERVED_SETTINGS:
                self.problems.append(
                    f"{where}: settings name {_show(name)} is not allowed: the scheduler sets it for every crawl "
                    f"({', '.join(sorted(RESERVED_SETTINGS))})"
                )
                continue
            rendered = _render(item)
            if rendered is None:
                self._bad(where, f"{key}.{name}", item, VALUE_ALLOWED)
                continue
            out[name] = rendered
        return out

    def _known_spider(self, where: str, spider: str, *, implicit: bool = False) -> None:
        if self.known is None or spider in self.known:
            return
        known = sorted(self.known)
        listed = ", ".join(known[:10]) + (f", ... ({len(known)} in all)" if len(known) > 10 else "")
        how = " (the job's name; name the spider with spider = \"...\")" if implicit else ""
        self.problems.append(
            f"{where}: spider={_show(spider)}{how} is not allowed: a spider of the project "
            f"(known: {listed or 'none'})"
        )

    def _bad(self, where: str, key: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{where}: {key}={_show(value)} is not allowed: {allowed}")

    def _unknown(self, where: str, key: str, choices: tuple[str, ...], allowed: str) -> None:
        guess = difflib.get_close_matches(key, choices, n=1)
        hint = f" (did you mean {guess[0]}?)" if guess else ""
        self.problems.append(f"{where}: unknown key {_show(key)}{hint} is not allowed: {allowed}")


def _render(value: Any) -> str | None:
    """An argument or setting value as `scrapy crawl` receives it; None when it is not allowed."""
    if isinstance(value, bool):
        return "True" if value else "False"  # what Scrapy's getbool reads
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        if "\x00" in value or len(value.encode()) > MAX_VALUE_BYTES:
            return None
        return value
    return None


def _show(value: Any) -> str:
    """A value as a problem line shows it: as TOML spells it, strings quoted with control characters
    escaped, arrays and tables elided, at most 80 characters."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, list):
        return "[...]"
    if isinstance(value, datetime | date | time):
        return value.isoformat()[:SHOWN_CHARS]
    shown = repr(value)
    if not isinstance(value, str):
        return shown if len(shown) <= SHOWN_CHARS else shown[: SHOWN_CHARS - 3] + "..."
    if len(shown) <= SHOWN_CHARS:
        return shown
    cut = value[: SHOWN_CHARS - 3]
    while len(repr(cut + "...")) > SHOWN_CHARS:
        cut = cut[:-1]
    return repr(cut + "...")
