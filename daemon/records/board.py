"""The board: what the commands and the lock holder tell each other through PostgreSQL.

The lock holder publishes the jobs it runs (and the spiders it listed, and the jobs file's error);
the commands read them, and leave run-now requests, pauses and cancel requests, each followed by a
NOTIFY the lock holder hears within a second. A part of `Store` (daemon/records/store.py), on its connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg2.extensions

from daemon.records import board_queries, queries
from daemon.jobs.jobfile import Job
from daemon.plan import calendar


class Board:
    conn: psycopg2.extensions.connection

    def _one(self, sql: str, params: dict[str, Any]) -> Any: ...  # Store's

    def _count(self, sql: str, params: dict[str, Any]) -> int: ...  # Store's

    def _transaction(self) -> Any: ...  # Store's

    # run-now requests
    def request_run(self, spiders: list[str] | None) -> int:
        request_id = int(self._one(board_queries.INSERT_RUN_REQUEST, {"spiders": spiders}))
        self._one(board_queries.NOTIFY_RUN_NOW, {"id": request_id})
        return request_id

    def take_requests(self, now: datetime) -> list[tuple[int, list[str] | None]]:
        with self.conn.cursor() as cur:
            cur.execute(board_queries.TAKE_RUN_REQUESTS, {"now": now})
            return [(r[0], r[1]) for r in cur.fetchall()]

    # jobs: published by the lock holder, read by the commands
    def publish_jobs(self, jobs: Sequence[Job], *, path: str | None, error: str | None,
                     spiders: Sequence[str] | None, now: datetime, owner: str) -> None:  # fmt: skip
        """Replace the published jobs and their source in one transaction (`spiders` None: keep the
        stored list of the project's spiders)."""
        rows = [{
            "name": job.name, "position": position, "spider": job.spider,
            "args": dict(job.args), "settings": dict(job.settings),
            "every_s": job.every.total_seconds(), "timeout_s": job.timeout.total_seconds(),
            "retry_delay_s": job.retry_delay.total_seconds(), "max_errors": job.max_errors,
            "min_items": job.min_items, "jitter_s": job.jitter.total_seconds(), "paused": job.paused,
            "calendar": None if job.calendar is None else calendar.as_record(job.calendar),
            "schedule_since": None,
            "baseline": False if job.baseline is None else {"items_below": job.baseline[0],
                                                             "duration_above": job.baseline[1]},
        } for position, job in enumerate(jobs)]  # fmt: skip
        source = {"path": path, "error": error, "spiders": None if spiders is None else list(spiders),
                  "now": now, "owner": owner}  # fmt: skip
        with self._transaction() as cur:
            cur.execute(board_queries.SCHEDULES_SINCE)
            before = {name: (json.loads(text), since) for name, text, since in cur.fetchall()}
            for row in rows:
                if row["calendar"] is not None:
                    kept, since = before.get(row["name"], (None, None))
                    row["schedule_since"] = (since if kept == row["calendar"] else now).isoformat()
            cur.execute(board_queries.DELETE_JOBS)
            cur.execute(board_queries.INSERT_JOBS, {"jobs": json.dumps(rows)})
            cur.execute(board_queries.PUBLISH_JOBS_SOURCE, source)

    def published_jobs(self) -> list[Job]:
        """The published jobs, in the file's order."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.PUBLISHED_JOBS)
            return [
                Job(name=name, spider=spider, args=tuple(args.items()), settings=tuple(settings.items()),
                    every=timedelta(seconds=every), timeout=timedelta(seconds=timeout),
                    retry_delay=timedelta(seconds=retry_delay), max_errors=max_errors, min_items=min_items,
                    jitter=timedelta(seconds=jitter), paused=paused,
                    calendar=None if record is None else calendar.from_record(record))
                for name, spider, args, settings, every, timeout, retry_delay, max_errors, min_items, jitter, paused,
                record in cur.fetchall()
            ]  # fmt: skip

    def schedules_since(self) -> dict[str, datetime]:
        """Each published calendar job's name -> since when its calendar is published as it is: its
        slots are owed from then (a new or edited calendar waits for its first slot)."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.SCHEDULES_SINCE)
            return {name: since for name, _, since in cur.fetchall()}

    def jobs_source(self) -> tuple[str | None, datetime | None, str | None, list[str] | None, datetime | None] | None:
        """(path, loaded_at, error, spiders, listed_at) of the published jobs; None: never published."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.JOBS_SOURCE)
            row = cur.fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    def pause(self, job: str, until: datetime | None, now: datetime) -> None:
        """Pause `job` until `until` (None: until resumed), for every daemon."""
        self._count(board_queries.PAUSE_JOB, {"job": job, "until": until, "now": now})
        self._one(board_queries.NOTIFY_JOBS_CHANGED, {"what": "pause"})

    def resume(self, job: str) -> bool:
        """End `job`'s pause; False when it had none."""
        resumed = self._count(board_queries.RESUME_JOB, {"job": job}) == 1
        if resumed:
            self._one(board_queries.NOTIFY_JOBS_CHANGED, {"what": "resume"})
        return resumed

    def pauses(self, now: datetime) -> dict[str, datetime | None]:
        """job -> until when it is paused (None: until resumed); pauses over by `now` are left out."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.PAUSES, {"now": now})
            return dict(cur.fetchall())

    def request_cancel(self, jobs: Sequence[str]) -> int:
        """Ask the lock holder to stop these jobs' running crawls; returns how many were asked for."""
        queued = self._count(board_queries.INSERT_CANCEL_REQUESTS, {"jobs": list(jobs)})
        if queued:
            self._one(board_queries.NOTIFY_JOBS_CHANGED, {"what": "cancel"})
        return queued

    def take_cancels(self, now: datetime) -> list[str]:
        """The jobs asked to be cancelled since the last take, each once, oldest request first."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.TAKE_CANCEL_REQUESTS, {"now": now})
            return [r[0] for r in cur.fetchall()]

    # status
    def known_spiders(self) -> list[str]:
        with self.conn.cursor() as cur:
            cur.execute(board_queries.KNOWN_SPIDERS)
            return [r[0] for r in cur.fetchall()]

    def latest_spider_runs(self, spiders: Sequence[str]) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(board_queries.LATEST_SPIDER_RUNS, {"spiders": list(spiders)})
            return cur.fetchall()

    def latest_job_runs(self, jobs: Sequence[str]) -> list[tuple[Any, ...]]:
        """Each job's newest crawl, in the order asked: (job, started_at, finished_at, status,
        failure, items_scraped, message), all None after the job's name when it never ran."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.LATEST_JOB_RUNS, {"jobs": list(jobs)})
            return cur.fetchall()

    def latest_suspects(self, jobs: Sequence[str]) -> dict[str, str]:
        """job -> why its latest crawl, a success, looks wrong against its baseline (sql/017)."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.LATEST_SUSPECTS, {"jobs": list(jobs)})
            return dict(cur.fetchall())

    def last_suspect(self, job: str) -> tuple[Any, str] | None:
        """(started_at, why) of the job's latest crawl judged suspect against its baseline, if any."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.LAST_SUSPECT, {"job": job})
            return cur.fetchone()

    def latest_run(self) -> tuple[Any, ...] | None:
        with self.conn.cursor() as cur:
            cur.execute(board_queries.LATEST_RUN)
            return cur.fetchone()

    def pending_requests(self) -> int:
        return int(self._one(board_queries.PENDING_RUN_REQUESTS, {}))

    # explain
    def runner_holder(self) -> tuple[bool, str | None, datetime | None]:
        """(whether any session holds the runner lock, the holder recorded, since when)."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.RUNNER_HOLDER, {"key": queries.RUNNER_LOCK_KEY})
            locked, owner, since = cur.fetchone()
        return bool(locked), owner, since

    def run_under_way(self) -> tuple[datetime, int, int, int] | None:
        """(started at, crawls planned, started, running) of the run still 'running', or None."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.RUN_UNDER_WAY)
            row = cur.fetchone()
        return None if row is None else (row[0], int(row[1]), int(row[2]), int(row[3]))

    def pending_request_for(self, job: str, spider: str) -> datetime | None:
        """When the oldest run-now request naming `job` (or its spider, or every job) not yet taken
        was made; None: there is none."""
        return self._one(board_queries.PENDING_RUN_REQUEST_FOR, {"job": job, "spider": spider})

