"""One attempt at one notification, in a short-lived child process of daemon/telemetry/notify.py: the daemon
itself never loads Python's HTTP and TLS stack (urllib, http.client, email, ssl with the system's
OpenSSL and CA store), which it would otherwise keep resident for its whole life (7-8 MiB).

Run as `python -I -S notify_send.py` (standard library only, nothing from the environment's Python
settings). Reads {"url", "body", "timeout", "deadline"} as JSON on stdin, never from argv (which
`ps` shows to everyone): the URL often carries a token. POSTs once and prints one line, `ok` or
what went wrong ("HTTP 500", "TimeoutError", "URLError", ...); never the URL.
"""

import http.client
import json
import signal
import sys
import urllib.error
import urllib.request


def main() -> None:
    task = json.loads(sys.stdin.buffer.read())
    # The timeout bounds each socket operation, not the whole: a receiver dripping bytes, or a
    # daemon gone without waiting for the answer, must not keep this process alive.
    signal.alarm(int(task["deadline"]))
    request = urllib.request.Request(task["url"], data=task["body"].encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "persistent-scheduler"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=task["timeout"]) as response:
            response.read()
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts,
        # and a receiver that answers with something that is not HTTP (BadStatusLine)
        print(f"HTTP {exc.code}" if isinstance(exc, urllib.error.HTTPError) else type(exc).__name__)
        return
    print("ok")


if __name__ == "__main__":
    main()
