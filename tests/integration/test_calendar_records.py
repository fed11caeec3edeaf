"""Calendar schedules' records on a real PostgreSQL (sql/019): never two crawls for one slot, the
freshness ledger written once per slot and bounded per tick, and a published calendar read back with
the moment its schedule was first published, kept while it stays the same."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from daemon.plan.calendar import Calendar, Window
from daemon.records.ledger import ROWS_PER_TICK, SlotRecord
from daemon.records.store import Store
from tests.helpers import rows, utcnow
from tests.integration.test_job_store import job, new_run

SLOT = datetime(2027, 3, 15, 12, 0, tzinfo=timezone.utc)
BOGOTA = ZoneInfo("America/Bogota")
WEEKDAYS_AT_8 = Calendar("0 8 * * 1-5", BOGOTA, Window(time(7), time(22), frozenset(range(5))), timedelta(hours=12))


def crawl_for_slot(db, name: str, slot: datetime | None, status: str) -> None:
    rows(db, "INSERT INTO spider_runs (run_id, job, spider, status, failure, started_at, slot_at) "
             "VALUES (%(r)s, %(j)s, %(j)s, %(s)s, %(f)s, %(t)s, %(slot)s)",
         {"r": new_run(db), "j": name, "s": status, "f": "error" if status == "failed" else None, "t": utcnow(),
          "slot": slot})  # fmt: skip


@pytest.mark.parametrize("first", ["running", "completed"])
def test_postgresql_refuses_a_second_crawl_for_a_slot_already_covered_or_being_covered(db, first):
    crawl_for_slot(db, "news", SLOT, first)
    with pytest.raises(psycopg2.errors.UniqueViolation):
        crawl_for_slot(db, "news", SLOT, "running")


def test_a_failed_crawl_leaves_its_slot_owed_so_its_retry_may_take_it(db):
    crawl_for_slot(db, "news", SLOT, "failed")
    crawl_for_slot(db, "news", SLOT, "running")
    assert rows(db, "SELECT status FROM spider_runs WHERE slot_at = %(s)s ORDER BY id", {"s": SLOT}) == [
        ("failed",), ("running",)]


def test_crawls_without_a_slot_and_other_jobs_slots_are_not_held_back(db):
    crawl_for_slot(db, "news", None, "completed")
    crawl_for_slot(db, "news", None, "completed")
    crawl_for_slot(db, "news", SLOT, "completed")
    crawl_for_slot(db, "prices", SLOT, "completed")
    assert rows(db, "SELECT count(*) FROM spider_runs")[0][0] == 4


def test_a_slot_is_written_once_to_the_ledger_even_by_two_daemons(db, pg_server, database):
    other = Store(pg_server.connect(database))
    try:
        kept = SlotRecord(SLOT, "kept", run_id=7, late_s=2.5)
        assert Store(db).record_slots("news", [kept], utcnow()) == 1
        assert other.record_slots("news", [SlotRecord(SLOT, "missed", "daemon_down")], utcnow()) == 0
    finally:
        other.close()
    assert rows(db, "SELECT state, cause, run_id, late_s FROM job_slots") == [("kept", None, 7, 2.5)]


def test_a_long_downtime_writes_at_most_a_hundred_rows_of_a_job_then_one_summary_row(db):
    store = Store(db)
    missed = [SlotRecord(SLOT - timedelta(hours=n), "missed", "daemon_down") for n in range(1, 251)]
    assert store.record_slots("hourly", missed, utcnow()) == ROWS_PER_TICK + 1
    [(count, slots)] = rows(db, "SELECT count(*), sum(slots) FROM job_slots WHERE job = 'hourly'")
    assert (count, slots) == (ROWS_PER_TICK + 1, 250)
    [(earliest_of_summary, stands_for)] = rows(db, "SELECT slot_at, slots FROM job_slots WHERE slots > 1")
    assert stands_for == 150 and earliest_of_summary == SLOT - timedelta(hours=150)


def test_freshness_is_kept_slots_over_owed_slots_and_excused_slots_are_not_owed(db):
    store = Store(db)
    store.record_slots("news", [
        SlotRecord(SLOT, "kept", run_id=1, late_s=0.4),
        SlotRecord(SLOT + timedelta(days=1), "kept", run_id=2, late_s=1.0),
        SlotRecord(SLOT + timedelta(days=2), "missed", "timeout"),
        SlotRecord(SLOT + timedelta(days=3), "excused", "paused"),
    ], utcnow())  # fmt: skip
    store.record_slots("prices", [SlotRecord(SLOT - timedelta(days=40), "missed", "db_down")], utcnow())
    assert store.freshness(SLOT - timedelta(days=1)) == {"news": (2, 3)}
    assert store.missed_slots("news", SLOT) == [(SLOT + timedelta(days=2), "timeout", 1)]
    assert store.last_kept_slot("news") == (SLOT + timedelta(days=1), 2, 1.0)
    assert store.remove_slots_older_than(SLOT - timedelta(days=30)) == 1


def test_a_ledger_row_states_its_cause_only_when_the_slot_was_not_kept():
    with pytest.raises(ValueError):
        SlotRecord(SLOT, "kept", "busy")
    with pytest.raises(ValueError):
        SlotRecord(SLOT, "missed")
    with pytest.raises(ValueError):
        SlotRecord(SLOT, "excused", "daemon_down")


def test_a_published_calendar_reads_back_whole_and_its_schedule_keeps_its_first_moment_until_edited(db):
    store = Store(db)
    first = datetime(2027, 1, 4, 9, 0, tzinfo=timezone.utc)
    calendar_job = job("news", calendar=WEEKDAYS_AT_8)
    store.publish_jobs([calendar_job, job("prices")], path=None, error=None, spiders=None, now=first, owner="a")
    assert store.published_jobs() == [calendar_job, job("prices")]
    assert store.schedules_since() == {"news": first}
    # Published again unchanged (a reload, a restart, another holder): slots stay owed from the first moment.
    store.publish_jobs([calendar_job], path=None, error=None, spiders=None, now=first + timedelta(days=3), owner="b")
    assert store.schedules_since() == {"news": first}
    # Edited: a new schedule, owed from its own publication.
    edited = job("news", calendar=Calendar("30 9 * * *", BOGOTA))
    store.publish_jobs([edited], path=None, error=None, spiders=None, now=first + timedelta(days=5), owner="b")
    assert store.published_jobs() == [edited]
    assert store.schedules_since() == {"news": first + timedelta(days=5)}


def test_the_loop_recorder_starts_no_crawl_for_a_slot_another_crawl_covers_and_keeps_a_slot_it_covers(db):
    from daemon.jobs.crawl import CrawlOutcome
    from daemon.loop.recording import DatabaseRecorder
    from tests.unit.fakes import FakeClock

    store, clock = Store(db), FakeClock(SLOT + timedelta(seconds=42))
    crawl_for_slot(db, "taken", SLOT, "running")  # another daemon's crawl for this slot
    recorder = DatabaseRecorder(lambda: store, clock, new_run(db, status="running"), {"taken": SLOT, "news": SLOT})
    assert recorder.started(job("taken")) is None  # refused by the unique index: not started, no crash
    crawl_id = recorder.started(job("news"))
    assert crawl_id is not None
    assert rows(db, "SELECT slot_at, status FROM spider_runs WHERE id = %(i)s", {"i": crawl_id}) == [(SLOT, "running")]
    recorder.finished(crawl_id, CrawlOutcome("news", True, None, "scraped 1 item(s)", 0, "finished", 1, 0, {}, 1.0))
    assert rows(db, "SELECT job, slot_at, state, run_id, late_s FROM job_slots") == [("news", SLOT, "kept", crawl_id, 42.0)]
    assert rows(db, "SELECT count(*) FROM spider_runs WHERE job = 'taken'") == [(1,)]


def test_status_shows_a_calendar_jobs_schedule_next_slot_state_last_kept_missed_slots_and_freshness(
        db, pg_server, database):  # fmt: skip
    from daemon.ask import status
    from daemon.loop.slot_ledger import missed_rows
    from daemon.settings.config import Settings
    from tests.conftest import TEST_PROJECT

    settings = Settings.from_mapping({**pg_server.env(database), "SCRAPY_PROJECT_DIR": str(TEST_PROJECT)})
    store = Store(db)
    ny = Calendar("0 8 * * *", ZoneInfo("America/New_York"))
    kept = datetime(2027, 1, 10, 13, tzinfo=timezone.utc)  # 08:00 EST
    store.publish_jobs([job("news", calendar=ny), job("prices")], path=None, error=None, spiders=None,
                       now=kept - timedelta(days=2), owner="a")  # fmt: skip
    crawl_for_slot(db, "news", kept, "completed")
    rows(db, "UPDATE spider_runs SET started_at = %(t)s, finished_at = %(t)s", {"t": kept})
    store.record_slots("news", [SlotRecord(kept, "kept", run_id=1, late_s=0.0)], kept)
    store.record_counted("news", missed_rows([kept - timedelta(days=1)], 1, ["daemon_down"]), kept)
    now = kept + timedelta(hours=21)  # 05:00 EST the next day: the next slot in 3 h
    report = status.gather(store, settings, now, *status.current_jobs(store, settings))
    news, prices = report["spiders"]
    assert prices["calendar"] is None
    cal = news["calendar"]
    assert (cal["cron"], cal["wording"], cal["timezone"]) == ("0 8 * * *", "At 08:00 every day", "America/New_York")
    assert (cal["next_slot"], cal["next_slot_utc"], cal["next_slot_in"]) == (
        "2027-01-11T08:00:00-05:00", "2027-01-11T13:00:00+00:00", "in 3 h")
    assert cal["state"] == "waiting for its next slot"
    assert cal["last_kept"]["slot"] == "2027-01-10T08:00:00-05:00"
    assert [(m["slot"], m["cause"]) for m in cal["missed_30d"]] == [("2027-01-09T08:00:00-05:00", "daemon_down")]
    assert (cal["freshness_month"]["kept"], cal["freshness_month"]["owed"]) == (1, 2)
    text = status.render(report, as_json=False)
    assert "news: At 08:00 every day (America/New_York)" in text
    assert "next slot 2027-01-11 08:00 EST (13:00 UTC), in 3 h; now waiting for its next slot" in text
    assert "freshness this month 1/2 slots kept" in text and "2027-01-09 08:00 EST (13:00 UTC) daemon_down" in text
    assert json.loads(status.render(report, as_json=True))["spiders"][0]["calendar"] == cal
    from daemon.web import page, pagedata

    ov = pagedata.overview(store, settings, now, 7, job="news")
    html = page.job_page(ov, ZoneInfo("UTC"), False, None)
    assert "<h2>Schedule</h2>" in html and "<dd>At 08:00 every day (America/New_York).</dd>" in html
    assert "2027-01-11 08:00 EST (13:00 UTC), in 3 h" in html and "<dd>1 of 2 slots kept</dd>" in html
    assert "<li>2027-01-09 08:00 EST (13:00 UTC): daemon_down</li>" in html
    overview = page.overview_page(pagedata.overview(store, settings, now, 7), ZoneInfo("UTC"), False)
    assert ('<span class="sub schedule">At 08:00 every day (America/New_York). next slot 2027-01-11 08:00 EST '
            "(13:00 UTC)</span>") in overview and overview.count('class="sub schedule"') == 1  # news only
    assert "<h2>Schedule</h2>" not in page.job_page(pagedata.overview(store, settings, now, 7, job="prices"),
                                                    ZoneInfo("UTC"), False, None)  # fmt: skip
