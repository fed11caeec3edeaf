"""Pure parsers of network addresses for the settings: hosts, PostgreSQL's host (or socket
directory), host lists, URLs that may carry a token, Scrapyd nodes. Text in, a typed value out, or
`Invalid` (daemon/settings/parsers.py has the Parser itself and the other parsers)."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

from daemon.settings.hostnames import is_host
from daemon.settings.secret import Secret
from daemon.settings.parsers import Invalid, Parser, show

# libpq connects to <directory>/.s.PGSQL.<port>, and a Unix socket path holds at most 107 bytes.
SOCKET_PATH_MAX_BYTES = 107
HOST_ALLOWED = "a host name (letters, digits, - and _ in dot-separated labels of at most 63 characters)"
IP_ALLOWED = "an IP address (1.2.3.4, ::1, without [ ] or a port)"
DEFAULT_SLOTS = 1  # crawls a Scrapyd node takes at once unless told: Scrapyd does not report its max_proc


def host() -> Parser:
    def parse(raw: str) -> str:
        if not is_host(raw):
            raise Invalid
        return raw

    return Parser(parse, f"{HOST_ALLOWED} or {IP_ALLOWED}")


def host_list() -> Parser:
    """Comma-separated host names or IP addresses, each optionally with `:port`."""

    def parse(raw: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in raw.split(",") if part.strip())
        for name in names or (raw,):
            host, _, port = name.rpartition(":") if name.count(":") == 1 else (name, "", "")
            if not is_host(host.strip("[]")) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
                raise Invalid
        return names

    return Parser(parse, "a comma-separated list of host names or IP addresses, each with an optional `:port`",
                  unset=())


def db_host() -> Parser:
    """What libpq's `host` takes: a host name, an IP address, or a Unix-socket directory (whose
    socket path, which depends on the port, is checked with the port: `socket_path_problem`)."""

    def parse(raw: str) -> str:
        if raw.startswith("/"):
            if not raw.isprintable():
                raise Invalid("printable characters only")
            return raw
        if not is_host(raw):
            raise Invalid
        return raw

    return Parser(parse, f"{HOST_ALLOWED}, {IP_ALLOWED}, or the absolute path of a Unix-socket directory")


def socket_path_problem(directory: str, port: int) -> str | None:
    socket = f"{directory.rstrip('/')}/.s.PGSQL.{port}".encode()
    if directory.startswith("/") and len(socket) > SOCKET_PATH_MAX_BYTES:
        return f"the socket path, {len(socket)} bytes, must fit in {SOCKET_PATH_MAX_BYTES}"
    return None


def url(*, query_allowed: bool = True) -> Parser:
    """An http(s) URL; it may hold a token, so an error shows at most its scheme, host and port."""

    def parse(raw: str) -> Secret:
        try:
            parts = urlsplit(raw)
            name, port = parts.hostname, parts.port
        except ValueError as exc:  # e.g. a port that is no number, or a broken [IPv6] address
            raise Invalid from exc
        fine = (
            parts.scheme in ("http", "https")
            and bool(name)
            and is_host(name)  # type: ignore[arg-type]
            and port != 0
            and parts.username is None
            and all(33 <= ord(c) <= 126 for c in raw)
            and (query_allowed or not (parts.query or parts.fragment or raw.endswith(("?", "#"))))
        )
        if not fine:
            raise Invalid
        return Secret(raw)

    allowed = (
        "an http:// or https:// URL with a host name or IP address, an optional port from 1 to 65535, printable "
        "ASCII without spaces (percent-encode the rest), and no user:password@"
    )
    if not query_allowed:
        allowed += ", ?query or #fragment (/start and /fail are appended to it)"
    return Parser(parse, allowed, unset=Secret(""), shown=_url_shown)


def _url_shown(raw: str) -> str:
    """At most the scheme, host and port of a URL, or <hidden>."""
    try:
        parts = urlsplit(raw)
        name, port = parts.hostname, parts.port
    except ValueError:
        return "<hidden>"
    if not (parts.scheme and name and is_host(name) and parts.scheme.isalnum()):
        return "<hidden>"
    where = f"[{name}]" if ":" in name else name
    return repr(f"{parts.scheme}://{where}" + (f":{port}" if port is not None else "") + "/...")


def scrapyd_nodes() -> Parser:
    """SCRAPYD_NODES through parse_nodes: comma-separated base URLs, each optionally
    `=SLOTS`. A node without its own slots gets 0 here, SCRAPYD_NODE_SLOTS later (config.py). An
    error shows each URL as scheme://host:port at most: a path or user info may hold a token."""

    def parse(raw: str) -> tuple[Any, ...]:
        if not raw.isprintable() or any(ord(c) > 126 for c in raw):
            raise Invalid("printable ASCII only")  # the value is not shown then: only its length
        nodes = []
        problems = []
        for entry in (part.strip() for part in raw.split(",")):
            if not entry:
                continue
            try:
                url = entry.partition("=")[0].strip()
                parts = urlsplit(url)
                if not all(33 <= ord(c) <= 126 for c in url) or not is_host(parts.hostname or "") or parts.port == 0:
                    raise Invalid
                nodes.extend(parse_nodes(entry, default_slots=0))
            except ValueError:
                problems.append(f"{_node_shown(entry)}: not http(s)://host:port[=SLOTS] without user:password@, "
                                "query or fragment")  # fmt: skip
        urls = [node.url for node in nodes]
        twice = sorted({_node_shown(u) for u in urls if urls.count(u) > 1})
        if twice:
            problems.append(f"{', '.join(twice)} listed twice")
        if not nodes and not problems:
            raise Invalid("at least one node's URL is required")
        if problems:
            raise Invalid("; ".join(problems))
        return tuple(nodes)

    return Parser(parse, "comma-separated http(s)://host:port URLs of Scrapyd nodes, each optionally `=SLOTS` (how "
                         "many crawls it runs at once, 1 to 1000)", unset=(), shown=_nodes_shown)  # fmt: skip


