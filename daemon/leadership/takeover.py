"""Taking over: what a daemon that has just taken the runner lock settles before it decides.

Runs left 'running' by a daemon that stopped are failed as stale (their spiders are due again),
once no such run's lease is fresh (its daemon may still be alive and stopping its crawls), and the
journals of runs made while PostgreSQL was unreachable are written first (the other way round, a
journaled end would find its run failed). A standby writes only its own journal: those of daemons
that are gone are the lock holder's to write.

A daemon that re-takes the lock while runs of its offline fail-safe are still under way does not wait
for them: the journal's ended runs are written, then (after the stale ones are failed) its runs under
way are adopted, written 'running' in a second transaction and recorded in PostgreSQL from then on
(daemon/loop/runs.py). The journal is removed only after both: a daemon that dies between them leaves
it whole, and the next lock holder's replay writes what the first did not (journal ids are unique),
its runs under way cut as stale. A transaction refused leaves the runs journaled.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import structlog

from daemon.leadership import identity
from daemon.records.journal import Journal, Pending
from daemon.telemetry.logs import Once
from daemon.records.store import Store

log = structlog.get_logger("daemon.scheduler")

# A run's lease younger than this (its daemon refreshes it every second while crawls run) means
# its daemon may be alive: the run is not failed as stale yet, unless its owner is provably dead.
LEASE_SECONDS = 10.0


class Adopting(Protocol):
    """The fail-safe's runs under way (daemon.loop.runs.OpenRuns), to adopt once the lock is ours."""

    def journaled(self) -> frozenset[str]: ...  # their journal ids

    def adopt(self, adopted: Mapping[str, tuple[int, Mapping[Any, int]]]) -> None: ...


class TakeOver:
    def __init__(self, journal: Journal, *, keep_remote: bool = False) -> None:
        self.journal = journal
        # SCHEDULER_ENGINE=scrapyd: remote crawls left 'running' outlive their daemon; they are
        # re-attached (Batches.reattach), never failed as stale.
        self.keep_remote = keep_remote
        self.me = identity.this_process()
        self.notices = Once(log)

    def recover(self, store: Store, now: datetime, adopting: Adopting | None = None) -> bool:
        """Deal with runs left 'running' and with the journals; False while a run may still be alive.
        `adopting`: this daemon's fail-safe runs under way, adopted once the rest is settled."""
        # A run of our own left 'running' is over (no run is in progress while this runs): its end,
        # if the database refused it, is in our journal.
        alive = [
            run_id
            for run_id, owner, age in store.running_runs()
            if age < LEASE_SECONDS and owner != self.me and not identity.certainly_dead(owner)
        ]
        if alive:
            self.notices.say(
                "waiting_for_previous_runner",
                f"A run is still 'running' with a fresh lease; waiting up to {LEASE_SECONDS:g} s "
                "for its daemon to stop its crawls before taking over",
            )
            return False
        self.notices.forget("waiting_for_previous_runner")
        pending = self.journal.pending()
        under_way = self._replay(store, pending, adopting.journaled() if adopting is not None else frozenset())
        runs, spiders = store.mark_stale(now, keep_remote=True) if self.keep_remote else store.mark_stale(now)
        if runs or spiders:
            log.warning(
                "stale_runs_failed",
                message="Runs left 'running' by a daemon that stopped were marked failed; their spiders are due again",
                run_ids=runs,
                spiders=sorted({s for _, s in spiders}),
            )
        if under_way and adopting is not None:
            adopting.adopt(store.adopt(under_way))  # after mark_stale: these rows are 'running' and ours
        if pending is not None:
            pending.done()  # only now: until both transactions are in, the journal holds every run
        return True

    def standing_by(self, store: Store) -> None:
        """Runs this daemon made while PostgreSQL was unreachable are written now, not when (if ever)
        it holds the lock again: a standby may stay one until it is stopped."""
        pending = self.journal.own_pending()
        self._replay(store, pending)
        if pending is not None:
            pending.done()

    def _replay(self, store: Store, pending: Pending | None,
                under_way: frozenset[str] = frozenset()) -> list[dict[str, Any]]:  # fmt: skip
        """Write the journal but the runs `under_way` (journal ids), and return those (to adopt)."""
        if pending is None:
            return []
        runs, finishes = pending.runs(), pending.finishes()
        ended = [run for run in runs if run["run"] not in under_way]
        written = store.replay(ended, finishes)
        log.info(
            "journal_replayed",
            message="Runs recorded while PostgreSQL was unreachable were written to it",
            runs=len(ended),
            finished_runs=len(finishes),
            records_written=written,
            **({"under_way": len(runs) - len(ended)} if len(ended) < len(runs) else {}),
        )
        return [run for run in runs if run["run"] in under_way]
