"""Acting from the page in a real browser (issue #23): Playwright driving Debian's chromium against
the endpoint on a real PostgreSQL, as tests/e2e/test_page_browser.py does. Pause for 1 h, resume,
run now and cancel a running crawl by clicking; a form from another origin, a token replayed for
another job or action, an expired token and no token are refused and change nothing; without auth
there are no buttons and every POST is refused; hostile names stay text inside the forms; the
audit rows are right; the JSON API with and without credentials and with a foreign Origin."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from daemon.settings.secret import Secret
from tests.conftest import free_port
from tests.e2e.test_page_browser import Watched, browser, endpoint  # noqa: F401 (fixtures)
from tests.helpers import rows, utcnow
from tests.page_history import HOSTILE, H, Planned, arrange, job

pytestmark = pytest.mark.e2e

ALICE = {"user": "alice", "password": Secret("s3cret-pw")}
LOGIN = {"http_credentials": {"username": "alice", "password": "s3cret-pw"}}


class MovableClock:
    """The endpoint's clock, moved by the test (only to show a token expiring)."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def now(self) -> datetime:
        return utcnow() + self.ahead

    def monotonic(self) -> float:
        return 0.0


def jobs_with_a_running_crawl():
    return [(job("quotes", 4 * H), [Planned(3 * H)]),
            (job("books", 4 * H), [Planned(5 * H), Planned(0.1 * H, "running", finish_reason=None)])]  # fmt: skip


def audit(db) -> list[tuple]:
    return rows(db, "SELECT action, job, actor, source, address, result FROM actions ORDER BY id")


def board(db) -> tuple:
    return (rows(db, "SELECT job FROM job_pauses ORDER BY job"), rows(db, "SELECT count(*) FROM run_requests"),
            rows(db, "SELECT count(*) FROM cancel_requests"))  # fmt: skip


def test_pause_for_an_hour_resume_run_now_and_cancel_by_clicking_and_each_is_audited(browser, endpoint, db):
    arrange(db, utcnow(), jobs_with_a_running_crawl())
    base = endpoint(**ALICE)
    w = Watched(browser, **LOGIN)
    w.tab.goto(base + "/jobs/quotes")
    before = utcnow()
    w.tab.locator('form[action="/jobs/quotes/pause"] button[value="1h"]').click()
    w.tab.wait_for_url("**/jobs/quotes?done=*")
    notice = w.tab.locator("p.notice").inner_text()
    assert notice.startswith("paused quotes until ")
    [(until,)] = rows(db, "SELECT until FROM job_pauses WHERE job = 'quotes'")
    assert timedelta(minutes=59) < until - before < timedelta(minutes=61)
    assert w.tab.locator("h1 .chip").inner_text().startswith("paused until ")
    assert w.tab.locator('form[action="/jobs/quotes/run-now"]').count() == 0, "a paused job offers resume"
    w.shot("page-actions-paused")
    w.tab.locator('form[action="/jobs/quotes/resume"] button').click()
    w.tab.wait_for_url("**/jobs/quotes?done=*")
    assert w.tab.locator("p.notice").inner_text() == "resumed quotes"
    assert rows(db, "SELECT count(*) FROM job_pauses") == [(0,)]
    w.tab.locator('form[action="/jobs/quotes/run-now"] button').click()
    w.tab.wait_for_url("**/jobs/quotes?done=*")
    assert rows(db, "SELECT spiders, taken_at FROM run_requests") == [(["quotes"], None)]
    # From the overview's row: cancel the running crawl of books, and come back to the overview.
    w.tab.goto(base + "/")
    assert w.tab.locator('form[action="/jobs/quotes/cancel"]').count() == 0, "nothing runs for quotes"
    w.tab.locator('form[action="/jobs/books/cancel"] button').click()
    w.tab.wait_for_url(base + "/?done=*")
    assert w.tab.locator("p.notice").inner_text() == "cancel requested: books"
    assert rows(db, "SELECT job FROM cancel_requests") == [("books",)]
    assert audit(db) == [("pause", "quotes", "alice", "page", "127.0.0.1", "done"),
                         ("resume", "quotes", "alice", "page", "127.0.0.1", "done"),
                         ("run-now", "quotes", "alice", "page", "127.0.0.1", "done"),
                         ("cancel", "books", "alice", "page", "127.0.0.1", "done")]  # fmt: skip
    w.tab.goto(base + "/jobs/quotes")
    table = w.tab.locator("table.audit").inner_text()
    assert table.count("alice") == 3 and "run requested" in table
    w.shot("page-actions-audit")
    assert (w.errors, w.violations, w.dialogs) == ([], [], [])
    w.close()


