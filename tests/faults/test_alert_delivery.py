"""Alerts are never lost (issue 22): a daemon SIGKILLed with an alert still undelivered leaves it to
the next daemon, and a crawl that fails while PostgreSQL is down is alerted once the journal is
replayed. Real daemons, a real PostgreSQL, a real json:// receiver on 127.0.0.1."""

from __future__ import annotations

import signal

import pytest

from tests.alert_receivers import JsonReceiver, write_config
from tests.helpers import count, rows, wait_for

pytestmark = pytest.mark.faults

DELIVERED = "SELECT count(*) FROM alert_deliveries WHERE delivered_at IS NOT NULL"


@pytest.fixture
def receiver():
    r = JsonReceiver()
    yield r
    r.close()


def failed_alerts(receiver: JsonReceiver) -> list[str]:
    return [m for m in receiver.messages() if m.startswith("Job boom failed")]


def test_an_alert_pending_when_its_daemon_is_sigkilled_is_delivered_by_the_next(base_env, db, tmp_path, daemon_factory,
                                                                                receiver):  # fmt: skip
    config = write_config(tmp_path / "apprise.txt", receiver.url() + "\n")
    env = {**base_env, "SCHEDULER_SPIDERS": "boom", "SCHEDULER_RETRY_DELAY_MINUTES": "600",
           "SCHEDULER_NOTIFY_CONFIG": str(config)}  # fmt: skip
    receiver.status = 503
    first = daemon_factory(env).start()
    wait_for(lambda: rows(db, "SELECT count(*) FROM alert_deliveries WHERE attempts >= 1") == [(1,)], timeout=90,
             what="a first, failed attempt")  # fmt: skip
    first.signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert rows(db, DELIVERED) == [(0,)] and receiver.posts == []
    receiver.status = 200
    second = daemon_factory(env).start()
    wait_for(lambda: failed_alerts(receiver), timeout=90, what="the alert, from the next daemon")
    second.signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    assert len(failed_alerts(receiver)) == count(db, "status = 'failed'", "spider_runs") == 1  # once, none lost


def test_a_crawl_failing_while_postgresql_is_down_is_alerted_after_the_replay(pg_server, base_env, db, tmp_path,
                                                                             daemon_factory, receiver):  # fmt: skip
    config = write_config(tmp_path / "apprise.txt", receiver.url() + "\n")
    env = {**base_env, "SCHEDULER_SPIDERS": "boom", "SCHEDULER_RETRY_DELAY_MINUTES": "0.05",
           "SCHEDULER_INTERVAL_HOURS": "0.002", "DB_WAIT_TIMEOUT_SECONDS": "60",
           "SCHEDULER_NOTIFY_CONFIG": str(config)}  # fmt: skip
    d = daemon_factory(env).start()
    wait_for(lambda: failed_alerts(receiver), timeout=90, what="the first failure's alert")
    state = tmp_path / "state"
    db.close()
    pg_server.stop("fast")
    try:
        wait_for(lambda: any('"kind": "end"' in p.read_text() for p in state.glob("journal-*.jsonl")), timeout=60,
                 what="a failed run journaled while PostgreSQL is down")  # fmt: skip
    finally:
        pg_server.start()
    conn = pg_server.connect(env["DB_NAME"])
    try:
        replayed = ("SELECT count(*) FROM alert_outbox o JOIN spider_runs r ON r.id = o.spider_run_id "
                    "JOIN scheduler_state s ON s.id = r.run_id JOIN alert_deliveries d ON d.alert_id = o.id "
                    "WHERE s.journal_id IS NOT NULL AND d.delivered_at IS NOT NULL")  # fmt: skip
        wait_for(lambda: rows(conn, replayed)[0][0] >= 1, timeout=90, what="the replayed failure's alert delivered")
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
        # Each delivered alert arrived once: as many posts as delivered rows.
        assert len(failed_alerts(receiver)) == rows(conn, DELIVERED)[0][0]
    finally:
        conn.close()
