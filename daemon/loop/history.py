"""The lock holder's copy of the history, and the plans decided from it.

The lock holder is the only writer of runs, so while it idles its copy stays true, and deciding
from it costs no round trip (issue "Performance": an idle daemon makes at most a couple of
statements a minute). Nothing runs on a copy: when the copy says something is due, the history is
read anew and decided again. The copy is re-read after every run, on (re)taking the lock, every
HISTORY_REFRESH_SECONDS (someone may edit the table with psql), and when something arrived on the
connection: a terminated backend or a server going away announces itself there, so a lost lock is
still noticed within a tick, then by the read that fails.

While PostgreSQL is unreachable, the copy is what the offline fail-safe decides from, and an
offline run's results are folded into it (`decision.fold`).

An idle tick decides nothing anew: a plan with nothing due stays the plan, moved to the tick's
`now` (`decision.moved`), while the copy and the cadences are the very ones it was decided from and
`now` stays within its quiet span (`decision.quiet_span`: up to the next due time or a pause's
end). A read, a fold, a reload or a pause gives a new copy or new cadences, so a new decision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime

from daemon.system.clock import Clock
from daemon.plan.decision import (
    Cadence,
    CrawlResult,
    Plan,
    SpiderHistory,
    decide_jobs,
    fold,
    moved,
    quiet_span,
)
from daemon.records.store import Store

HISTORY_REFRESH_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class Quiet:
    """A plan with nothing due (or only jobs whose crawls run), what it was decided from, and the
    span of `now` it holds over."""

    histories: list[SpiderHistory]
    cadences: Mapping[str, Cadence]
    plan: Plan
    since: datetime | None
    until: datetime | None

    def holds(self, histories: list[SpiderHistory], cadences: Mapping[str, Cadence], now: datetime,
              running: frozenset[str] = frozenset()) -> bool:  # fmt: skip
        return (
            histories is self.histories
            and running.issuperset(self.plan.due)  # due jobs hold it only while their crawls run
            and cadences is self.cadences
            and (self.since is None or self.since <= now)
            and (self.until is None or now < self.until)
        )


class HistoryCopy:
    """The copy, per job. Each plan is decided by the jobs' cadences as the caller gives them (the
    catalog's, with pauses): data in, plan out. The cadences are never changed in place once given
    (the catalog gives new ones whenever the jobs or the pauses change)."""

    def __init__(self, clock: Clock, default: Cadence) -> None:
        self.clock = clock
        self.default = default  # for a job without a cadence of its own
        self._histories: list[SpiderHistory] | None = None
        self._read_at = float("-inf")  # monotonic; -inf: read it again before deciding
        self._matched: tuple[object, object] | None = None  # (copy, jobs) found to name the same jobs
        self._quiet: Quiet | None = None  # the last plan, if nothing was due

    def invalidate(self) -> None:
        """The next plan reads the history anew (after a run, or on taking the lock)."""
        self._read_at = float("-inf")

    def plan(self, store: Store, now: datetime, jobs: Sequence[str], cadences: Mapping[str, Cadence], *,
             fresh: bool, running: frozenset[str] = frozenset()) -> tuple[Plan, list[SpiderHistory]]:  # fmt: skip
        """The plan of `jobs` at `now`, and the history it was decided from. `fresh`: read it.
        `running`: jobs with a crawl under way; their being due is no reason to read the history again
        (a crawl's end invalidates the copy)."""
        plan = None if fresh else self._from_copy(store, now, jobs, cadences, running)
        if plan is None or (plan.due and not running.issuperset(plan.due)):
            self._histories = store.histories(list(jobs))
            self._read_at = self.clock.monotonic()
            self._same_jobs(self._histories, jobs)  # checked with the read, not on the next tick
            plan = self._decide(now, cadences, running)
        return plan, list(self._histories or [])

    def _from_copy(self, store: Store, now: datetime, jobs: Sequence[str], cadences: Mapping[str, Cadence],
                   running: frozenset[str] = frozenset()) -> Plan | None:  # fmt: skip
        if (
            self._histories is None
            or not self._same_jobs(self._histories, jobs)  # the jobs changed (a reload)
            or self.clock.monotonic() - self._read_at >= HISTORY_REFRESH_SECONDS
            or not store.idle_and_quiet()
        ):
            return None
        return self._decide(now, cadences, running)

    def _same_jobs(self, histories: list[SpiderHistory], jobs: Sequence[str]) -> bool:
        if self._matched is not None and self._matched[0] is histories and self._matched[1] is jobs:
            return True  # the same copy and the same (immutable) names as last time
        same = [h.spider for h in histories] == list(jobs)
        self._matched = (histories, jobs) if same and isinstance(jobs, tuple) else None
        return same

    def _decide(self, now: datetime, cadences: Mapping[str, Cadence], running: frozenset[str] = frozenset()) -> Plan:
        """The copy's plan at `now`: the last one moved, while it holds; else decided anew."""
        histories = self._histories or []
        if self._quiet is not None and self._quiet.holds(histories, cadences, now, running):
            return moved(self._quiet.plan, now)
        plan = decide_jobs(histories, now, cadences, self.default)
        span = quiet_span(plan, histories, cadences, self.default, running)
        self._quiet = Quiet(histories, cadences, plan, *span) if span is not None else None
        return plan

    def offline_plan(self, now: datetime, cadences: Mapping[str, Cadence]) -> Plan | None:
        """What the fail-safe may run: decided from the last history read (None: never read one)."""
        if self._histories is None:
            return None
        return self._decide(now, cadences)

    def fold(self, results: Sequence[CrawlResult]) -> None:
        """Results PostgreSQL has not seen yet: an offline run's, or those of a run whose end went to the journal."""
        if self._histories is not None:
            self._histories = fold(self._histories, results)
