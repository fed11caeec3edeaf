"""The endpoint's server under hostile clients, each limit on its own: a real server on 127.0.0.1
with short limits, real sockets, and an app that answers what the test needs. How long each cut
took is printed as a figure, never asserted; that it came, and within a bounded wait, is."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import threading
import time

import pytest

from daemon.web.httpserver import MAX_BODY_BYTES, BoundedServer, Limits
from daemon.web.httpwire import Request, Response
from tests.conftest import figure
from tests.helpers import wait_for

LIMITS = Limits(threads=1, max_connections=16, per_address=4, header_timeout_s=2.0, idle_timeout_s=2.0, queue=2)
BIG = b"x" * (8 * 1024 * 1024)  # more than the kernel's buffers hold on both sides


class App:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()  # a /slow request is in the app

    def __call__(self, request: Request) -> Response:
        if request.path == "/slow":
            self.entered.set()
            self.release.wait(10)
        body = BIG if request.path == "/big" else f"{request.method} {request.path} {len(request.body)}".encode()
        return 200, [("Content-Type", "text/plain")], body


def serving(limits: Limits):
    app = App()
    server = BoundedServer("127.0.0.1", 0, app, limits)
    server.app_ = app
    server.start()
    yield server
    app.release.set()
    server.stop()


@pytest.fixture
def server():
    yield from serving(LIMITS)


@pytest.fixture
def patient_server():
    """Header and idle limits of 30 s: no timeout cuts what a test holds while it looks (a loaded
    machine takes its time)."""
    yield from serving(dataclasses.replace(LIMITS, header_timeout_s=30, idle_timeout_s=30))


def connect(server: BoundedServer, source: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def get(server: BoundedServer, path: str = "/", source: str = "127.0.0.1") -> bytes:
    with connect(server, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def cut_after(sock: socket.socket, trickle: bytes | None, limit_s: float) -> float:
    """Seconds until the server closed `sock`, sending `trickle` a byte a second meanwhile (bounded)."""
    started = time.monotonic()
    sock.settimeout(1)
    for n in range(int(limit_s) + 10):
        if trickle:
            try:
                sock.send(trickle[n % len(trickle) : n % len(trickle) + 1])
            except OSError:
                return time.monotonic() - started
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
        if data == b"":
            return time.monotonic() - started
    raise AssertionError(f"not cut within {limit_s + 10} s")


def test_a_slowloris_sending_its_headers_a_byte_a_second_is_cut_at_the_header_limit(server):
    with connect(server) as sock:
        took = cut_after(sock, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 2.0)
    figure(f"http server: slowloris on headers cut after {took:.1f} s (limit 2 s)")
    assert took >= 1.5


def test_a_slow_body_is_cut_at_the_idle_limit(server):
    with connect(server) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        took = cut_after(sock, b"a", 2.0)
    figure(f"http server: a body sent a byte a second cut after {took:.1f} s (limit 2 s)")
    assert took >= 1.5


def test_an_idle_kept_alive_connection_is_cut_at_the_idle_limit(server):
    with connect(server) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        took = cut_after(sock, None, 2.0)
    figure(f"http server: an idle keep-alive connection cut after {took:.1f} s (limit 2 s)")


def test_a_reader_taking_a_byte_a_second_is_cut_at_the_idle_limit(server):
    with connect(server, rcvbuf=4096) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        sock.settimeout(1)
        for _ in range(20):  # a byte a second, until the server gives up on us
            sock.recv(1)
            if server.figures()["connections"] == 0:
                break
            time.sleep(1)
        took = time.monotonic() - started
    figure(f"http server: a reader taking a byte a second cut after {took:.1f} s (limit 2 s)")
    assert server.figures()["connections"] == 0


@pytest.mark.parametrize(
    ("head", "status"),
    [(b"GET / HTTP/1.1\r\nX-Huge: " + b"a" * 100_000 + b"\r\n\r\n", b"431"),
     (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % n for n in range(1000)) + b"\r\n", b"431"),
     (b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), b"413"),
     (b"DELETE / HTTP/1.1\r\n\r\n", b"405")],
    ids=["a huge header", "1,000 headers", "a body larger than allowed", "another method"],
)  # fmt: skip
def test_a_request_over_a_limit_is_refused_at_once_and_the_connection_closed(server, head, status):
    with connect(server) as sock:
        started = time.monotonic()
        try:
            sock.sendall(head)
        except OSError:
            pass  # refused while still sending: the answer is read below all the same
        answer = read_all(sock)
    assert answer.split(b" ")[1] == status, answer[:100]
    figure(f"http server: {status.decode()} answered in {(time.monotonic() - started) * 1000:.0f} ms")


def test_a_bounded_post_body_reaches_the_app(server):
    with connect(server) as sock:
        sock.sendall(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nab")
        time.sleep(0.2)
        sock.sendall(b"cde")
        assert read_all(sock).endswith(b"POST /form 5")


def test_one_address_cannot_take_more_than_its_share_and_others_are_still_served(patient_server):
    server = patient_server
    held = [connect(server, "127.0.0.9") for _ in range(LIMITS.per_address + 3)]
    try:
        for sock in held:
            sock.settimeout(0.5)
        closed = []
        for sock in held:
            try:
                closed.append(sock.recv(1) == b"")
            except TimeoutError:
                closed.append(False)
            except OSError:
                closed.append(True)
        assert closed == [False] * LIMITS.per_address + [True] * 3
        assert get(server, "/mine", "127.0.0.1").endswith(b"GET /mine 0")
    finally:
        for sock in held:
            sock.close()


def test_at_capacity_a_new_client_takes_the_place_of_the_longest_stalled_one(patient_server):
    server = patient_server
    stalled = [connect(server, f"127.0.1.{n}") for n in range(LIMITS.max_connections)]
    try:
        for sock in stalled:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        wait_for(lambda: server.figures()["connections"] == LIMITS.max_connections, timeout=5, what="all held")
        assert get(server, "/new", "127.0.0.1").endswith(b"GET /new 0")
        stalled[0].settimeout(2)
        assert stalled[0].recv(1) == b""  # the oldest made room
        assert server.figures()["connections"] <= LIMITS.max_connections
    finally:
        for sock in stalled:
            sock.close()


def test_the_probes_are_answered_while_every_page_thread_is_busy_and_a_full_queue_is_refused_at_once(server):
    server.app_.release.clear()
    busy = [connect(server, f"127.0.2.{n}") for n in range(1 + LIMITS.queue + 1)]  # a thread, the queue, one more
    try:
        for n, sock in enumerate(busy):
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            if n == 0:  # the first is taken by the thread before the queue fills
                assert server.app_.entered.wait(10)
        time.sleep(0.5)
        answers = []
        for sock in busy:
            sock.settimeout(0.2)
            try:
                answers.append(sock.recv(65536)[:12])
            except TimeoutError:
                answers.append(None)
        assert answers.count(b"HTTP/1.1 503") == 1 and answers.count(None) == 3, answers
        started = time.monotonic()
        assert get(server, "/metrics").endswith(b"GET /metrics 0")
        figure(f"http server: /metrics with the page's thread and queue full: {(time.monotonic() - started) * 1000:.0f} ms")
    finally:
        server.app_.release.set()
        for sock in busy:
            sock.close()


def test_answers_held_for_readers_that_do_not_read_are_bounded_then_new_requests_hear_503():
    server = BoundedServer("127.0.0.1", 0, App(), Limits(max_unsent_bytes=1024 * 1024, idle_timeout_s=5))
    server.start()
    try:
        with connect(server, rcvbuf=4096) as stalled:
            stalled.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for(lambda: server.figures()["unsent"] > 1024 * 1024, timeout=5, what="an answer held")
            held = server.figures()["unsent"]
            assert get(server, "/next").startswith(b"HTTP/1.1 503 ")
        wait_for(lambda: server.figures()["unsent"] == 0, timeout=5, what="the held answer dropped")
        assert get(server, "/next").endswith(b"GET /next 0")
        figure(f"http server: {held / 2**20:.1f} MiB held for a reader that does not read (the kernel took the rest)")
    finally:
        server.stop()


def test_an_app_that_fails_costs_one_json_line_and_a_500_never_a_thread(capsys):
    def failing(request: Request) -> Response:
        if request.path == "/bad-header":
            return 200, [("X-Name", "ünïcödé ✓")], b"not latin-1 in a header"
        raise RuntimeError("a bug")

    server = BoundedServer("127.0.0.1", 0, failing, LIMITS)
    server.start()
    try:
        for _ in range(3):  # the one page thread survives each failure
            assert get(server, "/boom").startswith(b"HTTP/1.1 500 ")
            assert get(server, "/bad-header").startswith(b"HTTP/1.1 500 ")
    finally:
        server.stop()
    assert "Traceback" not in capsys.readouterr().err


def test_a_head_dribbled_in_small_packets_is_parsed_once_per_line_not_once_per_packet(monkeypatch):
    import daemon.web.httpserver as httpserver

    calls = []
    real = httpserver.parse_head
    monkeypatch.setattr(httpserver, "parse_head", lambda *args: calls.append(1) or real(*args))  # the real parser, counted
    server = BoundedServer("127.0.0.1", 0, App(), LIMITS)
    server.start()
    try:
        with connect(server) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            head = b"GET /dribbled HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 2000 + b"\r\nConnection: close\r\n\r\n"
            for n in range(0, len(head), 20):  # 100 packets, each read on its own
                sock.send(head[n : n + 20])
                time.sleep(0.003)
            assert read_all(sock).endswith(b"GET /dribbled 0")
    finally:
        server.stop()
    assert len(calls) <= head.count(b"\n") + 1, len(calls)


def test_out_of_file_descriptors_the_server_rests_its_listener_and_serves_again_once_they_are_back():
    import resource

    server = BoundedServer("127.0.0.1", 0, App(), LIMITS)
    server.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spare = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
        with contextlib.suppress(OSError):
            while True:  # every descriptor taken but the client's own
                spare.append(socket.socket())
        spare.pop().close()
        client = socket.socket()  # the only one left: the server cannot accept it
        client.settimeout(2)
        client.connect(("127.0.0.1", server.port))
        client.sendall(b"GET /starved HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        cpu = time.process_time()
        time.sleep(1)
        figure(f"http server: out of file descriptors, the process used {time.process_time() - cpu:.2f} s of CPU in 1 s")
        assert time.process_time() - cpu < 0.1  # it did not spin on a listener it cannot accept from (0.33 s did)
        for sock in spare:
            sock.close()
        spare.clear()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        client.settimeout(5)
        assert read_all(client).endswith(b"GET /starved 0")
        client.close()
    finally:
        for sock in spare:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        server.stop()
