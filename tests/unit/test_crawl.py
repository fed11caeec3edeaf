"""How a crawl is judged: from its stats, not from its exit code."""

from pathlib import Path

import pytest

from daemon.jobs.crawl import crawl_command, judge

GOOD = {"finish_reason": "finished", "item_scraped_count": 15, "log_count/ERROR": 0}


def verdict(exit_code=0, stats=GOOD, timed_out=False, interrupted=False, max_errors=0):
    return judge(
        "s", exit_code=exit_code, stats=stats, timed_out=timed_out, interrupted=interrupted,
        max_errors=max_errors, timeout_minutes=120, duration_s=1.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "ok", "failure", "words"),
    [
        ({}, True, None, "scraped 15 item(s)"),
        ({"exit_code": 1}, False, "error", "exited with code 1"),
        ({"exit_code": -11}, False, "error", "SIGSEGV"),
        ({"stats": None}, False, "error", "no crawl stats"),
        ({"stats": {**GOOD, "finish_reason": "shutdown"}}, False, "error", "finish_reason='shutdown'"),
        ({"stats": {**GOOD, "log_count/ERROR": 1}}, False, "error", "logged 1 error(s); at most 0"),
        ({"stats": {**GOOD, "log_count/ERROR": 2}, "max_errors": 2}, True, None, "scraped"),
        ({"stats": {**GOOD, "item_scraped_count": 0}}, True, None, "scraped 0 item(s)"),
        ({"timed_out": True, "exit_code": -9, "stats": None}, False, "timeout", "ran longer than 120"),
        ({"interrupted": True}, False, "interrupted", "shutting down"),
    ],
)
def test_verdict(kwargs, ok, failure, words):
    outcome = verdict(**kwargs)
    assert outcome.ok is ok
    assert outcome.failure == failure
    assert words in outcome.message


def test_counts_come_from_the_stats():
    outcome = verdict(stats={"finish_reason": "finished", "item_scraped_count": 7, "log_count/ERROR": 0})
    assert (outcome.items_scraped, outcome.error_count, outcome.finish_reason) == (7, 0, "finished")


def test_the_spider_name_is_one_argv_element_and_consoles_are_off(tmp_path):
    argv = crawl_command("x; rm -rf /", tmp_path / "s.json")
    assert argv[argv.index("crawl") + 1] == "x; rm -rf /"
    assert "TELNETCONSOLE_ENABLED=False" in argv and "REMOTE_CONTROL_ENABLED=False" in argv


@pytest.mark.parametrize(
    ("min_items", "items", "ok", "failure"),
    [(0, 0, True, None), (10, 15, True, None), (15, 15, True, None), (16, 15, False, "too_few_items"),
     (1, 0, False, "too_few_items")],  # fmt: skip
)
def test_a_crawl_that_scraped_fewer_items_than_its_job_requires_is_no_success(min_items, items, ok, failure):
    outcome = judge("s", exit_code=0, stats={**GOOD, "item_scraped_count": items}, timed_out=False,
                    interrupted=False, max_errors=0, timeout_minutes=120, duration_s=1.0, min_items=min_items)  # fmt: skip
    assert (outcome.ok, outcome.failure) == (ok, failure)


def test_a_cancelled_crawl_fails_as_cancelled_whatever_it_managed_to_write():
    outcome = judge("s", exit_code=0, stats=GOOD, timed_out=False, interrupted=False, max_errors=0,
                    timeout_minutes=120, duration_s=1.0, cancelled=True, job="s-remote")  # fmt: skip
    assert (outcome.ok, outcome.failure, outcome.name, outcome.spider) == (False, "cancelled", "s-remote", "s")


def test_a_jobs_arguments_stand_between_the_spider_and_the_schedulers_own_settings():
    argv = crawl_command("s", Path("/x/stats.json"), ["-a", "q=$(touch /tmp/x)", "-s", "DOWNLOAD_DELAY=2"])
    assert argv[4:9] == ["s", "-a", "q=$(touch /tmp/x)", "-s", "DOWNLOAD_DELAY=2"]
    assert argv[-1] == "REMOTE_CONTROL_ENABLED=False"
