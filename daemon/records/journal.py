"""The local journal: where a run's records go while PostgreSQL is unreachable.

The design's fail-safe: when a run is due and the database cannot be reached, the spiders run
anyway and their outcomes are appended here, one JSON object per line, flushed and fsynced. Once
the database is back, the journal is written to it in one transaction and then removed; the runs
still under way then are left out of it and written 'running' in a second transaction (adopted:
daemon/leadership/takeover.py), the file removed only after both. Each journaled run carries a UUID
that is unique in `scheduler_state.journal_id`, also on an adopted run's row, so a journal
replayed twice (the daemon died between the commit and the removal) is written once. The format is
unchanged by adoption: a file written before it replays as before.

Each daemon writes a file of its own (`journal-<pid>-<random>.jsonl`) and holds an exclusive
flock on it for as long as it lives, so daemons sharing a state directory (a volume mounted
into two containers) never read or remove each other's journal while it is being written; the
file of a daemon that died is unlocked, and whoever holds the runner lock next replays it.

Only files this daemon's user wrote are replayed: a journal file owned by another user, or a
symbolic link where a journal file should be, is refused (`state_file_refused`) and left where it
is, never read (see daemon/system/statedir.py). Files are opened without following symbolic links.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from daemon.system import statedir
from daemon.jobs.crawl import CrawlOutcome

log = structlog.get_logger("daemon.journal")


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"journal-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._fh: Any = None  # our file, opened and locked on the first record

    def _append(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            statedir.make_directory(self.directory)
            # A new file of our own: whatever sits at its name already (a planted link) is refused.
            fd = statedir.open_own(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL)
            self._fh = os.fdopen(fd, "a", encoding="utf-8")
            fcntl.flock(self._fh, fcntl.LOCK_EX)
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def start_run(self, started_at: datetime, spiders: list[str], owner: str) -> str:
        run = str(uuid.uuid4())
        self._append({"kind": "run", "run": run, "started_at": started_at.isoformat(), "planned": spiders,
                      "owner": owner})  # fmt: skip
        return run

    def spawned(self, run: str, spider: str, started_at: datetime, pid: int, *,
                job: dict[str, Any] | None = None) -> None:  # fmt: skip
        """A crawl started; if no result follows (the daemon died), the replay records it as stale."""
        self._append({"kind": "spawn", "run": run, "spider": spider, "started_at": started_at.isoformat(),
                      "pid": pid, **(job or {})})  # fmt: skip

    def dispatched(self, run: str, spider: str, started_at: datetime, remote: dict[str, str], *,
                   job: dict[str, Any] | None = None) -> None:  # fmt: skip
        """A remote crawl is about to be sent (`remote`: node, remote_jobid, log_url); if no result
        follows, the replay records it 'running', so that the lock holder re-attaches to it."""
        self._append({"kind": "spawn", "run": run, "spider": spider, "started_at": started_at.isoformat(),
                      "pid": None, **remote, **(job or {})})  # fmt: skip

    def spider(self, run: str, started_at: datetime, finished_at: datetime, outcome: CrawlOutcome, *,
               job: dict[str, Any] | None = None) -> None:  # fmt: skip
        """job: the job's name, args and settings (recording.py); none: the job named after the spider."""
        self._append({"kind": "spider", "run": run, **_result(started_at, finished_at, outcome), **(job or {})})

    def finish_online_run(self, run_id: int, results: list[Any], finished_at: datetime, ok: bool,
                          error: str | None) -> None:  # fmt: skip
        """The end of a run that started in the database and lost it before its last writes."""
        self._append({
            "kind": "finish", "run": f"db-{run_id}", "run_id": run_id, "finished_at": finished_at.isoformat(),
            "ok": ok, "error": error,
            "spiders": [{"spider_run_id": r.spider_run_id, **_result(r.started_at, r.finished_at, r.outcome)}
                        for r in results],
        })  # fmt: skip

    def end_run(self, run: str, finished_at: datetime, ok: bool, error: str | None) -> None:
        self._append({"kind": "end", "run": run, "finished_at": finished_at.isoformat(), "ok": ok, "error": error})

    def pending(self) -> Pending | None:
        """Our own journal and those of daemons that are gone (unlocked files), or None. A file this
        daemon's user did not write is refused and left alone: never replayed."""
        files: list[tuple[Path, Any]] = []
        if self._fh is not None:
            files.append((self.path, None))
        for path in sorted(self.directory.glob("journal-*.jsonl")):
            if path == self.path:
                continue
            try:
                fh = os.fdopen(statedir.open_own(path, os.O_RDWR), "rb")
            except statedir.RefusedFile as refused:
                statedir.refuse(path, refused.reason)
                continue
            except FileNotFoundError:
                continue  # replayed and removed by another daemon since the listing
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()  # a live daemon's journal: its own to replay
                continue
            files.append((path, fh))
        return Pending(self, files) if files else None

    def own_pending(self) -> Pending | None:
        """Only our own journal, or None: what a daemon that does not hold the runner lock may
        write (the journals of daemons that are gone are the lock holder's to replay)."""
        return Pending(self, [(self.path, None)]) if self._fh is not None else None

    def _forget_own(self) -> None:
        if self._fh is not None:
            self.path.unlink(missing_ok=True)
            self._fh.close()
            self._fh = None


