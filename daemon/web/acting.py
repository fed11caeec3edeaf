"""The page's actions (issue #23): POST /jobs/<name>/<action> from the page's forms, and its JSON
twin POST /api/jobs/<name>/<action>, for run-now, pause, resume and cancel. Both end in the one
path the CLI takes (daemon/ask/actions.py): the board the lock holder hears, and the audit.

Who may, in the order it is checked (daemon/web/http.py has checked the Host and the credentials):
- actions exist only with basic auth on and SCHEDULER_HTTP_READONLY not true: else 403, and why;
- a form: `application/x-www-form-urlencoded`, from the page's own origin (Origin, or
  Sec-Fetch-Site, required), with a token for this user, action and job that has not expired
  (daemon/web/guard.py); then post, redirect (303) back, and the page shows the audit row's notice;
- the API: `application/json` (a cross-site form cannot send it without a preflight nobody
  answers), no foreign Origin; the answer is JSON.
A refused request changes nothing and leaves no audit row (a forged one must not fill the table):
it is logged as `action_refused` with why, never with a credential.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

import psycopg2
import structlog

from daemon.ask import actions
from daemon.settings.config import Settings
from daemon.web import guard
from daemon.web.page import job_href

log = structlog.get_logger("daemon.http")

ROUTE = re.compile(r"/(?P<api>api/)?jobs/(?P<name>[^/]{1,1000})/(?P<action>run-now|pause|resume|cancel)")
FORM_PAUSES = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "1d": timedelta(days=1), "": None}
BACK = ("job", "overview")
CONNECT_TIMEOUT = 3  # seconds
Reply = tuple[int, str, bytes, tuple[tuple[str, str], ...]]


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Acting:
    """Owns the signing key (read once), the write connection for actions (one at a time) and the
    form tokens. `user`: the basic-auth user, None without auth."""

    def __init__(self, settings: Settings, user: str | None, connect: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.user = user
        self._connect = connect or self._open
        self._conn: Any = None
        self._tokens: guard.Tokens | None = None
        self._lock = threading.Lock()

    @property
    def read_only_because(self) -> str | None:
        """None when the page may act; else the one line the page shows."""
        if self.user is None:
            return ("Read-only: actions (run now, pause, resume, cancel) need basic auth: set SCHEDULER_HTTP_USER "
                    "and SCHEDULER_HTTP_PASSWORD in .env")  # fmt: skip
        if self.settings.http_readonly:
            return "Read-only: SCHEDULER_HTTP_READONLY is true"
        return None

    def token(self, action: str, job: str, now: datetime) -> str:
        assert self.user is not None
        return self.tokens().make(self.user, action, job, now)

    def tokens(self) -> guard.Tokens:
        with self._lock:
            if self._tokens is None:
                self._tokens = guard.Tokens(guard.load_key(self.settings.state_dir))
            return self._tokens

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def post(self, path: str, headers: Mapping[str, str], body: bytes, address: str, now: datetime) -> Reply:
        found = ROUTE.fullmatch(path)
        if found is None:
            status, content_type, text, _ = _json_reply(405, {"error": "POST only to a job's actions: "
                                                            "/jobs/<name>/run-now|pause|resume|cancel, or /api/jobs/..."})
            return status, content_type, text, (("Allow", "GET, HEAD"),)
        api, name, action = bool(found["api"]), unquote(found["name"], errors="replace"), found["action"]
        try:
            pause_for, back = self._admit(api, name, action, headers, body, now)
            outcome = self._act(name, action, pause_for, actions.Actor(self.user or "", "api" if api else "page",
                                                                       address), now)  # fmt: skip
        except Refused as exc:
            log.warning("action_refused", action=action, job=name[:100], address=address, status=exc.status,
                        why=str(exc))  # fmt: skip
            if api:
                return _json_reply(exc.status, {"error": str(exc)})
            text = f"<!doctype html><title>refused</title><p>{_esc(str(exc))}</p>".encode()
            return exc.status, "text/html; charset=utf-8", text, ()
        log.info("action_done", action=action, job=name[:100], actor=self.user, address=address,
                 result=outcome.result)  # fmt: skip
        if api:
            return _json_reply(409 if outcome.result == "refused" else 200, outcome.as_dict(self.settings.timezone))
        href = "/" if back == "overview" else job_href(name)
        return 303, "text/plain; charset=utf-8", b"done\n", (("Location", f"{href}?done={outcome.audit_id}"),)

    def _admit(self, api: bool, name: str, action: str, headers: Mapping[str, str], body: bytes,
               now: datetime) -> tuple[timedelta | None, str]:  # fmt: skip
        """(how long a pause lasts, where to go back) for a request that may act; else Refused."""
        why = self.read_only_because
        if why:
            raise Refused(403, why)
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        problem = guard.origin_problem(headers.get("Host"), headers.get("Origin"), headers.get("Sec-Fetch-Site"),
                                       required=not api)  # fmt: skip
        if api:
            if content_type != "application/json":
                raise Refused(415, "the API takes Content-Type: application/json")
            if problem:
                raise Refused(403, f"refused: {problem}")
            return _api_pause(action, body), "job"
        if content_type != "application/x-www-form-urlencoded":
            raise Refused(415, "a form posts application/x-www-form-urlencoded")
        if problem:
            raise Refused(403, f"refused: {problem}")
        fields = _form(body)
        assert self.user is not None
        try:
            bad = self.tokens().problem(fields.get("token"), self.user, action, name, now)
        except OSError as exc:  # statedir.RefusedFile too: a key the daemon did not write is never used
            raise Refused(503, f"the form key in the state directory is unusable ({type(exc).__name__}): "
                               "nothing was done") from None
        if bad:
            raise Refused(403, f"refused: {bad}")
        if action == "pause" and fields.get("for", "") not in FORM_PAUSES:
            raise Refused(400, "a pause from the page lasts 1h, 4h, 1d or until resumed")
        back = fields.get("back", "job")
        return FORM_PAUSES.get(fields.get("for", "")), back if back in BACK else "job"

    def _act(self, name: str, action: str, pause_for: timedelta | None, actor: actions.Actor,
             now: datetime) -> actions.Outcome:  # fmt: skip
        from daemon.ask.status import current_jobs
        from daemon.records.store import Store

        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                store = Store(self._conn)
                jobs, _, _ = current_jobs(store, self.settings)
                if name not in {job.name for job in jobs}:
                    raise Refused(404, f"no job named {name[:100]!r}")
                return actions.act(store, jobs, action, name, actor, now, self.settings.timezone, pause_for=pause_for)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self.close()
                raise Refused(503, f"PostgreSQL is unreachable ({type(exc).__name__}): nothing was done") from exc

    def _open(self) -> Any:
        from daemon.records import db

        return db.connect(self.settings, connect_timeout=CONNECT_TIMEOUT,
                          application_name="persistent-scheduler-page-actions",
                          session={"statement_timeout": "5s"})  # fmt: skip


def _api_pause(action: str, body: bytes) -> timedelta | None:
    try:
        sent = json.loads(body or b"{}")
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(sent, dict) or set(sent) - {"for"}:
        raise Refused(400, 'the body is a JSON object, at most {"for": "2h"} for a pause')
    raw = sent.get("for")
    if raw is None:
        return None
    if action != "pause":
        raise Refused(400, '"for" goes only with pause')
    value = actions.pause_length(raw) if isinstance(raw, str) else None
    if value is None:
        raise Refused(400, f'"for": {str(raw)[:30]!r} is not allowed: {actions.PAUSE_ALLOWED}')
    return value


def _form(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "a form of at most 10 ASCII fields") from None
    if any(len(values) > 1 for values in parsed.values()):
        raise Refused(400, "each form field at most once")
    return {key: values[0] for key, values in parsed.items()}


def _json_reply(status: int, body: Any) -> Reply:
    return status, "application/json", json.dumps(body).encode(), ()


def _esc(text: str) -> str:
    import html

    return html.escape(text, quote=True)
