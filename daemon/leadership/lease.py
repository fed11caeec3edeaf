"""The lease: which daemon runs the spiders, held as a PostgreSQL advisory lock plus a holder record.

Only the daemon holding the runner lock (a session-level advisory lock: it lives as long as its
connection) runs spiders. This object owns that connection, the lock, the holder record, the settle
wait and the checks made while crawls run. The rest of the daemon never reads its fields: it asks
questions (`take`, `runner_store`, `settle_left`, `may_run_offline`) and hears a new term through
`on_taken`, as a leader-election client hears "you lead now".

The daemon's role is one explicit state with every transition in `TRANSITIONS`:

    STANDBY      no lock; another daemon (or none yet) runs the spiders
    TAKING_OVER  lock taken; runs left 'running' by others are being dealt with
    RESUMING     lock re-taken by the daemon that was running the spiders (its journal and its
                 right to the offline fail-safe carry over)
    SETTLING     lock taken from a holder that may still be running crawls: wait before running
    LEADING      runs the spiders
    OFFLINE      was LEADING and lost PostgreSQL: may run what is due from its last read (the
                 design's fail-safe), recording into the journal
    GIVING_WAY   another daemon took the lock or failed our run mid-crawl: our crawls are killed
                 now (`giving_way` is the runner's abort), then STANDBY

Never two runners, also across a lost lock connection: while crawls run, the runner proves its
lock alive and refreshes the run's lease every PROBE_SECONDS, re-taking the lock or giving way; a
daemon taking the lock from a holder that may still be alive settles for SETTLE_SECONDS first.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Sequence

import psycopg2
import structlog

from daemon.records import db
from daemon.leadership import identity
from daemon.system.clock import Clock
from daemon.telemetry.logs import Once
from daemon.records.store import Store

log = structlog.get_logger("daemon.scheduler")

PROBE_SECONDS = 1.0
# Offline, PostgreSQL is probed more often: when it comes back, this runner must re-take the lock
# before a freshly started daemon (whose start-up retries are 0.25 s apart) can.
OFFLINE_PROBE_SECONDS = 0.1
SETTLE_SECONDS = 5.0


class Role(enum.Enum):
    STANDBY = "standby"
    TAKING_OVER = "taking_over"
    RESUMING = "resuming"
    SETTLING = "settling"
    LEADING = "leading"
    OFFLINE = "offline"
    GIVING_WAY = "giving_way"


R = Role
TRANSITIONS: dict[Role, frozenset[Role]] = {
    R.STANDBY: frozenset({R.TAKING_OVER}),
    R.TAKING_OVER: frozenset({R.SETTLING, R.LEADING, R.STANDBY}),
    R.RESUMING: frozenset({R.LEADING, R.OFFLINE}),
    R.SETTLING: frozenset({R.LEADING, R.STANDBY}),
    R.LEADING: frozenset({R.OFFLINE, R.GIVING_WAY, R.STANDBY}),
    # From OFFLINE: the lock again after a reconnect (RESUMING, or TAKING_OVER when another daemon
    # held it meanwhile), re-taken mid-run (LEADING), or refused (STANDBY, GIVING_WAY mid-run).
    R.OFFLINE: frozenset({R.TAKING_OVER, R.RESUMING, R.LEADING, R.STANDBY, R.GIVING_WAY}),
    R.GIVING_WAY: frozenset({R.STANDBY}),
}
HOLDS_LOCK = frozenset({R.TAKING_OVER, R.RESUMING, R.SETTLING, R.LEADING})


def may_still_run(previous_holder: str | None) -> bool:
    """The lock's previous holder, as recorded, may be alive and running spiders without the lock."""
    return (
        previous_holder is not None
        and previous_holder != identity.this_process()
        and not identity.certainly_dead(previous_holder)
    )


