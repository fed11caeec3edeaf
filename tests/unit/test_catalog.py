"""The catalog: which jobs run, reloaded without a restart, the last good jobs kept on a bad file,
and `scrapy list` kept out of the way of a catch-up."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.jobs.catalog import Catalog, open_catalog
from daemon.system.errors import ConfigError, JobsFileError
from daemon.jobs.jobfile import JobDefaults, default_jobs

DEFAULTS = JobDefaults(timedelta(hours=4), timedelta(hours=2), timedelta(minutes=15), 0, 0, timedelta(0))
GOOD = """
[jobs.python-remote]
spider = "indeed"
args = { q = "python" }
every = "2h"

[jobs.data]
spider = "indeed"
args = { q = "data" }
every = "6h"
"""


class Lister:
    """`scrapy list` as a function: counts its calls; `gate` holds it like a slow listing."""

    def __init__(self, spiders: list[str]) -> None:
        self.spiders = spiders
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self) -> list[str]:
        self.calls += 1
        self.gate.wait(10)
        return list(self.spiders)


def write(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = time.time_ns() + 10**9  # a new mtime even within the file system's time resolution
    os.utime(path, ns=(stamp, stamp))


def wait_listed(catalog: Catalog) -> None:
    assert catalog._listing is not None
    catalog._listing.join(10)


def resolve(found: list[str]) -> list[str]:
    return sorted(found)


def test_a_catch_up_with_a_file_never_waits_for_scrapy_list_when_the_last_listing_knows_its_spiders(tmp_path):
    path = tmp_path / "schedule.toml"
    write(path, GOOD)
    lister = Lister(["indeed", "quotes"])
    lister.gate.clear()  # a listing that would take long
    catalog = open_catalog(path, DEFAULTS, (), ["indeed"], lister, resolve)
    assert catalog.names() == ("python-remote", "data")
    lister.gate.set()
    wait_listed(catalog)
    assert catalog.refresh() is False  # the listing came back; the jobs are the same
    assert catalog.spiders == ("indeed", "quotes")


def test_a_first_start_lists_the_spiders_before_checking_the_file(tmp_path):
    path = tmp_path / "schedule.toml"
    write(path, GOOD)
    with pytest.raises(JobsFileError) as refused:
        open_catalog(path, DEFAULTS, (), None, Lister(["quotes"]), resolve)
    assert any("indeed" in problem for problem in refused.value.problems)


def test_a_job_for_a_spider_added_since_the_last_listing_lists_again_instead_of_refusing(tmp_path):
    path = tmp_path / "schedule.toml"
    write(path, GOOD)
    lister = Lister(["indeed"])
    catalog = open_catalog(path, DEFAULTS, (), ["quotes"], lister, resolve)
    assert lister.calls == 1 and catalog.spiders == ("indeed",)


def test_without_a_file_every_listed_spider_is_a_job_and_scheduler_spiders_chooses(tmp_path):
    catalog = open_catalog(None, DEFAULTS, (), ["b", "a"], Lister(["a", "b"]), resolve)
    assert catalog.names() == ("a", "b")

    def refuse_unknown(found: list[str]) -> list[str]:
        raise ConfigError(["SCHEDULER_SPIDERS='nosuch' is not allowed: no spider named nosuch"])

    with pytest.raises(ConfigError):
        open_catalog(None, DEFAULTS, ("nosuch",), None, Lister(["a"]), refuse_unknown)


def test_a_changed_file_is_reloaded_and_a_changed_interval_takes_effect(tmp_path):
    path = tmp_path / "schedule.toml"
    write(path, GOOD)
    catalog = open_catalog(path, DEFAULTS, (), ["indeed"], Lister(["indeed"]), resolve)
    write(path, GOOD.replace('every = "2h"', 'every = "30m"'))
    assert catalog.refresh() is True
    assert catalog.job("python-remote").every == timedelta(minutes=30)  # type: ignore[union-attr]
    assert catalog.dirty


def test_a_bad_file_on_reload_keeps_the_last_good_jobs_and_tells_each_episode_once(tmp_path):
    path = tmp_path / "schedule.toml"
    write(path, GOOD)
    told: list[str] = []
    catalog = open_catalog(path, DEFAULTS, (), ["indeed"], Lister(["indeed"]), resolve, )
    catalog.alert_with(told.append)
    good = catalog.jobs
    write(path, GOOD + '\n[jobs.bad]\nspider = "indeed"\nevery = "2x"\nsurprise = 1\n')
    with capture_logs() as logs:
        assert catalog.refresh() is True
        catalog.refresh(hup=True)
    assert catalog.jobs == good
    assert catalog.error is not None and "every" in catalog.error and "surprise" in catalog.error
    assert [e["event"] for e in logs].count("jobs_file_invalid") == 1 and len(told) == 1
    write(path, GOOD + '\n[jobs.bad]\nspider = "indeed"\nevery = "3x"\n')  # another mistake: logged, not told
    with capture_logs() as logs:
        assert catalog.refresh() is True
    assert [e["event"] for e in logs].count("jobs_file_invalid") == 1 and len(told) == 1
    write(path, GOOD)
    assert catalog.refresh() is True and catalog.error is None  # the episode is over...
    write(path, GOOD + "\n[jobs.bad]\n")
    catalog.refresh()
    assert len(told) == 2  # ...and the next one is told


def test_a_job_removed_from_the_file_is_no_longer_in_the_catalog(tmp_path):
    path = tmp_path / "schedule.toml"
    write(path, GOOD)
    catalog = open_catalog(path, DEFAULTS, (), ["indeed"], Lister(["indeed"]), resolve)
    write(path, GOOD.split("[jobs.data]")[0])
    catalog.refresh()
    assert catalog.names() == ("python-remote",)


def test_sighup_lists_the_spiders_again_and_a_spider_added_to_the_project_becomes_a_job():
    lister = Lister(["a"])
    catalog = Catalog(None, DEFAULTS, lister, jobs=default_jobs(["a"], DEFAULTS), spiders=["a"])
    lister.spiders = ["a", "b"]
    catalog.refresh(hup=True)
    wait_listed(catalog)
    assert catalog.refresh() is True
    assert catalog.names() == ("a", "b")


def test_a_spider_name_resolves_to_all_its_jobs_and_pauses_make_cadences_paused(tmp_path):
    path = tmp_path / "schedule.toml"
    write(path, GOOD + '\n[jobs.quiet]\nspider = "indeed"\npaused = true\n')
    catalog = open_catalog(path, DEFAULTS, (), ["indeed"], Lister(["indeed"]), resolve)
    assert catalog.resolve(["indeed"]) == {"python-remote", "data", "quiet"}
    assert catalog.resolve(["data", "nosuch"]) == {"data"}
    cadences = catalog.cadences({"data": None})
    assert cadences["quiet"].paused and cadences["data"].paused and not cadences["python-remote"].paused
    assert set(catalog.alert_limits({"data"}, timedelta(hours=8))) == {"python-remote"}


def test_a_tag_of_the_reloaded_alert_channels_may_be_named_by_the_jobs_file_from_then_on(tmp_path):
    import dataclasses

    path = tmp_path / "schedule.toml"
    write(path, GOOD)
    catalog = open_catalog(path, dataclasses.replace(DEFAULTS, notify_tags=frozenset({"oncall"})), (), ["indeed"],
                           Lister(["indeed"]), resolve)  # fmt: skip
    write(path, GOOD.replace('every = "6h"', 'every = "6h"\nnotify = ["team"]'))
    catalog.refresh()
    assert catalog.error is not None and "notify='team'" in catalog.error
    catalog.notify_tags(frozenset({"oncall", "team"}))  # the channels' file, reloaded, has it now
    catalog.refresh(hup=True)
    assert catalog.error is None and catalog.job("data").notify == ("team",)  # type: ignore[union-attr]
