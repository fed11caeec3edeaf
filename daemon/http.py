"""The optional HTTP endpoint (SCHEDULER_HTTP_PORT; 0 = off): /healthz, /metrics, /jobs, /jobs/{id}.

It runs in a thread and only reads: the heartbeat file, the metrics registry, and the loop's
view of its jobs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from daemon import heartbeat
from daemon.config import Settings
from daemon.metrics import Metrics

log = structlog.get_logger("daemon.http")


class HttpEndpoint:
    def __init__(self, settings: Settings, metrics: Metrics, jobs: Callable[[], dict[str, Any]]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.jobs = jobs
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                endpoint.handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # requests are not events worth a log line each

        self.server = ThreadingHTTPServer((self.settings.http_host, self.settings.http_port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        log.info("http_listening", host=self.settings.http_host, port=self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/healthz":
            age = heartbeat.age_seconds(self.settings.heartbeat_file)
            limit = heartbeat.max_age_seconds(self.settings.tick_seconds)
            healthy = age is not None and age <= limit
            body = {"status": "ok" if healthy else "stale", "heartbeat_age_s": None if age is None else round(age, 1),
                    "limit_s": limit}  # fmt: skip
            self._json(request, 200 if healthy else 503, body)
        elif path == "/metrics":
            self._send(request, 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry))
        elif path == "/jobs":
            self._json(request, 200, self.jobs())
        elif path.startswith("/jobs/"):
            wanted = path[len("/jobs/") :]
            view = self.jobs()
            job = next((j for j in view["jobs"] if j["id"] == wanted), None)
            if job is None:
                self._json(request, 404, {"error": f"unknown job: {wanted}", "jobs": [j["id"] for j in view["jobs"]]})
            else:
                self._json(request, 200, job)
        else:
            self._json(request, 404, {"error": f"not found: {path}"})

    def _json(self, request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        self._send(request, status, "application/json", json.dumps(body, default=str).encode())

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
