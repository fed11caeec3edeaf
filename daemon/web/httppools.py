"""The threads that answer whole requests for the endpoint's server (daemon/web/httpserver.py): the
page's pool and the probes' own thread (/healthz, /metrics), each fed by a bounded queue, so
Prometheus is answered while the page is busy and waiting requests take bounded memory. An answer
goes back to the server's loop as bytes, through `done`, with a wake-up."""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from typing import Any

import structlog

from daemon.web.httpwire import Request, Response, answer_bytes, probe_path

log = structlog.get_logger("daemon.http")

PROBE_QUEUE = 8
FAILED: Response = (500, [("Content-Type", "text/plain; charset=utf-8")], b"failed; see the log\n")


class Pools:
    def __init__(self, app: Callable[[Request], Response], threads: int, waiting: int,
                 wake: Callable[[], None]) -> None:  # fmt: skip
        """`threads` for the page with `waiting` requests queued at most; `wake` tells the loop an answer is ready."""
        self.app, self.wake = app, wake
        self.done: collections.deque[tuple[Any, bytes, bool]] = collections.deque()  # (whose, answer, keep alive)
        self._pages: queue.Queue[tuple[Any, Request] | None] = queue.Queue(waiting)
        self._probes: queue.Queue[tuple[Any, Request] | None] = queue.Queue(PROBE_QUEUE)
        self._stopping = threading.Event()
        work = [(self._pages, f"http-page-{n}") for n in range(threads)] + [(self._probes, "http-probe")]
        self._threads = [threading.Thread(target=self._work, args=(q,), name=name, daemon=True) for q, name in work]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            try:
                (self._probes if thread.name == "http-probe" else self._pages).put_nowait(None)
            except queue.Full:
                pass  # that worker sees the stop flag after its current request
        for thread in self._threads:
            thread.join(timeout=5)

    def submit(self, whose: Any, request: Request) -> bool:
        """Queue a request for its pool; False when that queue is full (the caller answers 503)."""
        try:
            (self._probes if probe_path(request.path) else self._pages).put_nowait((whose, request))
        except queue.Full:
            return False
        return True

    def _work(self, work: queue.Queue[tuple[Any, Request] | None]) -> None:
        while (item := work.get()) is not None and not self._stopping.is_set():
            whose, request = item
            keep = request.keep_alive and not self._stopping.is_set()
            try:
                status, headers, body = self.app(request)
                answer = answer_bytes(status, headers, body, request.method == "HEAD", keep)
            except Exception as exc:  # the app's bug: one JSON line (never a thread's traceback), the client hears 500
                log.exception("http_handler_failed", path=request.path[:200], error=type(exc).__name__)
                keep = False
                answer = answer_bytes(*FAILED, head=request.method == "HEAD", keep=False)
            self.done.append((whose, answer, keep))
            self.wake()