def test_a_form_from_a_page_on_another_port_is_refused_and_changes_nothing(browser, endpoint, db):
    arrange(db, utcnow(), jobs_with_a_running_crawl())
    base = endpoint(**ALICE)
    w = Watched(browser, **LOGIN)
    w.tab.goto(base + "/jobs/quotes")
    token = w.tab.locator('form[action="/jobs/quotes/pause"] input[name=token]').get_attribute("value")
    # Even with a good token (which another site cannot read), another origin's form is refused.
    forged = (f'<!doctype html><form method="post" action="{base}/jobs/quotes/pause">'
              f'<input type="hidden" name="token" value="{token}"><button name="for" value="">go</button></form>')
    other = _serve_html(forged)
    try:
        w.tab.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        w.tab.locator("button").click()
        w.tab.wait_for_load_state()
        assert "foreign Origin" in w.tab.content()
    finally:
        other.shutdown()
    assert board(db) == ([], [(0,)], [(0,)]) and audit(db) == []
    w.close()


def test_a_replayed_expired_or_missing_token_is_refused_and_changes_nothing(browser, endpoint, db):
    arrange(db, utcnow(), jobs_with_a_running_crawl())
    clock = MovableClock()
    base = endpoint(clock=clock, **ALICE)
    w = Watched(browser, **LOGIN)
    w.tab.goto(base + "/jobs/quotes")
    pause_token = w.tab.locator('form[action="/jobs/quotes/pause"] input[name=token]').get_attribute("value")
    port = int(base.rsplit(":", 1)[1])
    for path, token in (("/jobs/books/pause", pause_token), ("/jobs/quotes/run-now", pause_token),
                        ("/jobs/quotes/pause", "")):  # fmt: skip
        status, text = _post_form(port, path, f"token={token}&for=1h")
        assert status == 403 and "refused" in text, (path, text)
    clock.ahead = timedelta(minutes=61)
    w.tab.locator('form[action="/jobs/quotes/pause"] button[value="1h"]').click()
    w.tab.wait_for_load_state()
    assert "expired token" in w.tab.content()
    assert board(db) == ([], [(0,)], [(0,)]) and audit(db) == []
    w.close()


def test_without_auth_there_are_no_buttons_the_page_says_why_and_every_post_is_refused(browser, endpoint, db):
    arrange(db, utcnow(), jobs_with_a_running_crawl())
    base = endpoint()
    w = Watched(browser)
    for path in ("/", "/jobs/books"):
        w.tab.goto(base + path)
        assert w.tab.locator("form[method=post]").count() == 0
        assert "Read-only: actions (run now, pause, resume, cancel) need basic auth" in w.tab.locator(
            "p.readonly").first.inner_text()
    port = int(base.rsplit(":", 1)[1])
    for action in ("run-now", "pause", "resume", "cancel"):
        assert _post_form(port, f"/jobs/books/{action}", "token=x")[0] == 403
        assert _post_json(port, f"/api/jobs/books/{action}", {})[0] == 403
    assert board(db) == ([], [(0,)], [(0,)]) and audit(db) == []
    w.close()


