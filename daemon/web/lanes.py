"""A job's lane as inline SVG (daemon/web/timeline.py says what is in it; this says where it goes).

Time runs left to right over [since, until]: `until` lies a little past `now`, so a deadline still
to come shows. Each crawl is a bar from its start to its end, as high as its items (relative to the
lane's largest), colored by its kind *and* drawn differently (solid, hatched, dotted, outlined) with
a glyph above it where there is room, a tooltip (<title>) with its figures, and a link to its page.
The deadline is a dashed line, the span the job is overdue and every gap between two successes
more than one interval apart are shaded, each with a <title> saying why. Every string is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo

from daemon.web import timeline
from daemon.web.timeline import Crawl, Lane

WIDTH = 1000  # viewBox units across; the page scales the picture to its column
LANE_HEIGHT = 44
BASELINE = 40
BAR_MIN, BAR_MAX = 7, 26  # a bar's height for no items and for the lane's largest count
GLYPH_ROOM = 10  # units between two glyphs, or the later one is left out (the bar and its title stay)
GLYPHS = {timeline.OK: "✓", timeline.FAILED: "✗", timeline.CUT: "↯", timeline.RUNNING: "▶"}
CLASSES = {timeline.OK: "ok", timeline.FAILED: "failed", timeline.CUT: "cut", timeline.RUNNING: "running"}
FUTURE_SHARE = 8  # the part past `now`: an eighth of the window


def window(since: datetime, now: datetime) -> tuple[datetime, datetime]:
    return since, now + (now - since) / FUTURE_SHARE


class Scale:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end
        self._origin = start.timestamp()
        self._per_second = WIDTH / (end - start).total_seconds()

    def x(self, moment: datetime) -> float:
        """The position of `moment`, kept inside the picture."""
        x = (moment.timestamp() - self._origin) * self._per_second
        return 0.0 if x < 0 else WIDTH if x > WIDTH else round(x, 1)


def defs() -> str:
    """The fills every lane refers to (once per page)."""
    return ('<svg class="defs" width="0" height="0" aria-hidden="true"><defs>'
            '<pattern id="hatch" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            '<rect width="4" height="4" fill="#c62828"/><line x1="0" y1="0" x2="0" y2="4" stroke="#fff" '
            'stroke-width="1.6"/></pattern>'
            '<pattern id="dots" width="3" height="3" patternUnits="userSpaceOnUse"><rect width="3" height="3" '
            'fill="#8d6e63"/><circle cx="1.5" cy="1.5" r="0.7" fill="#fff"/></pattern>'
            '<pattern id="late" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            '<rect width="6" height="6" fill="#ffcdd2"/><line x1="0" y1="0" x2="0" y2="6" stroke="#ef9a9a" '
            'stroke-width="2"/></pattern></defs></svg>')  # fmt: skip


def axis(scale: Scale, now: datetime, tz: tzinfo, esc: Callable[[str], str]) -> str:
    """Days along the top, and `now`."""
    parts = [(f'<svg class="axis" viewBox="0 0 {WIDTH} 16" role="img" '
              f'aria-label="time from {esc(_iso(scale.start, tz))} to {esc(_iso(scale.end, tz))}">')]  # fmt: skip
    days = (scale.end - scale.start) / timedelta(days=1)
    step = 1 if days <= 10 else 2 if days <= 20 else 4
    first = scale.start.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    midnight = first
    while midnight < scale.end:
        x = scale.x(midnight)
        if (midnight - first).days % step == 0 and x < WIDTH - 30 and not -5 < scale.x(now) - x < 45:
            parts.append(f'<text x="{x + 2}" y="11">{esc(midnight.strftime("%a %d %b" if step == 1 else "%d %b"))}</text>')
        parts.append(f'<line class="day" x1="{x}" y1="0" x2="{x}" y2="16"/>')
        midnight += timedelta(days=1)  # aware arithmetic is on the wall clock: the next local midnight
    parts.append(f'<text class="now" x="{scale.x(now) - 2}" y="11" text-anchor="end">now</text></svg>')
    return "".join(parts)


def lane_svg(lane: Lane, scale: Scale, tz: tzinfo, esc: Callable[[str], str], href: Callable[[int], str]) -> str:
    """One job's lane: marks first, then the bars over them, then the deadline and `now`."""
    now = lane.now
    parts = [(f'<svg class="lane" viewBox="0 0 {WIDTH} {LANE_HEIGHT}" role="img" '
              f'data-job="{esc(lane.job)}" data-from="{scale.start.timestamp():.0f}" '
              f'data-to="{scale.end.timestamp():.0f}" aria-label="{esc(lane.job)}: {esc(lane.chip.text)}">')]  # fmt: skip
    for midnight in _midnights(scale, tz):
        parts.append(f'<line class="day" x1="{scale.x(midnight)}" y1="0" x2="{scale.x(midnight)}" y2="{LANE_HEIGHT}"/>')
    for gap in lane.gaps:
        parts.append(_span("gap", gap, scale, f"promise broken: {gap.why}", tz, esc))
    if lane.overdue is not None:
        parts.append(_span("overdue", lane.overdue, scale, f"overdue: {lane.overdue.why}", tz, esc))
    top = max((c.items or 0 for c in lane.crawls), default=0)
    last_glyph = -math.inf
    for crawl in lane.crawls:
        x1, x2 = scale.x(crawl.started_at), scale.x(crawl.end(now))
        width = max(x2 - x1, 3.0)
        height = BAR_MIN + (BAR_MAX - BAR_MIN) * math.sqrt((crawl.items or 0) / top) if top else BAR_MIN
        y = round(BASELINE - height, 1)
        kind = CLASSES[crawl.kind]
        glyph = ""
        if x1 - last_glyph >= GLYPH_ROOM:
            glyph = f'<text class="glyph" x="{round(x1 + width / 2, 1)}" y="{y - 1.5}">{GLYPHS[crawl.kind]}</text>'
            last_glyph = x1
        parts.append(f'<a class="crawl {kind}" href="{esc(href(crawl.id))}" data-id="{crawl.id}">'
                     f'<title>{esc(tooltip(crawl, now, tz))}</title>'
                     f'<rect x="{x1}" y="{y}" width="{round(width, 1)}" height="{round(height, 1)}"/>{glyph}</a>')  # fmt: skip
    if lane.deadline is not None and lane.deadline >= scale.start:
        x = scale.x(lane.deadline)
        beyond = lane.deadline > scale.end
        said = f"deadline {timeline.moment(lane.deadline, now, tz)}: the last success plus the interval"
        parts.append(f'<g class="deadline{" beyond" if beyond else ""}" data-at="{lane.deadline.timestamp():.0f}">'
                     f'<title>{esc(said)}</title><line x1="{x}" y1="2" x2="{x}" y2="{LANE_HEIGHT}"/>'
                     f'<text x="{x - 3 if beyond or x > WIDTH - 60 else x + 3}" y="9" '
                     f'text-anchor="{"end" if beyond or x > WIDTH - 60 else "start"}">'
                     f'{"deadline ▸" if beyond else "deadline"}</text></g>')  # fmt: skip
    parts.append(f'<line class="now" x1="{scale.x(now)}" y1="0" x2="{scale.x(now)}" y2="{LANE_HEIGHT}"/></svg>')
    return "".join(parts)


