"""The jobs file's calendar keys: each parses to the job's `Calendar`, each bad value is one line naming
the file, the job, the key and what is allowed (case 31 of calendar-cases.md and more), and until the
loop acts on them a file using them is refused where the daemon reads it, the last good jobs kept."""

from __future__ import annotations

from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest

from daemon.plan.calendar import Calendar, Window
from daemon.jobs.catalog import Catalog
from daemon.system.errors import JobsFileError
from daemon.jobs.jobfile import JobDefaults
from daemon.jobs.rules import load, parse

ENV = JobDefaults(every=timedelta(hours=4), timeout=timedelta(hours=2), retry_delay=timedelta(minutes=15),
                  max_errors=0, min_items=0, jitter=timedelta(0), timezone=ZoneInfo("Europe/Berlin"))  # fmt: skip
BOGOTA = ZoneInfo("America/Bogota")
CRON_ALLOWED = (
    "5 fields (minute hour day-of-month month day-of-week) with Debian cron semantics, "
    "or @yearly, @monthly, @weekly, @daily, @hourly"
)
ISSUE_EXAMPLE = """
[defaults]
timezone = "America/Bogota"

[jobs.news-morning]
spider = "news"
cron = "0 8 * * 1-5"
window = "Mon-Fri 07:00-22:00"
catch_up_within = "12h"
retry_delay = "15m"

[jobs.prices]
every = "2h"
window = "07:00-22:00"
"""


def jobs(text):
    return {job.name: job for job in parse(text, "schedule.toml", ENV, None)}


def problems(text):
    with pytest.raises(JobsFileError) as caught:
        parse(text, "schedule.toml", ENV, None)
    return caught.value.problems


def test_the_issues_example_gives_each_job_its_calendar():
    made = jobs(ISSUE_EXAMPLE)
    weekdays = Window(time(7), time(22), frozenset(range(5)))
    assert made["news-morning"].calendar == Calendar("0 8 * * 1-5", BOGOTA, weekdays, timedelta(hours=12))
    assert made["news-morning"].retry_delay == timedelta(minutes=15)
    assert made["prices"].calendar == Calendar(None, BOGOTA, Window(time(7), time(22)))
    assert made["prices"].every == timedelta(hours=2)


def test_a_job_without_calendar_keys_has_no_calendar_and_a_job_without_a_zone_takes_scheduler_timezone():
    made = jobs('[jobs.a]\nspider = "a"\n[jobs.b]\nspider = "b"\ncron = "@daily"\n[jobs.c]\nspider = "c"\ntimezone = "UTC"')
    assert made["a"].calendar is None and made["c"].calendar is None  # a zone alone changes nothing for every
    assert made["b"].calendar == Calendar("0 0 * * *", ZoneInfo("Europe/Berlin"))


