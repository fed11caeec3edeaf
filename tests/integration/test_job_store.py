"""The Store's per-job records on a real PostgreSQL: histories per job, crawls recorded with their
job, arguments and settings, the published jobs, pauses and cancel requests."""

from __future__ import annotations

import select
import uuid
from datetime import timedelta

import psycopg2
import pytest

from daemon.jobs.jobfile import Job
from daemon.records.store import Store
from tests.helpers import hours, rows, utcnow


def job(name: str, spider: str | None = None, **values) -> Job:
    fields = {
        "args": (), "settings": (), "every": hours(4), "timeout": hours(2), "retry_delay": timedelta(minutes=15),
        "max_errors": 0, "min_items": 0, "jitter": timedelta(0), "paused": False,
    }  # fmt: skip
    return Job(name=name, spider=spider or name, **(fields | values))


def new_run(db, started=None, status: str = "completed") -> int:
    [(run_id,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status) "
                           "VALUES (%(t)s, 1, %(s)s) RETURNING id", {"t": started or utcnow(), "s": status})  # fmt: skip
    return run_id


def crawl(db, job_name: str, spider: str, status: str, failure: str | None = None, started=None) -> None:
    started = started or utcnow()
    rows(db, "INSERT INTO spider_runs (run_id, job, spider, status, failure, started_at, finished_at) "
             "VALUES (%(r)s, %(j)s, %(s)s, %(st)s, %(f)s, %(t)s, %(t)s)",
         {"r": new_run(db, started), "j": job_name, "s": spider, "st": status, "f": failure, "t": started})  # fmt: skip


def listener(pg_server, database):
    conn = pg_server.connect(database)
    with conn.cursor() as cur:
        cur.execute("LISTEN scheduler_run_now")
    return conn


def heard(conn, timeout: float = 2.0) -> list[str]:
    if select.select([conn], [], [], timeout)[0]:
        conn.poll()
    payloads = [n.payload for n in conn.notifies]
    conn.notifies.clear()
    return payloads


# ------------------------------------------------------------------------------------- histories


def test_a_jobs_history_is_its_own_not_that_of_another_job_of_the_same_spider(db):
    now = utcnow()
    crawl(db, "python-remote", "indeed", "completed", started=now - hours(3))
    crawl(db, "data-bogota", "indeed", "completed", started=now - hours(1))
    crawl(db, "data-bogota", "indeed", "failed", "error", started=now - timedelta(minutes=10))
    remote, bogota, fresh = Store(db).histories(["python-remote", "data-bogota", "never-ran"])
    assert (remote.spider, remote.consecutive_failures) == ("python-remote", 0)
    assert abs(remote.last_success_at - (now - hours(3))) < timedelta(seconds=1)
    assert (bogota.spider, bogota.consecutive_failures) == ("data-bogota", 1)
    assert abs(bogota.last_success_at - (now - hours(1))) < timedelta(seconds=1)
    assert (fresh.spider, fresh.last_success_at, fresh.consecutive_failures) == ("never-ran", None, 0)


@pytest.mark.parametrize(("failure", "counted"), [
    ("error", True), ("timeout", True), ("too_few_items", True), ("cancelled", True),
    ("interrupted", False), ("stale", False),
])  # fmt: skip
def test_only_the_jobs_own_failures_count_against_it(db, failure, counted):
    now = utcnow()
    crawl(db, "j", "ok", "completed", started=now - hours(5))
    crawl(db, "j", "ok", "failed", failure, started=now - hours(1))
    [history] = Store(db).histories(["j"])
    assert history.consecutive_failures == (1 if counted else 0)
    assert (history.last_failure_at is not None) == counted


def test_failures_before_the_jobs_newest_success_no_longer_count(db):
    now = utcnow()
    crawl(db, "j", "ok", "failed", "too_few_items", started=now - hours(6))
    crawl(db, "j", "ok", "completed", started=now - hours(5))
    crawl(db, "j", "ok", "failed", "cancelled", started=now - hours(2))
    crawl(db, "j", "ok", "failed", "timeout", started=now - hours(1))
    [history] = Store(db).histories(["j"])
    assert history.consecutive_failures == 2
    assert history.last_failure_kind == "timeout"  # the newest failure's kind: a missed slot's cause (issue 21)


# ------------------------------------------------------------------------------ recording crawls


def test_a_crawl_is_recorded_with_its_job_arguments_and_settings(db):
    store = Store(db)
    run_id = new_run(db)
    store.start_spider(run_id, "indeed", utcnow(), job="python-remote", args=(("q", "python"), ("l", "remote")),
                       settings={"DOWNLOAD_DELAY": "2"})  # fmt: skip
    store.start_spider(run_id, "indeed", utcnow(), job="data-bogota", args={"q": "data"}, settings={})
    assert rows(db, "SELECT job, spider, args, settings, status FROM spider_runs ORDER BY id") == [
        ("python-remote", "indeed", {"q": "python", "l": "remote"}, {"DOWNLOAD_DELAY": "2"}, "running"),
        ("data-bogota", "indeed", {"q": "data"}, {}, "running"),
    ]


