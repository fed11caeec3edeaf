"""The endpoint's HTTP/1.1 server: bounded whatever clients do (issue 25).

One thread ("http") owns every connection through one selector: it accepts, reads requests up to
their end, and writes the answers; nothing a client does holds a thread. Only a whole request goes
to a thread, of two small fixed pools with bounded queues (daemon/web/httppools.py): the page's
(`Limits.threads`) and the probes' (/healthz and /metrics, one thread of their own), so Prometheus
is answered while the page is busy. Limits (README "The HTTP endpoint" says them, with their settings):
- connections: at most `max_connections` open; at capacity a new one takes the place of the one that
  has waited longest without sending a whole request (the slowloris defence: the new client is
  served, the stalled one is cut), or is closed at once when every connection is being served; at
  most `per_address` from one address (the rest closed at once);
- time: the request line and headers within `header_timeout_s` of the connection's first wait; the
  body, the writing of the answer, and an idle keep-alive connection each within `idle_timeout_s`;
- size: headers at most MAX_HEADER_BYTES and MAX_HEADERS lines; a body (POST only) at most
  MAX_BODY_BYTES with a Content-Length; no chunked bodies; answers waiting for slow readers at most
  `max_unsent_bytes` in all (then 503 to new requests until they drain or are cut);
- methods: GET, HEAD and POST (the endpoint decides what a POST may do); anything else 405.

A client cut or gone is one debug line (`http_client_cut`, `http_client_gone`); the limits reached
(refusals, cuts, bad requests) are one warning line at most every 10 s (`http_limits_hit`), with
their counts since the last. Nothing here prints a traceback: an unexpected error is one JSON line
through structlog.
"""

from __future__ import annotations

import collections
import dataclasses
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable

import structlog

from daemon.web.httppools import Pools
from daemon.web.httpwire import Request, Response, WireError, answer_bytes, parse_head

log = structlog.get_logger("daemon.http")

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_BODY_BYTES = 64 * 1024
ACCEPTS_PER_TURN = 64  # new connections taken per turn of the loop, so reading is never starved
WARN_EVERY_S = 10.0
SCAN_EVERY_S = 0.1  # deadlines are looked at this often, not on every event (a flood brings thousands a second)

READING, BODY, BUSY, WRITING, CLOSING = "reading", "body", "busy", "writing", "closing"
LINGER_S = 2.0  # how long a closing connection's late bytes are read and dropped, so the answer is not reset


@dataclasses.dataclass(frozen=True)
class Limits:
    threads: int = 4
    max_connections: int = 256
    per_address: int = 32
    header_timeout_s: float = 5.0
    idle_timeout_s: float = 10.0
    queue: int = 32  # page requests waiting for a thread; more: 503 at once
    max_unsent_bytes: int = 32 * 1024 * 1024  # answers held for slow readers; above it new requests hear 503


class _Conn:
    __slots__ = ("sock", "address", "buf", "state", "deadline", "out", "keep", "request", "served")

    def __init__(self, sock: socket.socket, address: str, deadline: float) -> None:
        self.sock, self.address, self.deadline = sock, address, deadline
        self.buf = bytearray()
        self.state = READING
        self.out = memoryview(b"")
        self.keep = False
        self.request: Request | None = None
        self.served = 0