@pytest.mark.parametrize(("alias", "expr"), [("@daily", "0 0 * * *"), ("@hourly", "0 * * * *"), ("@weekly", "0 0 * * 0"),
                                             ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"), ("@ANNUALLY", "0 0 1 1 *")])  # fmt: skip
def test_an_at_name_is_its_five_fields(alias, expr):
    assert jobs(f'[jobs.a]\nspider = "a"\ncron = "{alias}"')["a"].calendar.cron == expr


def test_a_jobs_own_cron_replaces_an_inherited_every_and_its_own_every_an_inherited_cron():
    made = jobs('[defaults]\nevery = "1h"\n[jobs.a]\nspider = "a"\ncron = "0 8 * * *"\n'
                '[jobs.b]\nspider = "b"\n')  # fmt: skip
    assert made["a"].calendar.cron == "0 8 * * *" and made["b"].calendar is None
    made = jobs('[defaults]\ncron = "0 8 * * *"\ncatch_up_within = "1h"\n[jobs.a]\nspider = "a"\nevery = "2h"\n'
                '[jobs.b]\nspider = "b"\n')  # fmt: skip
    assert made["a"].calendar is None and made["a"].every == timedelta(hours=2)
    assert made["b"].calendar == Calendar("0 8 * * *", ZoneInfo("Europe/Berlin"), None, timedelta(hours=1))


# Case 31, and the rest of the issue's list: one line each, naming file, job, key and what is allowed.
BAD = [
    ('cron = "0 8 * *"', f"cron='0 8 * *' is not allowed: 4 fields; {CRON_ALLOWED}"),
    ('cron = "61 * * * *"', f"cron='61 * * * *' is not allowed: bad minute field; {CRON_ALLOWED}"),
    ('cron = "0 0 30 2 *"', "cron='0 0 30 2 *' is not allowed: no time ever matches it: that day never falls in those months"),
    ('cron = "0 8 * * * *"', f"cron='0 8 * * * *' is not allowed: 6 fields; {CRON_ALLOWED}"),
    ('cron = "@reboot"', "cron='@reboot' is not allowed: @reboot is not a schedule (a restart of the daemon is not a slot)"),
    ('cron = "@fortnightly"', f"cron='@fortnightly' is not allowed: unknown @-name; {CRON_ALLOWED}"),
    ('cron = "CRON_TZ=UTC 0 8 * * *"',
     "cron='CRON_TZ=UTC 0 8 * * *' is not allowed: a CRON_TZ=/TZ= prefix is not read: set the job's timezone instead"),
    ('cron = "TZ=UTC 0 8 * * *"',
     "cron='TZ=UTC 0 8 * * *' is not allowed: a CRON_TZ=/TZ= prefix is not read: set the job's timezone instead"),
    ("cron = 8", "cron=8 is not allowed: a string: 5 cron fields or an @-name such as @daily"),
    ('timezone = "Mars/Olympus"', "timezone='Mars/Olympus' is not allowed: an IANA time zone name such as UTC or America/Bogota"),
    ('timezone = "../etc/passwd"', "timezone='../etc/passwd' is not allowed: an IANA time zone name such as UTC or America/Bogota"),
    ('window = "07:00-07:00"', "window='07:00-07:00' is not allowed: start = end: an empty window (a window of a whole day is no window)"),
    ('window = "Mon-Fry 07:00-22:00"',
     "window='Mon-Fry 07:00-22:00' is not allowed: bad days: use Mon Tue Wed Thu Fri Sat Sun, ranges such as Mon-Fri, commas"),
    ('window = "7-22"', 'window=\'7-22\' is not allowed: optional days and a time range such as "Mon-Fri 07:00-22:00", '
                        '"07:00-22:00" or "22:00-06:00"'),
    ('window = "24:00-06:00"', 'window=\'24:00-06:00\' is not allowed: optional days and a time range such as "Mon-Fri 07:00-22:00", '
                               '"07:00-22:00" or "22:00-06:00"'),
    ('catch_up_within = "0m"', "catch_up_within='0m' is not allowed: a duration such as 90m, 4h, 1d, 1h30m, or a number of hours, "
                               "greater than 0 and at most 100 years"),
    ('cron = "0 8 * * *"\nevery = "1h"', "every and cron are both set: a job has one of them (a job's own cron replaces an every "
                                         "inherited from [defaults] or the environment)"),
    ('every = "1h"\ncatch_up_within = "1h"',
     "catch_up_within is allowed only for a job with cron (an every job is never late by slots)"),
]  # fmt: skip


@pytest.mark.parametrize(("keys", "line"), BAD, ids=[keys.split("\n")[0] for keys, _ in BAD])
def test_a_bad_calendar_value_is_one_line_naming_file_job_key_and_what_is_allowed(keys, line):
    assert problems(f'[jobs.news]\nspider = "news"\n{keys}\n') == [f"schedule.toml: job 'news': {line}"]


def test_every_problem_of_a_file_is_told_at_once_defaults_included():
    found = problems('[defaults]\nevery = "1h"\ncron = "@daily"\n[jobs.a]\nspider = "a"\ncron = "0 8 * *"\n'
                     '[jobs.b]\nspider = "b"\nwindow = "Mon 08:00-08:00"\n')  # fmt: skip
    assert [line.split(": ")[1] for line in found] == ["[defaults]", "job 'a'", "job 'b'"]


def test_the_daemon_loads_the_issue_example_with_each_job_carrying_its_calendar(tmp_path):
    path = tmp_path / "schedule.toml"
    path.write_text(ISSUE_EXAMPLE)
    jobs = load(path, ENV)
    assert [job.name for job in jobs] == ["news-morning", "prices"]
    assert all(job.calendar is not None for job in jobs)
    assert jobs[0].calendar.cron == "0 8 * * 1-5" and jobs[1].calendar.cron is None


def test_a_reload_to_a_file_with_a_bad_cron_keeps_the_last_good_jobs_running(tmp_path):
    path = tmp_path / "schedule.toml"
    path.write_text('[jobs.prices]\nspider = "prices"\nevery = "2h"\n')
    told = []
    catalog = Catalog(path, ENV, lambda: ["prices"], jobs=load(path, ENV), spiders=["prices"], on_invalid=told.append)
    path.write_text('[jobs.prices]\nspider = "prices"\ncron = "0 8 * * * *"\n')
    catalog.refresh(hup=True)
    assert [job.every for job in catalog.jobs] == [timedelta(hours=2)] and catalog.jobs[0].calendar is None
    assert catalog.error is not None and "cron='0 8 * * * *' is not allowed: 6 fields" in catalog.error
    assert told == [catalog.error]


def test_a_reload_to_a_file_using_cron_runs_the_job_by_its_calendar(tmp_path):
    path = tmp_path / "schedule.toml"
    path.write_text('[jobs.prices]\nspider = "prices"\nevery = "2h"\n')
    catalog = Catalog(path, ENV, lambda: ["prices"], jobs=load(path, ENV), spiders=["prices"])
    path.write_text('[jobs.prices]\nspider = "prices"\ncron = "0 8 * * *"\n')
    catalog.refresh(hup=True)
    assert catalog.error is None and catalog.jobs[0].calendar.cron == "0 8 * * *"
    assert catalog.cadences({})["prices"].calendar == catalog.jobs[0].calendar
