"""The jobs file: each example parses to the right jobs, every problem is one line naming the file, the
job, the key and what is allowed, and argument values reach the argv unchanged, one item each."""

from __future__ import annotations

import dataclasses
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.settings.config import Settings
from daemon.system.errors import ConfigError, JobsFileError
from daemon.jobs.jobfile import (
    Job,
    JobDefaults,
    crawl_arguments,
    default_jobs,
    format_duration,
    parse_duration,
    resolve_path,
)
from daemon.jobs.rules import load, parse
from tests.conftest import ROOT, TEST_PROJECT

ENV = JobDefaults(
    every=timedelta(hours=4),
    timeout=timedelta(hours=2),
    retry_delay=timedelta(minutes=15),
    max_errors=0,
    min_items=0,
    jitter=timedelta(0),
)
SPIDERS = {"indeed", "quotes", "ok"}
DURATION_ALLOWED = "a duration such as 90m, 4h, 1d, 1h30m, or a number of hours, greater than 0 and at most 100 years"
VALUE_ALLOWED = (
    "a string (without NUL, at most 64 KiB), a finite number or a boolean; not an array, a table or a date"
)


def jobs(text: str, known=SPIDERS, defaults=ENV) -> tuple[Job, ...]:
    return parse(text, "schedule.toml", defaults, known)


def problems(text: str, known=SPIDERS) -> list[str]:
    with pytest.raises(JobsFileError) as caught:
        jobs(text, known)
    return caught.value.problems


def job(name: str, spider: str | None = None, **fields) -> Job:
    """A job as the environment's defaults make it, with `fields` changed."""
    [made] = default_jobs([spider or name], ENV)
    return dataclasses.replace(made, name=name, **fields)


