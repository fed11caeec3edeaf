"""The freshness ledger (sql/019_calendar_slots.sql, README "Calendar schedules"): one row per owed
slot of a job, `kept` with the crawl that covered it and how late it started, `missed` with the first
cause that applies, or `excused`. Each row is written once, whoever writes it first (two daemons
writing the same slot leave one row); a tick writes at most `ROWS_PER_TICK` rows of a job, then one
summary row standing for the rest. A part of `Store` (daemon/records/store.py), on its connection.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg2.extensions

ROWS_PER_TICK = 100  # a job's ledger rows written by one tick at most; the rest become one summary row
STATES = ("kept", "missed", "excused")
CAUSES = {
    "missed": ("daemon_down", "db_down", "error", "timeout", "too_few_items", "cancelled", "process_died",
               "interrupted", "stale", "lost", "busy", "too_late", "clock_jump"),
    "excused": ("paused", "outside_window"),
}  # fmt: skip

INSERT_SLOTS = """
INSERT INTO job_slots (job, slot_at, state, cause, run_id, late_s, slots, recorded_at)
SELECT job, slot_at, state, cause, run_id, late_s, slots, %(now)s
  FROM json_to_recordset(%(rows)s::json) AS r (job text, slot_at timestamptz, state text, cause text,
       run_id bigint, late_s float8, slots int)
ON CONFLICT (job, slot_at) DO NOTHING
"""
# kept ÷ owed per job since a moment (a summary row counts as the slots it stands for).
FRESHNESS = """
SELECT job, COALESCE(SUM(slots) FILTER (WHERE state = 'kept'), 0), SUM(slots) FILTER (WHERE state <> 'excused')
  FROM job_slots WHERE slot_at >= %(since)s GROUP BY job
"""
MISSED_SINCE = """
SELECT slot_at, cause, slots FROM job_slots
 WHERE job = %(job)s AND state = 'missed' AND slot_at >= %(since)s ORDER BY slot_at DESC LIMIT %(limit)s
"""
LAST_KEPT = """
SELECT slot_at, run_id, late_s FROM job_slots WHERE job = %(job)s AND state = 'kept' ORDER BY slot_at DESC LIMIT 1
"""
DELETE_OLDER_THAN = "DELETE FROM job_slots WHERE slot_at < %(cutoff)s"


@dataclasses.dataclass(frozen=True, slots=True)
class SlotRecord:
    slot_at: datetime
    state: str  # one of STATES
    cause: str | None = None  # missed / excused: one of CAUSES[state]; kept: None
    run_id: int | None = None  # kept: the spider_runs row
    late_s: float | None = None  # kept: seconds from the slot to its crawl's start

    def __post_init__(self) -> None:
        if self.state not in STATES or (self.cause is None) != (self.state == "kept"):
            raise ValueError(f"a ledger row is kept without a cause, or missed/excused with one: {self!r}")
        if self.cause is not None and self.cause not in CAUSES[self.state]:
            raise ValueError(f"{self.cause!r} is not a cause of a {self.state} slot")


def bounded(records: Sequence[SlotRecord]) -> list[tuple[SlotRecord, int]]:
    """(record, how many slots it stands for): the first ROWS_PER_TICK records as they are, the rest
    folded into one summary row at the earliest of them, with the cause of that first one."""
    ordered = sorted(records, key=lambda record: record.slot_at)
    kept = [(record, 1) for record in ordered[:ROWS_PER_TICK]]
    rest = ordered[ROWS_PER_TICK:]
    if rest:
        kept.append((rest[0], len(rest)))
    return kept


class Ledger:
    conn: psycopg2.extensions.connection

    def _count(self, sql: str, params: dict[str, Any]) -> int: ...  # Store's

    def record_slots(self, job: str, records: Sequence[SlotRecord], now: datetime) -> int:
        """Write `job`'s ledger rows (bounded); returns how many were new (a slot already written by
        this or another daemon is left as it was)."""
        return self.record_counted(job, bounded(records), now)

    def record_counted(self, job: str, counted: Sequence[tuple[SlotRecord, int]], now: datetime) -> int:
        """As record_slots, with each row's count given (a summary row stands for that many slots):
        the loop's missed slots after a downtime, of which the decision counts more than it lists."""
        rows = [
            {"job": job, "slot_at": record.slot_at.isoformat(), "state": record.state, "cause": record.cause,
             "run_id": record.run_id, "late_s": record.late_s, "slots": slots}
            for record, slots in counted
        ]  # fmt: skip
        if not rows:
            return 0
        return self._count(INSERT_SLOTS, {"rows": json.dumps(rows), "now": now})

    def freshness(self, since: datetime) -> dict[str, tuple[int, int]]:
        """job -> (slots kept, slots owed) since `since` (excused slots are not owed)."""
        with self.conn.cursor() as cur:
            cur.execute(FRESHNESS, {"since": since})
            return {job: (int(kept), int(owed or 0)) for job, kept, owed in cur.fetchall()}

    def missed_slots(self, job: str, since: datetime, limit: int = 50) -> list[tuple[datetime, str, int]]:
        """(slot, cause, slots it stands for) of `job`'s missed slots since `since`, newest first."""
        with self.conn.cursor() as cur:
            cur.execute(MISSED_SINCE, {"job": job, "since": since, "limit": limit})
            return [(slot, cause, slots) for slot, cause, slots in cur.fetchall()]

    def last_kept_slot(self, job: str) -> tuple[datetime, int | None, float | None] | None:
        """(slot, crawl, seconds late) of `job`'s newest kept slot, or None."""
        with self.conn.cursor() as cur:
            cur.execute(LAST_KEPT, {"job": job})
            row = cur.fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def remove_slots_older_than(self, cutoff: datetime) -> int:
        """Retention, like the history's: ledger rows of slots before `cutoff`."""
        return self._count(DELETE_OLDER_THAN, {"cutoff": cutoff})
