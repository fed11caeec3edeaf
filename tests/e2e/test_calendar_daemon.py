"""Calendar schedules end to end (issue 21): real daemon processes whose wall clock libfaketime sets to
chosen moments (monotonic time stays real), against a real PostgreSQL and the test project's spiders.

Each daemon starts a few seconds before the slot under test, so the test lasts seconds. Nothing here
asserts a duration: only which crawls ran, for which slot, and what the ledger says."""

from __future__ import annotations

import os
import shutil
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.alert_receivers import JsonReceiver, write_config
from tests.conftest import ROOT
from tests.e2e.test_scrapyd_daemon import cluster_env, nodes  # noqa: F401  (a fixture: two one-slot nodes)
from tests.helpers import rows, utcnow, wait_for

pytestmark = pytest.mark.e2e

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SHIM = Path(__file__).resolve().parents[1] / "faketime_shim"  # time.sleep under libfaketime (see there)
LEAD = timedelta(seconds=8)  # a daemon starts this long before the slot: it publishes the job first
UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def faked(base_env: dict[str, str], tmp_path: Path):
    """env(jobs file text, wall-clock moment) -> a daemon's settings with its clock at that moment."""
    if not LIBFAKETIME.exists() or shutil.which("faketime") is None:
        if os.environ.get("REQUIRE_DOCKER") == "1" or os.environ.get("CI"):
            pytest.fail("libfaketime is missing, and CI must run the calendar's end-to-end tests (tests/run.sh "
                        "installs Debian's faketime package)")  # fmt: skip
        pytest.skip("libfaketime is missing (Debian's faketime package; tests/run.sh installs it)")
    jobs = tmp_path / "schedule.toml"

    def env(text: str, moment: datetime) -> dict[str, str]:
        jobs.write_text(text)
        offset = round((moment - utcnow()).total_seconds())
        return {**base_env, "SCHEDULER_JOBS_FILE": str(jobs), "LD_PRELOAD": str(LIBFAKETIME),
                "PYTHONPATH": f"{SHIM}:{ROOT}",
                "FAKETIME": f"{offset:+d}", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "FAKETIME_NO_CACHE": "1"}  # fmt: skip

    return env


