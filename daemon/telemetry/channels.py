"""The alert channels: the Apprise configuration file of SCHEDULER_NOTIFY_CONFIG (read once at
start, like the other secret files: daemon/settings/notify_config.py), and what the daemon asks of it through the short-lived sender
daemon/telemetry/notify_apprise.py: which channels and tags it holds (`describe`), and one alert sent to the
channels an alert's tags choose (`send`). The daemon never imports Apprise; the configuration's text
reaches the sender on its stdin, never in argv, a log or an error.

`notify_test` is the `python -m daemon notify-test [TAG]` command: one test alert to each channel
(or to those of a tag), ALERT_WEBHOOK_URL being one more, untagged, channel; one line per channel,
delivered or why not; exit 1 if any failed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from daemon.settings.notify_config import NotifyConfig

DEADLINE_SECONDS = 60.0  # one sender process all told: every chosen channel in turn
# -I: no PYTHON* variables or user site; site-packages stay (Apprise lives there).
SENDER = [sys.executable, "-I", str(Path(__file__).with_name("notify_apprise.py"))]



@dataclasses.dataclass(frozen=True)
class Channel:
    name: str  # scheme, or scheme://host[:port] where the host is a server's name: never a token
    tags: tuple[str, ...]
    key: str = ""  # a digest of its URL: its identity in the outbox


@dataclasses.dataclass(frozen=True)
class Delivery:
    channel: int  # its place in the configuration
    name: str
    ok: bool
    why: str


class ChannelsError(Exception):
    """The configuration could not be read by Apprise (the message names lines, never their text)."""


def _run(task: dict[str, Any], timeout: float = DEADLINE_SECONDS) -> list[str]:
    """The sender's output lines. Its stderr is dropped: a traceback could quote a URL."""
    import subprocess  # only when an alert is sent

    data = json.dumps({**task, "deadline": timeout}).encode()
    try:
        done = subprocess.run(SENDER, input=data, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              timeout=timeout + 5, start_new_session=True, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return []
    return [line for line in done.stdout.decode(errors="replace").splitlines() if line.startswith("{")]


def describe(config: NotifyConfig) -> tuple[Channel, ...]:
    """The channels of the configuration, in order; ChannelsError when Apprise cannot read a line
    or finds no channel."""
    lines = _run({"op": "describe", "config": config.text.reveal()})
    if not lines:
        raise ChannelsError("Apprise could not read it")
    found = json.loads(lines[-1])
    if found["bad_lines"]:
        raise ChannelsError("Apprise cannot read line(s) " + ", ".join(map(str, found["bad_lines"])))
    if not found["channels"]:
        raise ChannelsError("it holds no channel")
    return tuple(Channel(c["name"], tuple(c["tags"]), c["key"]) for c in found["channels"])


def send(config: NotifyConfig, title: str, body: str, *, tags: tuple[str, ...] = (), level: str = "error",
         only: tuple[int, ...] | None = None) -> list[Delivery]:  # fmt: skip
    """One alert to the channels `tags` choose (all when none; untagged channels always), or to the
    channels `only` lists; one Delivery per channel tried. A channel the sender did not report (it was
    cut by its deadline) is missing: the caller counts it as failed."""
    task = {"op": "send", "config": config.text.reveal(), "title": one_line(title), "body": body,
            "tags": list(tags), "level": level, "only": None if only is None else list(only)}  # fmt: skip
    return [Delivery(d["channel"], d["name"], d["ok"], d["why"]) for d in map(json.loads, _run(task))]


def one_line(text: str) -> str:
    """A title as one line: no CR, LF or other control character can start an e-mail header."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:200]


def chosen(channel: Channel, tags: tuple[str, ...]) -> bool:
    """The sender's rule: an alert without tags goes everywhere; an untagged channel gets every alert."""
    return not tags or not channel.tags or bool(set(channel.tags) & set(tags))


def notify_test(settings: Any, args: Any) -> tuple[int, list[str]]:
    """`python -m daemon notify-test [TAG]`: one test alert to each channel (or to TAG's). Returns
    the exit code (1 if any failed, or none was chosen; else 0) and one line per channel, delivered
    or why not, for daemon/__main__.py to print."""
    from daemon.system.errors import ConfigError
    from daemon.telemetry.notify import Notifier, where

    tag = args.tag
    title = "Test alert from the persistent scheduler"
    body = "This is a test alert sent by `python -m daemon notify-test`: this channel receives the scheduler's alerts."
    results: list[tuple[str, bool, str]] = []
    config: NotifyConfig | None = settings.notify_config
    if config is not None:
        try:
            channels = describe(config)
        except ChannelsError as exc:
            raise ConfigError([f"SCHEDULER_NOTIFY_CONFIG={str(config.path)!r} is not allowed: {exc}"]) from None
        picked = tuple(i for i, c in enumerate(channels) if tag is None or tag in c.tags)
        if picked:
            got = {d.channel: d for d in send(config, title, body, tags=(), level="warning", only=picked)}
            for i in picked:
                d = got.get(i)
                results.append((f"#{i + 1} {channels[i].name}", d is not None and d.ok,
                                "cut by its deadline" if d is None else d.why))  # fmt: skip
    if settings.alert_webhook_url and tag is None:
        error = Notifier.post_once(settings.alert_webhook_url,
                                   json.dumps({"text": f"{title}: {body}", "kind": "notify_test"}).encode())
        results.append((f"ALERT_WEBHOOK_URL {where(settings.alert_webhook_url.reveal())}", error is None, error or ""))
    if not results:
        return 1, [f"no channel has the tag {tag!r}" if tag else
                   "no channel: set SCHEDULER_NOTIFY_CONFIG (an Apprise configuration file) or ALERT_WEBHOOK_URL"]  # fmt: skip
    lines = [f"{name}: delivered" if ok else f"{name}: not delivered: {why or 'no reason given'}"
             for name, ok, why in results]  # fmt: skip
    return (0 if all(ok for _, ok, _ in results) else 1), lines
