"""Alerts raised while PostgreSQL is down, kept in the state directory (`alerts-pending.jsonl`,
mode 0600 in the daemon's 0700 directory) until the outbox (daemon/telemetry/outbox.py) can write them: a
daemon that dies or restarts meanwhile loses none. Each alert carries a key the outbox writes with
it, so a file left behind by a crash after its alerts were written adds nothing twice.

A failed crawl's alert never comes here: it goes with the crawl's record through the run journal
(daemon/records/journal.py), and is written by its replay."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE_NAME = "alerts-pending.jsonl"


class AlertSpool:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME

    def append(self, alerts: list[dict[str, Any]]) -> None:
        """Add `alerts` to the file, on disk before returning."""
        if not alerts:
            return
        data = "".join(json.dumps(alert, default=str) + "\n" for alert in alerts).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def take(self) -> list[dict[str, Any]]:
        """What the file holds (it stays until `clear`); a line cut short by a crash is skipped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        alerts = []
        for line in text.splitlines():
            try:
                alerts.append(json.loads(line))
            except ValueError:
                continue
        return alerts

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
