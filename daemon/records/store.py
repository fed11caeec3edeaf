"""The records: runs, spider runs and the runner lock, on one autocommit connection.

Every status change is a conditional update (`WHERE status = 'running'`), so a row is finished
once, whoever gets there first.
"""

from __future__ import annotations

import contextlib
import json
import select
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg2.extensions

from daemon.records import board_queries, queries
from daemon.records.board import Board
from daemon.records.ledger import Ledger
from daemon.plan.decision import SpiderHistory

STALE_MESSAGE = "the daemon stopped during the run (killed, crashed or powered off)"
JOURNAL_CUT_MESSAGE = "the daemon stopped during a run made while PostgreSQL was unreachable"


class Store(Board, Ledger):
    def __init__(self, conn: psycopg2.extensions.connection) -> None:
        self.conn = conn

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # closing a broken connection must never mask the original problem
            pass

    def _one(self, sql: str, params: dict[str, Any]) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
        return row[0] if row else None

    def _count(self, sql: str, params: dict[str, Any]) -> int:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def idle_and_quiet(self) -> bool:
        """Nothing has arrived on the idle connection, checked without a round trip. A server
        that terminates the backend or shuts down says so (or closes the socket), which makes the
        socket readable; then the caller's next statement finds out what it was."""
        if self.conn.closed:
            return False
        try:
            readable, _, _ = select.select([self.conn], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    # The runner lock: a session-level advisory lock, released when the connection ends.
    def try_runner_lock(self) -> bool:
        return bool(self._one(queries.TRY_RUNNER_LOCK, {"key": queries.RUNNER_LOCK_KEY}))

    def release_runner_lock(self) -> None:
        self._one(queries.RELEASE_RUNNER_LOCK, {"key": queries.RUNNER_LOCK_KEY})

    def take_runner_lock(self, owner: str) -> tuple[bool, str | None]:
        """Try the lock; once held, record `owner` as its holder. Returns whether it is held and
        the holder recorded before (None: none, or it stopped cleanly)."""
        if not self.try_runner_lock():
            return False, None
        return True, self._one(queries.CLAIM_RUNNER_HOLDER, {"owner": owner})

    def forget_runner_holder(self, owner: str) -> None:
        """A clean stop: the next holder need not wait for this one."""
        self._count(queries.FORGET_RUNNER_HOLDER, {"owner": owner})

    def mark_stale(self, now: datetime, *, keep_remote: bool = False) -> tuple[list[int], list[tuple[int, str]]]:
        """Fail every row left 'running' by a daemon that died (but the remote crawls, with
        `keep_remote`: those are re-attached). Call only while holding the lock."""
        params = {"now": now, "message": STALE_MESSAGE, "keep_remote": keep_remote}
        with self.conn.cursor() as cur:
            cur.execute(queries.MARK_STALE_SPIDER_RUNS, params)
            spiders = [(r[0], r[1]) for r in cur.fetchall()]
            cur.execute(queries.MARK_STALE_RUNS, params)
            runs = [r[0] for r in cur.fetchall()]
        return runs, spiders

    def histories(self, jobs: Sequence[str]) -> list[SpiderHistory]:
        """Each job's history, in the order asked (the first field holds the job's name)."""
        with self.conn.cursor() as cur:
            cur.execute(queries.JOB_HISTORY, {"jobs": list(jobs)})
            return [SpiderHistory(r[0], r[1], int(r[2]), r[3], r[4]) for r in cur.fetchall()]

    def start_run(self, now: datetime, spider_count: int, owner: str) -> int:
        return int(self._one(queries.INSERT_RUN, {"now": now, "spider_count": spider_count, "owner": owner}))

    def touch_run(self, run_id: int) -> bool:
        """Refresh the run's lease; False when the run is no longer ours to finish."""
        return self._count(queries.TOUCH_RUN, {"run_id": run_id}) == 1

    def running_runs(self) -> list[tuple[int, str | None, float]]:
        """(id, owner, seconds since its lease was refreshed) of every run still 'running'."""
        with self.conn.cursor() as cur:
            cur.execute(queries.RUNNING_RUNS)
            return [(r[0], r[1], float(r[2])) for r in cur.fetchall()]

    def finish_run(self, run_id: int, now: datetime, *, ok: bool, error: str | None) -> bool:
        params = {"run_id": run_id, "now": now, "status": "completed" if ok else "failed", "error": error}
        return self._count(queries.FINISH_RUN, params) == 1

    def start_spider(
        self,
        run_id: int,
        spider: str,
        now: datetime,
        *,
        job: str | None = None,
        args: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        settings: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        slot_at: datetime | None = None,
    ) -> int:
        """A crawl of `job` (default: the job named after `spider`) with the arguments and settings
        it runs with, recorded as running; `slot_at`: the calendar slot it covers (PostgreSQL refuses
        a second crawl for one slot: psycopg2.errors.UniqueViolation)."""
        return int(self._one(queries.INSERT_SPIDER_RUN, {
            "run_id": run_id, "job": job or spider, "spider": spider, "now": now,
            "args": _json_object(args), "settings": _json_object(settings), "slot_at": slot_at,
        }))  # fmt: skip

    def set_spider_remote(self, spider_run_id: int, node: str, remote_jobid: str, log_url: str) -> bool:
        """Where a remote crawl goes, committed before it is sent; False: its row is not running."""
        params = {"id": spider_run_id, "node": node, "remote_jobid": remote_jobid, "log_url": log_url}
        return self._count(queries.SET_SPIDER_RUN_REMOTE, params) == 1

    def remote_running(self, now: datetime) -> list[tuple[Any, ...]]:
        """(id, run_id, job, spider, node, remote_jobid, started_at, age_s) of each remote crawl left 'running'."""
        with self.conn.cursor() as cur:
            cur.execute(queries.REMOTE_RUNNING_SPIDER_RUNS, {"now": now})
            return cur.fetchall()

    def set_spider_pid(self, spider_run_id: int, pid: int) -> None:
        self._count(queries.SET_SPIDER_RUN_PID, {"id": spider_run_id, "pid": pid})

    def finish_spider(self, spider_run_id: int, now: datetime, outcome: Any) -> tuple[bool, str | None]:
        """(written, the baseline's verdict: why the success looks wrong, or None)."""
        params = {
            "id": spider_run_id,
            "now": now,
            "status": "completed" if outcome.ok else "failed",
            "failure": outcome.failure,
            "exit_code": outcome.exit_code,
            "finish_reason": outcome.finish_reason,
            "items_scraped": outcome.items_scraped,
            "error_count": outcome.error_count,
            "message": outcome.message,
            "pid": outcome.pid,
            "stats": json.dumps(outcome.stats, default=str) if outcome.stats is not None else None,
            "log_tail": _text(outcome.log_tail),
        }
        with self.conn.cursor() as cur:
            cur.execute(queries.FINISH_SPIDER_RUN, params)
            row = cur.fetchone()
        return row is not None, row[0] if row is not None else None

    def crawl_for_log(self, job: str, run_id: int | None) -> tuple[Any, ...] | None:
        """(id, job, spider, status, started_at, finished_at, pid, log_tail) of a crawl of `job`."""
        with self.conn.cursor() as cur:
            cur.execute(board_queries.CRAWL_FOR_LOG, {"job": job, "id": run_id})
            return cur.fetchone()

    def job_names(self) -> list[str]:
        with self.conn.cursor() as cur:
            cur.execute(board_queries.JOB_NAMES)
            return [r[0] for r in cur.fetchall()]

    # housekeeping jobs
    def last_job_runs_detail(self) -> list[tuple[str, tuple[datetime, str]]]:
        with self.conn.cursor() as cur:
            cur.execute(queries.LAST_JOB_RUNS_DETAIL)
            return [(r[0], (r[1], r[2])) for r in cur.fetchall()]

    def record_job_run(self, job: str, started_at: datetime, finished_at: datetime, status: str, message: str) -> None:
        self._count(queries.RECORD_JOB_RUN, {"job": job, "started_at": started_at, "finished_at": finished_at,
                                              "status": status, "message": message})  # fmt: skip

    def delete_history_batch(self, cutoff: datetime, batch: int) -> tuple[int, int]:
        with self.conn.cursor() as cur:
            cur.execute(queries.DELETE_HISTORY_BATCH, {"cutoff": cutoff, "batch": batch})
            runs, spider_runs = cur.fetchone()
        return int(runs), int(spider_runs)

    def delete_old_bookkeeping(self, cutoff: datetime) -> tuple[int, int]:
        """Job runs, and run-now and cancel requests taken before `cutoff`: (job runs, requests) deleted."""
        return (self._count(queries.DELETE_OLD_JOB_RUNS, {"cutoff": cutoff}),
                self._count(queries.DELETE_OLD_RUN_REQUESTS, {"cutoff": cutoff})
                + self._count(queries.DELETE_OLD_CANCEL_REQUESTS, {"cutoff": cutoff}))  # fmt: skip

    def last_successes(self, spiders: Sequence[str]) -> list[tuple[str, datetime | None]]:
        with self.conn.cursor() as cur:
            cur.execute(queries.LAST_SUCCESSES, {"spiders": list(spiders)})
            return cur.fetchall()

    def last_told(self, kind: str, jobs: Sequence[str]) -> dict[str, datetime]:
        """When each of `jobs` was last alerted `kind` (the alerts' outbox), for those ever alerted."""
        with self.conn.cursor() as cur:
            cur.execute(queries.LAST_TOLD, {"kind": kind, "jobs": list(jobs)})
            return dict(cur.fetchall())

    def running_jobs(self) -> set[str]:
        """The jobs with a crawl under way."""
        with self.conn.cursor() as cur:
            cur.execute(queries.RUNNING_JOBS)
            return {row[0] for row in cur.fetchall()}

    def failed_spider_runs_since(self, after_id: int, since: datetime | None) -> list[tuple[int, str, str, str, str]]:
        """(id, job, failure, message, spider) of each failed crawl after `after_id` (and `since`)."""
        with self.conn.cursor() as cur:
            cur.execute(queries.FAILED_SPIDER_RUNS_SINCE, {"after_id": after_id, "since": since})
            return cur.fetchall()

    def spiders_scraping_zero(self) -> list[tuple[str, datetime, int, str]]:
        """(job, last success, items before, spider) of each job whose last success scraped nothing."""
        with self.conn.cursor() as cur:
            cur.execute(queries.SPIDERS_SCRAPING_ZERO)
            return cur.fetchall()

    def httpcache_counts(self, latest: int) -> tuple[int, int]:
        """(hits, misses) of the HTTP cache over the latest crawls' stats."""
        with self.conn.cursor() as cur:
            cur.execute(queries.HTTPCACHE_COUNTS, {"latest": latest})
            hits, misses = cur.fetchone()
        return int(hits), int(misses)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        self.conn.autocommit = False
        try:
            with self.conn.cursor() as cur:
                yield cur
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        finally:
            self.conn.autocommit = True

    def replay(self, runs: list[dict[str, Any]], finishes: list[dict[str, Any]]) -> int:
        """Write the journal in one transaction; return how many records were new (0 on a re-replay).

        Runs made offline are inserted once (their journal id is unique); ends of runs that began
        in the database are conditional updates (on a row still running, or failed as stale before
        the journal could be written), so they too apply at most once.
        """
        written = 0
        with self._transaction() as cur:
            for finish in finishes:
                for sp in finish["spiders"]:
                    cur.execute(queries.REPLAY_FINISH_SPIDER_RUN, {
                        **{k: sp.get(k) for k in ("failure", "exit_code", "finish_reason", "items_scraped",
                                                  "error_count", "message", "pid")},
                        "id": sp["spider_run_id"], "now": sp["finished_at"], "log_tail": _text(sp.get("log_tail")),
                        "status": "completed" if sp["ok"] else "failed",
                        "stats": json.dumps(sp["stats"]) if sp.get("stats") is not None else None,
                    })  # fmt: skip
                    written += cur.rowcount
                cur.execute(queries.REPLAY_FINISH_RUN, {
                    "run_id": finish["run_id"], "now": finish["finished_at"],
                    "status": "completed" if finish["ok"] else "failed", "error": finish["error"],
                    "stale_message": STALE_MESSAGE,
                })  # fmt: skip
                written += cur.rowcount
            for run in runs:
                end = run["end"]
                finished_at = end["finished_at"] if end else run["started_at"]
                cur.execute(queries.INSERT_JOURNALED_RUN, {
                    "started_at": run["started_at"], "spider_count": len(run.get("planned") or run["spiders"]),
                    "status": "completed" if end and end["ok"] else "failed",
                    "finished_at": finished_at,
                    "error": (end or {}).get("error") if end else JOURNAL_CUT_MESSAGE,
                    "owner": run.get("owner"), "journal_id": run["run"],
                })  # fmt: skip
                row = cur.fetchone()
                if row is None:
                    continue  # written by an earlier replay
                written += 1
                _insert_crawls(cur, row[0], run, finished_at)
        return written

    def adopt(self, runs: list[dict[str, Any]]) -> dict[str, tuple[int, dict[Any, int]]]:
        """Write the journaled runs of the fail-safe still under way, in one transaction, as
        'running': each run's row (its lease fresh), its ended crawls as they ended and those under way
        'running'. Returns {journal id: (run id, {crawl: its row})}, a crawl known by its Scrapyd job id
        or else its pid (as the journal knows it). A run already written (its journal id taken) is
        left out: it stays journaled."""
        adopted: dict[str, tuple[int, dict[Any, int]]] = {}
        with self._transaction() as cur:
            for run in runs:
                cur.execute(queries.INSERT_ADOPTED_RUN, {
                    "started_at": run["started_at"], "spider_count": len(run.get("planned") or run["spiders"]),
                    "owner": run.get("owner"), "journal_id": run["run"],
                })  # fmt: skip
                row = cur.fetchone()
                if row is not None:
                    adopted[run["run"]] = (row[0], _insert_crawls(cur, row[0], run, None))
        return adopted


def _insert_crawls(cur: psycopg2.extensions.cursor, run_id: int, run: dict[str, Any],
                   finished_at: str | None) -> dict[Any, int]:  # fmt: skip
    """A journaled run's crawls under its row: those that ended as they ended; those cut (started, no
    result) failed as stale at `finished_at` (the run's end), or 'running' when `finished_at` is None
    (the run is under way: adopted) or the crawl is remote (it outlives its daemon: re-attached).
    Returns {crawl: its row} of those written 'running', a crawl known as the journal knows it."""
    for sp in run["spiders"]:
        cur.execute(queries.INSERT_JOURNALED_SPIDER_RUN, {
            **{k: sp.get(k) for k in ("spider", "failure", "started_at", "finished_at", "exit_code",
                                      "finish_reason", "items_scraped", "error_count", "message", "pid")},
            "log_tail": _text(sp.get("log_tail")),
            **{k: sp.get(k) for k in ("node", "remote_jobid", "log_url")},
            **_job_of(sp),
            "run_id": run_id, "status": "completed" if sp["ok"] else "failed",
            "stats": json.dumps(sp["stats"]) if sp.get("stats") is not None else None,
        })  # fmt: skip
    running: dict[Any, int] = {}
    for cut in run.get("cut", []):
        under_way = finished_at is None or bool(cut.get("remote_jobid"))
        cur.execute(queries.INSERT_JOURNALED_SPIDER_RUN, {
            **dict.fromkeys(("exit_code", "finish_reason", "items_scraped", "error_count", "stats", "log_tail")),
            **_job_of(cut),
            "run_id": run_id, "spider": cut["spider"], "status": "failed", "failure": "stale",
            "started_at": cut["started_at"], "finished_at": finished_at,
            "message": JOURNAL_CUT_MESSAGE, "pid": cut.get("pid"),
            **{k: cut.get(k) for k in ("node", "remote_jobid", "log_url")},
            **({"status": "running", "failure": None, "finished_at": None, "message": None} if under_way else {}),
        })  # fmt: skip
        if under_way:
            running[cut.get("remote_jobid") or cut.get("pid")] = cur.fetchone()[0]
    return running


def _json_object(pairs: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> str | None:
    """A job's arguments or settings as the JSON object recorded with its crawl (None: not known)."""
    return None if pairs is None else json.dumps(dict(pairs))


def _job_of(record: dict[str, Any]) -> dict[str, Any]:
    """A journaled crawl's job, arguments and settings; a record written before jobs existed was a
    crawl of the job named after its spider, with neither."""
    return {"job": record.get("job") or record["spider"], "args": _json_object(record.get("args")),
            "settings": _json_object(record.get("settings"))}  # fmt: skip


def _text(value: str | None) -> str | None:
    """Text for a TEXT column: PostgreSQL refuses NUL, which a crawl may print."""
    return value.replace("\x00", "\ufffd") if value else value
