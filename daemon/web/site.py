"""The page's routes: each request's path and query to a status, a content type and a body.

    GET /                  every job's lane over the last 7 days (?days=1..30), the latest crawls (?failed=1)
    GET /jobs/<name>       one job: its lane over 30 days (?days=1..30), its crawls, why (not) now
    GET /runs/<id>         one crawl: its figures, stats and log, the job's previous and next crawl
    GET /api/overview      the same as JSON, for scripts (?days=, ?failed=)
    GET /api/jobs/<name>   (?days=, ?failed=)
    GET /api/runs/<id>
    POST /jobs/<name>/run-now|pause|resume|cancel       the page's forms (daemon/web/acting.py)
    POST /api/jobs/<name>/run-now|pause|resume|cancel   their JSON twin for scripts

Imported by the HTTP endpoint on the first page request only: an idle daemon nobody looks at never
loads it. daemon/web/http.py checks the Host header, the credentials and the method before this.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import structlog

from daemon.records import audit
from daemon.web import forms, page, pagedata
from daemon.web.acting import Acting
from daemon.system.clock import Clock
from daemon.settings.config import Settings
from daemon.jobs.jobfile import format_duration

log = structlog.get_logger("daemon.http")

HTML = "text/html; charset=utf-8"
JSON = "application/json"
MAX_DAYS = 30
Response = tuple[int, str, bytes]


class BadRequest(Exception):
    pass


class Site:
    def __init__(self, settings: Settings, clock: Clock, session: pagedata.PageSession | None = None, *,
                 user: str | None = None, acting: Acting | None = None) -> None:  # fmt: skip
        """`user`: the basic-auth user (None: no auth, so the page is read-only)."""
        self.settings = settings
        self.clock = clock
        self.session = session or pagedata.PageSession(settings)
        self.acting = acting or Acting(settings, user)
        self.tz = settings.timezone

    def close(self) -> None:
        self.session.close()
        self.acting.close()

    def post(self, path: str, headers: Any, body: bytes, address: str) -> tuple[int, str, bytes, tuple[Any, ...]]:
        """An action (daemon/web/acting.py): its status, content type, body and extra headers."""
        return self.acting.post(path, headers, body, address, self.clock.now())

    def _controls(self, now: datetime, back: str) -> Callable[[pagedata.JobLane], str] | None:
        if self.acting.read_only_because:
            return None

        def buttons(jl: pagedata.JobLane) -> str:
            name = jl.job.name
            running = any(c.status == "running" for c in jl.lane.crawls)
            return forms.controls(name, lambda action: self.acting.token(action, name, now), paused=jl.plan.paused,
                                  in_file=jl.job.paused, running=running, back=back)  # fmt: skip

        return buttons

    def _banner(self, store: Any, query: dict[str, str]) -> str:
        done = query.get("done", "")
        action = audit.one(store.conn, int(done)) if re.fullmatch(r"[0-9]{1,18}", done) else None
        return forms.notice(action) + forms.read_only(self.acting.read_only_because)

    def respond(self, path: str, query: str) -> Response:
        api = path == "/api" or path.startswith("/api/")
        try:
            return self._route((path.removeprefix("/api") or "/") if api else path, _query(query), api)
        except BadRequest as exc:
            return self._error(400, str(exc), api)
        except pagedata.Unavailable as exc:
            log.warning("page_unavailable", error=str(exc))
            return self._error(503, f"{exc}; try again in a moment", api)

    def _route(self, path: str, query: dict[str, str], api: bool) -> Response:
        now = self.clock.now()
        if path in ("/", "/jobs") or (api and path == "/overview"):
            days, failed = _days(query, 7), _failed(query)
            ov, banner = self.session.read(lambda s: (pagedata.overview(s, self.settings, now, days, failed_only=failed),
                                                      self._banner(s, query)))  # fmt: skip
            assert ov is not None
            if api:
                return self._json({**self._overview_json(ov), "actions": self.acting.read_only_because is None})
            return self._html(page.overview_page(ov, self.tz, failed, controls=self._controls(now, "overview"),
                                                 banner=banner))  # fmt: skip
        if path.startswith("/jobs/"):
            name = unquote(path[len("/jobs/") :], errors="replace")
            days, failed = _days(query, MAX_DAYS), _failed(query)

            def read(store: Any) -> tuple[pagedata.Overview | None, Any, list[audit.Action], str]:
                ov = pagedata.overview(store, self.settings, now, days, job=name, failed_only=failed)
                if ov is None:
                    return None, None, [], ""
                why = pagedata.explanation(store, self.settings, name, now)
                return ov, why, audit.of_job(store.conn, name), self._banner(store, query)

            ov, why, acted, banner = self.session.read(read)
            if ov is None:
                return self._error(404, f"no job named {name!r}", api)
            if api:
                return self._json({**self._overview_json(ov), "explain": why.as_dict() if why else None,
                                   "calendar": ov.calendars.get(name),
                                   "actions": [a.as_dict(self.tz) for a in acted]})  # fmt: skip
            return self._html(page.job_page(ov, self.tz, failed, why.paragraph() if why else None,
                                            controls=self._controls(now, "job"), banner=banner,
                                            audit=forms.audit_table(acted, self.tz)))  # fmt: skip
        if path.startswith("/runs/"):
            wanted = path[len("/runs/") :]
            detail = None
            if re.fullmatch(r"[0-9]{1,18}", wanted):
                detail = self.session.read(lambda s: pagedata.crawl_detail(s, int(wanted)))
            if detail is None:
                return self._error(404, f"no crawl #{unquote(wanted, errors='replace')}", api)
            return self._json(self._crawl_json(detail)) if api else self._html(page.run_page(detail, now, self.tz))
        return self._error(404, f"not found: {unquote(path, errors='replace')}", api)

    # JSON twins
    def _overview_json(self, ov: pagedata.Overview) -> dict[str, Any]:
        return {
            "now": self._iso(ov.now), "since": self._iso(ov.since), "days": ov.days, "timezone": str(self.tz),
            "published": ov.published, "file_error": ov.file_error,
            "answer": [jl.lane.sentence for jl in ov.lanes if jl.lane.sentence],
            "jobs": [self._lane_json(jl) for jl in ov.lanes],
            "latest": [self._crawl_row(c) for c in ov.latest],
        }  # fmt: skip

    def _lane_json(self, jl: pagedata.JobLane) -> dict[str, Any]:
        lane, job, plan = jl.lane, jl.job, jl.plan
        return {
            "job": job.name, "spider": job.spider, "args": dict(job.args), "settings": dict(job.settings),
            "every": format_duration(job.every), "every_s": job.every.total_seconds(),
            "chip": {"state": lane.chip.state, "text": lane.chip.text}, "sentence": lane.sentence,
            "reason": plan.reason, "due_at": self._iso(plan.due_at), "paused": plan.paused,
            "last_success_at": self._iso(jl.history.last_success_at),
            "consecutive_failures": jl.history.consecutive_failures, "deadline": self._iso(lane.deadline),
            "overdue": None if lane.overdue is None else self._span(lane.overdue),
            "gaps": [self._span(gap) for gap in lane.gaps],
            "crawls": [self._crawl_row(c) for c in lane.crawls],
        }  # fmt: skip

    def _crawl_row(self, c: Any) -> dict[str, Any]:
        return {
            "id": c.id, "job": c.job, "spider": c.spider, "status": c.status, "kind": c.kind, "failure": c.failure,
            "started_at": self._iso(c.started_at), "finished_at": self._iso(c.finished_at),
            "items": c.items, "errors": c.errors, "finish_reason": c.finish_reason, "message": c.message,
            "exit_code": c.exit_code, "page": page.run_href(c.id),
        }  # fmt: skip

    def _crawl_json(self, d: pagedata.CrawlDetail) -> dict[str, Any]:
        return {**self._crawl_row(d.crawl), "run_id": d.run_id, "args": d.args, "settings": d.settings,
                "stats": d.stats, "log_tail": d.log_tail, "previous": d.previous, "next": d.next}  # fmt: skip

    def _span(self, span: Any) -> dict[str, Any]:
        return {"from": self._iso(span.start), "to": self._iso(span.end), "why": span.why}

    def _iso(self, moment: datetime | None) -> str | None:
        return moment.astimezone(self.tz).isoformat(timespec="seconds") if moment else None

    # responses
    @staticmethod
    def _html(text: str) -> Response:
        return 200, HTML, text.encode()

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return status, JSON, json.dumps(body, default=str).encode()

    def _error(self, status: int, message: str, api: bool) -> Response:
        if api:
            return self._json({"error": message}, status)
        return status, HTML, page.error_page(status, message).encode()


def _query(query: str) -> dict[str, str]:
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except ValueError as exc:
        raise BadRequest("too many query parameters") from exc
    repeated = [name for name, values in parsed.items() if len(values) > 1]
    if repeated:
        raise BadRequest(f"each query parameter at most once: {', '.join(sorted(repeated))}")
    return {name: values[0] for name, values in parsed.items()}


def _days(query: dict[str, str], default: int) -> int:
    raw = query.get("days")
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,2}", raw) or not 1 <= int(raw) <= MAX_DAYS:
        raise BadRequest(f"days={raw[:20]!r} is not allowed: a whole number of days from 1 to {MAX_DAYS}")
    return int(raw)


def _failed(query: dict[str, str]) -> bool:
    raw = query.get("failed", "0")
    if raw not in ("0", "1", ""):
        raise BadRequest(f"failed={raw[:20]!r} is not allowed: 1 (failures only) or 0")
    return raw == "1"
