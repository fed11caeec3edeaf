"""SCHEDULER_JITTER_MINUTES: hold each regular run back by a random delay, fixed per due time.

Never a catch-up (what is due at the first decision of a new term as runner), a first run, a retry
or a run-now request: those run at once. The rule is `decision.hold_back`, a pure function; this
object owns the random draws and knows which decision is a term's first.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

import structlog

from daemon.plan.decision import Plan, hold_back

log = structlog.get_logger("daemon.scheduler")


class Jitter:
    def __init__(
        self, most: Callable[[str], timedelta], draw: Callable[[float], float] = lambda high: random.uniform(0, high)
    ) -> None:
        self.most = most  # a job's largest delay (its `jitter`; 0: none)
        self.draw = draw  # seconds in [0, high]; a seam for tests
        self._delays: dict[tuple[str, datetime], timedelta] = {}
        self._first_decision = True

    def new_term(self) -> None:
        """This daemon has just taken the runner lock: its next decision is a catch-up."""
        self._first_decision = True

    def hold_back(
        self, plan: Plan, due: Sequence[str], requested: Collection[str]
    ) -> tuple[tuple[str, ...], datetime | None]:
        """What runs now of `due`, and when the earliest run held back becomes due (or None)."""
        first, self._first_decision = self._first_decision, False
        if first or not due:
            return tuple(due), None
        due_set = set(due)
        for p in plan.spiders:
            key = (p.spider, p.due_at)
            if p.spider in due_set and p.reason == "interval" and p.spider not in requested and p.due_at is not None \
                    and key not in self._delays and self.most(p.spider):  # fmt: skip
                self._delays[key] = timedelta(seconds=self.draw(self.most(p.spider).total_seconds()))  # type: ignore[index]
                log.info("run_jittered", spider=p.spider, delay_s=round(self._delays[key].total_seconds(), 1))  # type: ignore[index]
        return hold_back(plan, due, requested, self._delays)
