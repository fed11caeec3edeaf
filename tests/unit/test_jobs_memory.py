"""What keeps a large jobs file small in memory: equal values shared, the parse's memory let go,
freed heap given back to the system; none of it changes a job."""

from __future__ import annotations

import dataclasses
import platform
import sys
from datetime import timedelta

import pytest

from daemon.system import memory
from daemon.jobs import rules as jobrules
from daemon.jobs.jobfile import Job, JobDefaults, make_job

DEFAULTS = JobDefaults(every=timedelta(hours=4), timeout=timedelta(hours=2), retry_delay=timedelta(minutes=15),
                       max_errors=0, min_items=0, jitter=timedelta(0))

TEXT = """
[defaults]
args = { lang = "en" }

[jobs.a-1]
spider = "books"
args = { q = "python", page = 2 }
every = "2h"

[jobs.b-1]
spider = "books"
args = { q = "python", page = 2 }
every = "2h"

[jobs.c-1]
spider = "quotes"
args = { q = "rust" }
settings = { DOWNLOAD_DELAY = 1.5 }
paused = true
"""


def test_equal_values_of_different_jobs_are_one_object_and_the_jobs_stay_as_written():
    a, b, c = jobrules.parse(TEXT, "schedule.toml", DEFAULTS)
    assert a.args == (("lang", "en"), ("q", "python"), ("page", "2"))
    assert a.args is b.args and a.spider is b.spider and a.every is b.every
    assert c.args[0] is a.args[0]  # the pair from [defaults]
    assert c.args == (("lang", "en"), ("q", "rust")) and c.settings == (("DOWNLOAD_DELAY", "1.5"),)
    assert dataclasses.replace(a, name="b-1") == b
    assert (c.paused, c.every, a.paused) == (True, timedelta(hours=4), False)


def test_the_jobs_read_equal_the_jobs_made_one_by_one():
    made = (
        make_job(name="a-1", spider="books", defaults=DEFAULTS, args={"lang": "en", "q": "python", "page": "2"},
                 every=timedelta(hours=2)),
        make_job(name="b-1", spider="books", defaults=DEFAULTS, args={"lang": "en", "q": "python", "page": "2"},
                 every=timedelta(hours=2)),
        make_job(name="c-1", spider="quotes", defaults=DEFAULTS, args={"lang": "en", "q": "rust"},
                 settings={"DOWNLOAD_DELAY": "1.5"}, paused=True),
    )  # fmt: skip
    assert jobrules.parse(TEXT, "schedule.toml", DEFAULTS) == made


def test_a_job_keeps_no_dict_of_its_own():
    job = jobrules.parse(TEXT, "schedule.toml", DEFAULTS)[0]
    assert isinstance(job, Job) and not hasattr(job, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.name = "other"  # type: ignore[misc]


def test_releasing_memory_asks_glibc_where_it_runs_and_is_safe_to_repeat():
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert (memory.release(), memory.release()) == (glibc, glibc)


def test_releasing_memory_where_there_is_no_malloc_trim_does_nothing(monkeypatch):
    monkeypatch.setattr(memory, "_looked_up", True)
    monkeypatch.setattr(memory, "_trim", None)
    assert memory.release() is False


def test_without_ctypes_there_is_no_malloc_trim_to_ask(monkeypatch):
    monkeypatch.setitem(sys.modules, "ctypes", None)
    assert memory._malloc_trim() is None
