"""Small helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from daemon.system.clock import OffsetClock
from daemon.settings.config import Settings
from daemon.assemble import assemble


def wait_for(predicate: Callable[[], Any], timeout: float = 30, step: float = 0.1, what: str = "condition"):
    """Poll until `predicate()` is truthy; return its value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def crawl_to_end(engine: Any, jobs: Sequence[Any], on_start: Callable, on_finish: Callable, *,
                 on_spawn: Callable | None = None, on_dispatch: Callable | None = None, attach: Sequence[Any] = (),
                 poll_s: float = 0.1) -> list:  # fmt: skip
    """Drive an engine as the loop does (daemon/loop/runs.py): `attach` the remote crawls a former
    daemon left (RemoteRun), launch `jobs` one by one as its slots free, poll every `poll_s` (on the
    engine's clock) until it holds no crawl; the outcomes told, in the order they ended. A launch
    refused leaves the rest not started, as the loop does; a stop leaves them not started too."""
    outcomes: list = []

    def told(token: Any, outcome: Any) -> None:
        outcomes.append(outcome)
        on_finish(token, outcome)

    given = {"on_spawn": on_spawn, "on_dispatch": on_dispatch}
    callbacks = {name: callback for name, callback in given.items() if callback is not None}
    for run in attach:
        engine.attach(run, told, **{k: v for k, v in callbacks.items() if k == "on_dispatch"})
    pending = list(jobs)
    never = threading.Event()  # the wait between polls is the whole `poll_s`, as the loop's
    while True:
        while pending and not engine.stop.is_set() and engine.free() > 0:
            if not engine.launch(pending.pop(0), on_start, told, **callbacks):
                pending.clear()
        if not engine.busy and (not pending or engine.stop.is_set()):
            return outcomes
        engine.poll()
        if engine.busy or pending:
            engine.clock.wait(never, poll_s)


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie only waits for its parent to reap it: dead for us)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: [state, ppid, ...], or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def process_tree(root: int) -> dict[int, str]:
    """Every live process below `root` (children, their children, ...): pid -> its start time, so
    that a pid the kernel hands out again later is not taken for one of them."""
    parents: dict[int, tuple[int, str]] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and fields[0] != "Z":
            parents[pid] = (int(fields[1]), fields[19])
    tree: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in parents.items():
            if ppid == parent and pid not in tree:
                tree[pid] = started
                frontier.append(pid)
    return tree


def survivors(tree: dict[int, str]) -> list[int]:
    """The processes of `tree` (from process_tree) that still run."""
    return [pid for pid, started in tree.items() if (f := _stat(pid)) is not None and f[0] != "Z" and f[19] == started]


def crawls_writing_to(side_channel: Path) -> list[int]:
    """Live `scrapy crawl` processes, found by scanning /proc, whose environment points them at this
    test's side channel: crawls of this test, whoever their parent is now."""
    wanted = f"SPIDER_SIDE_CHANNEL={side_channel}".encode()
    found = []
    for pid in _pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"scrapy" in argv and b"crawl" in argv and wanted in environ and alive(pid):
            found.append(pid)
    return found


def until_empty(listing: Callable[[], list], timeout: float, step: float = 0.05) -> list:
    """Poll `listing()` until it is empty or `timeout` seconds pass; return what it listed last."""
    deadline = time.monotonic() + timeout
    while (found := listing()) and time.monotonic() < deadline:
        time.sleep(step)
    return found


def fault_seed() -> int:
    """FAULT_SEED when set (to replay a run), else a fresh random seed; the test reports it."""
    return int(os.environ.get("FAULT_SEED") or random.randrange(10**6))


def fault_repeats(default: int) -> int:
    """FAULT_REPEATS when set (shorter while iterating), else the count the issue asks for."""
    return int(os.environ.get("FAULT_REPEATS") or default)


def events(logs: list[dict], name: str) -> list[dict]:
    """The captured log events called `name`."""
    return [e for e in logs if e["event"] == name]


def count(conn, where: str, table: str = "scheduler_state") -> int:
    """Rows of `table` matching `where` (test-only SQL, written by the test itself)."""
    return rows(conn, f"SELECT count(*) FROM {table} WHERE {where}")[0][0]


def rows(conn, sql: str, params: dict | None = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params or {})
        return cur.fetchall() if cur.description else []


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def insert_completed(conn, spiders: Sequence[str], started: datetime) -> int:
    """Record a completed run of `spiders` that started at `started` (arranging history)."""
    [(run_id,)] = rows(
        conn,
        "INSERT INTO scheduler_state (last_run_at, spider_count, status, finished_at) "
        "VALUES (%(t)s, %(n)s, 'completed', %(t)s) RETURNING id",
        {"t": started, "n": len(spiders)},
    )
    for spider in spiders:
        rows(
            conn,
            "INSERT INTO spider_runs (run_id, spider, status, started_at, finished_at, items_scraped) "
            "VALUES (%(r)s, %(s)s, 'completed', %(t)s, %(t)s, 1)",
            {"r": run_id, "s": spider, "t": started},
        )
    return run_id


def exits_seen_by_the_daemon(conn) -> dict[int, float]:
    """pid -> when the daemon recorded the crawl's end (unix time)."""
    return {
        pid: stamp
        for pid, stamp in rows(
            conn,
            "SELECT pid, extract(epoch FROM finished_at)::float8 FROM spider_runs "
            "WHERE pid IS NOT NULL AND finished_at IS NOT NULL",
        )
    }