ISSUE_EXAMPLE = """
[defaults]            # optional; every key of a job may appear here
every = "4h"          # "90m", "4h", "1d", "1h30m", or a number of hours
timeout = "2h"
retry_delay = "15m"
max_errors = 0        # more logged errors than this fails a crawl
min_items = 0         # a crawl that scraped fewer items is not a success
jitter = "0m"

[jobs.python-remote]  # the job's name: [A-Za-z0-9_.-], at most 100 characters
spider = "indeed"     # default: the job's name
args = { q = "python", l = "remote" }     # -> scrapy crawl indeed -a q=python -a l=remote
settings = { DOWNLOAD_DELAY = 2 }         # -> -s DOWNLOAD_DELAY=2
every = "2h"

[jobs.quotes]
paused = true         # kept in the file, never run until unpaused
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(ISSUE_EXAMPLE, (
            job("python-remote", "indeed", args=(("q", "python"), ("l", "remote")),
                settings=(("DOWNLOAD_DELAY", "2"),), every=timedelta(hours=2)),
            job("quotes", paused=True),
        ), id="the issue's example"),
        pytest.param("[jobs.quotes]", (job("quotes"),), id="a job named after its spider, nothing else"),
        pytest.param("""
            [jobs.python-remote]
            spider = "indeed"
            args = { q = "python", l = "remote" }
            every = "2h"
            [jobs.data-bogota]
            spider = "indeed"
            args = { q = "data", l = "Bogotá" }
            every = "6h"
            """, (
            job("python-remote", "indeed", args=(("q", "python"), ("l", "remote")), every=timedelta(hours=2)),
            job("data-bogota", "indeed", args=(("q", "data"), ("l", "Bogotá")), every=timedelta(hours=6)),
        ), id="one spider, two searches, two cadences"),
        pytest.param("""
            [jobs.quotes]
            args = { flag = true, off = false, pages = 5, ratio = 0.5, big = 1e20, neg = -3 }
            settings = { AUTOTHROTTLE_ENABLED = false, DOWNLOAD_DELAY = 1.5, CONCURRENT_REQUESTS = 4 }
            """, (
            job("quotes", args=(("flag", "True"), ("off", "False"), ("pages", "5"), ("ratio", "0.5"),
                                ("big", "1e+20"), ("neg", "-3")),
                settings=(("AUTOTHROTTLE_ENABLED", "False"), ("DOWNLOAD_DELAY", "1.5"),
                          ("CONCURRENT_REQUESTS", "4"))),
        ), id="booleans as Scrapy reads them, numbers by their repr"),
        pytest.param("""
            [jobs.quotes]
            every = 2
            timeout = 0.5
            retry_delay = "1h30m"
            jitter = 0
            max_errors = 3
            min_items = 10
            """, (
            job("quotes", every=timedelta(hours=2), timeout=timedelta(minutes=30),
                retry_delay=timedelta(minutes=90), max_errors=3, min_items=10),
        ), id="every key of a job, durations as numbers of hours too"),
        pytest.param("""
            [jobs."v1.2_old-site"]
            spider = "quotes"
            """, (job("v1.2_old-site", "quotes"),), id="a name with a dot, a dash and an underscore"),
    ],
)  # fmt: skip
def test_each_example_parses_to_the_right_jobs_in_file_order(text, expected):
    assert jobs(text) == expected


@pytest.mark.parametrize(
    ("defaults", "own", "expected"),
    [
        pytest.param("", "", {"every": timedelta(hours=4), "retry_delay": timedelta(minutes=15)},
                     id="neither: the environment's values"),
        pytest.param('every = "1d"\nmax_errors = 2\njitter = "10m"', "",
                     {"every": timedelta(days=1), "max_errors": 2, "jitter": timedelta(minutes=10),
                      "timeout": timedelta(hours=2)},
                     id="[defaults] over the environment"),
        pytest.param('every = "1d"\nmax_errors = 2', 'every = "90m"',
                     {"every": timedelta(minutes=90), "max_errors": 2}, id="the job over [defaults]"),
        pytest.param("paused = true", "", {"paused": True}, id="[defaults] may pause every job"),
        pytest.param("paused = true", "paused = false", {"paused": False}, id="and a job may unpause itself"),
        pytest.param('spider = "indeed"', "", {"spider": "indeed"}, id="a default spider for every job"),
        pytest.param('spider = "indeed"', 'spider = "ok"', {"spider": "ok"}, id="the job's own spider first"),
        pytest.param('args = { l = "remote", q = "any" }', 'args = { q = "python", page = 1 }',
                     {"args": (("l", "remote"), ("q", "python"), ("page", "1"))},
                     id="args merged key by key, the job's value wins"),
        pytest.param("settings = { DOWNLOAD_DELAY = 2 }", "settings = { DOWNLOAD_DELAY = 0, X = true }",
                     {"settings": (("DOWNLOAD_DELAY", "0"), ("X", "True"))}, id="settings merged likewise"),
    ],
)  # fmt: skip
def test_a_job_takes_its_own_value_then_the_files_defaults_then_the_environments(defaults, own, expected):
    [quotes] = jobs(f"[defaults]\n{defaults}\n[jobs.quotes]\n{own}")
    assert {key: getattr(quotes, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"90m"', timedelta(minutes=90)),
        ('"4h"', timedelta(hours=4)),
        ('"1d"', timedelta(days=1)),
        ('"1h30m"', timedelta(hours=1, minutes=30)),
        ('"45s"', timedelta(seconds=45)),
        ('"1d12h"', timedelta(days=1, hours=12)),
        ('"2h0m"', timedelta(hours=2)),
        ("4", timedelta(hours=4)),
        ("0.25", timedelta(minutes=15)),
        ('"36500d"', timedelta(days=36500)),
    ],
)
def test_a_duration_is_a_spelling_with_units_or_a_number_of_hours(value, expected):
    [quotes] = jobs(f"[jobs.quotes]\nevery = {value}")
    assert quotes.every == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('"2x"', "'2x'"),
        ('""', "''"),
        ('"4"', "'4'"),  # a bare number in a string: the unit is not guessed
        ('"4H"', "'4H'"),
        ('"1m30h"', "'1m30h'"),  # largest unit first
        ('"1h 30m"', "'1h 30m'"),
        ('"1.5h"', "'1.5h'"),
        ('"-1h"', "'-1h'"),
        ('"0m"', "'0m'"),  # every must be greater than 0
        ("0", "0"),
        ("-2", "-2"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("true", "true"),
        ('"36501d"', "'36501d'"),
        ("876001", "876001"),
        ('"9999999999d"', "'9999999999d'"),
        ("[1, 2]", "[...]"),
        ("{ h = 4 }", "{...}"),
        ("04:00:00", "04:00:00"),
    ],
)
def test_a_bad_duration_is_one_line_naming_the_file_the_job_the_key_and_what_is_allowed(value, shown):
    assert problems(f"[jobs.python-remote]\nspider = 'indeed'\nevery = {value}") == [
        f"schedule.toml: job 'python-remote': every={shown} is not allowed: {DURATION_ALLOWED}"
    ]


def test_jitter_may_be_zero_and_at_most_one_day():
    assert jobs('[jobs.quotes]\njitter = "0m"')[0].jitter == timedelta(0)
    assert jobs('[jobs.quotes]\njitter = "1d"')[0].jitter == timedelta(days=1)
    assert problems('[jobs.quotes]\njitter = "1d1s"') == [
        "schedule.toml: job 'quotes': jitter='1d1s' is not allowed: a duration such as 90m, 4h, 1d, 1h30m, "
        "or a number of hours, 0 or more and at most 1 day"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("colour = 'red'\n[jobs.quotes]", [
            "schedule.toml: unknown key 'colour' is not allowed: only [defaults] and [jobs.<name>] tables",
        ], id="an unknown top-level key"),
        pytest.param("[default]\nevery = '1h'\n[jobs.quotes]", [
            "schedule.toml: unknown key 'default' (did you mean defaults?) is not allowed: only [defaults] and "
            "[jobs.<name>] tables",
        ], id="a misspelt [defaults]"),
        pytest.param("[defaults]\nintreval = '1h'\n[jobs.quotes]", [
            "schedule.toml: [defaults]: unknown key 'intreval' is not allowed: one of spider, args, settings, "
            "every, timeout, retry_delay, jitter, max_errors, min_items, paused, notify, alert_after, baseline, "
            "cron, timezone, window, catch_up_within",
        ], id="an unknown key in [defaults]"),
        pytest.param("[jobs.quotes]\nevry = '1h'", [
            "schedule.toml: job 'quotes': unknown key 'evry' (did you mean every?) is not allowed: one of spider, "
            "args, settings, every, timeout, retry_delay, jitter, max_errors, min_items, paused, notify, alert_after, "
            "baseline, cron, timezone, window, catch_up_within",
        ], id="an unknown key in a job, with a guess"),
        pytest.param("[jobs.python-remote]\nspider = 'indeeed'", [
            "schedule.toml: job 'python-remote': spider='indeeed' is not allowed: a spider of the project "
            "(known: indeed, ok, quotes)",
        ], id="an unknown spider"),
        pytest.param("[jobs.books]", [
            "schedule.toml: job 'books': spider='books' (the job's name; name the spider with spider = \"...\") "
            "is not allowed: a spider of the project (known: indeed, ok, quotes)",
        ], id="a job named after no spider"),
        pytest.param("[defaults]\nspider = 'nosuch'\n[jobs.a]\n[jobs.b]", [
            "schedule.toml: [defaults]: spider='nosuch' is not allowed: a spider of the project "
            "(known: indeed, ok, quotes)",
        ], id="an unknown default spider, told once"),
        pytest.param("[jobs.a]\nspider = 'rm -rf'", [
            "schedule.toml: job 'a': spider='rm -rf' is not allowed: a spider name (letters, digits, _ . -, "
            "starting with a letter or _, at most 100 characters)",
        ], id="a spider that is no spider name"),
        pytest.param("[jobs.2024-run]", [
            "schedule.toml: job '2024-run': spider='2024-run' (the job's name) is not allowed: a spider name "
            "(letters, digits, _ . -, starting with a letter or _, at most 100 characters); name the spider "
            "with spider = \"...\"",
        ], id="a job name that cannot be a spider's, without a spider"),
        pytest.param("[jobs.'python remote']\nspider = 'indeed'", [
            "schedule.toml: job 'python remote': the name is not allowed: 1 to 100 letters, digits, _ . -, "
            "starting with a letter, a digit or _",
        ], id="a job name with a space"),
        pytest.param("[jobs.'-x']\nspider = 'ok'", [
            "schedule.toml: job '-x': the name is not allowed: 1 to 100 letters, digits, _ . -, "
            "starting with a letter, a digit or _",
        ], id="a job name that reads as an option"),
        pytest.param(f"[jobs.{'a' * 101}]\nspider = 'ok'", [
            f"schedule.toml: job '{'a' * 75}...': the name is not allowed: 1 to 100 letters, digits, _ . -, "
            "starting with a letter, a digit or _",
        ], id="a job name of 101 characters"),
        pytest.param("[jobs.quotes]\n[jobs.Quotes]\nspider = 'quotes'", [
            "schedule.toml: job 'Quotes': the name is not allowed: it differs only by case from job 'quotes' "
            "(job names must differ in more than case)",
        ], id="two names that differ only by case"),
        pytest.param("[jobs]\nquotes = 1", [
            "schedule.toml: job 'quotes': the value 1 is not allowed: a table [jobs.<name>] of the job's keys",
        ], id="a job that is no table"),
        pytest.param("jobs = ['quotes']", [
            "schedule.toml: jobs=[...] is not allowed: tables [jobs.<name>], one per job",
        ], id="jobs that are no tables"),
        pytest.param("defaults = 4\n[jobs.quotes]", [
            "schedule.toml: defaults=4 is not allowed: a table: [defaults] holding keys of a job",
        ], id="defaults that are no table"),
        pytest.param("[defaults]\nevery = '1h'", [
            "schedule.toml: no job: a jobs file lists at least one [jobs.<name>] table",
        ], id="a file without jobs"),
        pytest.param("[jobs.quotes]\nargs = 'q=python'", [
            "schedule.toml: job 'quotes': args='q=python' is not allowed: a table such as { NAME = value } of "
            "argument names of letters, digits and _, not starting with a digit, at most 100 characters",
        ], id="args that are no table"),
        pytest.param("[jobs.quotes]\nargs = { 'q=x' = 'y', '1st' = 'z', '' = 'e', 'a-b' = 1 }", [
            f"schedule.toml: job 'quotes': args name {name} is not allowed: argument names of letters, digits "
            "and _, not starting with a digit, at most 100 characters"
            for name in ("'q=x'", "'1st'", "''", "'a-b'")
        ], id="argument names that Scrapy would split or that are no identifiers"),
        pytest.param("[jobs.quotes]\nargs = { tags = ['a'], where = { x = 1 }, when = 2024-01-01T10:00:00Z, "
                     "nul = \"a\\u0000b\", big = nan, huge = -inf }", [
            f"schedule.toml: job 'quotes': args.{key}={shown} is not allowed: {VALUE_ALLOWED}"
            for key, shown in (("tags", "[...]"), ("where", "{...}"), ("when", "2024-01-01T10:00:00+00:00"),
                               ("nul", "'a\\x00b'"), ("big", "nan"), ("huge", "-inf"))
        ], id="argument values that are not strings, finite numbers or booleans"),
        pytest.param(f"[jobs.quotes]\nargs = {{ q = '{'x' * (64 * 1024 + 1)}' }}", [
            f"schedule.toml: job 'quotes': args.q='{'x' * 75}...' is not allowed: {VALUE_ALLOWED}",
        ], id="an argument value longer than 64 KiB"),
        pytest.param("[jobs.quotes]\nsettings = { download_delay = 2, 'DOWNLOAD DELAY' = 2, _X = 1 }", [
            f"schedule.toml: job 'quotes': settings name {name} is not allowed: Scrapy-style setting names "
            "(A-Z, 0-9 and _, starting with a letter, at most 100 characters)"
            for name in ("'download_delay'", "'DOWNLOAD DELAY'", "'_X'")
        ], id="setting names that are not Scrapy-style"),
        pytest.param("[jobs.quotes]\nsettings = { ITEM_PIPELINES = { 'a.B' = 1 }, SPIDER_MODULES = ['x'] }", [
            f"schedule.toml: job 'quotes': settings.{key}={shown} is not allowed: {VALUE_ALLOWED}"
            for key, shown in (("ITEM_PIPELINES", "{...}"), ("SPIDER_MODULES", "[...]"))
        ], id="setting values that are tables or arrays"),
        pytest.param("[jobs.quotes]\nsettings = { STATS_CLASS = 'x', TELNETCONSOLE_ENABLED = true }", [
            f"schedule.toml: job 'quotes': settings name '{name}' is not allowed: the scheduler sets it for every "
            "crawl (REMOTE_CONTROL_ENABLED, SCHEDULER_JOB, SCHEDULER_STATS_FILE, STATS_CLASS, TELNETCONSOLE_ENABLED)"
            for name in ("STATS_CLASS", "TELNETCONSOLE_ENABLED")
        ], id="settings the scheduler gives every crawl itself"),
        pytest.param("[jobs.quotes]\nmax_errors = -1\nmin_items = 1.5", [
            "schedule.toml: job 'quotes': max_errors=-1 is not allowed: a whole number from 0 to 1000000000",
            "schedule.toml: job 'quotes': min_items=1.5 is not allowed: a whole number from 0 to 1000000000",
        ], id="counts that are not whole numbers from 0"),
        pytest.param("[jobs.quotes]\nmin_items = true", [
            "schedule.toml: job 'quotes': min_items=true is not allowed: a whole number from 0 to 1000000000",
        ], id="a boolean is no count"),
        pytest.param("[jobs.quotes]\npaused = 'yes'", [
            "schedule.toml: job 'quotes': paused='yes' is not allowed: true or false",
        ], id="paused that is no boolean"),
    ],
)  # fmt: skip
def test_each_kind_of_bad_input_is_exactly_the_expected_problem_lines(text, expected):
    assert problems(text) == expected


def test_every_problem_of_the_file_is_reported_at_once_in_file_order():
    text = """
        top = 1
        [defaults]
        every = "sometimes"
        [jobs.python-remote]
        spider = "indeed"
        every = "2x"
        args = { q = ["python"] }
        [jobs.books]
        [jobs.quotes]
        settings = { delay = 1 }
        paused = 1
        """
    assert problems(text) == [
        "schedule.toml: unknown key 'top' is not allowed: only [defaults] and [jobs.<name>] tables",
        f"schedule.toml: [defaults]: every='sometimes' is not allowed: {DURATION_ALLOWED}",
        f"schedule.toml: job 'python-remote': every='2x' is not allowed: {DURATION_ALLOWED}",
        f"schedule.toml: job 'python-remote': args.q=[...] is not allowed: {VALUE_ALLOWED}",
        "schedule.toml: job 'books': spider='books' (the job's name; name the spider with spider = \"...\") is "
        "not allowed: a spider of the project (known: indeed, ok, quotes)",
        "schedule.toml: job 'quotes': settings name 'delay' is not allowed: Scrapy-style setting names "
        "(A-Z, 0-9 and _, starting with a letter, at most 100 characters)",
        "schedule.toml: job 'quotes': paused=1 is not allowed: true or false",
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[jobs.quotes]\nevery = ", "Invalid value (at line 2, column 9: the end of the file)"),
        ("every = ", "Invalid value (at line 1, column 9: the end of the file)"),
        ("[jobs.quotes]\n[jobs.ok]\n[jobs.quotes]\n", "Cannot declare ('jobs', 'quotes') twice (at line 3, column 13)"),
        ("[jobs.quotes]\nargs = { q = 'a' \n", "Unclosed inline table (at line 2, column 18)"),
        ("[jobs.quotes]\nevery = '4h'\nevery = '2h'\n", "Cannot overwrite a value (at line 3, column 13)"),
        ("[jobs.quotes]\nevery = '4h'\nevery = '2h'",
         "Cannot overwrite a value (at line 3, column 13: the end of the file)"),
    ],
)  # fmt: skip
def test_a_toml_syntax_error_names_the_line_and_the_column(text, where):
    assert problems(text) == [f"schedule.toml: is not valid TOML: {where}"]


def test_a_long_or_hostile_value_in_a_problem_is_quoted_escaped_and_at_most_80_characters():
    spelt = "$(touch /tmp/x)\\n\\u001b[31m" + "é" * 5000  # as TOML spells a newline and an escape
    [line] = problems(f'[jobs.quotes]\nevery = "{spelt}"')
    shown = re.search(r"every=(.*) is not allowed", line).group(1)
    assert len(shown) <= 80 and shown.startswith("'$(touch /tmp/x)\\n\\x1b[31m") and shown.endswith("...'")
    assert "\n" not in line and "\x1b" not in line


def test_the_project_spiders_are_not_checked_when_unknown():
    assert jobs("[jobs.anything]", known=None) == (job("anything"),)


HOSTILE = {
    "quotes": "it's \"quoted\" 'twice'",
    "subshell": "$(touch CANARY)",
    "backticks": "`touch CANARY`",
    "chain": "x; touch CANARY; echo",
    "pipe": "| touch CANARY &",
    "newlines": "first line\nsecond line\r\nthird",
    "option": "--help",
    "equals": "a=b=c",
    "spaces": "  padded  ",
    "empty": "",
    "glob": "* ~ ?",
    "unicode": "Bogotá ✓ 🕷",
    "long": "0123456789" * 1024,  # 10 kB
}


def hostile_toml(values: dict[str, str], *, spider: str = "ok", canary: str = "CANARY") -> str:
    """A job `hostile` whose args and settings (JOB_<KEY>) hold `values`, spelt as TOML basic strings,
    with CANARY replaced by `canary`."""

    def spelt(value: str) -> str:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return '"' + escaped.replace("CANARY", canary) + '"'

    args = ", ".join(f"{key} = {spelt(value)}" for key, value in values.items())
    settings = ", ".join(f"JOB_{key.upper()} = {spelt(value)}" for key, value in values.items())
    return f"[jobs.hostile]\nspider = '{spider}'\nargs = {{ {args} }}\nsettings = {{ {settings} }}\n"


def test_hostile_values_reach_the_argv_unchanged_each_as_one_item():
    [hostile] = jobs(hostile_toml(HOSTILE))
    argv = crawl_arguments(hostile)
    expected = []
    for key, value in HOSTILE.items():
        expected += ["-a", f"{key}={value}"]
    for key, value in HOSTILE.items():
        expected += ["-s", f"JOB_{key.upper()}={value}"]
    assert argv == expected
    assert len(argv) == 4 * len(HOSTILE)


def test_a_job_without_args_or_settings_adds_nothing_to_the_argv():
    assert crawl_arguments(job("quotes")) == []


def test_without_a_file_every_spider_is_one_job_named_after_it_with_the_environments_values():
    assert default_jobs(["ok", "quotes"], ENV) == (
        Job("ok", "ok", (), (), ENV.every, ENV.timeout, ENV.retry_delay, 0, 0, ENV.jitter, False),
        Job("quotes", "quotes", (), (), ENV.every, ENV.timeout, ENV.retry_delay, 0, 0, ENV.jitter, False),
    )


def test_the_environment_defaults_come_from_the_scheduler_settings():
    settings = Settings.from_mapping({
        "SCRAPY_PROJECT_DIR": str(TEST_PROJECT), "SCHEDULER_INTERVAL_HOURS": "6",
        "SCHEDULER_SPIDER_TIMEOUT_MINUTES": "30", "SCHEDULER_RETRY_DELAY_MINUTES": "5",
        "SCHEDULER_MAX_SPIDER_ERRORS": "2", "SCHEDULER_JITTER_MINUTES": "10",
    })  # fmt: skip
    assert JobDefaults.from_settings(settings) == JobDefaults(
        every=timedelta(hours=6), timeout=timedelta(minutes=30), retry_delay=timedelta(minutes=5),
        max_errors=2, min_items=0, jitter=timedelta(minutes=10),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("duration", "spelt"),
    [
        (timedelta(hours=4), "4h"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=1, seconds=45), "1d45s"),
        (timedelta(0), "0m"),
        (timedelta(days=36500), "36500d"),
    ],
)
def test_a_duration_is_spelt_the_shortest_way_that_reads_back(duration, spelt):
    assert format_duration(duration) == spelt
    assert parse_duration(spelt) == duration


def test_a_bad_jobs_file_is_a_config_error_and_exits_2():
    with pytest.raises(ConfigError) as caught:
        jobs("[jobs.quotes]\nevery = '2x'")
    assert type(caught.value) is JobsFileError and caught.value.exit_code == 2
    assert caught.value.lines() == [
        f"config error: schedule.toml: job 'quotes': every='2x' is not allowed: {DURATION_ALLOWED}"
    ]


def test_the_file_is_the_variable_if_set_else_the_projects_schedule_toml_if_it_exists(tmp_path):
    assert resolve_path(None, tmp_path) is None
    assert resolve_path("  ", tmp_path) is None
    (tmp_path / "schedule.toml").write_text("[jobs.ok]\n")
    assert resolve_path(None, tmp_path) == tmp_path / "schedule.toml"
    assert resolve_path("/etc/scheduler/jobs.toml", tmp_path) == Path("/etc/scheduler/jobs.toml")


def test_a_file_is_loaded_with_its_path_in_every_problem(tmp_path):
    path = tmp_path / "jobs.toml"
    path.write_bytes(b"\xef\xbb\xbf[jobs.ok]\nevery = '2h'\n")  # a byte-order mark is tolerated
    assert load(path, ENV, SPIDERS) == (job("ok", every=timedelta(hours=2)),)
    path.write_text("[jobs.ok]\nevery = '2x'\n")
    with pytest.raises(JobsFileError) as caught:
        load(path, ENV, SPIDERS)
    assert caught.value.problems == [f"{path}: job 'ok': every='2x' is not allowed: {DURATION_ALLOWED}"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "cannot be read: No such file or directory"),
        (lambda p: p.mkdir(), "cannot be read: it is not a regular file"),
        (lambda p: os.mkfifo(p), "cannot be read: it is not a regular file"),  # never blocks
        (lambda p: p.write_bytes(b"[jobs.ok]\n# caf\xe9\n"), "is not UTF-8 text (line 2)"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_clear_line(tmp_path, make, reason):
    path = tmp_path / "schedule.toml"
    make(path)
    with pytest.raises(JobsFileError) as caught:
        load(path, ENV, SPIDERS)
    assert caught.value.problems == [f"{path}: {reason}"]


EXAMPLE_FILE = ROOT / "example_project" / "schedule.toml"


def test_the_example_projects_file_runs_what_the_daemon_ran_without_it():
    assert load(EXAMPLE_FILE, ENV, {"quotes"}) == default_jobs(["quotes"], ENV)


def test_the_commented_examples_of_the_example_projects_file_are_valid_once_uncommented():
    # Commented-out TOML starts with "#" and no space ("#every = ..."); prose starts with "# ".
    text = re.sub(r"(?m)^#(?=[^\s#])", "", EXAMPLE_FILE.read_text())
    assert text != EXAMPLE_FILE.read_text()
    examples = jobs(text, known={"quotes"})
    assert len(examples) > 1 and {j.spider for j in examples} == {"quotes"}
    assert any(j.args for j in examples) and any(j.settings for j in examples) and any(j.paused for j in examples)


@pytest.mark.parametrize("name", ["project", "spider", "_version", "jobid", "priority", "setting", "_job"])
def test_with_the_scrapyd_engine_an_argument_scrapyd_swallows_is_refused_naming_it(name):
    text = f'[jobs.a]\nspider = "s"\nargs = {{ {name} = "x", q = "ok" }}\n'
    assert parse(text, "schedule.toml", ENV)[0].args == ((name, "x"), ("q", "ok"))  # local: passed as is
    with pytest.raises(JobsFileError) as caught:
        parse(text, "schedule.toml", dataclasses.replace(ENV, engine="scrapyd"))
    assert caught.value.problems == [
        f"schedule.toml: job 'a': args name '{name}' is not allowed with SCHEDULER_ENGINE=scrapyd: Scrapyd takes it "
        "for itself and the spider would never see it (_job, _version, jobid, priority, project, setting, spider)"
    ]