class BoundedServer:
    def __init__(self, host: str, port: int, app: Callable[[Request], Response], limits: Limits,
                 headers: Iterable[tuple[str, str]] = (), clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        """`headers`: added to the answers the server gives itself (a refusal, a 503)."""
        self.limits, self.clock, self.headers = limits, clock, list(headers)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}
        self._waiting: dict[int, _Conn] = {}  # not being served, oldest first: who makes room at capacity
        self._per_address: collections.Counter[str] = collections.Counter()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._pools = Pools(app, limits.threads, limits.queue, self._wake)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="http", daemon=True)
        self._counts: collections.Counter[str] = collections.Counter()
        self._unsent = 0  # bytes of answers not yet taken by the kernel, over all connections
        self._resting = False  # the listener unwatched after accept failed (no file descriptors left)
        self._warned_at = self._scanned_at = -WARN_EVERY_S

    # life
    def start(self) -> None:
        self._sel.register(self.listener, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._pools.start()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        self._pools.stop()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self._turn()
        except Exception as exc:  # one JSON line, never a bare traceback; the endpoint is then down
            log.exception("http_server_failed", error=type(exc).__name__)
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            self._sel.close()
            self.listener.close()
            self._wake_r.close()
            self._wake_w.close()

    def _turn(self) -> None:
        for key, events in self._sel.select(timeout=0.25):
            if key.fileobj is self.listener:
                self._accept()
            elif key.fileobj is self._wake_r:
                try:
                    self._wake_r.recv(4096)
                except BlockingIOError:
                    pass
            elif (conn := key.data) is not None and conn.sock.fileno() in self._conns:
                if events & selectors.EVENT_WRITE:
                    self._write(conn)
                elif events & selectors.EVENT_READ:
                    self._read(conn)
        while self._pools.done:
            conn, data, keep = self._pools.done.popleft()
            if conn.sock.fileno() in self._conns:
                self._answer(conn, data, keep)
        now = self.clock()
        if now - self._scanned_at < SCAN_EVERY_S:
            return
        self._scanned_at = now
        if self._resting:
            self._resting = False
            self._sel.register(self.listener, selectors.EVENT_READ, None)
        for conn in [c for c in self._conns.values() if c.deadline <= now and c.state != BUSY]:
            if conn.state == CLOSING:
                self._close(conn)
                continue
            self._counts[f"cut_{conn.state}_timeout"] += 1
            self._cut(conn, f"{conn.state}_timeout")
        if self._counts and now - self._warned_at >= WARN_EVERY_S:
            log.warning("http_limits_hit", **dict(self._counts), connections=len(self._conns))
            self._counts.clear()
            self._warned_at = now

    # connections
    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say: the listener rests until the next scan
                self._counts[f"accept_{type(exc).__name__}"] += 1
                self._sel.unregister(self.listener)  # (else, still readable, it would spin the loop)
                self._resting = True
                return
            address = peer[0]
            if self._per_address[address] >= self.limits.per_address:
                self._counts["refused_per_address"] += 1
                sock.close()
                continue
            if len(self._conns) >= self.limits.max_connections:
                if not self._waiting:
                    self._counts["refused_full"] += 1
                    sock.close()
                    continue
                self._counts["evicted_waiting"] += 1
                self._cut(next(iter(self._waiting.values())), "room_for_new")
            sock.setblocking(False)
            conn = _Conn(sock, address, self.clock() + self.limits.header_timeout_s)
            self._conns[sock.fileno()] = self._waiting[sock.fileno()] = conn
            self._per_address[address] += 1
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Conn) -> None:
        if conn.state == CLOSING:
            return self._drain(conn)
        try:
            data = conn.sock.recv(MAX_HEADER_BYTES + 1 if conn.state == READING else MAX_BODY_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            return self._gone(conn, type(exc).__name__)
        if not data:
            return self._gone(conn, "closed")
        if conn.state == READING and not conn.buf and conn.served:  # a keep-alive's next request begins
            conn.deadline = self.clock() + self.limits.header_timeout_s
        conn.buf += data
        if conn.state == READING and b"\n" not in data and len(conn.buf) <= MAX_HEADER_BYTES:
            return  # a head ends with a line's end: parsed again only when one comes, so a client
            # dribbling bytes costs one scan per line, not one per byte
        self._advance(conn)

    def _advance(self, conn: _Conn) -> None:
        """Parse what has come so far; a whole request goes to a thread."""
        try:
            if conn.state == READING:
                request = parse_head(conn.buf, MAX_HEADER_BYTES, MAX_HEADERS, MAX_BODY_BYTES, conn.address)
                if request is None:
                    return
                conn.request, conn.state = request, BODY
                conn.deadline = self.clock() + self.limits.idle_timeout_s
                if request.expects_continue and len(conn.buf) < request.length:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            assert conn.request is not None
            if len(conn.buf) < conn.request.length:
                return
            conn.request.body = bytes(conn.buf[: conn.request.length])
            del conn.buf[: conn.request.length]
        except WireError as exc:
            self._counts[f"bad_request_{exc.status}"] += 1
            headers = [("Content-Type", "text/plain; charset=utf-8"), *exc.headers, *self.headers]
            refusal = answer_bytes(exc.status, headers, exc.message.encode() + b"\n", head=False, keep=False)
            return self._answer(conn, refusal, False)
        except OSError as exc:
            return self._gone(conn, type(exc).__name__)
        self._dispatch(conn)

    def _dispatch(self, conn: _Conn) -> None:
        assert conn.request is not None
        conn.state = BUSY
        self._waiting.pop(conn.sock.fileno(), None)
        self._sel.unregister(conn.sock)  # not read while served: nothing piles up, no busy wake-ups
        if self._unsent > self.limits.max_unsent_bytes or not self._pools.submit(conn, conn.request):
            self._counts["refused_busy" if self._unsent <= self.limits.max_unsent_bytes else "refused_unsent"] += 1
            headers = [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1"), *self.headers]
            self._answer(conn, answer_bytes(503, headers, b"busy; try again in a moment\n", False, False), False)

    def _answer(self, conn: _Conn, data: bytes, keep: bool) -> None:
        conn.out, conn.keep, conn.state = memoryview(data), keep, WRITING
        self._unsent += len(data)
        conn.deadline = self.clock() + self.limits.idle_timeout_s
        self._waiting.pop(conn.sock.fileno(), None)
        self._watch(conn, selectors.EVENT_WRITE)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            return self._gone(conn, type(exc).__name__)
        conn.out = conn.out[sent:]
        self._unsent -= sent
        if conn.out:
            return
        if not conn.keep:
            return self._linger(conn)
        conn.state, conn.request, conn.served = READING, None, conn.served + 1
        conn.deadline = self.clock() + self.limits.idle_timeout_s  # idle until the next request begins
        self._waiting[conn.sock.fileno()] = conn
        self._watch(conn, selectors.EVENT_READ)
        if conn.buf:  # the next request came along with this one
            self._advance(conn)

    def _linger(self, conn: _Conn) -> None:
        """Close after the answer without resetting it: the kernel would answer bytes still unread
        (the rest of a refused request) with a reset that can destroy the answer on its way."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self._close(conn)
        conn.state, conn.deadline, conn.buf = CLOSING, self.clock() + LINGER_S, bytearray()
        self._waiting.pop(conn.sock.fileno(), None)
        self._watch(conn, selectors.EVENT_READ)

    def _drain(self, conn: _Conn) -> None:
        try:
            if conn.sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._close(conn)

    def _watch(self, conn: _Conn, events: int) -> None:
        try:
            self._sel.modify(conn.sock, events, conn)
        except KeyError:  # unregistered while it was served
            self._sel.register(conn.sock, events, conn)

    def _cut(self, conn: _Conn, reason: str) -> None:
        log.debug("http_client_cut", address=conn.address, reason=reason)
        self._close(conn)

    def _gone(self, conn: _Conn, reason: str) -> None:
        log.debug("http_client_gone", address=conn.address, state=conn.state, reason=reason)
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if self._conns.pop(fd, None) is None:
            return
        self._waiting.pop(fd, None)
        self._unsent -= len(conn.out)
        conn.out = memoryview(b"")
        self._per_address[conn.address] -= 1
        if self._per_address[conn.address] <= 0:
            del self._per_address[conn.address]
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake is already pending (or the server is closing)

    def figures(self) -> dict[str, int]:
        """For tests and the benchmark: open connections and those waiting."""
        return {"connections": len(self._conns), "waiting": len(self._waiting), "unsent": self._unsent}
