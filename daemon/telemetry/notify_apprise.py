"""One task for the alert channels of SCHEDULER_NOTIFY_CONFIG, in a short-lived child process of
daemon/telemetry/channels.py: only this process ever imports Apprise (its ~180 plugins, requests, the e-mail
and TLS stacks), so the idle daemon does not grow by a byte with channels configured.

Run as `python -I notify_apprise.py` (the environment's site-packages, none of its PYTHON*
variables). Reads a JSON task on stdin, never from argv (which `ps` shows to everyone): the
configuration's URLs carry tokens.

- {"op": "describe", "config": TEXT}: prints {"channels": [{"name", "key", "tags"}], "bad_lines": [N, ...]}
  (key: a digest of the URL, the channel's identity in the outbox).
- {"op": "send", "config": TEXT, "title", "body", "tags": [...], "only": [i, ...] | null,
   "deadline": s}: sends to each chosen channel in turn and prints one JSON line per channel,
   {"channel": i, "ok": bool, "why": str}.

A channel is chosen when the alert has no tags, the channel has none ("untagged channels get every
alert"), or they share one; "only" narrows to those indexes (the retries of the failed ones).

Nothing printed names a URL: a channel's name is its scheme, and its host only for the schemes whose
host is a server's name (Telegram's and Discord's hosts are tokens). Apprise's own log messages quote
URLs, so they are never passed on: a failure's "why" is Apprise's message with the channel's URL parts
removed.
"""

import hashlib
import json
import logging
import re
import signal
import sys
from urllib.parse import unquote, urlsplit

# Schemes whose host is the name of a server, safe to show (scheme://host:port).
HOST_SHOWN = {"json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos", "ntfy", "ntfys", "gotify",
              "gotifys", "matrix", "matrixs", "mmost", "mmosts", "rocket", "rockets", "apprise", "apprises"}
LINE = re.compile(r"on line (\d+)")
WHY_CHARS = 200


class _Kept(logging.Handler):
    """Apprise's log records of this process, to tell a failure's cause and a config's bad lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def name_of(server) -> str:
    url = server.url(privacy=True)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in HOST_SHOWN and parts.hostname:
        return f"{scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return scheme


def scrubbed(message: str, url: str) -> str:
    """Apprise's message without the pieces of the channel's URL (user, password, host, path
    segments, query values) and without anything that looks like a URL."""
    parts = urlsplit(url)
    pieces = [parts.username, parts.password, parts.hostname, *parts.path.split("/"),
              *(kv.partition("=")[2] for kv in parts.query.split("&"))]
    text = re.sub(r"\S+://\S*", "<url>", message)
    for piece in sorted({unquote(p) for p in pieces if p and len(p) >= 3} | {p for p in pieces if p and len(p) >= 3},
                        key=len, reverse=True):
        text = text.replace(piece, "<hidden>")
    return " ".join(text.split())[:WHY_CHARS]


def load(config: str, kept: _Kept):
    import apprise

    found = apprise.AppriseConfig()
    found.add_config(config)
    channels = apprise.Apprise()
    channels.add(found)
    servers = list(channels)  # the configuration is parsed here, its problems logged
    bad = sorted({int(m.group(1)) for r in kept.records for m in [LINE.search(r.getMessage())]
                  if m and not r.getMessage().lower().startswith(("detected", "loaded"))})
    return servers, bad


def key_of(server) -> str:
    """A channel's lasting identity in the outbox: a digest of its URL, which tells nothing of it."""
    return hashlib.sha256(server.url().encode()).hexdigest()[:16]


def chosen(tags: set[str], wanted: list[str]) -> bool:
    return not wanted or not tags or bool(tags & set(wanted))


def main() -> None:
    task = json.loads(sys.stdin.buffer.read())
    signal.alarm(int(task.get("deadline", 60)))
    kept = _Kept()
    logger = logging.getLogger("apprise")
    logger.handlers[:] = [kept]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    servers, bad = load(task["config"], kept)
    if task["op"] == "describe":
        print(json.dumps({"channels": [{"name": name_of(s), "key": key_of(s), "tags": sorted(str(t) for t in s.tags)}
                                       for s in servers],
                          "bad_lines": bad}))
        return
    import apprise

    only = task.get("only")
    for index, server in enumerate(servers):
        if only is not None and index not in only:
            continue
        if not chosen({str(t) for t in server.tags}, task.get("tags") or []):
            continue
        kept.records.clear()
        try:
            kinds = {"error": apprise.NotifyType.FAILURE, "info": apprise.NotifyType.SUCCESS}
            ok = bool(server.notify(body=task["body"], title=task["title"],
                                    notify_type=kinds.get(task.get("level"), apprise.NotifyType.WARNING)))
            why = ""
        except Exception as exc:  # a plugin's bug is this channel's failure, not the others'
            ok, why = False, type(exc).__name__
        if not ok and not why:
            failures = [r.getMessage() for r in kept.records if r.levelno >= logging.WARNING]
            why = scrubbed(failures[-1], server.url()) if failures else "not delivered"
        print(json.dumps({"channel": index, "name": name_of(server), "ok": ok, "why": why}), flush=True)


if __name__ == "__main__":
    main()
