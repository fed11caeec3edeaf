"""The rules of the jobs file (its contract: daemon/jobs/jobfile.py): reading it and checking every key,
each broken rule one line naming the file, the job, the key and what is allowed, all at once."""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import pickle
import stat
import tomllib
from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from daemon.jobs import alert_keys, calendar_keys
from daemon.plan.calendar import CalendarError
from daemon.settings.parsers import SPIDER_NAME
from daemon.system.errors import JobsFileError
from daemon.jobs.jobfile import (
    ARG_NAME,
    COUNT_KEYS,
    DURATION_ALLOWED,
    DURATION_KEYS,
    JOB_KEYS,
    JOB_NAME,
    MAX_COUNT,
    MAX_DURATION,
    MAX_FILE_BYTES,
    MAX_JITTER,
    MAX_VALUE_BYTES,
    RESERVED_ARGS,
    RESERVED_SETTINGS,
    SETTING_NAME,
    SHOWN_CHARS,
    SPIDER_ALLOWED,
    TOP_KEYS,
    VALUE_ALLOWED,
    Job,
    JobDefaults,
    make_job,
    parse_duration,
)


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
    checker = _Checker(source_name, known_spiders, defaults.engine)
    jobs = checker.document(document, defaults)
    if checker.problems:
        raise JobsFileError(checker.problems)
    # The jobs are moved out of the parse's memory, which the daemon would otherwise keep for as long
    # as it runs: the parsed document of a large file takes ~20 MiB (10,000 jobs), freed here, but the
    # jobs made from it (and the names, its strings) lie scattered among its objects, and Python's
    # allocator gives an arena back to the system only once nothing in it lives. Pickled, the
    # document dropped (a collection: not all of it goes by its count of references alone), and
    # unpickled, they lie together in fresh memory (pickle keeps a value shared by several jobs
    # shared). ~30 ms at 10,000 jobs, once per load; ~10 MiB less resident for as long as it runs.
    packed = pickle.dumps(jobs, protocol=pickle.HIGHEST_PROTOCOL)
    del document, checker, jobs
    gc.collect()
    return pickle.loads(packed)  # type: ignore[no-any-return]


def _located(message: str, text: str) -> str:
    """tomllib's message, which ends "(at line L, column C)", or "(at end of document)" when the
    error is found there: then the line and column of the end, counted as tomllib counts them."""
    if not message.endswith("(at end of document)"):
        return message
    line = text.count("\n") + 1
    column = len(text) - text.rfind("\n")  # 1-based; rfind gives -1 on the first line
    return message.removesuffix("(at end of document)") + f"(at line {line}, column {column}: the end of the file)"


class _Checker:
    """Walks the parsed document once, remembering every problem instead of stopping at the first."""

    def __init__(self, source: str, known_spiders: Collection[str] | None, engine: str = "local") -> None:
        self.source = source
        # Scrapyd reads these form fields of schedule.json itself: an argument so named never
        # reaches the spider (docs/scrapyd-facts.md).
        self.reserved_args = RESERVED_ARGS if engine == "scrapyd" else frozenset()
        self.known = None if known_spiders is None else frozenset(known_spiders)
        self.problems: list[str] = []
        self.tags: frozenset[str] | None = None  # the channels' tags a job's `notify` may name
        self._values: dict[Any, Any] = {}  # each value once: equal values are shared by the jobs

    def _shared(self, value: Any) -> Any:
        """The first value seen equal to `value` (strings, tuples, durations): a spider, an argument or
        a whole argument list that many jobs repeat is kept once, not once per job."""
        return self._values.setdefault(value, value)

    def _pairs_shared(self, pairs: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return self._shared(tuple(self._shared((self._shared(k), self._shared(v))) for k, v in pairs.items()))

    def document(self, document: dict[str, Any], env_defaults: JobDefaults) -> tuple[Job, ...]:
        for key in document:
            if key not in TOP_KEYS:
                self._unknown(self.source, key, TOP_KEYS, "only [defaults] and [jobs.<name>] tables")
        shared: dict[str, Any] = {}
        if "defaults" in document:
            table = document["defaults"]
            if isinstance(table, dict):
                shared = self._keys(f"{self.source}: [defaults]", table)
                self.problems += calendar_keys.table_problems(f"{self.source}: [defaults]", table, is_job=False)
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
        self.tags = env_defaults.notify_tags
        if "notify" in shared:
            self._known_tags(f"{self.source}: [defaults]", shared["notify"])
        keys = DURATION_KEYS + COUNT_KEYS + alert_keys.KEYS
        layered = dataclasses.replace(env_defaults, **{k: shared[k] for k in keys if k in shared})
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
            self.problems += calendar_keys.table_problems(where, table, is_job=True)
            if "notify" in own:
                self._known_tags(where, own["notify"])
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
            calendar = calendar_keys.calendar_of(own, shared, table, env_defaults.timezone)
            jobs.append(
                make_job(
                    name=name,
                    spider=self._shared(spider),
                    defaults=layered,
                    args=self._pairs_shared({**shared.get("args", {}), **own.get("args", {})}),
                    settings=self._pairs_shared({**shared.get("settings", {}), **own.get("settings", {})}),
                    paused=values.get("paused", False),
                    calendar=self._shared(calendar) if calendar is not None else None,
                    **{k: self._shared(own[k]) for k in keys if k in own},
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
            elif key in calendar_keys.CALENDAR_KEYS:
                try:
                    out[key] = calendar_keys.check(key, value)
                except CalendarError as exc:
                    self._bad(where, key, value, str(exc))
            elif key in alert_keys.KEYS:
                parsed = alert_keys.PARSERS[key](value)
                if parsed is alert_keys.INVALID:
                    self._bad(where, key, value, alert_keys.ALLOWED[key])
                else:
                    out[key] = parsed
            elif key == "paused":
                if isinstance(value, bool):
                    out[key] = value
                else:
                    self._bad(where, key, value, "true or false")
        return out

    def _known_tags(self, where: str, tags: tuple[str, ...]) -> None:
        self.problems += [f"{where}: {problem}" for problem in alert_keys.unknown_tags(tags, self.tags)]

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
            if key == "args" and name in self.reserved_args:
                self.problems.append(
                    f"{where}: args name {_show(name)} is not allowed with SCHEDULER_ENGINE=scrapyd: Scrapyd takes it "
                    f"for itself and the spider would never see it ({', '.join(sorted(self.reserved_args))})"
                )
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
        import difflib  # only for a problem: the daemon idles without it

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