class Lease:
    def __init__(
        self,
        connect: Callable[[float | None], Store],
        clock: Clock,
        *,
        store: Store | None = None,
        on_taken: Callable[[], None] = lambda: None,
        where: dict[str, object] | None = None,
    ) -> None:
        """connect(timeout): a new Store (timeout None: the settings' own). on_taken: called on each
        new term, when this daemon has just taken the lock (not when it re-takes it mid-run)."""
        self._connect = connect
        self.clock = clock
        self._store = store
        self.on_taken = on_taken
        self.role = Role.STANDBY
        self.giving_way = threading.Event()  # the runner's abort: set while GIVING_WAY
        self.me = identity.this_process()
        self._settle_until = float("-inf")  # monotonic
        self._run_id: int | None = None  # the database run in progress (None: none, or offline)
        self._also: tuple[int, ...] = ()  # the other runs under way at once (an overlapping engine)
        self._offline_run = False
        self._last_probe = float("-inf")
        self.notices = Once(log)
        self.where = where or {}  # host and port, for the log line of a new connection

    # ----------------------------------------------------------------- questions
    @property
    def may_run_offline(self) -> bool:
        return self.role is Role.OFFLINE

    @property
    def leading(self) -> bool:
        return self.role is Role.LEADING

    @property
    def holds_lock(self) -> bool:
        """The runner lock is ours (leading or about to): only then are the alerts delivered."""
        return self.role in HOLDS_LOCK

    def store(self) -> Store:
        """The connection, opened when there is none (a standby needs one to try the lock)."""
        if self._store is None:
            self._store = self._connect(None)
            log.info("database_connected", **self.where)
        return self._store

    def runner_store(self) -> Store | None:
        """The store to record runs on, or None while the runner lock is not ours."""
        if self._store is not None and self.role in HOLDS_LOCK:
            return self._store
        return None

    def must_recover(self) -> bool:
        return self.role in (Role.TAKING_OVER, Role.RESUMING)

    # ----------------------------------------------------------------- the transitions
    def _move(self, to: Role, **fields: object) -> None:
        if to not in TRANSITIONS[self.role]:
            raise RuntimeError(f"runner role: no transition from {self.role.value} to {to.value}")
        log.debug("runner_role_changed", previous=self.role.value, role=to.value, **fields)
        self.role = to
        if to is Role.GIVING_WAY:
            self.giving_way.set()

    def take(self, store: Store) -> bool:
        """Hold the runner lock, taking it if it is free; False while another daemon holds it."""
        if self.role in HOLDS_LOCK:
            return True
        held, previous = store.take_runner_lock(self.me)
        if not held:
            if self.role is not Role.STANDBY:
                self._move(Role.STANDBY)
            self.notices.say("standby", "Another scheduler holds the runner lock; standing by to take over "
                                        "when it goes away")  # fmt: skip
            return False
        if may_still_run(previous):
            # The last holder on record did not stop cleanly and is not provably dead: it may still
            # be running spiders, having lost its lock connection (a terminated backend, PostgreSQL
            # restarted) or having run them offline while PostgreSQL was away. Give it time to
            # notice that it lost the lock and kill its crawls before anything runs here. A holder
            # that stopped cleanly, or died on this machine (its crawls die with it), costs no wait.
            self._settle_until = self.clock.monotonic() + SETTLE_SECONDS
            log.info("runner_lock_settling", settle_s=SETTLE_SECONDS, previous_holder=previous,
                     message=f"Waiting {SETTLE_SECONDS:g} s for the previous runner to stop its crawls")  # fmt: skip
        resuming = self.role is Role.OFFLINE and previous == self.me
        self._move(Role.RESUMING if resuming else Role.TAKING_OVER, previous_holder=previous)
        self.notices.forget("standby")
        log.info("runner_lock_acquired", message="This scheduler now runs the spiders")
        self.on_taken()
        return True

    def recovered(self) -> None:
        """Runs left 'running' by others are dealt with: settle if need be, then lead."""
        settling = self._settle_until > self.clock.monotonic()
        self._move(Role.SETTLING if settling else Role.LEADING)

    def settle_left(self) -> float:
        """Seconds to wait before running anything; 0 once leading."""
        if self.role is Role.SETTLING:
            left = self._settle_until - self.clock.monotonic()
            if left > 0:
                return left
            self._move(Role.LEADING)
        return 0.0

    def lost(self) -> None:
        """The connection failed: drop it (a closed session has released its advisory lock). The
        daemon that was leading keeps the offline fail-safe; any other stands by."""
        self._drop()
        if self.role in (Role.LEADING, Role.RESUMING):
            self._move(Role.OFFLINE)
        elif self.role in (Role.TAKING_OVER, Role.SETTLING):
            self._move(Role.STANDBY)

    def release(self) -> None:
        """A clean stop: the next holder need not wait for this one."""
        if self._store is not None and self.role in HOLDS_LOCK:
            try:
                self._store.forget_runner_holder(self.me)
                self._store.release_runner_lock()
                log.info("runner_lock_released")
            except psycopg2.Error:
                pass  # closing the session releases it anyway
        self._drop()
        if self.role is not Role.STANDBY:
            self.role = Role.STANDBY  # the process ends here: no transition to check

    def _drop(self) -> None:
        if self._store is not None:
            self._store.close()
        self._store = None

    # ----------------------------------------------------------------- during a run
    def runs_open(self, run_ids: Sequence[int | None]) -> None:
        """The runs under way at once (daemon/loop/runs.py): each database run is probed, the oldest
        re-taken; runs of the offline fail-safe only (None each): PostgreSQL is probed for."""
        ids = [run_id for run_id in run_ids if run_id is not None]
        if ids and self._run_id is None:
            self._last_probe = self.clock.monotonic()
        self._run_id, self._also = (ids[0] if ids else None), tuple(ids[1:])
        self._offline_run = not ids and bool(run_ids)

    def keep(self) -> None:
        """Called many times a second while crawls run: prove the lock still ours, at most every
        PROBE_SECONDS (OFFLINE_PROBE_SECONDS offline), or give way."""
        now = self.clock.monotonic()
        every = OFFLINE_PROBE_SECONDS if self._offline_run else PROBE_SECONDS
        if self.role is Role.GIVING_WAY or now - self._last_probe < every:
            return
        self._last_probe = now
        if self._offline_run:
            self._probe_offline()
        elif self._run_id is not None:
            self._probe_online(self._run_id)

    def _probe_online(self, run_id: int) -> None:
        try:
            if self.runner_store() is None:
                self.retake(run_id)
            elif not all(self.runner_store().touch_run(r) for r in (run_id, *self._also)):  # type: ignore[union-attr]
                self.give_way("the run was failed by another daemon")
        except psycopg2.Error as exc:
            self.lost_mid_run(exc)

    def lost_mid_run(self, exc: psycopg2.Error) -> None:
        """The connection failed while crawls run: they go on; the probe re-takes the lock (or gives way)."""
        self.notices.say(
            "runner_lock_connection_lost",
            f"Lost the connection that holds the runner lock during a run: {db.first_line(exc)}; "
            "the crawls go on while it reconnects",
        )
        self.lost()

    def retake(self, run_id: int) -> None:
        """Reconnect and re-take the lock mid-run; give way if another daemon has it or the run.
        Raises when PostgreSQL cannot be reached: then nobody else can take the lock either."""
        if self.role is Role.LEADING:
            self.lost()
        self._drop()
        self._store = self._connect(1)
        if not self._store.take_runner_lock(self.me)[0]:
            self.give_way("another daemon holds the runner lock")
            return
        if not self._store.touch_run(run_id):
            self._move(Role.LEADING)
            self.give_way("the run was failed by another daemon")
            return
        self._move(Role.LEADING)  # our own run is the one 'running': nothing else to recover
        self.notices.forget("runner_lock_connection_lost")
        log.info("runner_lock_retaken", message="Re-took the runner lock; the run goes on", run_id=run_id)

    def still_runner(self, run_id: int) -> Store | None:
        """The store to finish `run_id` on: the current one, or a new one with the lock re-taken."""
        if self.runner_store() is None and self.role is not Role.GIVING_WAY:
            self.retake(run_id)
        return self.runner_store() if self.role is not Role.GIVING_WAY else None

    def _probe_offline(self) -> None:
        """During an offline run: once PostgreSQL answers, take the lock or give way."""
        if self.runner_store() is not None:
            return
        try:
            self._drop()
            self._store = self._connect(1)
            if self._store.take_runner_lock(self.me)[0]:
                self._move(Role.RESUMING)
                log.info("runner_lock_retaken", message="PostgreSQL is back; the offline run goes on under the lock")
            else:
                self.give_way("another daemon took the runner lock while PostgreSQL was unreachable")
        except psycopg2.Error:
            self._drop()

    def give_way(self, reason: str) -> None:
        log.error(
            "runner_giving_way",
            message=f"Killing this daemon's crawls at once: {reason}; never two runners at once",
            run_id=self._run_id,
        )
        self._move(Role.GIVING_WAY, reason=reason)

    def gave_way(self) -> bool:
        """After a run: whether this daemon gave way during it (then it is a standby now, and the
        run and its rows are the new runner's to fail)."""
        if self.role is not Role.GIVING_WAY:
            return False
        self.giving_way.clear()
        self._drop()
        self._move(Role.STANDBY)
        return True
