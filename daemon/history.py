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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from daemon.clock import Clock
from daemon.decision import Cadence, CrawlResult, Plan, SpiderHistory, decide_jobs, fold
from daemon.store import Store

HISTORY_REFRESH_SECONDS = 300.0


class HistoryCopy:
    """The copy, per job. Each plan is decided by the jobs' cadences as the caller gives them (the
    catalog's, with pauses): data in, plan out."""

    def __init__(self, clock: Clock, default: Cadence) -> None:
        self.clock = clock
        self.default = default  # for a job without a cadence of its own
        self._histories: list[SpiderHistory] | None = None
        self._read_at = float("-inf")  # monotonic; -inf: read it again before deciding

    def invalidate(self) -> None:
        """The next plan reads the history anew (after a run, or on taking the lock)."""
        self._read_at = float("-inf")

    def plan(self, store: Store, now: datetime, jobs: Sequence[str], cadences: Mapping[str, Cadence], *,
             fresh: bool) -> tuple[Plan, list[SpiderHistory]]:  # fmt: skip
        """The plan of `jobs` at `now`, and the history it was decided from. `fresh`: read it."""
        plan = None if fresh else self._from_copy(store, now, jobs, cadences)
        if plan is None or plan.due:
            self._histories = store.histories(list(jobs))
            self._read_at = self.clock.monotonic()
            plan = decide_jobs(self._histories, now, cadences, self.default)
        return plan, list(self._histories or [])

    def _from_copy(self, store: Store, now: datetime, jobs: Sequence[str], cadences: Mapping[str, Cadence]) -> Plan | None:
        if (
            self._histories is None
            or [h.spider for h in self._histories] != list(jobs)  # the jobs changed (a reload)
            or self.clock.monotonic() - self._read_at >= HISTORY_REFRESH_SECONDS
            or not store.idle_and_quiet()
        ):
            return None
        return decide_jobs(self._histories, now, cadences, self.default)

    def offline_plan(self, now: datetime, cadences: Mapping[str, Cadence]) -> Plan | None:
        """What the fail-safe may run: decided from the last history read (None: never read one)."""
        if self._histories is None:
            return None
        return decide_jobs(self._histories, now, cadences, self.default)

    def fold(self, results: Sequence[CrawlResult]) -> None:
        """Results PostgreSQL has not seen yet: an offline run's, or those of a run whose end went to the journal."""
        if self._histories is not None:
            self._histories = fold(self._histories, results)