def test_a_crawl_recorded_the_way_the_loop_did_before_jobs_is_a_run_of_the_job_named_after_its_spider(db):
    store = Store(db)
    spider_run_id = store.start_spider(new_run(db), "ok", utcnow())
    assert rows(db, "SELECT id, job, spider, args, settings FROM spider_runs") == [(spider_run_id, "ok", "ok", None, None)]


def _journaled_run(spiders: list[dict], cut: list[dict] = ()) -> dict:
    started = utcnow() - hours(1)
    return {
        "run": str(uuid.uuid4()), "started_at": started.isoformat(), "planned": [s["spider"] for s in spiders],
        "owner": "host:1", "spiders": spiders, "cut": list(cut),
        "end": {"finished_at": utcnow().isoformat(), "ok": True, "error": None},
    }  # fmt: skip


def _result(**fields) -> dict:
    moment = (utcnow() - timedelta(minutes=30)).isoformat()
    return {"started_at": moment, "finished_at": moment, "ok": True, "failure": None, "exit_code": 0,
            "finish_reason": "finished", "items_scraped": 3, "error_count": 0, "message": "3 items",
            "stats": None, "pid": 4242, **fields}  # fmt: skip


def test_a_replayed_journal_records_each_crawls_job_arguments_and_settings(db):
    run = _journaled_run(
        [_result(spider="indeed", job="python-remote", args={"q": "python"}, settings={"DOWNLOAD_DELAY": "2"}),
         _result(spider="indeed", job="data-bogota", args=[["q", "data"]], settings=[], pid=4343)],
        cut=[{"spider": "indeed", "job": "remote-cut", "args": {"q": "x"}, "started_at": utcnow().isoformat(),
              "pid": 4444}],
    )  # fmt: skip
    assert Store(db).replay([run], []) == 1
    assert rows(db, "SELECT job, spider, args, settings, status, failure FROM spider_runs ORDER BY id") == [
        ("python-remote", "indeed", {"q": "python"}, {"DOWNLOAD_DELAY": "2"}, "completed", None),
        ("data-bogota", "indeed", {"q": "data"}, {}, "completed", None),
        ("remote-cut", "indeed", {"q": "x"}, None, "failed", "stale"),
    ]


def test_a_journal_written_before_jobs_replays_as_runs_of_the_jobs_named_after_their_spiders(db):
    run = _journaled_run([_result(spider="ok")], cut=[{"spider": "other", "started_at": utcnow().isoformat(),
                                                        "pid": 4545}])  # fmt: skip
    assert Store(db).replay([run], []) == 1
    assert rows(db, "SELECT job, spider, args, settings FROM spider_runs ORDER BY id") == [
        ("ok", "ok", None, None),
        ("other", "other", None, None),
    ]


def test_the_newest_crawl_of_each_job_in_the_order_asked(db):
    now = utcnow()
    crawl(db, "a", "ok", "completed", started=now - hours(2))
    crawl(db, "a", "ok", "failed", "too_few_items", started=now - hours(1))
    crawl(db, "b", "ok", "completed", started=now - hours(1))
    latest = Store(db).latest_job_runs(["b", "never", "a"])
    assert [(r[0], r[3], r[4]) for r in latest] == [("b", "completed", None), ("never", None, None),
                                                    ("a", "failed", "too_few_items")]  # fmt: skip


# ---------------------------------------------------------------------------- the published jobs


def test_nothing_is_published_before_a_lock_holder_publishes(db):
    store = Store(db)
    assert store.jobs_source() is None and store.published_jobs() == []


def test_the_published_jobs_read_back_are_the_jobs_published_in_the_files_order(db):
    hostile = "a'b\"c $(touch /tmp/x); rm -rf / `id`\nnext line ☃ " + "x" * 10_000
    jobs = [
        job("zz-last-in-name-first-in-file", "indeed", args=(("q", hostile), ("l", "remote"), ("a", "1")),
            settings=(("DOWNLOAD_DELAY", "2"), ("AUTOTHROTTLE_ENABLED", "True")), every=timedelta(minutes=90),
            timeout=timedelta(minutes=45), retry_delay=timedelta(seconds=30), max_errors=3, min_items=10,
            jitter=timedelta(minutes=5)),
        job("quotes", paused=True),
        job("aa", "indeed"),
    ]  # fmt: skip
    store = Store(db)
    now = utcnow()
    store.publish_jobs(jobs, path="/project/schedule.toml", error=None, spiders=["indeed", "quotes"], now=now,
                       owner="host:1")  # fmt: skip
    assert store.published_jobs() == jobs
    path, loaded_at, error, spiders, listed_at = store.jobs_source()
    assert (path, error, spiders) == ("/project/schedule.toml", None, ["indeed", "quotes"])
    assert loaded_at == listed_at == now


