"""HTTP/1.1 on the wire for the endpoint's server (daemon/web/httpserver.py): a request's head parsed
with its limits, and an answer made into bytes. Pure functions over bytes, tested as such
(tests/unit/test_http_wire.py); the server owns the sockets.

What is refused, and how (each as `WireError`, which the server answers and then closes):
- headers longer than the limit or more header lines than allowed: 431;
- a request line that is not `METHOD /target HTTP/1.x`, a header line that is not `name: value`
  (or continues the previous line), two different Content-Lengths: 400;
- a method other than GET, HEAD or POST: 405, saying which are allowed;
- a body longer than allowed: 413; a chunked body (Transfer-Encoding): 501;
- HTTP/2 or later spoken as text, or HTTP/0.9: 505.
"""

from __future__ import annotations

import dataclasses
import re
from http import HTTPStatus

METHODS = ("GET", "HEAD", "POST")
PROBES = ("/healthz", "/metrics")
_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(r"HTTP/1\.[01]")

Headers = list[tuple[str, str]]
Response = tuple[int, Headers, bytes]  # status, headers (Content-Length and Connection are added), body


class WireError(Exception):
    """A request the server will not serve: the status to answer, why, and any header to add."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


@dataclasses.dataclass
class Request:
    method: str
    path: str  # the target as sent: path and query
    version: str
    headers: dict[str, str]  # names in lower case; a repeated header's values joined by ", "
    client: str  # the peer's address
    length: int = 0  # of the body, from Content-Length
    keep_alive: bool = False
    expects_continue: bool = False
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def parse_head(buf: bytearray, max_bytes: int, max_headers: int, max_body: int, client: str) -> Request | None:
    """The request whose head `buf` begins with, taken out of `buf` (the body stays); None while the
    head has not all come. Raises WireError when it breaks a rule, as soon as it does."""
    while buf[:2] == b"\r\n" or buf[:1] == b"\n":  # blank lines before a request are allowed (RFC 9112 2.2)
        del buf[: 2 if buf[:1] == b"\r" else 1]
    end = _END.search(buf, 0, max_bytes + 4)
    if end is None:
        if len(buf) > max_bytes:
            raise WireError(431, f"the request line and headers may take at most {max_bytes} bytes")
        if buf.count(b"\n") > max_headers + 1:
            raise WireError(431, f"at most {max_headers} header lines")
        return None
    head = bytes(buf[: end.start()]).decode("latin-1")
    del buf[: end.end()]
    lines = [line.removesuffix("\r") for line in head.split("\n")]
    if len(lines) - 1 > max_headers:
        raise WireError(431, f"at most {max_headers} header lines")
    method, target, version = _request_line(lines[0])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise WireError(400, "a header line is `name: value` on one line")
        key, value = name.lower(), value.strip(" \t")
        if key == "content-length" and key in headers and headers[key] != value:
            raise WireError(400, "two different Content-Lengths")
        headers[key] = f"{headers[key]}, {value}" if key in headers and key != "content-length" else value
    request = Request(method, target, version, headers, client)
    if "transfer-encoding" in headers:
        raise WireError(501, "a chunked body is not accepted; send a Content-Length")
    raw_length = headers.get("content-length", "0")
    if not raw_length.isdigit() or len(raw_length) > 12:
        raise WireError(400, "Content-Length is a whole number of bytes")
    request.length = int(raw_length)
    if request.length > max_body:
        raise WireError(413, f"a body may take at most {max_body} bytes")
    connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    request.keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    request.expects_continue = version == "HTTP/1.1" and headers.get("expect", "").lower() == "100-continue"
    return request


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not parts[1]:
        raise WireError(400 if len(parts) != 2 else 505, "the request line is `METHOD /target HTTP/1.1`")
    method, target, version = parts
    if not _VERSION.fullmatch(version):
        raise WireError(505 if version.startswith("HTTP/") else 400, "HTTP/1.0 and HTTP/1.1 only")
    if not _TOKEN.fullmatch(method):
        raise WireError(400, "the request line is `METHOD /target HTTP/1.1`")
    if method not in METHODS:
        raise WireError(405, "only GET, HEAD and POST", [("Allow", ", ".join(METHODS))])
    if not target.startswith("/"):
        raise WireError(400, "the target is a path beginning with /")
    return method, target, version


def answer_bytes(status: int, headers: Headers, body: bytes, head: bool, keep: bool) -> bytes:
    """The whole answer: status line, the headers with Content-Length and Connection, the body (none
    to HEAD, which still hears the length a GET would get)."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers),
             f"Content-Length: {len(body)}", f"Connection: {'keep-alive' if keep else 'close'}", "", ""]  # fmt: skip
    return "\r\n".join(lines).encode("latin-1") + (b"" if head else body)


def probe_path(target: str) -> bool:
    """/healthz and /metrics (with any query or a trailing slash): answered by a thread of their own."""
    return (target.partition("?")[0].rstrip("/") or "/") in PROBES
