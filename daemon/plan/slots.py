"""Who gets a free slot (issue 20): pure rules, the loop's and the property test's.

A job with a crawl under way is never started again until it has ended (PostgreSQL refuses it too:
sql/016_runs_overlap.sql). Of the others that are due, the most overdue by its own interval comes
first (the plan's order), then the jobs asked for with run-now; the free slots go to the first ones
and the rest wait for the next slot that frees.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from daemon.plan.decision import Plan


def waiting(plan: Plan, running: Collection[str], asked: Sequence[str] = ()) -> tuple[str, ...]:
    """The jobs that would start now if slots were plenty: due (most overdue first), then asked for,
    never one with a crawl under way."""
    due = plan.most_overdue_first
    return tuple(name for name in (*due, *(a for a in asked if a not in due)) if name not in running)


def take_slots(candidates: Sequence[str], free: int | None) -> tuple[str, ...]:
    """The first `free` of `candidates` (None: the engine places them itself, all of them)."""
    return tuple(candidates) if free is None else tuple(candidates[: max(0, free)])
