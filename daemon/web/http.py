"""The optional HTTP endpoint (SCHEDULER_HTTP_PORT; 0 = off): /healthz and /metrics for probes, the
page (`/`, `/jobs/<name>`, `/runs/<id>`, their JSON twins under `/api/`), and the JSON view of the
loop's jobs (`/jobs`, `/jobs/{id}`) for clients that do not ask for HTML.

It runs in threads of its own (the server's) and reads: the heartbeat file, the metrics registry, the
loop's view of its jobs, and, for the page, PostgreSQL on a read-only session of its own
(daemon/web/pagedata.py), opened by the first page request; the page's modules are imported then too.
The page's actions (daemon/web/acting.py) write the board on a connection of their own, opened by the
first action.

Every answer carries a Content-Security-Policy without scripts, nosniff and no-referrer. Apart from
/healthz and /metrics (probes and scrapers name the daemon as they please, and need no password):
- the Host header must name this endpoint: a loopback name (localhost, 127.0.0.1, [::1]) or the
  address it listens on, with any port (a published container port may differ), or an entry of
  `allowed_hosts` ("name" for any port, "name:port" for one): a page of another site whose name
  was made to resolve here (DNS rebinding) is refused;
- with `user` and `password` set, HTTP basic auth, compared in constant time; an address with
  `guard.LOGIN_FAILURES_ALLOWED` wrong credentials in a minute is answered 429 until it passes.
GET and HEAD read; POST (a body of at most MAX_POST_BYTES) goes to the page's actions
(daemon/web/acting.py), which decide who may act; any other method: 405 from the server.

The server (daemon/web/httpserver.py) bounds what clients can take: threads, connections (per address
too), time and size; see its docstring and README "The HTTP endpoint".
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daemon.telemetry import heartbeat
from daemon.system.clock import Clock, SystemClock
from daemon.settings.config import Settings
from daemon.settings.secret import Secret
from daemon.web.httpserver import BoundedServer, Limits
from daemon.web.httpwire import Request, Response
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
LOOPBACK = ("localhost", "127.0.0.1", "::1")
REALM = "persistent-scheduler"
MAX_POST_BYTES = 16 * 1024  # an action's form or JSON is a few hundred bytes


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
        self.server: BoundedServer | None = None
        self._site: Any = None
        self._site_lock = threading.Lock()
        from daemon.web.guard import LoginLimiter

        self._logins = LoginLimiter()

    def start(self) -> None:
        s = self.settings
        limits = Limits(threads=s.http_threads, max_connections=s.http_max_connections,
                        per_address=s.http_max_connections_per_address,
                        header_timeout_s=s.http_header_timeout_seconds, idle_timeout_s=s.http_idle_timeout_seconds)  # fmt: skip
        self.server = BoundedServer(s.http_host, s.http_port, self.handle, limits, headers=SECURITY_HEADERS)
        self.server.start()
        log.info("http_listening", host=s.http_host, port=self.server.port, auth=self._credentials is not None,
                 threads=limits.threads, max_connections=limits.max_connections)  # fmt: skip

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self._site is not None:
            self._site.close()

    def handle(self, request: Request) -> Response:
        """One request (from a thread of the server) to its answer."""
        if request.method == "POST":
            return self._post(request)
        raw_path, _, query = request.path.partition("?")
        path = raw_path.rstrip("/") or "/"
        if path == "/healthz":
            age = heartbeat.age_seconds(self.settings.heartbeat_file)
            limit = heartbeat.max_age_seconds(self.settings.tick_seconds)
            healthy = age is not None and age <= limit
            body = {"status": "ok" if healthy else "stale", "heartbeat_age_s": None if age is None else round(age, 1),
                    "limit_s": limit}  # fmt: skip
            return self._json(200 if healthy else 503, body)
        if path == "/metrics":
            return self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry))
        refused = self._refused(request)
        if refused is not None:
            return refused
        if (path == "/jobs" or path.startswith("/jobs/")) and "text/html" not in (request.header("Accept") or ""):
            return self._housekeeping(path)
        try:
            status, content_type, payload = self._pages().respond(path, query)
        except Exception as exc:  # a page's bug must not cost the endpoint: say so, and go on
            log.exception("page_failed", path=path[:200], error=type(exc).__name__)
            status, content_type, payload = 500, "text/plain; charset=utf-8", b"the page failed; see the log\n"
        return self._send(status, content_type, payload)

    def _post(self, request: Request) -> Response:
        """The Host and the credentials as for a page, then the path, headers and a bounded body to the
        page's actions."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        if request.length > MAX_POST_BYTES:
            return self._send(413, "text/plain; charset=utf-8", b"a body of at most 16 KiB\n")
        try:
            status, content_type, payload, extra = self._pages().post(
                request.path.partition("?")[0], _HeaderView(request), request.body, request.client)
        except Exception as exc:  # an action's bug must not cost the endpoint: say so, and go on
            log.exception("action_failed", error=type(exc).__name__)
            status, content_type, payload, extra = 500, "text/plain; charset=utf-8", b"the action failed\n", ()
        return self._send(status, content_type, payload, extra)

    def _refused(self, request: Request) -> Response | None:
        """The answer to a request for another Host, or without the credentials (too many failures:
        429); None: it may go on."""
        if not self._host_allowed(request.header("Host")):
            return self._send(400, "text/plain; charset=utf-8", b"this Host is not served here\n")
        if self._credentials is None:
            return None
        address, now = request.client, self.clock.now()
        if self._logins.blocked(address, now):
            return self._send(429, "text/plain; charset=utf-8", b"too many failed logins: wait a minute\n",
                              (("Retry-After", "60"),))  # fmt: skip
        if not self._authorized(request.header("Authorization")):
            if request.header("Authorization") is not None:  # a browser's first request sends none
                log.warning("login_failed", address=address, failures=self._logins.failed(address, now))
            challenge = (("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),)
            return self._send(401, "text/plain; charset=utf-8", b"credentials needed\n", challenge)
        return None

    def _housekeeping(self, path: str) -> Response:
        """The loop's view of its runs and housekeeping jobs (as before the page), for scripts."""
        view = self.jobs()
        if path == "/jobs":
            return self._json(200, view)
        wanted = path[len("/jobs/") :]
        job = next((j for j in view["jobs"] if j["id"] == wanted), None)
        if job is None:
            return self._json(404, {"error": f"unknown job: {wanted}", "jobs": [j["id"] for j in view["jobs"]]})
        return self._json(200, job)

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

    def _json(self, status: int, body: dict[str, Any]) -> Response:
        return self._send(status, "application/json", json.dumps(body, default=str).encode())

    @staticmethod
    def _send(status: int, content_type: str, body: bytes, extra: Iterable[tuple[str, str]] = ()) -> Response:
        """An answer with the security headers (the server adds the length, and leaves the body out for HEAD)."""
        return status, [("Content-Type", content_type), *SECURITY_HEADERS, *extra], body


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


class _HeaderView:
    """A request's headers as the page's actions read them: `.get(name)` in any case."""

    def __init__(self, request: Request) -> None:
        self._request = request

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._request.header(name)
        return default if value is None else value
