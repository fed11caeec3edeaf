"""The jobs file's alert keys (issue 22), checked apart from the other rules (daemon/jobs/rules.py):
`notify` (the channels' tags its alerts go to), `alert_after` (failures in a row before one is
told) and `baseline` (the thresholds of its verdicts, or false). Each parser gives the value, or
INVALID; `ALLOWED` says, per key, what a problem line says is allowed."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from daemon.jobs.jobfile import BASELINE, TAG

KEYS = ("notify", "alert_after", "baseline")
INVALID = object()
MAX_ALERT_AFTER = 1000

ALLOWED = {
    "notify": 'a list of channel tags such as ["oncall", "team-data"] (each 1-64 letters, digits, _ . -)',
    "alert_after": f"a whole number from 1 to {MAX_ALERT_AFTER} (failures in a row before an alert)",
    "baseline": "false, or a table { items_below = 0.5, duration_above = 3.0 }: items_below above 0 and at most 1, "
                "duration_above at least 1, each optional",
}  # fmt: skip


def notify(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(t, str) and TAG.fullmatch(t) for t in value):
        return tuple(dict.fromkeys(value))
    return INVALID


def alert_after(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ALERT_AFTER:
        return value
    return INVALID


def baseline(value: Any) -> Any:
    """None (off) for false, the two thresholds (items_below, duration_above) for a table."""
    if value is False:
        return None
    if not isinstance(value, dict) or not set(value) <= {"items_below", "duration_above"}:
        return INVALID
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value.values()):
        return INVALID
    items_below, duration_above = value.get("items_below", BASELINE[0]), value.get("duration_above", BASELINE[1])
    if not (0 < items_below <= 1 and duration_above >= 1):
        return INVALID
    return (float(items_below), float(duration_above))


PARSERS: dict[str, Callable[[Any], Any]] = {"notify": notify, "alert_after": alert_after, "baseline": baseline}


def unknown_tags(tags: tuple[str, ...], known: frozenset[str] | None) -> list[str]:
    """The problem text of each tag no channel carries (none when the channels are not known here)."""
    if known is None:
        return []
    listed = ", ".join(sorted(known)) or "none: SCHEDULER_NOTIFY_CONFIG has no tagged channel"
    return [f"notify={tag!r} is not allowed: a tag of the alert channels ({listed})" for tag in tags if tag not in known]