def until(daemon, predicate, what: str) -> None:
    """wait_for, with the daemon's last log lines when it times out."""
    try:
        wait_for(predicate, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{daemon.output()[-4000:]}") from None


def crawls(db) -> list[tuple]:
    """(job, status, started_at, slot_at) of every crawl, oldest first."""
    return rows(db, "SELECT job, status, started_at, slot_at FROM spider_runs ORDER BY id")


def ledger(db) -> list[tuple]:
    return rows(db, "SELECT slot_at, state, cause, slots FROM job_slots ORDER BY slot_at")


def covered(db, slot: datetime) -> bool:
    return any(status == "completed" and slot_at == slot for _, status, _, slot_at in crawls(db))


def stopped(daemon) -> None:
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.output()[-3000:]


def fake_now(env: dict[str, str]) -> datetime:
    return utcnow() + timedelta(seconds=int(env["FAKETIME"]))


DAILY_8_NEW_YORK = '[jobs.news]\nspider = "ok"\ncron = "0 8 * * *"\ntimezone = "America/New_York"\n'


def test_a_daemon_stopped_three_days_runs_one_crawl_for_the_latest_slot_and_records_two_missed(
        faked, daemon_factory, db, tmp_path):  # fmt: skip
    first = at("2027-01-10 13:00")  # 08:00 EST
    d = daemon_factory(faked(DAILY_8_NEW_YORK, first - LEAD)).start()
    until(d, lambda: covered(db, first), what="the first slot's crawl")
    stopped(d)
    latest = first + timedelta(days=3)
    receiver = JsonReceiver()
    channels = write_config(tmp_path / "apprise.txt", receiver.url() + "\n")
    env = {**faked(DAILY_8_NEW_YORK, latest + timedelta(seconds=30)), "SCHEDULER_NOTIFY_CONFIG": str(channels)}
    try:
        d = daemon_factory(env).start()
        until(d, lambda: covered(db, latest), what="one crawl for the latest slot")
        until(d, lambda: len(ledger(db)) == 4, what="the ledger's rows")
        told = "Job news missed 2 slot(s) (daemon_down) since 2027-01-11 13:00 UTC; its last kept slot was 2027-01-10"
        until(d, lambda: any(m.startswith(told) for m in receiver.messages()), what="the missed slots' alert")
        stopped(d)
        assert [m for m in receiver.messages() if "missed" in m and "slot" in m] == [
            m for m in receiver.messages() if m.startswith(told)][:1]  # told once
    finally:
        receiver.close()
    assert [(slot, status) for _, status, _, slot in crawls(db)] == [(first, "completed"), (latest, "completed")]
    assert ledger(db) == [
        (first, "kept", None, 1),
        (first + timedelta(days=1), "missed", "daemon_down", 1),
        (first + timedelta(days=2), "missed", "daemon_down", 1),
        (latest, "kept", None, 1),
    ]


def test_a_slot_in_the_spring_forward_gap_runs_at_the_first_instant_after_it(faked, daemon_factory, db):
    # 02:30 does not exist on 2027-03-14 in New York: the clocks go from 02:00 EST to 03:00 EDT.
    slot = at("2027-03-14 07:00")  # 03:00 EDT
    env = faked('[jobs.news]\nspider = "ok"\ncron = "30 2 * * *"\ntimezone = "America/New_York"\n', slot - LEAD)
    d = daemon_factory(env).start()
    until(d, lambda: covered(db, slot), what="the gap's slot covered")
    stopped(d)
    [(job, status, started_at, slot_at)] = crawls(db)
    assert (job, status, slot_at) == ("news", "completed", slot) and started_at >= slot


def test_a_fixed_time_repeated_when_clocks_fall_back_is_one_slot_its_first_pass(faked, daemon_factory, db):
    # 01:30 happens twice on 2027-11-07 in New York: 05:30 UTC (EDT), then 06:30 UTC (EST).
    text = '[jobs.news]\nspider = "ok"\ncron = "30 1 * * *"\ntimezone = "America/New_York"\n'
    first = at("2027-11-07 05:30")
    d = daemon_factory(faked(text, first - LEAD)).start()
    until(d, lambda: covered(db, first), what="the first pass's crawl")
    stopped(d)
    env = faked(text, first + timedelta(hours=1, seconds=-3))  # published already: no lead needed
    d = daemon_factory(env).start()
    until(d, lambda: fake_now(env) > first + timedelta(hours=1, seconds=5), what="the second pass gone by")
    until(d, lambda: "scheduler_started" in d.output(), what="the daemon deciding")
    stopped(d)
    assert [(slot, status) for _, status, _, slot in crawls(db)] == [(first, "completed")]


def test_a_window_keeps_an_interval_jobs_crawls_away_at_night(faked, daemon_factory, db):
    text = '[jobs.prices]\nspider = "ok"\nevery = "2s"\nwindow = "07:00-22:00"\n'  # UTC
    closes = at("2027-06-01 22:00")
    env = faked(text, closes - LEAD)
    d = daemon_factory(env).start()
    until(d, lambda: crawls(db), what="a crawl inside the window")
    until(d, lambda: fake_now(env) > closes + timedelta(seconds=6), what="the window shut for a while")
    stopped(d)
    starts = [started_at for _, _, started_at, _ in crawls(db)]
    assert starts and all(started < closes for started in starts), starts


def test_two_daemons_on_one_slot_make_one_crawl_and_one_ledger_row(faked, daemon_factory, db):
    slot = at("2027-01-11 13:00")
    env = faked(DAILY_8_NEW_YORK, slot - LEAD)
    one, two = daemon_factory(env).start(), daemon_factory(env).start()
    until(one, lambda: covered(db, slot), what="the slot covered")
    until(two, lambda: fake_now(env) > slot + timedelta(seconds=3), what="both daemons past the slot")
    stopped(one)
    stopped(two)
    assert [(slot_at, status) for _, status, _, slot_at in crawls(db)] == [(slot, "completed")]
    assert ledger(db) == [(slot, "kept", None, 1)]


def test_on_scrapyd_nodes_a_slot_is_decided_and_recorded_the_same_way(faked, daemon_factory, db, base_env, nodes):
    slot = at("2027-01-12 13:00")
    env = {**faked(DAILY_8_NEW_YORK, slot - LEAD), **cluster_env(base_env, nodes)}
    d = daemon_factory(env).start()
    until(d, lambda: covered(db, slot), what="the slot's crawl on a node")
    until(d, lambda: ledger(db), what="the slot kept in the ledger")
    stopped(d)
    assert [(slot_at, status) for _, status, _, slot_at in crawls(db)] == [(slot, "completed")]
    assert rows(db, "SELECT node IS NOT NULL FROM spider_runs") == [(True,)]
    assert ledger(db) == [(slot, "kept", None, 1)]