def side_channel(path: Path) -> list[tuple[str, float, int, str]]:
    """The spiders' own record of what ran: (start|end, unix time, pid, spider)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        kind, stamp, pid, spider = line.split()
        entries.append((kind, float(stamp), int(pid), spider))
    return entries


def crawl_intervals(path: Path, ended: dict[int, float] | None = None) -> list[tuple[float, float, str]]:
    """(start, end, spider) per crawl process, from the side channel.

    A crawl killed before it could write its end line ends when the daemon saw it exit
    (`ended`: pid -> unix time, from spider_runs), or never (inf) if the daemon did not see it.
    """
    ended = ended or {}
    starts: dict[int, tuple[float, str]] = {}
    spans = []
    for kind, stamp, pid, spider in side_channel(path):
        if kind == "start":
            starts[pid] = (stamp, spider)
        elif pid in starts:
            begin, name = starts.pop(pid)
            spans.append((begin, stamp, name))
    spans.extend((begin, ended.get(pid, float("inf")), name) for pid, (begin, name) in starts.items())
    return sorted(spans)


def job_catalog(settings: Settings):  # noqa: ANN201 (a daemon.jobs.catalog.Catalog)
    """The catalog as the daemon builds it at start: the jobs file, listed spiders, no stored list."""
    from daemon.jobs import jobfile
    from daemon.jobs.catalog import open_catalog
    from daemon.jobs.spiders import list_spiders, resolve_spiders

    path = jobfile.resolve_path(str(settings.jobs_file or ""), settings.project_dir)
    return open_catalog(path, jobfile.JobDefaults.from_settings(settings), settings.spiders, None,
                        lambda: list_spiders(settings), lambda found: resolve_spiders(settings, found))  # fmt: skip


class SchedulerThread:
    """The real loop in a thread, against real Postgres and real crawls, with a movable clock."""

    def __init__(self, env: dict[str, str], spiders: Sequence[str] | None = None, clock: OffsetClock | None = None):
        """spiders: one job each; None: the jobs of SCHEDULER_JOBS_FILE (or the project's spiders),
        found as the daemon finds them at start."""
        self.settings = Settings.from_mapping(env)
        self.clock = clock or OffsetClock()
        self.stop = threading.Event()
        self.force = threading.Event()
        self.reload = threading.Event()
        self.scheduler = assemble(
            self.settings, spiders if spiders is not None else job_catalog(self.settings), clock=self.clock,
            stop=self.stop, force=self.force, reload=self.reload, environ={**os.environ, **env},
        )  # fmt: skip
        self.thread = threading.Thread(target=self.scheduler.run, daemon=True)

    def __enter__(self) -> SchedulerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the scheduler did not stop"


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


ROOT = Path(__file__).resolve().parent.parent


class DaemonProcess:
    def __init__(self, env: dict[str, str], workdir: Path, args: tuple[str, ...] = ()):
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}
        self.workdir = workdir
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self) -> DaemonProcess:
        log = self.workdir / f"daemon-{len(self.logs)}.log"
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", *self.args], cwd=self.workdir, env=self.env,
            stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return "".join(p.read_text() for p in self.logs if p.exists())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def held_back(crawls: Sequence[tuple], cadences: dict[str, tuple[timedelta, timedelta]], *, slots: int,
              grace: timedelta, until: datetime,
              quiet: Sequence[tuple[datetime, datetime]] = ()) -> list[tuple[str, datetime, float]]:  # fmt: skip
    """The jobs held back (issue 20), read from the records: each time a job was due by its own
    history (daemon.plan.decision's rule, on its (interval, retry delay) in `cadences`) and was not
    started for longer than `grace` while fewer than `slots` crawls were under way, outside the
    `quiet` windows (a fault and the recovery after it). `crawls`: (job, status, failure,
    started_at, finished_at), oldest first; the count starts at the first crawl's start (before
    it the daemon was starting). One (job, since when, seconds) per time it was held."""
    from itertools import pairwise

    from daemon.plan.decision import COUNTED_FAILURES, SpiderHistory, plan_spider

    if not crawls:
        return []
    since = min(c[3] for c in crawls)
    spans = [(c[3], c[4] or until) for c in crawls]
    edges = sorted({since, until, *(t for span in spans for t in span), *(t for window in quiet for t in window)})

    def free(at: datetime) -> bool:
        return sum(1 for s, e in spans if s <= at < e) < slots and not any(a <= at < b for a, b in quiet)

    held: list[tuple[str, datetime, float]] = []
    for job, (every, retry) in cadences.items():
        history, due_from = SpiderHistory(job), since
        ends = (job, None, None, until, None)  # the records' end: still due then, it was held until there
        for _, status, failure, started, finished in [*(c for c in crawls if c[0] == job), ends]:
            points = [due_from, *(e for e in edges if due_from < e < started), started] if due_from < started else []
            free_from = None
            for a, b in pairwise([*points, None]):
                if b is not None and free(a + (b - a) / 2):
                    free_from = a if free_from is None else free_from
                    continue
                if free_from is not None and a - free_from > grace:
                    held.append((job, free_from, (a - free_from).total_seconds()))
                free_from = None
            if finished is None:
                break  # under way until the end
            if status == "completed":
                history = SpiderHistory(job, started)
            elif failure in COUNTED_FAILURES:
                history = SpiderHistory(job, history.last_success_at, history.consecutive_failures + 1, finished)
            plan = plan_spider(history, finished, every, retry)
            due_from = max(finished, plan.due_at or finished)
    return held


# The daemon's HTTP endpoint, as a client on 127.0.0.1 sees it.
def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None
