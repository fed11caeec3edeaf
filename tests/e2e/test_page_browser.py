"""The page in a real browser: Playwright driving Debian's chromium (tests/run.sh installs it)
against the endpoint on a real PostgreSQL with arranged history. Lanes, deadline and gap marks,
links to the crawls' pages, credentials, and hostile names that render as text with no console
error and no Content-Security-Policy violation. Screenshots are kept in tests/artifacts/; with
UPDATE_DOCS_SCREENSHOT=1 the overview's also becomes docs/page.png (the README's picture)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from daemon.settings.secret import Secret
from daemon.web.http import SECURITY_HEADERS
from tests.conftest import ROOT
from tests.helpers import utcnow
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

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
# Reports every violation of the page's policy to the console (injected by the browser's debugging
# protocol, which the policy does not govern; the page itself has no script).
WATCH_POLICY = ("document.addEventListener('securitypolicyviolation', e => "
                "console.warn('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))")  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (requirements-dev.txt) is missing")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed (tests/run.sh installs it: apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Watched:
    """A browser tab whose console errors, policy violations and dialogs are kept."""

    def __init__(self, browser, **context) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 860}, **context)
        self.tab = self.context.new_page()
        self.errors: list[str] = []
        self.violations: list[str] = []
        self.dialogs: list[str] = []
        self.tab.add_init_script(WATCH_POLICY)
        self.tab.on("console", self._console)
        self.tab.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.tab.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def _console(self, message) -> None:
        if message.text.startswith("CSP violation"):
            self.violations.append(message.text)
        elif message.type == "error":
            self.errors.append(message.text)

    def shot(self, name: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.tab.screenshot(path=str(path), full_page=full_page)
        print(f"screenshot: {path}")
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def endpoint(base_env):
    started = []

    def start(**kwargs) -> str:
        served, port = serve_page(base_env, **kwargs)
        started.append(served)
        return f"http://127.0.0.1:{port}"

    yield start
    for served in started:
        served.stop()


def test_the_overview_draws_lanes_deadlines_and_gaps_and_each_bar_and_row_leads_to_its_crawl(browser, endpoint, db):
    ids = arrange(db, utcnow(), showcase())
    base = endpoint()
    w = Watched(browser)
    assert w.tab.goto(base + "/").status == 200
    lanes = w.tab.locator("svg.lane")
    assert [lanes.nth(i).get_attribute("data-job") for i in range(lanes.count())] == [
        "quotes", "books", "prices", "news", "archive"]  # fmt: skip
    prices = w.tab.locator("svg.lane[data-job=prices]")
    assert prices.locator("rect.gap").count() == 1 and prices.locator("rect.overdue").count() == 1
    assert "promise broken" in prices.locator("rect.gap title").text_content()
    assert w.tab.locator("svg.lane[data-job=quotes] rect.gap, svg.lane[data-job=quotes] rect.overdue").count() == 0
    assert w.tab.locator("g.deadline").count() == 4  # every job but the one that never succeeded
    assert w.tab.locator(".row .chip").all_inner_texts()[:1] == [w.tab.locator("svg.lane[data-job=quotes]")
                                                                  .get_attribute("aria-label").split(": ", 1)[1]]  # fmt: skip
    assert re.fullmatch(r"ok, due in \d+ h( \d+ min)?", w.tab.locator(".row .chip").first.inner_text())
    assert w.tab.locator("ul.answer li").first.inner_text().startswith("books is overdue by")
    w.shot("page-overview")
    bar = w.tab.locator("svg.lane[data-job=books] a.crawl").last
    assert "items 0, errors 1" in bar.locator("title").text_content()
    bar.click()
    w.tab.wait_for_url(f"**/runs/{ids['books'][-1]}")
    assert w.tab.locator("h1").inner_text() == f"Crawl #{ids['books'][-1]} of books: ✗ failed (error)"
    w.shot("page-run")
    w.tab.locator("a[rel=prev]").click()
    w.tab.wait_for_url(f"**/runs/{ids['books'][-2]}")
    w.tab.go_back()
    w.tab.locator("nav a", has_text="job books").click()
    w.tab.wait_for_url("**/jobs/books")
    assert w.tab.locator("svg.lane").count() == 1 and "30 days" in w.tab.locator("h2").first.inner_text()
    w.shot("page-job")
    w.tab.goto(base + "/?days=7&failed=1")
    first_row = w.tab.locator("table.crawls tr").nth(1)
    assert "failed" in first_row.locator("td.status").inner_text()
    first_row.locator("td a").first.click()
    w.tab.wait_for_url(re.compile(r".*/runs/\d+$"))
    assert w.tab.locator("h1").inner_text().startswith("Crawl #")
    assert (w.errors, w.violations, w.dialogs) == ([], [], [])
    assert w.tab.goto(base + "/?days=31").status == 400
    w.close()


def test_hostile_names_arguments_messages_stats_and_logs_render_as_text(browser, endpoint, db):
    name, other = HOSTILE
    html = f"<b>bold</b><img src=x onerror=alert(3)>{other}"
    hostile = [
        (job(name, spider=other, args={"q": other}),
         [Planned(5 * H, message=html, stats={name: other, "item_scraped_count": 3}, log_tail=f"{html}\n{name}"),
          failed(1 * H, message=html, log_tail=html)]),
        (job(other), [Planned(2 * H, message=html)]),
    ]  # fmt: skip
    ids = arrange(db, utcnow(), hostile)
    base = endpoint()
    w = Watched(browser)
    w.tab.goto(base + "/")
    assert w.tab.locator(".row .name a").all_inner_texts() == [name, other]
    assert w.tab.locator("svg").count() == 4 and w.tab.locator("script, img, iframe, object").count() == 0
    assert html in w.tab.locator("table.crawls").inner_text()
    w.shot("page-hostile")
    w.tab.locator(".row .name a").first.click()
    assert w.tab.locator("h1").inner_text().startswith(f"Job {name}")
    w.tab.goto(f"{base}/runs/{ids[name][0]}")
    assert w.tab.locator("pre.log").inner_text() == f"{html}\n{name}"
    assert name in w.tab.locator("table.stats").inner_text()
    assert w.tab.locator("script, img").count() == 0
    w.shot("page-hostile-run")
    assert (w.errors, w.violations, w.dialogs) == ([], [], [])
    w.close()


def test_the_watch_sees_a_script_that_the_policy_blocks(browser, endpoint, db):
    # The control for the test above: a page that does carry a script, served with the endpoint's
    # headers, is caught by the same watch.
    base = endpoint()
    w = Watched(browser)
    headers = dict(SECURITY_HEADERS) | {"Content-Type": "text/html"}
    w.tab.route(base + "/control", lambda route: route.fulfill(
        status=200, headers=headers, body="<p>x</p><script>alert('ran')</script><img src=x onerror=alert(2)>"))  # fmt: skip
    w.tab.goto(base + "/control")
    w.tab.wait_for_timeout(300)
    assert w.violations and w.dialogs == []
    assert any("Content Security Policy" in error for error in w.errors)
    w.close()


def test_credentials_in_the_browser_none_wrong_and_right(browser, endpoint, db):
    from playwright.sync_api import Error

    arrange(db, utcnow(), showcase())
    base = endpoint(user="alice", password=Secret("s3cret-pw"))
    # Without credentials, or with wrong ones, the browser is refused (401, tests/e2e/test_page_endpoint.py)
    # and shows nothing of the page.
    for credentials in ({}, {"http_credentials": {"username": "alice", "password": "nope"}}):
        w = Watched(browser, **credentials)
        try:
            response = w.tab.goto(base + "/")
        except Error as exc:  # chromium asked, was refused, and gave up
            assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
        else:
            assert response.status == 401 and w.tab.locator("svg").count() == 0
        w.close()
    w = Watched(browser, http_credentials={"username": "alice", "password": "s3cret-pw"})
    assert w.tab.goto(base + "/").status == 200 and w.tab.locator("svg.lane").count() == 5
    w.close()


def test_the_readme_screenshot_of_a_generated_history(browser, endpoint, db):
    arrange(db, utcnow(), showcase())
    w = Watched(browser, device_scale_factor=1)
    w.tab.set_viewport_size({"width": 1280, "height": 720})
    w.tab.goto(endpoint() + "/")
    path = w.shot("page", full_page=False)
    assert path.stat().st_size > 20_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        target = ROOT / "docs" / "page.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)
        print(f"updated {target}")
    w.close()
