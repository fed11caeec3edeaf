"""The page's HTML and SVG, parsed back with the standard library: lanes, bars, deadline and gap
marks where the model puts them, links to every crawl, and every hostile string rendered as text."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import timedelta, timezone
from html.parser import HTMLParser

import pytest

from daemon.web import page
from daemon.plan.decision import Cadence, decide_jobs
from daemon.web.pagedata import CrawlDetail, assemble
from daemon.web.timeline import Crawl
from tests.page_history import HOSTILE, Planned, failed, job, showcase, to_crawls
from tests.unit.fakes import T0
from tests.unit.test_page_timeline import history_of

H = timedelta(hours=1)
UTC = timezone.utc


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser would see them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def overview_of(jobs_and_crawls, now=T0, days=7, failed_only=False):
    jobs, crawls, first = [], [], 1
    for j, planned in jobs_and_crawls:
        made = to_crawls(j.name, j.spider, planned, now, first)
        first += len(made)
        jobs.append(j)
        crawls += made
    histories = [history_of(j.name, [c for c in crawls if c.job == j.name]) for j in jobs]
    cadences = {j.name: Cadence(j.every, j.retry_delay, paused=j.paused) for j in jobs}
    plan = decide_jobs(histories, now, cadences, Cadence(4 * H, 15 * timedelta(minutes=1)))
    return assemble(jobs, plan, histories, crawls, {}, now=now, days=days, tick=30, tz=UTC, failed_only=failed_only)


def lanes_of(html: str) -> dict[str, ET.Element]:
    """Each lane's SVG, parsed as XML (escaping that is wrong for XML is wrong for SVG too)."""
    found = {}
    for svg in re.findall(r'<svg class="lane".*?</svg>', html, flags=re.DOTALL):
        element = ET.fromstring(svg)
        found[element.get("data-job")] = element
    return found


def x_of(lane: ET.Element, moment) -> float:
    start, end = float(lane.get("data-from")), float(lane.get("data-to"))
    return round((moment.timestamp() - start) / (end - start) * 1000, 1)


def test_every_job_has_a_lane_with_a_linked_bar_per_crawl_where_its_times_say():
    ov = overview_of(showcase())
    html = page.overview_page(ov, UTC, failed_only=False)
    lanes = lanes_of(html)
    assert list(lanes) == ["quotes", "books", "prices", "news", "archive"]
    for jl in ov.lanes:
        bars = lanes[jl.job.name].findall("a")
        assert [a.get("href") for a in bars] == [f"/runs/{c.id}" for c in jl.lane.crawls]
        for a, crawl in zip(bars, jl.lane.crawls, strict=True):
            rect = a.find("rect")
            assert float(rect.get("x")) == x_of(lanes[jl.job.name], crawl.started_at)
            assert a.get("class") == f"crawl {'ok' if crawl.status == 'completed' else 'failed'}"
            assert a.find("title").text.startswith(f"crawl #{crawl.id} of {jl.job.name}: {crawl.status}")


def test_the_deadline_the_overdue_span_and_the_gaps_are_drawn_where_the_model_puts_them():
    ov = overview_of(showcase())
    lanes = lanes_of(page.overview_page(ov, UTC, failed_only=False))
    prices = next(jl for jl in ov.lanes if jl.job.name == "prices").lane
    svg = lanes["prices"]
    deadline = svg.find("g[@class='deadline']")
    assert float(deadline.get("data-at")) == round(prices.deadline.timestamp())
    assert float(deadline.find("line").get("x1")) == x_of(svg, prices.deadline)
    [gap] = svg.findall("rect[@class='gap']")
    assert float(gap.get("x")) == x_of(svg, prices.gaps[0].start)
    assert gap.find("title").text.startswith("promise broken: ")
    [overdue] = svg.findall("rect[@class='overdue']")
    assert float(overdue.get("x")) == x_of(svg, prices.overdue.start)
    assert lanes["quotes"].findall("rect[@class='gap']") == [] and lanes["quotes"].findall("rect[@class='overdue']") == []


def test_the_answer_comes_first_one_sentence_per_late_or_failing_job():
    html = page.overview_page(overview_of(showcase()), UTC, failed_only=False)
    answer = html[html.index('<ul class="answer">') : html.index("</ul>")]
    assert [s.split(" ", 1)[0] for s in re.findall(r"<li class=late>([^<]*)</li>", answer)] == ["books", "prices",
                                                                                               "archive"]  # fmt: skip
    assert html.index('<ul class="answer">') < html.index('<svg class="lane"')


def test_with_every_job_on_time_the_answer_says_so():
    html = page.overview_page(overview_of([(job("quotes"), [Planned(1 * H)])]), UTC, failed_only=False)
    assert "The job is on time." in html