def _node_shown(entry: str) -> str:
    """One node's URL as an error may show it: scheme://host:port, or <hidden>."""
    url, _, slots = entry.partition("=")
    shown = _url_shown(url.strip())
    if shown == "<hidden>":
        return shown
    shown = shown[1:-1].removesuffix("/...")
    if not slots:
        return shown
    return shown + "=" + (slots.strip()[:5] if slots.strip().isdigit() else "?")


def _nodes_shown(raw: str) -> str:
    return show(",".join(_node_shown(part.strip()) for part in raw.split(",") if part.strip()))


# Scrapyd nodes ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Node:
    url: str  # http(s)://host:port, no credentials
    slots: int = DEFAULT_SLOTS  # at most this many crawls (running + pending) at once: its max_proc


def parse_nodes(value: str, default_slots: int = DEFAULT_SLOTS) -> tuple[Node, ...]:
    """SCRAPYD_NODES: comma-separated base URLs, each optionally `=SLOTS` (how many crawls it runs
    at once, its max_proc), e.g. `http://scrapyd-1:6800=4,http://scrapyd-2:6800`. Every problem is
    reported at once, in one ValueError. The Scrapyd engine's own rules are in
    daemon/engines/scrapyd/rules.py; what a node is belongs to the settings, which parse it."""
    nodes: list[Node] = []
    problems: list[str] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        url, _, slots_text = entry.partition("=")
        url = url.strip().rstrip("/")
        slots = default_slots
        if slots_text:
            if not slots_text.strip().isdigit() or not 1 <= int(slots_text) <= 1000:
                problems.append(f"{url}: slots must be a whole number from 1 to 1000, not {slots_text.strip()[:20]!r}")
                continue
            slots = int(slots_text)
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            problems.append(f"{url[:80]!r} is not a URL")
            continue
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{url[:80]!r} is not an http(s)://host:port URL")
        elif parts.username or parts.password:
            problems.append(f"{parts.hostname}: credentials go in SCRAPYD_USERNAME/SCRAPYD_PASSWORD, not the URL")
        elif parts.query or parts.fragment:
            problems.append(f"{url[:80]!r}: a node's URL has no query or fragment")
        elif any(node.url == url for node in nodes):
            problems.append(f"{url[:80]!r} is listed twice")
        else:
            nodes.append(Node(url, slots))
    if not nodes and not problems:
        problems.append("at least one node's URL is required")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(nodes)
