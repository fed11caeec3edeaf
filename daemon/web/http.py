"""The optional HTTP endpoint (SCHEDULER_HTTP_PORT; 0 = off): /healthz and /metrics for probes, the
page (`/`, `/jobs/<name>`, `/runs/<id>`, their JSON twins under `/api/`), and the JSON view of the
loop's jobs (`/jobs`, `/jobs/{id}`) for clients that do not ask for HTML.

It runs in a thread and reads: the heartbeat file, the metrics registry, the loop's view of
its jobs, and, for the page, PostgreSQL on a read-only session of its own (daemon/web/pagedata.py),
opened by the first page request; the page's modules are imported then too. The page's actions
(daemon/web/acting.py) write the board on a connection of their own, opened by the first action.

Every answer carries a Content-Security-Policy without scripts, nosniff and no-referrer. Apart from
/healthz and /metrics (probes and scrapers name the daemon as they please, and need no password):
- the Host header must name this endpoint: a loopback name (localhost, 127.0.0.1, [::1]) or the
  address it listens on, with any port (a published container port may differ), or an entry of
  `allowed_hosts` ("name" for any port, "name:port" for one): a page of another site whose name
  was made to resolve here (DNS rebinding) is refused;
- with `user` and `password` set, HTTP basic auth, compared in constant time; an address with
  `guard.LOGIN_FAILURES_ALLOWED` wrong or missing credentials in a minute is answered 429 until it passes.
GET and HEAD read; POST (a bounded body) goes to the page's actions (daemon/web/acting.py), which
decide who may act; any other method: 405.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daemon.telemetry import heartbeat
from daemon.system.clock import Clock, SystemClock
from daemon.settings.config import Settings
from daemon.settings.secret import Secret
from daemon.telemetry.metrics import Metrics

log = structlog.get_logger("daemon.http")

SECURITY_HEADERS = (
    ("Content-Security-Policy", ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                 "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)  # fmt: skip
PROBES = ("/healthz", "/metrics")
MAX_POST_BYTES = 16 * 1024  # an action's form or JSON is a few hundred bytes
LOOPBACK = ("localhost", "127.0.0.1", "::1")
REALM = "persistent-scheduler"


class HttpEndpoint:
    def __init__(self, settings: Settings, metrics: Metrics, jobs: Callable[[], dict[str, Any]], *,
                 user: str | None = None, password: Secret | None = None, allowed_hosts: Iterable[str] = (),
                 clock: Clock | None = None) -> None:  # fmt: skip
        """`user` and `password`: basic auth for everything but the probes (both or neither);
        `allowed_hosts`: more names the Host header may carry ("name" or "name:port")."""
        if bool(user) != bool(password):
            raise ValueError("the HTTP endpoint's basic auth needs both a user and a password, or neither")
        if user and ":" in user:
            raise ValueError("the HTTP endpoint's user may not contain ':' (basic auth splits there)")
        self.settings = settings
        self.metrics = metrics
        self.jobs = jobs
        self.clock = clock or SystemClock()
        self._credentials = (user, password) if user and password else None  # the password stays a Secret
        self._hosts = {_host_and_port(h.strip().lower()) for h in allowed_hosts if h.strip()}
        self.server: ThreadingHTTPServer | None = None
        self._site: Any = None
        self._site_lock = threading.Lock()
        from daemon.web.guard import LoginLimiter

        self._logins = LoginLimiter()

    def start(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's names)
                endpoint.handle(self)

            def do_HEAD(self) -> None:  # noqa: N802 (http.server's names)
                endpoint.handle(self, head=True)

            def do_POST(self) -> None:  # noqa: N802 (http.server's names)
                endpoint.handle_post(self)

            def refuse(self) -> None:
                endpoint._send(self, 405, "text/plain; charset=utf-8", b"only GET and HEAD (and POST to a job's "
                               b"actions)\n", extra=(("Allow", "GET, HEAD"),))  # fmt: skip

            do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = refuse

            def log_message(self, format: str, *args: object) -> None:
                pass  # requests are not events worth a log line each

        self.server = ThreadingHTTPServer((self.settings.http_host, self.settings.http_port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        log.info("http_listening", host=self.settings.http_host, port=self.server.server_address[1],
                 auth=self._credentials is not None)  # fmt: skip

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self._site is not None:
            self._site.close()

    def handle(self, request: BaseHTTPRequestHandler, head: bool = False) -> None:
        raw_path, _, query = request.path.partition("?")
        path = raw_path.rstrip("/") or "/"
        if path == "/healthz":
            age = heartbeat.age_seconds(self.settings.heartbeat_file)
            limit = heartbeat.max_age_seconds(self.settings.tick_seconds)
            healthy = age is not None and age <= limit
            body = {"status": "ok" if healthy else "stale", "heartbeat_age_s": None if age is None else round(age, 1),
                    "limit_s": limit}  # fmt: skip
            return self._json(request, 200 if healthy else 503, body, head)
        if path == "/metrics":
            return self._send(request, 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry), head)
        if self._refused(request, head):
            return
        if (path == "/jobs" or path.startswith("/jobs/")) and "text/html" not in request.headers.get("Accept", ""):
            return self._housekeeping(request, path, head)
        try:
            status, content_type, payload = self._pages().respond(path, query)
        except Exception as exc:  # a page's bug must not cost the endpoint: say so, and go on
            log.exception("page_failed", path=path[:200], error=type(exc).__name__)
            status, content_type, payload = 500, "text/plain; charset=utf-8", b"the page failed; see the log\n"
        self._send(request, status, content_type, payload, head)

    def handle_post(self, request: BaseHTTPRequestHandler) -> None:
        """The Host and the credentials as for a page, then the path, headers and a bounded body to the
        page's actions."""
        if self._refused(request, False):
            return
        length = request.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_POST_BYTES:
            return self._send(request, 413, "text/plain; charset=utf-8", b"a body of at most 16 KiB, with its "
                              b"Content-Length\n")  # fmt: skip
        body = request.rfile.read(int(length))
        try:
            status, content_type, payload, extra = self._pages().post(request.path.partition("?")[0], request.headers,
                                                                      body, request.client_address[0])  # fmt: skip
        except Exception as exc:  # an action's bug must not cost the endpoint: say so, and go on
            log.exception("action_failed", error=type(exc).__name__)
            status, content_type, payload, extra = 500, "text/plain; charset=utf-8", b"the action failed\n", ()
        self._send(request, status, content_type, payload, extra=extra)

    def _refused(self, request: BaseHTTPRequestHandler, head: bool) -> bool:
        """Answers a request for another Host, or without the credentials (too many failures: 429)."""
        if not self._host_allowed(request.headers.get("Host")):
            self._send(request, 400, "text/plain; charset=utf-8", b"this Host is not served here\n", head)
            return True
        if self._credentials is None:
            return False
        address, now = request.client_address[0], self.clock.now()
        if self._logins.blocked(address, now):
            self._send(request, 429, "text/plain; charset=utf-8", b"too many failed logins: wait a minute\n", head,
                       (("Retry-After", "60"),))  # fmt: skip
            return True
        if not self._authorized(request.headers.get("Authorization")):
            if request.headers.get("Authorization") is not None:  # a browser's first request sends none
                log.warning("login_failed", address=address, failures=self._logins.failed(address, now))
            challenge = (("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),)
            self._send(request, 401, "text/plain; charset=utf-8", b"credentials needed\n", head, challenge)
            return True
        return False

    def _housekeeping(self, request: BaseHTTPRequestHandler, path: str, head: bool) -> None:
        """The loop's view of its runs and housekeeping jobs (as before the page), for scripts."""
        view = self.jobs()
        if path == "/jobs":
            return self._json(request, 200, view, head)
        wanted = path[len("/jobs/") :]
        job = next((j for j in view["jobs"] if j["id"] == wanted), None)
        if job is None:
            return self._json(request, 404, {"error": f"unknown job: {wanted}", "jobs": [j["id"] for j in view["jobs"]]},
                              head)  # fmt: skip
        self._json(request, 200, job, head)

    def _pages(self) -> Any:
        with self._site_lock:
            if self._site is None:
                from daemon.web.site import (
                    Site,  # the page's modules: only once someone looks
                )

                self._site = Site(self.settings, self.clock, user=self._credentials[0] if self._credentials else None)
            return self._site

    def _host_allowed(self, header: str | None) -> bool:
        if not header:
            return False
        name, port = _host_and_port(header.strip().lower())
        bound = self.settings.http_host.lower().strip("[]")
        if name in LOOPBACK or (name == bound and bound not in ("0.0.0.0", "::", "")):
            return True
        return (name, None) in self._hosts or (name, port) in self._hosts

    def _authorized(self, header: str | None) -> bool:
        assert self._credentials is not None
        scheme, _, encoded = (header or "").partition(" ")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True) if scheme.lower() == "basic" else b""
        except (binascii.Error, ValueError):
            decoded = b""
        user, sep, password = decoded.partition(b":")
        want_user, want_password = self._credentials[0].encode(), self._credentials[1].reveal().encode()
        # Both compared whatever the first says, so the time taken tells nothing.
        same_user = hmac.compare_digest(user, want_user)
        same_password = hmac.compare_digest(password, want_password)
        return bool(sep) and same_user and same_password

    def _json(self, request: BaseHTTPRequestHandler, status: int, body: dict[str, Any], head: bool = False) -> None:
        self._send(request, status, "application/json", json.dumps(body, default=str).encode(), head)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes, head: bool = False,
              extra: Iterable[tuple[str, str]] = ()) -> None:  # fmt: skip
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        for name, value in (*SECURITY_HEADERS, *extra):
            request.send_header(name, value)
        request.end_headers()
        if not head:
            request.wfile.write(body)


def _host_and_port(host: str) -> tuple[str, int | None]:
    """"Example.org:9464" -> ("example.org", 9464); "[::1]:80" -> ("::1", 80); a bad port -> -1."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    else:
        name, port = host, ""
    name = name.rstrip(".")
    if not port:
        return name, None
    return name, int(port) if port.isdigit() and len(port) <= 5 else -1
