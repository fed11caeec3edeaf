"""The loop's part of the freshness ledger (daemon/records/ledger.py, issue 21): when the loop starts
a calendar job's crawl for a slot, the owed slots before it that no crawl will cover are written
`missed`, each with the first cause that applies; a slot past catch_up_within is written `too_late`.
The `kept` rows are the recorder's (daemon/loop/recording.py: a crawl for a slot that succeeded).
Every row is written once whoever writes it (the table's primary key), so two daemons, or one
deciding the same plan again, leave one row per slot.

The cause of a missed slot (`missed_cause`, pure) is the first of: `daemon_down` (before this daemon
began deciding), `db_down` (during a PostgreSQL outage this daemon saw), the job's own failure
(its kind: `error`, `timeout`, `too_few_items`, `cancelled`, `process_died`; a failure of the job ended
after the slot), `clock_jump` (the wall clock jumped over it, or
the machine slept), `busy` (the daemon was up: the slot waited for a free place or a crawl under way).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from daemon.plan.decision import Plan, SpiderHistory
from daemon.plan.calendar import is_open
from daemon.records.ledger import CAUSES, SlotRecord
from daemon.records.store import Store

log = structlog.get_logger("daemon.scheduler")

OUTAGES_KEPT = 20  # the PostgreSQL outages (pauses, clock jumps) remembered for the causes of missed slots
JUMP_TOLERANCE = timedelta(minutes=1)  # as daemon.plan.decision.CLOCK_SKEW_TOLERANCE: NTP steps are not jumps


def missed_cause(slot: datetime, *, up_since: datetime | None, outages: Sequence[tuple[datetime, datetime]],
                 history: SpiderHistory | None, calendar: Any = None,
                 paused: Sequence[tuple[datetime, datetime]] = (),
                 jumps: Sequence[tuple[datetime, datetime]] = ()) -> str:  # fmt: skip
    """The first cause that applies to a missed slot (see the module's docstring); before them all,
    the excused ones: `paused` (in a pause of the job this daemon saw) and `outside_window` (the
    job's window, `calendar.window`, was shut at the slot)."""
    if any(start <= slot < end for start, end in paused):
        return "paused"
    if calendar is not None and calendar.window is not None and not is_open(calendar.window, calendar.tz, slot):
        return "outside_window"
    if up_since is None or slot < up_since:
        return "daemon_down"
    if any(start <= slot < end for start, end in outages):
        return "db_down"
    if history is not None and history.consecutive_failures and history.last_failure_at is not None \
            and history.last_failure_at >= slot:  # fmt: skip
        return history.last_failure_kind if history.last_failure_kind in CAUSES["missed"] else "error"
    if any(start < slot <= end for start, end in jumps):
        return "clock_jump"
    return "busy"


def missed_rows(missed: Sequence[datetime], count: int, causes: Sequence[str]) -> list[tuple[SlotRecord, int]]:
    """The ledger's rows for the missed slots a plan lists (`missed`, the earliest first, with their
    `causes`) out of `count`: one row each, the last one standing for the slots not listed. A cause
    `outside_window` makes the row `excused`: the job's window was shut at that slot, so it was
    never to be crawled then (it is not owed in freshness)."""
    rows = [(SlotRecord(slot, "excused" if cause in CAUSES["excused"] else "missed", cause), 1)
            for slot, cause in zip(missed, causes)]  # fmt: skip
    if rows and count > len(rows):
        last, _ = rows[-1]
        rows[-1] = (last, 1 + count - len(rows))
    return rows


class SlotLedger:
    def __init__(self, observer: Any = None, alert: Callable[..., None] | None = None) -> None:
        self.observer = observer  # told the missed slots this daemon wrote (/metrics)
        self.alert = alert  # the notifier's: missed slots are told once per episode (issue 22)
        self._told: dict[str, datetime | None] = {}  # job -> its last kept slot when its missed slots were told
        self.up_since: datetime | None = None  # the first decision this daemon made
        self.outages: list[tuple[datetime, datetime]] = []
        self._down_since: datetime | None = None
        self._written: dict[str, datetime] = {}  # job -> the latest slot whose rows this daemon wrote
        self._seen: object = None  # the plan's job plans last looked at for too_late slots
        self._last: tuple[datetime, float] | None = None  # the last decision's wall and monotonic times
        self.jumps: list[tuple[datetime, datetime]] = []  # wall-clock jumps forward (a suspend too)
        self._cadences: object = None  # the cadences last looked at for pauses
        self._paused_since: dict[str, datetime] = {}  # calendar job -> since when this daemon saw it paused
        self.pauses: dict[str, list[tuple[datetime, datetime]]] = {}  # calendar job -> the pauses it saw end

    def deciding(self, now: datetime, monotonic: float | None = None) -> None:
        """Each decision: the first one's time, the end of an outage, and a wall-clock jump (the wall
        clock moved more than JUMP_TOLERANCE further than monotonic time since the last decision)."""
        if monotonic is not None and self._last is not None:
            wall, mono = self._last
            if (now - wall).total_seconds() - (monotonic - mono) > JUMP_TOLERANCE.total_seconds():
                self.jumps = [*self.jumps, (wall, now)][-OUTAGES_KEPT:]
        if monotonic is not None:
            self._last = (now, monotonic)
        if self.up_since is None:
            self.up_since = now
        if self._down_since is not None:
            self.outages = [*self.outages, (self._down_since, now)][-OUTAGES_KEPT:]
            self._down_since = None

    def watch_pauses(self, cadences: Mapping[str, Any], now: datetime) -> None:
        """Note when calendar jobs are paused and resumed (the slots in between are excused). Looked
        at only when the cadences change (a pause, a resume or a reload gives new ones)."""
        if cadences is self._cadences:
            return
        self._cadences = cadences
        paused = {job for job, c in cadences.items() if c.calendar is not None and c.paused}
        for job in paused - self._paused_since.keys():
            self._paused_since[job] = now
        for job in self._paused_since.keys() - paused:
            self.pauses[job] = [*self.pauses.get(job, []), (self._paused_since.pop(job), now)][-OUTAGES_KEPT:]

    def database_down(self, now: datetime) -> None:
        if self._down_since is None:
            self._down_since = now

    def starting(self, store: Store, plan: Plan, histories: Sequence[SpiderHistory], due: Sequence[str],
                 now: datetime, cadences: Mapping[str, Any] | None = None) -> dict[str, datetime]:  # fmt: skip
        """The slot each due calendar job's crawl covers (for spider_runs.slot_at), its missed slots
        written to the ledger first."""
        wanted = set(due)
        cadences = cadences or {}  # job -> its Cadence (its calendar's window excuses slots)
        slots: dict[str, datetime] = {}
        by_job = {h.spider: h for h in histories}
        for p in plan.spiders:
            if p.spider not in wanted or p.slot is None:
                continue
            slots[p.spider] = p.slot
            if p.calendar is not None and p.calendar.missed and self._written.get(p.spider) != p.slot:
                cp = p.calendar
                causes = [missed_cause(s, up_since=self.up_since, outages=self.outages, history=by_job.get(p.spider),
                                       calendar=getattr(cadences.get(p.spider), "calendar", None),
                                   paused=self.pauses.get(p.spider, ()), jumps=self.jumps)
                          for s in cp.missed]  # fmt: skip
                self._write(store, p.spider, missed_rows(cp.missed, cp.missed_count, causes), now)
            self._written[p.spider] = p.slot
        return slots

    def settled(self, store: Store, plan: Plan, histories: Sequence[SpiderHistory], now: datetime,
                cadences: Mapping[str, Any] | None = None) -> None:  # fmt: skip
        """The slots a plan gives up (too_late), with the missed ones before them; once per new plan."""
        if plan.spiders is self._seen:
            return
        cadences = cadences or {}
        self._seen = plan.spiders
        by_job: Mapping[str, SpiderHistory] | None = None
        for p in plan.spiders:
            cp = p.calendar
            if cp is None or p.paused or cp.too_late is None or self._written.get(p.spider) == cp.too_late:
                continue
            by_job = by_job if by_job is not None else {h.spider: h for h in histories}
            causes = [missed_cause(s, up_since=self.up_since, outages=self.outages, history=by_job.get(p.spider),
                                   calendar=getattr(cadences.get(p.spider), "calendar", None),
                                   paused=self.pauses.get(p.spider, ()), jumps=self.jumps)
                          for s in cp.missed]  # fmt: skip
            rows = missed_rows(cp.missed, cp.missed_count, causes)
            self._write(store, p.spider, [*rows, (SlotRecord(cp.too_late, "missed", "too_late"), 1)], now)
            self._written[p.spider] = cp.too_late

    def _write(self, store: Store, job: str, rows: list[tuple[SlotRecord, int]], now: datetime) -> None:
        if not rows:
            return
        new = store.record_counted(job, rows, now)
        if new and self.observer is not None:
            causes: dict[str, int] = {}
            for record, slots in rows:
                if record.state == "missed":  # an excused slot (its window was shut) is not counted missed
                    causes[record.cause or ""] = causes.get(record.cause or "", 0) + slots
            for cause, slots in causes.items():
                self.observer.slots_missed(job, cause, slots)
        if new:
            log.info("slots_missed", message=f"{sum(n for _, n in rows)} slot(s) of {job} missed",
                     job=job, slots=[r.slot_at.isoformat() for r, _ in rows[:5]], causes=sorted({r.cause for r, _ in rows}),
                     new_rows=new)  # fmt: skip
        if new and self.alert is not None and any(r.state == "missed" for r, _ in rows):
            self._tell(store, job, rows)

    def _tell(self, store: Store, job: str, rows: list[tuple[SlotRecord, int]]) -> None:
        """Missed slots are alerted once per episode: an episode ends when the job keeps a slot
        again, so a job missing slot after slot is told once, not per slot. The episode (the job and
        its last kept slot) goes with the alert, and the outbox writes it once whichever daemon
        tells it: one started anew, or taking over, does not tell an open episode again."""
        kept = store.last_kept_slot(job)
        since = kept[0] if kept is not None else None
        if job in self._told and self._told[job] == since:
            return
        self._told[job] = since
        missed = [(r, n) for r, n in rows if r.state == "missed"]
        count = sum(n for _, n in missed)
        causes = sorted({r.cause or "" for r, _ in missed})
        first = min(r.slot_at for r, _ in missed)
        last_kept = f"its last kept slot was {since:%Y-%m-%d %H:%M} UTC" if since else "it has kept no slot yet"
        self.alert("slots_missed", f"Job {job} missed {count} slot(s) ({', '.join(causes)}) since "
                   f"{first:%Y-%m-%d %H:%M} UTC; {last_kept}", job=job, level="warning", slots=count,
                   causes=causes, first_missed=first.isoformat(),
                   episode=f"slots {job} since {since.isoformat() if since else 'never'}")  # fmt: skip