def test_the_table_of_latest_crawls_links_each_row_to_its_crawl_and_filters_failures():
    every = overview_of(showcase())
    only = overview_of(showcase(), failed_only=True)
    assert {c.status for c in only.latest} == {"failed"} and len(only.latest) < len(every.latest)
    elements = Elements(page.overview_page(only, UTC, failed_only=True))
    rows = [a["href"] for a in elements.named("a") if a["href"].startswith("/runs/")]
    assert {f"/runs/{c.id}" for c in only.latest} <= set(rows)
    [box] = [i for i in elements.named("input") if i.get("name") == "failed"]
    assert "checked" in box


def hostile_overview():
    name, other = HOSTILE
    return overview_of([
        (job(name, spider=other, args={"q": other}), [Planned(5 * H, message=f"<b>{name}</b>"),
                                                       failed(1 * H, message=f"{other}<img src=x onerror=alert(2)>")]),
        (job(other), [Planned(2 * H)]),
    ])  # fmt: skip


def no_markup_injected(html: str, svg_count: int) -> Elements:
    elements = Elements(html)
    assert elements.named("script") == [] and elements.named("img") == []
    assert [(tag, a) for tag, attrs in elements.tags for a in attrs if a.lower().startswith("on")] == []
    assert len(elements.named("svg")) == svg_count
    return elements


def test_hostile_job_spider_and_message_text_is_escaped_in_html_and_svg():
    html = page.overview_page(hostile_overview(), UTC, failed_only=False)
    elements = no_markup_injected(html, svg_count=4)  # the fills, the axis, two lanes
    text = "".join(elements.text)
    assert HOSTILE[0] in text and HOSTILE[1] in text and "<img src=x onerror=alert(2)>" in text
    assert set(lanes_of(html)) == set(HOSTILE)  # the SVG parses as XML: nothing broke out of it
    one = hostile_overview()
    job_html = page.job_page(dataclasses.replace(one, lanes=one.lanes[:1]), UTC, False, f"why: {HOSTILE[0]}")
    assert HOSTILE[1] in "".join(no_markup_injected(job_html, svg_count=3).text)


@pytest.mark.parametrize("hostile", [*HOSTILE, "a\x1b[31mred\x00"])
def test_a_crawls_page_escapes_its_stats_arguments_message_and_log(hostile):
    crawl = Crawl(7, hostile, hostile, "failed", "error", T0 - H, T0, 1, 2, hostile, hostile, 1)
    detail = CrawlDetail(crawl, 3, {"q": hostile}, {hostile: "1"}, {hostile: hostile, "n": 3},
                         f"line one\n{hostile}\n</pre><script>alert(3)</script>", 6, 8)  # fmt: skip
    html = page.run_page(detail, T0, UTC)
    elements = no_markup_injected(html, svg_count=0)
    text = "".join(elements.text)
    shown = hostile.replace("\x1b", "\\x1b").replace("\x00", "\\x00")
    assert text.count(shown) >= 6 and "</pre><script>alert(3)</script>" in text
    assert {a["href"] for a in elements.named("a")} >= {"/runs/6", "/runs/8", page.job_href(hostile)}
    assert page.job_href(hostile).count("/") == 2  # the name is one path segment


def test_the_overview_says_which_channels_have_undelivered_alerts_escaped():
    import dataclasses

    ov = dataclasses.replace(overview_of([(job("quotes"), [Planned(1 * H)])]),
                             undelivered=(("json://127.0.0.1:8080", 3), ("<b>tgram</b>", 1)))  # fmt: skip
    html = page.overview_page(ov, UTC, failed_only=False)
    text = "".join(Elements(html).text)
    assert "Alerts not yet delivered, retried with backoff: json://127.0.0.1:8080 (3), <b>tgram</b> (1)." in text
    assert "<b>tgram</b>" not in html  # shown as text, never as markup
    assert "not yet delivered" not in page.overview_page(overview_of([(job("quotes"), [Planned(1 * H)])]), UTC,
                                                         failed_only=False)  # fmt: skip


def test_a_suspect_crawl_says_so_and_why_in_the_crawls_table_escaped():
    import dataclasses

    ov = overview_of([(job("quotes"), [Planned(1 * H)])])
    [crawl] = ov.latest
    ov = dataclasses.replace(ov, latest=(dataclasses.replace(crawl, suspect="40 items; usual <b>1,000</b>"),))
    html = page.overview_page(ov, UTC, failed_only=False)
    assert "completed, suspect: 40 items; usual &lt;b&gt;1,000&lt;/b&gt;" in html
