"""The alerts' outbox against a real PostgreSQL and real receivers on 127.0.0.1: a failed crawl's
alert is written with its record, a receiver that is down gets its alerts in order when it is back,
none twice, two daemons never send one alert, attempts are recorded, and PostgreSQL down loses
nothing."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import psycopg2
import pytest

from daemon.settings.notify_config import NotifyConfig
from daemon.telemetry.notify import Notifier
from daemon.telemetry.outbox import Outbox
from daemon.settings.secret import Secret
from tests.alert_receivers import JsonReceiver
from tests.helpers import rows, utcnow


@pytest.fixture
def receiver():
    r = JsonReceiver()
    yield r
    r.close()


def fail_crawl(db, job: str, message: str = "it broke") -> int:
    [(run_id,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status, finished_at) "
                           "VALUES (now(), 1, 'failed', now()) RETURNING id")  # fmt: skip
    [(crawl,)] = rows(db, "INSERT INTO spider_runs (run_id, spider, job, status, started_at) "
                          "VALUES (%(r)s, 'boom', %(j)s, 'running', now()) RETURNING id", {"r": run_id, "j": job})  # fmt: skip
    rows(db, "UPDATE spider_runs SET status = 'failed', failure = 'error', message = %(m)s, finished_at = now() "
             "WHERE id = %(id)s", {"id": crawl, "m": message})  # fmt: skip
    return crawl


def outbox(pg_server, database, receivers, tags_of=lambda job: ()) -> Outbox:  # noqa: ANN001
    config = NotifyConfig(None, Secret("".join(f"{r.url('/' + str(i))}\n" for i, r in enumerate(receivers))))  # type: ignore[arg-type]
    post = Notifier(Secret(""), Secret(""), threading.Event())._post
    return Outbox(lambda: pg_server.connect(database), config, Secret(""), tags_of, post)


def make_due_now(db) -> None:
    """The wait between attempts has passed (the rows say when the next attempt is due)."""
    rows(db, "UPDATE alert_deliveries SET next_attempt_at = now()")


def test_a_failed_crawl_writes_its_alert_in_its_own_transaction_once(db):
    crawl = fail_crawl(db, "quotes", "HTTP 500 on the first page")
    rows(db, "UPDATE spider_runs SET status = 'failed' WHERE id = %(id)s", {"id": crawl})  # written again: still one
    assert rows(db, "SELECT kind, job, level, text, fields->>'spider', spider_run_id FROM alert_outbox") == [
        ("spider_failed", "quotes", "error", "Job quotes failed (error): HTTP 500 on the first page", "boom", crawl)]


def test_a_receiver_down_gets_its_alerts_in_order_once_it_is_back_and_none_twice(pg_server, database, db, receiver):
    box = outbox(pg_server, database, [receiver])
    receiver.status = 503
    fail_crawl(db, "first")
    fail_crawl(db, "second")
    assert box.step() == 1  # the first alert tried; the second waits behind it for this channel
    assert box.step() == 0  # not due again yet
    [(attempts, error, delivered)] = rows(db, "SELECT attempts, last_error, delivered_at FROM alert_deliveries")
    assert attempts == 1 and error and delivered is None
    receiver.status = 200
    make_due_now(db)
    box.step()
    box.step()
    assert [m.split(" ")[1] for m in receiver.messages()] == ["first", "second"]
    make_due_now(db)
    assert box.step() == 0 and len(receiver.posts) == 2
    assert rows(db, "SELECT count(*) FROM alert_outbox WHERE done_at IS NULL") == [(0,)]
    assert rows(db, "SELECT attempts FROM alert_deliveries ORDER BY alert_id") == [(2,), (1,)]


def test_a_channel_that_took_an_alert_never_gets_it_again_while_another_is_retried(pg_server, database, db):
    up, down = JsonReceiver(), JsonReceiver(status=500)
    try:
        box = outbox(pg_server, database, [up, down])
        fail_crawl(db, "quotes")
        box.step()
        for _ in range(3):
            make_due_now(db)
            box.step()
        assert len(up.posts) == 1 and down.posts == []
        assert rows(db, "SELECT attempts, delivered_at IS NOT NULL FROM alert_deliveries ORDER BY attempts") == [
            (1, True), (4, False)]  # fmt: skip
        down.status = 200
        make_due_now(db)
        box.step()
        assert len(up.posts) == 1 and len(down.posts) == 1
    finally:
        up.close()
        down.close()


def test_each_alert_s_delivery_is_committed_before_the_next_is_sent_so_a_later_error_undoes_nothing(
    pg_server, database, db, receiver
):  # fmt: skip
    box = outbox(pg_server, database, [receiver])
    fail_crawl(db, "first")
    fail_crawl(db, "second")
    [(second,)] = rows(db, "SELECT id FROM alert_outbox WHERE job = 'second'")
    # A real database error while recording the second alert's delivery, after its send.
    rows(db, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
             "RAISE EXCEPTION 'refused'; END; $$")  # fmt: skip
    rows(db, f"CREATE TRIGGER refuse BEFORE INSERT ON alert_deliveries FOR EACH ROW "
             f"WHEN (NEW.alert_id = {int(second)}) EXECUTE FUNCTION refuse()")  # fmt: skip
    assert box.step() == 0  # the pass broke on the second alert
    assert rows(db, "SELECT o.job, d.delivered_at IS NOT NULL, o.done_at IS NOT NULL FROM alert_outbox o "
                    "LEFT JOIN alert_deliveries d ON d.alert_id = o.id ORDER BY o.id") == [
        ("first", True, True), ("second", False, False)]  # fmt: skip
    rows(db, "DROP TRIGGER refuse ON alert_deliveries")
    box.step()
    # The first is never sent again; the second was sent before its record failed: at least once.
    assert [m.split(" ")[1] for m in receiver.messages()] == ["first", "second", "second"]
    assert rows(db, "SELECT count(*) FROM alert_outbox WHERE done_at IS NULL") == [(0,)]


def test_two_daemons_stepping_at_once_send_each_alert_once(pg_server, database, db, receiver):
    boxes = [outbox(pg_server, database, [receiver]) for _ in range(2)]
    for n in range(6):
        fail_crawl(db, f"job{n}")
    threads = [threading.Thread(target=lambda b=b: [b.step() for _ in range(4)]) for b in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(m.split(" ")[1] for m in receiver.messages()) == [f"job{n}" for n in range(6)]


def test_a_job_s_tags_choose_its_channels(pg_server, database, db):
    oncall, team = JsonReceiver(), JsonReceiver()
    try:
        config = NotifyConfig(None, Secret(f"oncall={oncall.url()}\nteam={team.url()}\n"))  # type: ignore[arg-type]
        post = Notifier(Secret(""), Secret(""), threading.Event())._post
        box = Outbox(lambda: pg_server.connect(database), config, Secret(""),
                     lambda job: ("oncall",) if job == "quotes" else (), post)  # fmt: skip
        fail_crawl(db, "quotes")
        fail_crawl(db, "books")
        box.step()
        assert [m.split(" ")[1] for m in oncall.messages()] == ["quotes", "books"]
        assert [m.split(" ")[1] for m in team.messages()] == ["books"]
    finally:
        oncall.close()
        team.close()


def test_an_alert_undelivered_for_24_hours_is_given_up_and_closed(pg_server, database, db, receiver):
    box = outbox(pg_server, database, [receiver])
    receiver.status = 500
    fail_crawl(db, "quotes")
    rows(db, "UPDATE alert_outbox SET created_at = now() - interval '25 hours'")
    box.step()
    assert rows(db, "SELECT given_up_at IS NOT NULL FROM alert_deliveries") == [(True,)]
    assert rows(db, "SELECT done_at IS NOT NULL FROM alert_outbox") == [(True,)]


def test_alerts_added_while_postgresql_is_down_wait_and_are_delivered_once_it_answers(pg_server, database, db, receiver):
    down = threading.Event()

    def connect():  # noqa: ANN202
        if down.is_set():
            raise psycopg2.OperationalError("connection refused")
        return pg_server.connect(database)

    post = Notifier(Secret(""), Secret(""), threading.Event())._post
    box = Outbox(connect, NotifyConfig(None, Secret(receiver.url())), Secret(""), lambda job: (), post)  # type: ignore[arg-type]
    down.set()
    box.add("overdue", "quotes", "warning", "Job quotes has had no successful run", datetime.now(timezone.utc), {})
    assert box.step() == 0 and len(box.waiting) == 1
    down.clear()
    assert box.step() == 1
    assert receiver.messages() == ["Job quotes has had no successful run"]
    assert rows(db, "SELECT kind, job, created_at <= %(t)s FROM alert_outbox", {"t": utcnow()}) == [
        ("overdue", "quotes", True)]  # fmt: skip


def test_metrics_count_each_channels_undelivered_alerts_down_to_zero(pg_server, database, db, receiver):
    from daemon.telemetry.metrics import Metrics

    metrics = Metrics()
    config = NotifyConfig(None, Secret(receiver.url()))  # type: ignore[arg-type]
    post = Notifier(Secret(""), Secret(""), threading.Event())._post
    box = Outbox(lambda: pg_server.connect(database), config, Secret(""), lambda job: (), post, metrics)
    name = f"json://127.0.0.1:{receiver.port}"
    receiver.status = 500
    fail_crawl(db, "quotes")
    box.step()
    assert metrics.registry.get_sample_value("scheduler_alerts_undelivered", {"channel": name}) == 1
    receiver.status = 200
    make_due_now(db)
    box.step()
    assert metrics.registry.get_sample_value("scheduler_alerts_undelivered", {"channel": name}) == 0


def succeed_crawl(db, job: str) -> int:
    [(run_id,)] = rows(db, "INSERT INTO scheduler_state (last_run_at, spider_count, status, finished_at) "
                           "VALUES (now(), 1, 'completed', now()) RETURNING id")  # fmt: skip
    [(crawl,)] = rows(db, "INSERT INTO spider_runs (run_id, spider, job, status, started_at) "
                          "VALUES (%(r)s, 'ok', %(j)s, 'running', now()) RETURNING id", {"r": run_id, "j": job})  # fmt: skip
    rows(db, "UPDATE spider_runs SET status = 'completed', items_scraped = 5, finished_at = now() WHERE id = %(id)s",
         {"id": crawl})  # fmt: skip
    return crawl


def test_alert_after_3_tells_the_third_failure_in_a_row_then_the_recovery(pg_server, database, db, receiver):
    config = NotifyConfig(None, Secret(receiver.url()))  # type: ignore[arg-type]
    post = Notifier(Secret(""), Secret(""), threading.Event())._post
    box = Outbox(lambda: pg_server.connect(database), config, Secret(""), lambda job: (), post,
                 alert_after_of=lambda job: 3)  # fmt: skip
    fail_crawl(db, "quotes", "first")
    fail_crawl(db, "quotes", "second")
    succeed_crawl(db, "quotes")  # a streak of 2, never told: its end is not told either
    for n in range(3):
        fail_crawl(db, "quotes", f"again {n}")
    box.step()
    [told] = receiver.messages()
    assert told.startswith("Job quotes failed (error): again 2 (3 failures in a row, since ")
    rows(db, "UPDATE spider_runs SET started_at = started_at - interval '2 hours 10 minutes' "
             "WHERE message = 'again 0'")  # the streak began 2 h 10 min ago  # fmt: skip
    succeed_crawl(db, "quotes")
    box.step()
    assert receiver.messages()[1:] == ["Job quotes recovered after 3 failures, down 2 h 10 min"]
    assert receiver.posts[1][1]["type"] == "success"


def test_an_alert_says_since_when_and_links_the_jobs_page_under_the_public_url(pg_server, database, db, receiver):
    config = NotifyConfig(None, Secret(receiver.url()))  # type: ignore[arg-type]
    post = Notifier(Secret(""), Secret(""), threading.Event())._post
    box = Outbox(lambda: pg_server.connect(database), config, Secret(""), lambda job: (), post,
                 public_url=Secret("https://scheduler.example.com/"))  # fmt: skip
    fail_crawl(db, "q.uotes", "first")
    fail_crawl(db, "q.uotes", "second")
    [(since,)] = rows(db, "SELECT to_char(min(started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM spider_runs")
    box.step()
    assert receiver.messages() == [
        "Job q.uotes failed (error): first\nhttps://scheduler.example.com/jobs/q.uotes",
        f"Job q.uotes failed (error): second (2 failures in a row, since {since} UTC)\n"
        "https://scheduler.example.com/jobs/q.uotes",
    ]  # fmt: skip


def test_a_job_named_only_with_dots_links_a_page_not_a_path_step():
    from daemon.telemetry.outbox import job_link

    assert job_link("https://s.example.com", "..") == "https://s.example.com/jobs/%2E%2E"


def test_the_page_reads_each_channels_undelivered_alerts_in_its_read_only_session(pg_server, database, db, receiver):
    from daemon.settings.config import Settings
    from daemon.web.pagedata import PageSession, overview
    from tests.conftest import TEST_PROJECT

    box = outbox(pg_server, database, [receiver])
    receiver.status = 500
    fail_crawl(db, "quotes")
    fail_crawl(db, "books")
    box.step()  # the first tried and failed; the second waits behind it: no row of its own yet
    settings = Settings.from_mapping({**pg_server.env(database), "SCRAPY_PROJECT_DIR": str(TEST_PROJECT)})
    session = PageSession(settings)
    try:
        ov = session.read(lambda store: overview(store, settings, utcnow(), 7))
    finally:
        session.close()
    assert ov.undelivered == ((f"json://127.0.0.1:{receiver.port}", 1),)


def test_an_alert_raised_while_postgresql_is_down_waits_in_the_state_directory_and_survives_a_restart(
    pg_server, database, db, receiver, tmp_path
):  # fmt: skip
    from daemon.telemetry.alert_spool import AlertSpool

    def down():  # noqa: ANN202
        raise psycopg2.OperationalError("connection refused")

    post = Notifier(Secret(""), Secret(""), threading.Event())._post
    config = NotifyConfig(None, Secret(receiver.url()))  # type: ignore[arg-type]
    first = Outbox(down, config, Secret(""), lambda job: (), post, spool=AlertSpool(tmp_path))
    first.add("overdue", "quotes", "warning", "Job quotes has had no successful run", datetime.now(timezone.utc), {})
    assert first.step() == 0 and first.waiting == []
    spooled = tmp_path / "alerts-pending.jsonl"
    assert spooled.stat().st_mode & 0o777 == 0o600
    left_behind = spooled.read_text()
    # The daemon died; the next one starts with PostgreSQL back.
    second = Outbox(lambda: pg_server.connect(database), config, Secret(""), lambda job: (), post,
                    spool=AlertSpool(tmp_path))  # fmt: skip
    assert second.step() == 1
    assert receiver.messages() == ["Job quotes has had no successful run"] and not spooled.exists()
    # A crash between writing them and removing the file: the same alerts again add nothing.
    spooled.write_text(left_behind)
    assert second.step() == 0 and len(receiver.posts) == 1
    assert rows(db, "SELECT count(*) FROM alert_outbox") == [(1,)]


def test_a_node_lost_is_told_once_per_outage_by_any_number_of_daemons_and_again_after_it_came_back(
        pg_server, database, db, receiver):  # fmt: skip
    """The first daemon tells the node lost; a second one, started during the same outage (a restart,
    a take-over), tells it too, but the outbox writes it once; the node's return ends the episode."""
    first, second = (outbox(pg_server, database, [receiver]) for _ in range(2))

    def tell(box: Outbox, kind: str) -> None:
        box.add(kind, None, "error", f"{kind} 127.0.0.1:6800", utcnow(), {"node": "127.0.0.1:6800",
                                                                            "episode": "node 127.0.0.1:6800"})
        box.step()

    tell(first, "node_lost")
    tell(second, "node_lost")  # the daemon restarted during the outage: its engine saw the node fail anew
    tell(second, "node_back")
    tell(second, "node_back")  # told twice in a row: once
    tell(first, "node_lost")  # a new outage
    assert [k for (k,) in rows(db, "SELECT kind FROM alert_outbox ORDER BY id")] == ["node_lost", "node_back",
                                                                                     "node_lost"]  # fmt: skip
    assert receiver.messages() == ["node_lost 127.0.0.1:6800", "node_back 127.0.0.1:6800", "node_lost 127.0.0.1:6800"]


def test_missed_slots_are_told_once_per_last_kept_slot_and_alerts_without_an_episode_every_time(
        pg_server, database, db, receiver):  # fmt: skip
    box = outbox(pg_server, database, [receiver])
    for since in ("2027-01-11T08:00:00+00:00", "2027-01-11T08:00:00+00:00", "2027-01-12T08:00:00+00:00"):
        box.add("slots_missed", "news", "warning", f"news missed slots since {since}", utcnow(),
                {"episode": f"slots news since {since}"})  # fmt: skip
        box.add("overdue", "news", "warning", "news overdue", utcnow(), {})
        box.step()
    assert rows(db, "SELECT kind, count(*) FROM alert_outbox GROUP BY kind ORDER BY kind") == [
        ("overdue", 3), ("slots_missed", 2)]  # fmt: skip
