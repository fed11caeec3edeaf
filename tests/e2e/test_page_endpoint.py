"""The page served from a real PostgreSQL with arranged history: JSON twins that agree with the
daemon's decision, credentials, a foreign Host, a session that is read-only and gives up after
its statement timeout, each crawl's log and stats, and the page of a real daemon's own crawl."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import sys
import threading
import time
from datetime import datetime

import psycopg2.errors
import pytest

from daemon.settings.config import Settings
from daemon.settings.secret import Secret
from daemon.plan.decision import Cadence, decide_jobs
from daemon.records.store import Store
from tests.conftest import ROOT, free_port
from tests.helpers import rows, utcnow, wait_for
from tests.page_history import (
    HOSTILE,
    H,
    Planned,
    arrange,
    failed,
    job,
    serve_page,
    showcase,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def page(base_env):
    started = []

    def start(**kwargs):
        endpoint, port = serve_page(base_env, **kwargs)
        started.append(endpoint)
        return port

    yield start
    for endpoint in started:
        endpoint.stop()


def get(port: int, path: str, host: str | None = None, auth: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host or f"127.0.0.1:{port}", **({"Authorization": auth} if auth else {})}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    answer = response.status, response.read()
    conn.close()
    return answer


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_json_twin_gives_each_jobs_deadline_and_next_attempt_as_the_daemon_decides_them(page, db, base_env):
    now = utcnow()
    ids = arrange(db, now, showcase())
    status, body = get(page(), "/api/overview?days=7")
    overview = json.loads(body)
    assert status == 200 and [j["job"] for j in overview["jobs"]] == ["quotes", "books", "prices", "news", "archive"]
    store = Store(db)
    jobs = store.published_jobs()
    cadences = {j.name: Cadence(j.every, j.retry_delay, paused=j.paused) for j in jobs}
    settings = Settings.from_mapping(base_env)
    page_now = datetime.fromisoformat(overview["now"])
    plan = decide_jobs(store.histories([j.name for j in jobs]), page_now, cadences,
                       Cadence(settings.interval, settings.retry_delay))  # fmt: skip
    for shown, decided in zip(overview["jobs"], plan.spiders, strict=True):
        assert shown["due_at"] == (decided.due_at.isoformat(timespec="seconds") if decided.due_at else None)
        assert shown["reason"] == decided.reason
    by_job = {j["job"]: j for j in overview["jobs"]}
    shown = [c["id"] for c in by_job["books"]["crawls"]]
    assert shown == ids["books"][-len(shown) :] and len(shown) >= len(ids["books"]) - 1  # the oldest: at the edge
    assert by_job["prices"]["chip"]["state"] == "overdue" and len(by_job["prices"]["gaps"]) == 1
    assert by_job["news"]["chip"]["text"] == "paused until resumed"
    assert by_job["archive"]["chip"]["text"] == "never succeeded"
    assert overview["answer"][0].startswith("books ")
    failures = json.loads(get(page(), "/api/overview?days=7&failed=1")[1])["latest"]
    assert failures and {c["status"] for c in failures} == {"failed"}


def test_a_crawls_page_shows_its_figures_stats_and_log_and_links_its_neighbours(page, db):
    now = utcnow()
    log_tail = "2026-05-01 INFO Spider opened\n<script>alert('log')</script>\nTraceback: boom"
    ids = arrange(db, now, [(job("books"), [Planned(9 * H), failed(5 * H, stats={"item_scraped_count": 0,
                                                                                  HOSTILE[1]: "x"},
                                                                      log_tail=log_tail), Planned(1 * H)])])  # fmt: skip
    first, middle, last = ids["books"]
    port = page()
    status, body = get(port, f"/runs/{middle}")
    text = body.decode()
    assert status == 200
    assert "&lt;script&gt;alert(&#x27;log&#x27;)&lt;/script&gt;" in text and "<script>" not in text
    assert f'href="/runs/{first}"' in text and f'href="/runs/{last}"' in text
    detail = json.loads(get(port, f"/api/runs/{middle}")[1])
    assert detail["log_tail"] == log_tail and detail["stats"][HOSTILE[1]] == "x"
    assert (detail["previous"], detail["next"], detail["failure"]) == (first, last, "error")
    assert get(port, f"/api/runs/{last}")[1] and json.loads(get(port, f"/api/runs/{last}")[1])["next"] is None
    assert get(port, "/runs/999999")[0] == 404 and get(port, "/runs/abc")[0] == 404
    assert get(port, "/jobs/nosuch")[0] == 404


def test_credentials_no_wrong_and_right_and_a_foreign_host_refused(page, db):
    arrange(db, utcnow(), showcase())
    port = page(user="alice", password=Secret("s3cret-pw"), allowed_hosts=["scheduler.lan"])
    assert get(port, "/")[0] == 401
    assert get(port, "/", auth=basic("alice", "nope"))[0] == 401
    status, body = get(port, "/", auth=basic("alice", "s3cret-pw"))
    assert status == 200 and b'<svg class="lane"' in body
    assert get(port, "/api/jobs/quotes", host="scheduler.lan:9464", auth=basic("alice", "s3cret-pw"))[0] == 200
    status, body = get(port, "/", host=f"rebound.example:{port}", auth=basic("alice", "s3cret-pw"))
    assert status == 400 and b"quotes" not in body


def test_the_page_reads_on_a_read_only_session_of_its_own_that_gives_up_after_its_timeout(page, db, pg_server,
                                                                                          database):  # fmt: skip
    arrange(db, utcnow(), showcase())
    port = page()
    assert get(port, "/")[0] == 200
    blocker = pg_server.connect(database)
    blocker.autocommit = False
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE spider_runs IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        status, body = get(port, "/")
        waited = time.monotonic() - started
    finally:
        blocker.rollback()
        blocker.close()
    assert status == 503 and b"did not answer the page within 2s" in body
    assert waited < 10  # it gave up: the lock was held until after the answer
    assert get(port, "/")[0] == 200  # and the next page is served again
    [(sessions,)] = rows(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'persistent-scheduler-page'")
    assert sessions == 1  # one session, kept


def test_the_page_session_refuses_to_write(base_env):
    from daemon.web.pagedata import PageSession

    session = PageSession(Settings.from_mapping(base_env))
    try:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            session.read(lambda store: store._count("DELETE FROM spider_runs", {}))
        assert session.read(lambda store: store._one("SHOW statement_timeout", {})) == "2s"
    finally:
        session.close()


def test_a_running_daemon_serves_the_page_of_its_own_crawl(base_env, daemon_factory):
    port = free_port()
    env = {**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_HTTP_PORT": str(port), "SCHEDULER_TICK_SECONDS": "1"}
    d = daemon_factory(env).start()
    wait_for(lambda: '"run_completed"' in d.output(), timeout=60, what="a run")
    status, body = get(port, "/api/overview")
    [lane] = json.loads(body)["jobs"]
    assert status == 200 and lane["job"] == "ok" and lane["chip"]["text"].startswith("ok, due in 3 h")
    [crawl] = lane["crawls"]
    assert crawl["status"] == "completed" and crawl["items"] == 15
    status, body = get(port, crawl["page"])
    assert status == 200 and b"completed" in body
    assert get(port, "/jobs")[0] == 200 and "is_running" in json.loads(get(port, "/jobs")[1])  # scripts' JSON stays
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0


def test_pages_asked_for_at_once_are_all_answered(page, db):
    arrange(db, utcnow(), showcase())
    port = page()
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(get(port, "/")[0])) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == [200] * 6


def test_a_jobs_page_says_why_it_runs_or_waits_as_explain_does(page, db, base_env):
    from tests.helpers import run_cli

    arrange(db, utcnow(), showcase())
    port = page()
    said = json.loads(get(port, "/api/jobs/books")[1])["explain"]
    assert said["job"] == "books" and said["rule"] == "no_runner"  # no daemon holds the lock in this test
    cli = run_cli([sys.executable, "-m", "daemon", "explain", "books", "--json"], base_env, ROOT)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["rules"] == said["rules"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/jobs/books", headers={"Accept": "text/html"})
    text = conn.getresponse().read().decode()
    assert f'<p class="explain">{said["paragraph"][:60]}' in text.replace("&#x27;", "'")
