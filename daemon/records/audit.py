"""The audit of actions (sql/018_actions.sql): who ran, paused, resumed or cancelled which job,
from where, when, and with what result. Short named queries with bound parameters; the same
connection as the board, so an action and its audit row are written by one session."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

RECORD = """
INSERT INTO actions (at, action, job, detail, actor, source, address, result, message)
VALUES (%(at)s, %(action)s, %(job)s, %(detail)s, %(actor)s, %(source)s, %(address)s, %(result)s, %(message)s)
RETURNING id
"""
OF_JOB = """
SELECT id, at, action, job, detail, actor, source, address, result, message
  FROM actions WHERE job = %(job)s ORDER BY id DESC LIMIT %(limit)s
"""
ONE = "SELECT id, at, action, job, detail, actor, source, address, result, message FROM actions WHERE id = %(id)s"
LAST_PER_JOB = """
SELECT DISTINCT ON (job) id, at, action, job, detail, actor, source, address, result, message
  FROM actions WHERE job = ANY (%(jobs)s) ORDER BY job, id DESC
"""
DELETE_OLD = "DELETE FROM actions WHERE at < %(cutoff)s"
SHOWN_ON_JOB_PAGE = 20


@dataclass(frozen=True)
class Action:
    id: int
    at: datetime
    action: str
    job: str
    detail: str | None
    actor: str
    source: str
    address: str | None
    result: str
    message: str

    def as_dict(self, tz: tzinfo | None = None) -> dict[str, Any]:
        at = self.at.astimezone(tz) if tz else self.at
        return {"id": self.id, "at": at.isoformat(timespec="seconds"), "action": self.action, "job": self.job,
                "detail": self.detail, "actor": self.actor, "source": self.source, "address": self.address,
                "result": self.result, "message": self.message}  # fmt: skip


def record(conn: Any, *, at: datetime, action: str, job: str, detail: str | None, actor: str, source: str,
           address: str | None, result: str, message: str) -> int:  # fmt: skip
    with conn.cursor() as cur:
        cur.execute(RECORD, {"at": at, "action": action, "job": job, "detail": detail, "actor": actor,
                             "source": source, "address": address, "result": result, "message": message})  # fmt: skip
        return int(cur.fetchone()[0])


def of_job(conn: Any, job: str, limit: int = SHOWN_ON_JOB_PAGE) -> list[Action]:
    """The job's last `limit` actions, newest first."""
    with conn.cursor() as cur:
        cur.execute(OF_JOB, {"job": job, "limit": limit})
        return [Action(*row) for row in cur.fetchall()]


def one(conn: Any, action_id: int) -> Action | None:
    with conn.cursor() as cur:
        cur.execute(ONE, {"id": action_id})
        row = cur.fetchone()
    return Action(*row) if row else None


def last_per_job(conn: Any, jobs: Sequence[str]) -> dict[str, Action]:
    with conn.cursor() as cur:
        cur.execute(LAST_PER_JOB, {"jobs": list(jobs)})
        return {row[3]: Action(*row) for row in cur.fetchall()}


def delete_old(conn: Any, cutoff: datetime) -> int:
    with conn.cursor() as cur:
        cur.execute(DELETE_OLD, {"cutoff": cutoff})
        return int(cur.rowcount)