def test_publishing_again_replaces_every_job_and_keeps_the_spider_list_when_none_is_given(db):
    store = Store(db)
    first = utcnow() - hours(1)
    store.publish_jobs([job("a"), job("b")], path=None, error=None, spiders=["a", "b"], now=first, owner="host:1")
    later = utcnow()
    store.publish_jobs([job("c", "a")], path="/p/schedule.toml", error=None, spiders=None, now=later, owner="host:2")
    assert [j.name for j in store.published_jobs()] == ["c"]
    assert store.jobs_source() == ("/p/schedule.toml", later, None, ["a", "b"], first)
    assert rows(db, "SELECT published_by FROM jobs_source") == [("host:2",)]


def test_a_bad_file_is_published_beside_the_last_good_jobs(db):
    store = Store(db)
    good = [job("a")]
    store.publish_jobs(good, path="/p/schedule.toml", error=None, spiders=["a"], now=utcnow(), owner="host:1")
    problem = "/p/schedule.toml: is not valid TOML: Expected '=' (at line 3, column 5)"
    store.publish_jobs(good, path="/p/schedule.toml", error=problem, spiders=None, now=utcnow(), owner="host:1")
    assert store.published_jobs() == good
    assert store.jobs_source()[2] == problem


def test_a_publication_that_fails_leaves_the_previous_one_whole(db):
    store = Store(db)
    store.publish_jobs([job("a")], path=None, error=None, spiders=["a"], now=utcnow(), owner="host:1")
    with pytest.raises(psycopg2.errors.UniqueViolation):
        store.publish_jobs([job("b"), job("b")], path="/p/x.toml", error=None, spiders=["b"], now=utcnow(),
                           owner="host:2")  # fmt: skip
    assert [j.name for j in store.published_jobs()] == ["a"]
    assert store.jobs_source()[0] is None
    assert db.closed == 0 and store.conn.autocommit


def test_ten_thousand_jobs_are_published_and_read_back(db):
    jobs = [job(f"j{n:05d}", f"s{n % 100:02d}", args=(("q", str(n)),)) for n in range(10_000)]
    store = Store(db)
    store.publish_jobs(jobs, path="/p/big.toml", error=None, spiders=None, now=utcnow(), owner="host:1")
    assert store.published_jobs() == jobs


# --------------------------------------------------------------------------------- pause, cancel


def test_a_pause_holds_until_its_time_or_until_resumed_and_every_change_is_announced(pg_server, database, db):
    store = Store(db)
    ear = listener(pg_server, database)
    now = utcnow()
    store.pause("a", now + hours(2), now)
    assert heard(ear) == ["pause"]
    store.pause("b", None, now)
    store.pause("gone", now - timedelta(seconds=1), now - hours(1))
    assert store.pauses(now) == {"a": now + hours(2), "b": None}
    assert store.pauses(now + hours(3)) == {"b": None}
    heard(ear)
    assert store.resume("a") is True
    assert heard(ear) == ["resume"]
    assert store.resume("a") is False
    assert heard(ear, timeout=0.3) == []
    assert store.pauses(now) == {"b": None}
    ear.close()


def test_pausing_a_paused_job_again_replaces_its_pause(db):
    store = Store(db)
    now = utcnow()
    store.pause("a", None, now)
    store.pause("a", now + hours(1), now)
    assert store.pauses(now) == {"a": now + hours(1)}


def test_a_cancel_request_is_announced_and_taken_once(pg_server, database, db):
    store = Store(db)
    ear = listener(pg_server, database)
    assert store.request_cancel(["b", "a"]) == 2
    assert heard(ear) == ["cancel"]
    store.request_cancel(["b"])
    now = utcnow()
    assert store.take_cancels(now) == ["b", "a"]
    assert store.take_cancels(now) == []
    assert rows(db, "SELECT count(*) FROM cancel_requests WHERE taken_at = %(now)s", {"now": now}) == [(3,)]
    ear.close()


def test_taken_cancel_requests_are_kept_in_bounds_with_the_run_now_requests(db):
    store = Store(db)
    store.request_cancel(["a", "b"])
    store.take_cancels(utcnow() - timedelta(days=100))
    store.request_cancel(["c"])
    assert store.delete_old_bookkeeping(utcnow() - timedelta(days=90)) == (0, 2)
    assert rows(db, "SELECT job FROM cancel_requests") == [("c",)]
