"""Taking over: what a daemon that has just taken the runner lock settles before it decides.

Runs left 'running' by a daemon that stopped are failed as stale (their spiders are due again),
once no such run's lease is fresh (its daemon may still be alive and stopping its crawls), and the
journals of runs made while PostgreSQL was unreachable are written first (the other way round, a
journaled end would find its run failed). A standby writes only its own journal: those of daemons
that are gone are the lock holder's to write.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from daemon.leadership import identity
from daemon.records.journal import Journal, Pending
from daemon.telemetry.logs import Once
from daemon.records.store import Store

log = structlog.get_logger("daemon.scheduler")

# A run's lease younger than this (its daemon refreshes it every second while crawls run) means
# its daemon may be alive: the run is not failed as stale yet, unless its owner is provably dead.
LEASE_SECONDS = 10.0


class TakeOver:
    def __init__(self, journal: Journal, *, keep_remote: bool = False) -> None:
        self.journal = journal
        # SCHEDULER_ENGINE=scrapyd: remote crawls left 'running' outlive their daemon; they are
        # re-attached (Batches.reattach), never failed as stale.
        self.keep_remote = keep_remote
        self.me = identity.this_process()
        self.notices = Once(log)

    def recover(self, store: Store, now: datetime) -> bool:
        """Deal with runs left 'running' and with the journals; False while a run may still be alive."""
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
        self._replay(store, self.journal.pending())
        runs, spiders = store.mark_stale(now, keep_remote=True) if self.keep_remote else store.mark_stale(now)
        if runs or spiders:
            log.warning(
                "stale_runs_failed",
                message="Runs left 'running' by a daemon that stopped were marked failed; their spiders are due again",
                run_ids=runs,
                spiders=sorted({s for _, s in spiders}),
            )
        return True

    def standing_by(self, store: Store) -> None:
        """Runs this daemon made while PostgreSQL was unreachable are written now, not when (if ever)
        it holds the lock again: a standby may stay one until it is stopped."""
        self._replay(store, self.journal.own_pending())

    def _replay(self, store: Store, pending: Pending | None) -> None:
        if pending is None:
            return
        runs, finishes = pending.runs(), pending.finishes()
        written = store.replay(runs, finishes)
        pending.done()
        log.info(
            "journal_replayed",
            message="Runs recorded while PostgreSQL was unreachable were written to it",
            runs=len(runs),
            finished_runs=len(finishes),
            records_written=written,
        )
