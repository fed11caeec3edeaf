"""The page's HTML: the overview (`/`), a job's page (`/jobs/<name>`) and a crawl's (`/runs/<id>`).

Server-rendered, inline SVG (daemon/web/lanes.py), inline CSS, no script, nothing fetched from
elsewhere. The answer comes first (one sentence per job that is late or failing), the evidence
below. Every string that comes from the database or the project goes through `esc`: job and
spider names, arguments, messages, stats and log lines all may carry text from crawled sites.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote

from daemon.web import lanes, timeline
from daemon.jobs.jobfile import format_duration
from daemon.web.pagedata import CrawlDetail, JobLane, Overview

MESSAGE_SHOWN = 200  # characters of a message in a table cell (the crawl's page has it whole)
DAY_CHOICES = (1, 3, 7, 14, 30)
Controls = Callable[[JobLane], str]  # a job's buttons as HTML (daemon/web/forms.py)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

STYLE = """
body{font:14px/1.4 "DejaVu Sans",sans-serif;margin:1.2em auto;max-width:1200px;padding:0 1em;color:#212121}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em}a{color:#0d47a1}
.sub{color:#616161}.answer li{margin:.2em 0}.answer .fine{color:#2e7d32;font-weight:bold}
.answer .late{color:#b71c1c}.row{display:grid;grid-template-columns:16em 1fr;gap:.6em;align-items:center;
border-bottom:1px solid #eee;padding:2px 0}.row .name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.chip{display:inline-block;border-radius:1em;padding:0 .6em;font-size:.85em;margin-top:2px;border:1px solid}
.chip.ok{background:#e8f5e9;color:#1b5e20}.chip.overdue,.chip.never{background:#ffebee;color:#b71c1c}
.chip.retry{background:#fff3e0;color:#e65100}.chip.paused{background:#eceff1;color:#37474f}
svg{width:100%;height:auto;display:block}svg.defs{position:absolute;width:0;height:0}
svg text{font:9px "DejaVu Sans",sans-serif;fill:#424242}svg .glyph{text-anchor:middle;font-size:8px}
svg .day{stroke:#e0e0e0;stroke-width:.6}svg .now{stroke:#1565c0;stroke-dasharray:2 2;fill:#1565c0}
.crawl.ok rect{fill:#2e7d32}.crawl.failed rect{fill:url(#hatch);stroke:#b71c1c;stroke-width:.6}
.crawl.cut rect{fill:url(#dots);stroke:#5d4037;stroke-width:.6}
.crawl.running rect{fill:#bbdefb;stroke:#1565c0;stroke-width:1.2;stroke-dasharray:2 1}
.crawl:hover rect{opacity:.7}rect.overdue{fill:url(#late);opacity:.8}rect.gap{fill:#ffe0b2;opacity:.9}
.deadline line{stroke:#b71c1c;stroke-width:1.2;stroke-dasharray:4 2}.deadline text{fill:#b71c1c}
.legend span{margin-right:1.2em}.legend b{display:inline-block;width:1.4em;height:.8em;vertical-align:middle}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{text-align:left;padding:2px 6px;
border-bottom:1px solid #eee;vertical-align:top}td.num{text-align:right}tr.failed td.status{color:#b71c1c}
tr.cut td.status{color:#5d4037}tr.running td.status{color:#1565c0}pre{background:#fafafa;border:1px solid #eee;
padding:.6em;white-space:pre-wrap;word-break:break-all;max-height:40em;overflow:auto}dl{display:grid;
grid-template-columns:12em 1fr;gap:2px 1em}dt{color:#616161}dd{margin:0;white-space:pre-wrap}
form{margin:.4em 0}nav a{margin-right:1em}.explain{background:#f5f5f5;padding:.6em;border-left:3px solid #90a4ae}
form.act{display:inline;margin:0 .3em 0 0}form.act button{font:inherit;font-size:.85em;padding:0 .4em}
.controls{margin:.3em 0}.notice{background:#e8f5e9;border:1px solid #2e7d32;padding:.3em .6em}
.notice.refused{background:#ffebee;border-color:#c62828}.readonly{color:#555}.row .name .controls{white-space:normal}
"""


def esc(value: Any) -> str:
    """Text for HTML and SVG, in text and attributes alike: escaped, control characters made visible."""
    text = str(value)
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return html.escape(text, quote=True)


def job_href(name: str) -> str:
    encoded = quote(name, safe="")
    return "/jobs/" + (encoded.replace(".", "%2E") if set(name) <= {"."} else encoded)


def run_href(crawl_id: int) -> str:
    return f"/runs/{int(crawl_id)}"


def document(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>')  # fmt: skip


def overview_page(ov: Overview, tz: tzinfo, failed_only: bool, *, controls: Controls | None = None,
                  banner: str = "") -> str:  # fmt: skip
    """`controls`: each job's buttons (daemon/web/forms.py); `banner`: a notice or why read-only, as HTML."""
    total = len(ov.lanes)
    sentences = [jl.lane.sentence for jl in ov.lanes if jl.lane.sentence]
    if ov.file_error:
        sentences.insert(0, "The jobs file has an error: the daemon keeps running its last good jobs until it "
                            f"is fixed ({ov.file_error.splitlines()[0] if ov.file_error.strip() else ''}).")  # fmt: skip
    if ov.undelivered:
        waiting = ", ".join(f"{name} ({count})" for name, count in ov.undelivered)
        sentences.append(f"Alerts not yet delivered, retried with backoff: {waiting}.")
    answer = (f'<ul class="answer">{"".join(f"<li class=late>{esc(s)}</li>" for s in sentences)}</ul>' if sentences
              else f'<p class="answer"><span class="fine">{_all_fine(total)}</span></p>')  # fmt: skip
    standin = "" if ov.published else ('<p class="sub">No daemon has published its jobs yet: one job per spider '
                                       "known here.</p>")  # fmt: skip
    body = (f"<h1>Crawls</h1>{_when(ov, tz)}{banner}{answer}{standin}"
            f"<h2>The last {_days(ov.days)}</h2>{_day_links('/', ov.days, failed_only)}"
            f"{_lanes(ov.lanes, ov, tz, controls)}"
            f"<h2>Latest crawls</h2>{_filter('/', ov.days, failed_only)}{_table(ov.latest, ov.now, tz)}")  # fmt: skip
    return document("Crawls · persistent scheduler", body)


def job_page(ov: Overview, tz: tzinfo, failed_only: bool, paragraph: str | None, *,
             controls: Controls | None = None, banner: str = "", audit: str = "") -> str:  # fmt: skip
    """`controls`, `banner` as for the overview; `audit`: the job's last actions, as HTML."""
    jl = ov.lanes[0]
    job, name = jl.job, jl.job.name
    said = f'<p class="explain">{esc(paragraph)}</p>' if paragraph else ""
    sentence = f'<p class="answer late">{esc(jl.lane.sentence)}</p>' if jl.lane.sentence else ""
    definition = _dl((
        ("spider", job.spider), ("arguments", _pairs(job.args)), ("settings", _pairs(job.settings)),
        ("every", format_duration(job.every)), ("retry delay", format_duration(job.retry_delay)),
        ("timeout", format_duration(job.timeout)), ("jitter", format_duration(job.jitter)),
        ("max errors", job.max_errors), ("min items", job.min_items),
        ("paused in the jobs file", "yes" if job.paused else "no"),
    ))  # fmt: skip
    href = job_href(name)
    body = (f'<nav><a href="/">all jobs</a></nav><h1>Job {esc(name)} '
            f'<span class="chip {esc(jl.lane.chip.state)}">{esc(jl.lane.chip.text)}</span></h1>{_when(ov, tz)}'
            f"{banner}{controls(jl) if controls else ''}{sentence}{said}<h2>The last {_days(ov.days)}</h2>{_day_links(href, ov.days, failed_only)}"
            f"{_lanes(ov.lanes, ov, tz)}<h2>Crawls</h2>{_filter(href, ov.days, failed_only)}"
            f"{_table(ov.latest, ov.now, tz)}{_schedule(ov.calendars.get(name))}<h2>Definition</h2>{definition}"
            f"{'<h2>Actions</h2>' + audit if audit else ''}")  # fmt: skip
    return document(f"{name} · persistent scheduler", body)


def run_page(detail: CrawlDetail, now: datetime, tz: tzinfo) -> str:
    c = detail.crawl
    took = timeline.duration(c.end(now) - c.started_at) + (" so far" if c.kind == timeline.RUNNING else "")
    fields = _dl((
        ("job", f'<a href="{esc(job_href(c.job))}">{esc(c.job)}</a>'), ("spider", esc(c.spider)),
        ("status", esc(_status(c))), ("failure kind", esc(c.failure or "-")),
        ("exit code", esc(_figure(c.exit_code))), ("finish reason", esc(c.finish_reason or "-")),
        ("started", _time(c.started_at, tz)), ("finished", _time(c.finished_at, tz) if c.finished_at else "-"),
        ("duration", esc(took)), ("items", esc(_figure(c.items))), ("errors", esc(_figure(c.errors))),
        ("message", esc(c.message or "-")), ("arguments", esc(_pairs((detail.args or {}).items()))),
        ("settings", esc(_pairs((detail.settings or {}).items()))), ("run", esc(detail.run_id)),
    ), raw=True)  # fmt: skip
    stats = "<p>No stats were recorded.</p>"
    if detail.stats:
        rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(_value(v))}</td></tr>" for k, v in sorted(detail.stats.items()))
        stats = f"<table class=stats><tr><th>stat</th><th>value</th></tr>{rows}</table>"
    log = f'<pre class="log">{esc(detail.log_tail)}</pre>' if detail.log_tail else "<p>No log lines were kept.</p>"
    links = [f'<a rel="prev" href="{run_href(detail.previous)}">← previous crawl</a>' if detail.previous else "",
             f'<a href="{esc(job_href(c.job))}">job {esc(c.job)}</a>', '<a href="/">all jobs</a>',
             f'<a rel="next" href="{run_href(detail.next)}">next crawl →</a>' if detail.next else ""]  # fmt: skip
    body = (f"<nav>{''.join(link for link in links if link)}</nav><h1>Crawl #{c.id} of {esc(c.job)}: "
            f'<span class="status {lanes.CLASSES[c.kind]}">{lanes.GLYPHS[c.kind]} {esc(_status(c))}</span></h1>'
            f"{fields}<h2>Stats</h2>{stats}<h2>Log (last lines)</h2>{log}")  # fmt: skip
    return document(f"crawl #{c.id} of {c.job} · persistent scheduler", body)


def error_page(status: int, message: str) -> str:
    return document(f"{status} · persistent scheduler", f'<nav><a href="/">all jobs</a></nav><h1>{status}</h1>'
                                                         f"<p>{esc(message)}</p>")  # fmt: skip


def _lanes(job_lanes: Iterable[JobLane], ov: Overview, tz: tzinfo, controls: Controls | None = None) -> str:
    scale = lanes.Scale(*lanes.window(ov.since, ov.now))
    rows = [lanes.defs(), f'<div class="row"><span></span>{lanes.axis(scale, ov.now, tz, esc)}</div>']
    for jl in job_lanes:
        name, chip = jl.job.name, jl.lane.chip
        rows.append(f'<div class="row" id="lane-{esc(quote(name, safe=""))}"><div class="name">'
                    f'<a href="{esc(job_href(name))}">{esc(name)}</a><br>'
                    f'<span class="chip {esc(chip.state)}">{esc(chip.text)}</span>{_calendar_line(jl)}'
                    f'{controls(jl) if controls else ""}</div>'
                    f"{lanes.lane_svg(jl.lane, scale, tz, esc, run_href)}</div>")  # fmt: skip
    legend = ('<p class="legend sub"><span>✓ <b style="background:#2e7d32"></b> completed</span>'
              '<span>✗ <b style="background:repeating-linear-gradient(45deg,#c62828 0 2px,#fff 2px 3px)"></b> '
              'failed</span><span>↯ <b style="background:#8d6e63"></b> cut short by the daemon</span>'
              '<span>▶ <b style="background:#bbdefb;border:1px dashed #1565c0"></b> running</span>'
              '<span><b style="background:#ffcdd2"></b> overdue</span><span><b style="background:#ffe0b2"></b> '
              'gap: successes more than one interval apart</span><span>┆ deadline (last success + interval)'
              "</span></p>")  # fmt: skip
    return "".join(rows) + legend


def _table(crawls: Iterable[timeline.Crawl], now: datetime, tz: tzinfo) -> str:
    rows = []
    for c in crawls:
        message = " ".join((c.message or "").split())
        if len(message) > MESSAGE_SHOWN:
            message = message[: MESSAGE_SHOWN - 1] + "…"
        link = run_href(c.id)
        rows.append(f'<tr class="{lanes.CLASSES[c.kind]}"><td><a href="{link}">#{c.id}</a></td>'
                    f'<td><a href="{esc(job_href(c.job))}">{esc(c.job)}</a></td><td>{esc(c.spider)}</td>'
                    f'<td class="status"><a href="{link}">{lanes.GLYPHS[c.kind]} {esc(_status(c))}</a></td>'
                    f"<td>{_time(c.started_at, tz)}</td><td>{esc(timeline.duration(c.end(now) - c.started_at))}</td>"
                    f'<td class="num">{esc(_figure(c.items))}</td><td class="num">{esc(_figure(c.errors))}</td>'
                    f"<td>{esc(c.finish_reason or '')}</td><td>{esc(message)}</td></tr>")  # fmt: skip
    if not rows:
        return "<p>No crawl in this window.</p>"
    return ("<table class=crawls><tr><th>crawl</th><th>job</th><th>spider</th><th>status</th><th>started</th>"
            "<th>took</th><th>items</th><th>errors</th><th>finish reason</th><th>message</th></tr>"
            + "".join(rows) + "</table>")  # fmt: skip


def _when(ov: Overview, tz: tzinfo) -> str:
    return f'<p class="sub">Now {_time(ov.now, tz)} ({esc(str(tz))}).</p>'


def _day_links(path: str, days: int, failed_only: bool) -> str:
    extra = "&amp;failed=1" if failed_only else ""
    links = [f"<b>{_days(d)}</b>" if d == days else f'<a href="{esc(path)}?days={d}{extra}">{_days(d)}</a>'
             for d in DAY_CHOICES]  # fmt: skip
    return f"<nav>{' '.join(links)}</nav>"


def _filter(path: str, days: int, failed_only: bool) -> str:
    other = (f'<a href="{esc(path)}?days={days}">show every crawl</a>' if failed_only
             else f'<a href="{esc(path)}?days={days}&amp;failed=1">show failures only</a>')  # fmt: skip
    return (f'<form method="get" action="{esc(path)}"><input type="hidden" name="days" value="{days}">'
            f'<label><input type="checkbox" name="failed" value="1"{" checked" if failed_only else ""}> '
            f"failures only</label> <button>Show</button> {other}</form>")  # fmt: skip


def _calendar_line(jl: JobLane) -> str:
    """Under a calendar job's name in the overview: its schedule in words and its next slot."""
    calendar = jl.job.calendar
    if calendar is None:
        return ""
    from daemon.ask.calendar_words import describe, when

    upcoming = jl.plan.calendar.next_slot if jl.plan.calendar is not None else None
    said = f"next slot {when(upcoming, calendar.tz)}" if upcoming is not None else "no slot ahead"
    return f'<br><span class="sub schedule">{esc(describe(calendar))} {esc(said)}</span>'


def _schedule(cal: Any) -> str:
    """A calendar job's schedule, next slot, state, last kept slot, missed slots and freshness
    (daemon/ask/calendar_status.py), every value escaped; nothing for a job without a calendar."""
    if not cal:
        return ""
    kept, fresh = cal["last_kept"], cal["freshness_month"]
    pairs = [
        ("schedule", cal["sentence"]), ("expression", cal["cron"] or "-"), ("time zone", cal["timezone"]),
        ("window", cal["window"] or "none: crawls start at any time"),
        ("next slot", f"{cal['next_slot_text']}, {cal['next_slot_in']}" if cal["next_slot_text"] else "-"),
        ("this slot", cal["state"]),
        ("last kept slot", f"{kept['slot_text']} (crawl {kept['crawl']})" if kept else "none yet"),
        ("freshness this month", f"{fresh['kept']} of {fresh['owed']} slots kept"),
    ]  # fmt: skip
    missed = "".join(f"<li>{esc(m['slot_text'])}: {esc(m['cause'])}"
                     + (f" (and {esc(m['slots'] - 1)} more)" if m["slots"] > 1 else "") + "</li>"
                     for m in cal["missed_30d"])  # fmt: skip
    listed = f"<h3>Missed slots, last 30 days</h3><ul>{missed}</ul>" if missed else "<p>No slot missed in 30 days.</p>"
    return f"<h2>Schedule</h2>{_dl(pairs)}{listed}"


def _dl(pairs: Iterable[tuple[str, Any]], raw: bool = False) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v if raw else esc(v)}</dd>" for k, v in pairs) + "</dl>"


def _time(moment: datetime, tz: tzinfo) -> str:
    local = moment.astimezone(tz)
    return f'<time datetime="{esc(local.isoformat(timespec="seconds"))}">{esc(local.strftime("%Y-%m-%d %H:%M:%S"))}</time>'


def _status(c: timeline.Crawl) -> str:
    return c.status + (f" ({c.failure})" if c.failure else "") + (f", suspect: {c.suspect}" if c.suspect else "")


def _pairs(pairs: Iterable[tuple[str, Any]]) -> str:
    return " ".join(f"{k}={v}" for k, v in pairs) or "-"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _figure(value: int | None) -> str:
    return "-" if value is None else str(value)


def _days(days: int) -> str:
    return "day" if days == 1 else f"{days} days"


def _all_fine(total: int) -> str:
    if total == 0:
        return "No jobs yet."
    return "The job is on time." if total == 1 else f"All {total} jobs are on time (or paused)."
