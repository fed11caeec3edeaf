"""A hostile client for the endpoint's tests and the benchmark: N connections that each send half a
request and wait, from many loopback addresses (127.0.0.2 and up: Linux routes all of 127/8 to lo),
re-opened a second after the server cuts them, for a fixed time. Runs as its own process so its work
does not slow the well-behaved client measured beside it:

    python -m tests.flood PORT CONNECTIONS SECONDS [PER_ADDRESS]

It prints one JSON line at the end: connections opened, cut by the server, the most held at once.
Beside it, `fetch` is the well-behaved client and `proc_figures` what the daemon holds.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import resource
import selectors
import socket
import sys
import time
from pathlib import Path

HALF_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: flood\r\n"  # no blank line: never ends
REOPEN_AFTER_S = 1.0


def fetch(port: int, path: str, auth: str | None = None, source: str | None = None) -> tuple[int, float]:
    """A well-behaved client: one GET on a connection of its own (from `source`, a loopback address,
    when given); its status (0: no answer) and seconds."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers={"Authorization": auth} if auth else {})
        response = conn.getresponse()
        response.read()
        status = response.status
    except OSError:
        status = 0
    finally:
        conn.close()
    return status, time.perf_counter() - started


def proc_figures(pid: int) -> tuple[int, float, int]:
    """A process's threads, resident MiB and open file descriptors."""
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))  # fmt: skip
    return len(os.listdir(f"/proc/{pid}/task")), rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def raise_fd_limit(wanted: int) -> None:
    """The soft limit of open files up to `wanted` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def flood(port: int, connections: int, seconds: float, per_address: int = 30) -> dict[str, int]:
    raise_fd_limit(connections + 256)
    sel = selectors.DefaultSelector()
    addresses = [f"127.0.0.{2 + n // per_address}" for n in range(connections)]
    reopen_at = dict.fromkeys(range(connections), 0.0)  # slot -> when to (re)open it
    figures = {"opened": 0, "cut": 0, "refused": 0, "held_max": 0}
    held = 0
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        for slot, at in list(reopen_at.items()):
            if at > now:
                continue
            del reopen_at[slot]
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.bind((addresses[slot], 0))
                if sock.connect_ex(("127.0.0.1", port)) not in (0, errno.EINPROGRESS):
                    raise OSError("refused")
            except OSError:
                sock.close()
                figures["refused"] += 1
                reopen_at[slot] = now + REOPEN_AFTER_S
                continue
            sel.register(sock, selectors.EVENT_WRITE, slot)
        for key, events in sel.select(timeout=0.05):
            sock, slot = key.fileobj, key.data
            if events & selectors.EVENT_WRITE:  # connected (or failed): send the half request once
                try:
                    sock.send(HALF_REQUEST)
                except OSError:
                    sel.unregister(sock)
                    sock.close()
                    figures["refused"] += 1
                    reopen_at[slot] = now + REOPEN_AFTER_S
                    continue
                figures["opened"] += 1
                held += 1
                figures["held_max"] = max(figures["held_max"], held)
                sel.modify(sock, selectors.EVENT_READ, slot)
                continue
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:  # the server cut it (or answered and closed): open it again a little later
                sel.unregister(sock)
                sock.close()
                held -= 1
                figures["cut"] += 1
                reopen_at[slot] = now + REOPEN_AFTER_S
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    figures["held_at_end"] = held
    return figures


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(flood(args[0], args[1], float(args[2]), *(args[3:4] or [30]))), flush=True)
