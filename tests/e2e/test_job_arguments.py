"""A job's arguments and settings reach a real spider byte for byte, through a real `scrapy crawl`
built the way the daemon builds it, and no shell ever reads them."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from daemon.jobs.crawl import crawl_command, crawl_environment
from daemon.jobs.jobfile import crawl_arguments
from daemon.jobs.rules import parse
from tests.conftest import TEST_PROJECT
from tests.unit.test_jobfile import ENV, HOSTILE, hostile_toml

pytestmark = pytest.mark.e2e


def test_hostile_arguments_and_settings_reach_the_spider_unchanged_and_run_nothing(site, tmp_path):
    canary, out, stats_file = tmp_path / "canary", tmp_path / "received.json", tmp_path / "stats.json"
    values = {"out": str(out), **HOSTILE}  # the `args` spider writes what it received to `out`
    [job] = parse(hostile_toml(values, spider="args", canary=str(canary)), "schedule.toml", ENV, {"args"})
    base = crawl_command(job.spider, stats_file)
    done = subprocess.run([*base, *crawl_arguments(job)], cwd=TEST_PROJECT, capture_output=True, text=True,
                          env=crawl_environment({**os.environ, "TEST_SITE_URL": site}), timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    received = json.loads(out.read_text(encoding="utf-8"))
    sent = {key: value.replace("CANARY", str(canary)) for key, value in values.items()}
    assert received["args"] == sent
    scheduler_settings = dict(item.split("=", 1) for flag, item in zip(base, base[1:]) if flag == "-s")
    assert received["settings"] == {**scheduler_settings, **{f"JOB_{k.upper()}": v for k, v in sent.items()}}
    assert str(canary) in received["args"]["subshell"] and not canary.exists()
    assert json.loads(stats_file.read_text())["finish_reason"] == "finished"  # and it crawled as `ok` does