def tooltip(crawl: Crawl, now: datetime, tz: tzinfo) -> str:
    """Status, start, duration, items, errors and finish reason of a crawl, on a few lines."""
    status = crawl.status + (f" ({crawl.failure})" if crawl.failure else "")
    took = timeline.duration(crawl.end(now) - crawl.started_at) + (" so far" if crawl.kind == timeline.RUNNING else "")
    return "\n".join((
        f"crawl #{crawl.id} of {crawl.job}: {status}",
        f"started {_iso(crawl.started_at, tz)}, took {took}",
        f"items {_figure(crawl.items)}, errors {_figure(crawl.errors)}",
        f"finish reason: {crawl.finish_reason or '-'}",
    ))  # fmt: skip


def _span(kind: str, span: timeline.Span, scale: Scale, said: str, tz: tzinfo, esc: Callable[[str], str]) -> str:
    x1, x2 = scale.x(span.start), scale.x(span.end)
    return (f'<rect class="{kind}" x="{x1}" y="0" width="{round(max(x2 - x1, 1.0), 1)}" height="{LANE_HEIGHT}" '
            f'data-from="{span.start.timestamp():.0f}" data-to="{span.end.timestamp():.0f}">'
            f'<title>{esc(said)}</title></rect>')  # fmt: skip


def _midnights(scale: Scale, tz: tzinfo) -> list[datetime]:
    found, midnight = [], scale.start.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    while midnight < scale.end:
        if midnight > scale.start:
            found.append(midnight)
        midnight += timedelta(days=1)
    return found


def _iso(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).isoformat(" ", "seconds")[:19]


def _figure(value: int | None) -> str:
    return "-" if value is None else str(value)