def test_hostile_job_names_stay_text_inside_the_forms_and_can_be_paused(browser, endpoint, db):
    name, other = HOSTILE
    arrange(db, utcnow(), [(job(name, spider="s"), [Planned(2 * H)]), (job(other, spider="s"), [Planned(1 * H)])])
    base = endpoint(**ALICE)
    w = Watched(browser, **LOGIN)
    w.tab.goto(base + "/")
    assert w.tab.locator("form[method=post]").count() == 4  # run now and pause for each
    assert w.tab.locator("script, img, iframe, object").count() == 0 and w.tab.locator("svg").count() == 4
    w.tab.locator(".row").nth(1).locator("form").nth(1).locator('button[value="4h"]').click()
    w.tab.wait_for_url(base + "/?done=*")
    assert w.tab.locator("p.notice").inner_text().startswith(f"paused {name} until ")
    assert rows(db, "SELECT job FROM job_pauses") == [(name,)]
    assert (w.errors, w.violations, w.dialogs) == ([], [], [])
    w.close()


def test_the_json_api_with_and_without_credentials_and_with_a_foreign_origin(endpoint, db):
    arrange(db, utcnow(), jobs_with_a_running_crawl())
    port = int(endpoint(**ALICE).rsplit(":", 1)[1])
    assert _post_json(port, "/api/jobs/quotes/pause", {"for": "2h"}, auth=None)[0] == 401
    assert _post_json(port, "/api/jobs/quotes/pause", {"for": "2h"}, origin="http://evil.example")[0] == 403
    assert board(db) == ([], [(0,)], [(0,)])
    status, answer = _post_json(port, "/api/jobs/quotes/pause", {"for": "2h"})
    assert status == 200 and (answer["action"], answer["result"]) == ("pause", "done") and answer["until"]
    status, answer = _post_json(port, "/api/jobs/quotes/run-now", {})
    assert (status, answer["result"], answer["message"]) == (409, "refused", "quotes is paused: resume it first")
    assert _post_json(port, "/api/jobs/quotes/resume", {})[1]["result"] == "done"
    assert _post_json(port, "/api/jobs/quotes/cancel", {})[1]["result"] == "nothing"
    assert _post_json(port, "/api/jobs/nope/cancel", {})[0] == 404
    assert _post_json(port, "/api/jobs/quotes/pause", {"for": "soon"})[0] == 400
    assert [(a, r) for a, _, _, s, _, r in audit(db)] == [("pause", "done"), ("run-now", "refused"),
                                                          ("resume", "done"), ("cancel", "nothing")]  # fmt: skip
    assert {s for *_, s, _, _ in audit(db)} == {"api"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/jobs/quotes", headers={"Host": f"127.0.0.1:{port}", "Authorization": _auth()})
    shown = json.loads(conn.getresponse().read())
    conn.close()
    assert [(a["action"], a["result"], a["actor"]) for a in shown["actions"]] == [
        ("cancel", "nothing", "alice"), ("resume", "done", "alice"), ("run-now", "refused", "alice"),
        ("pause", "done", "alice")]  # newest first, as the job's page lists them


def _serve_html(text: str) -> ThreadingHTTPServer:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _auth() -> str:
    return "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()


def _post(port: int, path: str, body: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=body.encode(), headers={"Host": f"127.0.0.1:{port}", **headers})
    response = conn.getresponse()
    answer = response.status, response.read().decode()
    conn.close()
    return answer


def _post_form(port: int, path: str, body: str) -> tuple[int, str]:
    return _post(port, path, body, {"Content-Type": "application/x-www-form-urlencoded", "Authorization": _auth(),
                                    "Origin": f"http://127.0.0.1:{port}"})  # fmt: skip


def _post_json(port: int, path: str, body: dict, *, auth: bool | None = True,
               origin: str | None = None) -> tuple[int, dict]:  # fmt: skip
    headers = {"Content-Type": "application/json", **({"Authorization": _auth()} if auth else {}),
               **({"Origin": origin} if origin else {})}  # fmt: skip
    status, text = _post(port, path, json.dumps(body), headers)
    return status, json.loads(text) if text.startswith("{") else {"text": text}