class Pending:
    """Journal files to replay; `done()` removes them once they are in the database."""

    def __init__(self, journal: Journal, files: list[tuple[Path, Any]]) -> None:
        self.journal = journal
        self.files = files

    def _records(self) -> Iterator[dict[str, Any]]:
        for path, _ in self.files:
            try:
                fd = statedir.open_own(path, os.O_RDONLY)
            except statedir.RefusedFile as refused:  # replaced since it was taken: never read
                statedir.refuse(path, refused.reason)
                continue
            with os.fdopen(fd, encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    try:
                        yield json.loads(line)
                    except ValueError:
                        # A torn last line (power cut mid-write): what came before it is whole.
                        log.warning("journal_line_unreadable", file=str(path), line=number)

    def finishes(self) -> list[dict[str, Any]]:
        """The journaled ends of runs that started in the database."""
        return [r for r in self._records() if r["kind"] == "finish"]

    def runs(self) -> list[dict[str, Any]]:
        """Each run made offline with its spiders and end (if it got that far), oldest first."""
        runs: dict[str, dict[str, Any]] = {}
        for record in self._records():
            if record["kind"] == "finish":
                continue
            run = runs.setdefault(record["run"], {"spiders": [], "end": None, "cut": []})  # spiders: results
            if record["kind"] == "run":
                run.update(record)
            elif record["kind"] == "spawn":
                run["cut"].append(record)  # until its result shows up
            elif record["kind"] == "spider":
                run["spiders"].append(record)
                run.setdefault("started_at", record["started_at"])  # its run line was torn: keep the result
                run.setdefault("run", record["run"])
            elif record["kind"] == "end":
                run["end"] = record
        for run in runs.values():
            # Crawls started but never finished: their daemon died with them (the kernel kills a
            # crawl with its daemon), so they are recorded as stale, not forgotten.
            # A remote crawl (no local pid) is known by its Scrapyd job id.
            finished = {sp.get("remote_jobid") or sp.get("pid") for sp in run["spiders"]}
            run["cut"] = [c for c in run["cut"] if (c.get("remote_jobid") or c["pid"]) not in finished]
        return [r for r in runs.values() if "started_at" in r]

    def done(self) -> None:
        for path, fh in self.files:
            if fh is None:
                self.journal._forget_own()
            else:
                path.unlink(missing_ok=True)
                fh.close()


def _result(started_at: datetime, finished_at: datetime, outcome: CrawlOutcome) -> dict[str, Any]:
    return {
        "spider": outcome.spider, "started_at": started_at.isoformat(), "finished_at": finished_at.isoformat(),
        "ok": outcome.ok, "failure": outcome.failure, "exit_code": outcome.exit_code,
        "finish_reason": outcome.finish_reason, "items_scraped": outcome.items_scraped,
        "error_count": outcome.error_count, "message": outcome.message, "stats": outcome.stats,
        "pid": outcome.pid, "log_tail": outcome.log_tail,
    }  # fmt: skip


def journaled(directory: Path) -> tuple[int, int]:
    """(journal files, runs in them) in this machine's state directory: runs made while PostgreSQL
    was unreachable (and ends of runs it did not take), waiting to be written to it. Only files this
    user wrote are read, never through a symbolic link (daemon/system/statedir.py); an unreadable line is
    skipped, as the replay skips it."""
    if not directory.is_dir() or statedir.directory_problem(directory) is not None:
        return 0, 0
    files = runs = 0
    for path in sorted(directory.glob("journal-*.jsonl")):
        try:
            fd = statedir.open_own(path, os.O_RDONLY)
        except OSError:  # refused (another owner, a link, not a file) or gone since the listing
            continue
        with os.fdopen(fd, encoding="utf-8", errors="replace") as fh:
            found = set()
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("kind") in ("run", "finish"):
                    found.add(str(record.get("run")))
        files += 1
        runs += len(found)
    return files, runs
