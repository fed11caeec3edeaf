"""A request's head parsed with the endpoint's limits, and an answer made into bytes
(daemon/web/httpwire.py): pure functions over bytes, no socket."""

from __future__ import annotations

import pytest

from daemon.web.httpwire import WireError, answer_bytes, parse_head, probe_path

LIMITS = {"max_bytes": 1024, "max_headers": 10, "max_body": 100}


def parse(data: bytes):
    buf = bytearray(data)
    request = parse_head(buf, client="127.0.0.1", **LIMITS)
    return request, bytes(buf)


def test_a_whole_get_is_parsed_and_taken_out_of_the_buffer():
    request, rest = parse(b"GET /jobs?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\nAccept: */*\r\n\r\nNEXT")
    assert (request.method, request.path, request.version) == ("GET", "/jobs?x=1", "HTTP/1.1")
    assert request.header("HOST") == "a" and request.header("accept") == "text/html, */*"
    assert request.keep_alive and request.length == 0 and rest == b"NEXT"


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [(b"GET / HTTP/1.1\r\n\r\n", True), (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False),
     (b"GET / HTTP/1.0\r\n\r\n", False), (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True)],
)  # fmt: skip
def test_keep_alive_follows_the_version_and_the_connection_header(head, keep_alive):
    assert parse(head)[0].keep_alive is keep_alive


def test_half_a_head_is_not_a_request_yet_and_stays_in_the_buffer():
    assert parse(b"GET / HTTP/1.1\r\nHost: a\r\n") == (None, b"GET / HTTP/1.1\r\nHost: a\r\n")


def test_a_post_keeps_its_body_in_the_buffer_and_says_its_length():
    request, rest = parse(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nab")
    assert request.length == 5 and request.expects_continue and rest == b"ab"


@pytest.mark.parametrize(
    ("data", "status"),
    [(b"GET / HTTP/1.1\r\nX: " + b"a" * 1100, 431),  # headers over the size, not even ended
     (b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 11 + b"\r\n", 431),  # more header lines than allowed
     (b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 12, 431),  # the same, refused before the end comes
     (b"PUT / HTTP/1.1\r\n\r\n", 405), (b"DELETE / HTTP/1.1\r\n\r\n", 405), (b"OPTIONS * HTTP/1.1\r\n\r\n", 405),
     (b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413),
     (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
     (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
     (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
     (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400), (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
     (b"GET /\r\n\r\n", 505), (b"GET / HTTP/2.0\r\n\r\n", 505), (b"GET / FTP/1.0\r\n\r\n", 400),
     (b"GET http://evil/ HTTP/1.1\r\n\r\n", 400), (b"G<T / HTTP/1.1\r\n\r\n", 400), (b"GET  / HTTP/1.1\r\n\r\n", 400)],
)  # fmt: skip
def test_a_request_that_breaks_a_rule_is_refused_with_its_status(data, status):
    with pytest.raises(WireError) as refused:
        parse(data)
    assert refused.value.status == status


def test_a_refused_method_hears_which_are_allowed():
    with pytest.raises(WireError) as refused:
        parse(b"PATCH / HTTP/1.1\r\n\r\n")
    assert refused.value.headers == [("Allow", "GET, HEAD, POST")]


def test_an_answer_carries_its_length_and_says_whether_the_connection_stays():
    data = answer_bytes(200, [("Content-Type", "text/plain")], b"hello", head=False, keep=True)
    assert data == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
                    b"\r\nhello")  # fmt: skip


def test_an_answer_to_head_has_the_length_of_a_get_and_no_body():
    data = answer_bytes(503, [], b"hello", head=True, keep=False)
    assert data.endswith(b"Content-Length: 5\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")


@pytest.mark.parametrize(
    ("target", "probe"),
    [("/metrics", True), ("/metrics/", True), ("/healthz?x=1", True), ("/", False), ("/metricsx", False),
     ("/api/metrics", False)],
)  # fmt: skip
def test_the_probes_are_told_apart_from_the_page(target, probe):
    assert probe_path(target) is probe
