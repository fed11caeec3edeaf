#!/usr/bin/env python3
"""The benchmark: what users feel, measured side by side in one run (issue "Performance").

    .venv/bin/python bench/bench.py            # the full run (about 25 minutes)
    .venv/bin/python bench/bench.py --quick    # the short form CI runs (about 4 minutes)

It starts its own PostgreSQL (the tests' throwaway cluster on 127.0.0.1), serves a small site on
127.0.0.1 for real `scrapy crawl`s (bench/scrapy_project: BENCH_SPIDERS copies of one tiny
crawl), and uses the Docker stack when an engine answers. It prints one table and writes it, with
every figure behind it, as JSON (--json, default bench/latest.json).

Shared machines are noisy: figures are medians over repeated runs, and comparisons (the daemon
against bare Scrapy) are ratios measured in the same run. Targets are reported, never enforced:
the exit code is non-zero only when the benchmark itself breaks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.records import db, queries  # noqa: E402
from daemon.settings.config import Settings  # noqa: E402
from daemon.records.migrations import apply_migrations  # noqa: E402
from tests.conftest import PG_BIN, PostgresServer, _Site, free_port  # noqa: E402
from free_slots import free_slots  # noqa: E402  (bench/free_slots.py, beside this script)
from tests.helpers import SchedulerThread, insert_completed, json_lines, rows, wait_for  # noqa: E402

PROJECT = ROOT / "bench" / "scrapy_project"
PYTHON = sys.executable

# What each mode repeats and how big it goes.
MODES: dict[str, dict[str, int]] = {
    "quick": {"catch_up_reps": 3, "precision_runs": 10, "jump_reps": 3, "idle_seconds": 30,
              "overhead_spiders": 4, "overhead_reps": 1, "scale_runs": 20_000, "scale_spider_rows": 200_000,
              "big_run_spiders": 10, "container_reps": 1, "fast_catch_up_reps": 3, "commands_reps": 3,
              "many_jobs_spiders": 20, "many_jobs_argsets": 50, "many_jobs_reps": 2, "many_jobs_ticks": 10,
              "cluster_crawls": 3, "cluster_reps": 1, "http_flood_hold_s": 10, "warm_crawls": 20, "warm_reps": 1,
              "refill_crawls": 12, "free_slots_ticks": 40, "free_slots_jobs_spiders": 20,
              "free_slots_jobs_argsets": 500, "mixed_long_s": 30},
    "full": {"catch_up_reps": 10, "precision_runs": 50, "jump_reps": 8, "idle_seconds": 600,
             "overhead_spiders": 20, "overhead_reps": 3, "scale_runs": 1_000_000, "scale_spider_rows": 10_000_000,
             "big_run_spiders": 500, "container_reps": 3, "fast_catch_up_reps": 10, "commands_reps": 10,
             "many_jobs_spiders": 100, "many_jobs_argsets": 100, "many_jobs_reps": 5, "many_jobs_ticks": 50,
             "cluster_crawls": 6, "cluster_reps": 3, "http_flood_hold_s": 60, "warm_crawls": 20, "warm_reps": 3,
             "refill_crawls": 50, "free_slots_ticks": 200, "free_slots_jobs_spiders": 100,
             "free_slots_jobs_argsets": 100, "mixed_long_s": 60},
}  # fmt: skip
PRECISION_INTERVAL_HOURS = 0.001  # 3.6 s between runs of one tiny crawl
JUMP_TICK_SECONDS = 5.0


def log(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def log_time(event: dict[str, Any]) -> float:
    """A log record's UTC ISO timestamp as Unix time."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def first_event(path: Path, name: str) -> dict[str, Any] | None:
    text = path.read_text() if path.exists() else ""
    return next((e for e in json_lines(text) if e.get("event") == name), None)


# ----------------------------------------------------------------------------- the world
class World:
    """PostgreSQL, the local site, and fresh migrated databases, for one benchmark run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pg = PostgresServer(workdir / "pg")
        self.site_server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
        self.site = f"http://127.0.0.1:{self.site_server.server_address[1]}"
        self._numbers = iter(range(1, 10_000))
        self.template = "bench_template"

    def __enter__(self) -> World:
        threading.Thread(target=self.site_server.serve_forever, daemon=True).start()
        self.pg.init()
        self.pg.start()
        self.pg.execute(f'CREATE DATABASE "{self.template}"')
        apply_migrations(Settings.from_mapping({**self.pg.env(self.template), "SCRAPY_PROJECT_DIR": str(PROJECT)}))
        return self

    def __exit__(self, *exc: object) -> None:
        self.site_server.shutdown()
        try:
            self.pg.stop("immediate")
        except subprocess.CalledProcessError:
            pass

    def database(self, template: str | None = None) -> str:
        """A fresh migrated database, or a copy of `template` (a database nobody is connected to)."""
        name = f"bench_{next(self._numbers)}"
        self.pg.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template or self.template}"')
        return name

    def env(self, dbname: str, spiders: int = 1, **extra: str) -> dict[str, str]:
        state = self.workdir / f"state-{dbname}-{time.monotonic_ns()}"
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            **self.pg.env(dbname),
            "SCRAPY_PROJECT_DIR": str(PROJECT),
            "SCHEDULER_STATE_DIR": str(state),
            "LOG_FORMAT": "json",
            "BENCH_SITE_URL": self.site,
            "BENCH_SPIDERS": str(spiders),
            # How the daemons it starts start crawls, when given (e.g. `cold`, to compare the idle rows).
            **{k: os.environ[k] for k in ("SCHEDULER_CRAWL_START",) if k in os.environ},
            **extra,
        }

    def pg_start_nowait(self) -> None:
        self.pg._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.pg.data), "-l", str(self.pg.logfile), "-W", "start"])

    def first_accepted_connection(self, timeout: float = 60) -> float:
        """Poll until PostgreSQL accepts a connection; the Unix time it first did."""
        import psycopg2

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                psycopg2.connect(host="127.0.0.1", port=self.pg.port, user="postgres", password=self.pg.password,
                                 dbname="postgres", connect_timeout=1).close()  # fmt: skip
                return time.time()
            except psycopg2.OperationalError:
                time.sleep(0.002)
        raise RuntimeError("PostgreSQL did not come up")


@contextmanager
def process(argv: list[str], env: dict[str, str], logfile: Path, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """A daemon (or the entrypoint) as a real process, its output in `logfile`; stopped at the end."""
    with logfile.open("w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd or ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_event(logfile: Path, name: str, timeout: float, proc: subprocess.Popen | None = None) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process exited ({proc.returncode}) before {name!r}: "
                               f"{logfile.read_text()[-1500:]}")  # fmt: skip
        return first_event(logfile, name)

    return wait_for(seen, timeout=timeout, step=0.01, what=f"{name!r} in {logfile.name}")


# ----------------------------------------------------------------------------- 1. catch-up latency
def catch_up_local(world: World, reps: int) -> dict[str, Any]:
    """Postgres accepting connections -> first spider process started, through the entrypoint."""
    latencies, started_up, phases = [], [], {}
    for rep in range(reps):
        db = world.database()
        conn = world.pg.connect(db)
        insert_completed(conn, ["bench_000"], datetime.now(timezone.utc) - timedelta(hours=5))
        conn.close()
        env = world.env(db, PYTHON=PYTHON, SCHEDULER_SPIDERS="bench_000")
        logfile = world.workdir / f"catchup-{rep}.log"
        world.pg.stop("fast")
        with process(["bash", str(ROOT / "docker-entrypoint.sh")], env, logfile) as proc:
            time.sleep(1.5)  # the entrypoint is waiting for PostgreSQL, backing off
            world.pg_start_nowait()
            accepted = world.first_accepted_connection()
            started = wait_event(logfile, "spider_started", 60, proc)
            latencies.append(log_time(started) - accepted)
            if rep == 0:
                for name in ("database_available", "migrations_up_to_date", "scheduler_started",
                             "runner_lock_acquired", "run_started", "spider_started"):  # fmt: skip
                    event = first_event(logfile, name)
                    if event is not None:
                        phases[name] = round(log_time(event) - accepted, 3)
        # The same with PostgreSQL already up: `docker-compose start scheduler` after a reboot.
        db = world.database()
        env = world.env(db, PYTHON=PYTHON, SCHEDULER_SPIDERS="bench_000")
        logfile = world.workdir / f"coldstart-{rep}.log"
        t0 = time.time()
        with process(["bash", str(ROOT / "docker-entrypoint.sh")], env, logfile) as proc:
            started_up.append(log_time(wait_event(logfile, "spider_started", 60, proc)) - t0)
    return {
        "postgres_up_to_first_crawl_s": {"median": median(latencies), "max": max(latencies), "all": latencies},
        "phases_after_postgres_up_s": phases,
        "entrypoint_start_to_first_crawl_s": {"median": median(started_up), "all": started_up},
    }


def catch_up_container(reps: int) -> dict[str, Any]:
    """`docker-compose up -d` on an empty volume: Postgres healthy -> first run started."""
    from tests.e2e.test_compose_stack import docker_answers, make_stack

    if not docker_answers():
        return {"skipped": "no Docker engine answers"}
    out: dict[str, Any] = {"healthy_to_run_started_s": [], "up_to_run_started_s": []}
    for rep in range(reps):
        work = Path(tempfile.mkdtemp(prefix="bench-stack-"))
        stack = make_stack("v2", work)
        try:
            stack.compose("build", "-q", timeout=900)
            t0 = time.time()
            stack.compose("up", "-d", timeout=300)
            event = wait_for(lambda: next((e for e in _compose_records(stack.logs()) if e.get("event") == "run_started"),
                                          None), timeout=120, step=0.2, what="run_started in the scheduler's logs")  # fmt: skip
            health = json.loads(stack.inspect("{{json .State.Health}}", "postgres"))
            healthy = min(datetime.fromisoformat(_docker_time(h["End"])).timestamp()
                          for h in health["Log"] if h["ExitCode"] == 0)  # fmt: skip
            out["healthy_to_run_started_s"].append(log_time(event) - healthy)
            out["up_to_run_started_s"].append(log_time(event) - t0)
            if rep == 0:
                out["image"] = image_figures(stack.inspect("{{.Config.Image}}"))
        finally:
            stack.compose("down", "-v", "--remove-orphans", check=False)
            shutil.rmtree(work, ignore_errors=True)
    out["healthy_to_run_started_median_s"] = median(out["healthy_to_run_started_s"])
    out["up_to_run_started_median_s"] = median(out["up_to_run_started_s"])
    return out


def _compose_records(logs: str) -> list[dict[str, Any]]:
    """The JSON records of `docker-compose logs` (each line behind a 'service | ' prefix)."""
    return json_lines("\n".join(line.split("|", 1)[-1] for line in logs.splitlines()))


def _docker_time(text: str) -> str:
    """Docker's RFC 3339 times carry nanoseconds, which fromisoformat does not take."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return text.replace("Z", "+00:00")


def image_figures(image: str) -> dict[str, Any]:
    size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True,
                              text=True, check=True).stdout.strip())  # fmt: skip
    starts = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", image,
                        "-m", "daemon", "--help"], capture_output=True, check=True, timeout=120)  # fmt: skip
        starts.append(time.monotonic() - t0)
    base = "python:3.11-slim-bookworm"
    base_size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", base], capture_output=True,
                                   text=True, check=True).stdout.strip())  # fmt: skip
    return {"name": image, "size_mb": round(size / 1e6, 1), "base": base, "base_size_mb": round(base_size / 1e6, 1),
            "own_layers_mb": round((size - base_size) / 1e6, 1), "run_help_s": median(starts), "all_s": starts}


# ----------------------------------------------------------------------------- 2. precision
def precision(world: World, runs: int) -> dict[str, Any]:
    """|actual start - due time| for consecutive runs of one spider with a few-second interval."""
    db = world.database()
    env = world.env(db, SCHEDULER_INTERVAL_HOURS=str(PRECISION_INTERVAL_HOURS))
    interval = timedelta(hours=PRECISION_INTERVAL_HOURS)
    conn = world.pg.connect(db)
    done = lambda: rows(conn, "SELECT count(*) FROM spider_runs WHERE status = 'completed'")[0][0]  # noqa: E731
    with process([PYTHON, "-m", "daemon"], env, world.workdir / "precision.log"):
        wait_for(lambda: done() >= runs + 1, timeout=runs * 12 + 60, step=0.5, what=f"{runs + 1} runs")
    starts = [r[0] for r in rows(conn, "SELECT started_at FROM spider_runs WHERE status = 'completed' ORDER BY id")]
    conn.close()
    errors = [abs((b - (a + interval)).total_seconds()) for a, b in zip(starts, starts[1:])]
    return {"interval_s": interval.total_seconds(), "runs": len(errors), "median_s": median(errors),
            "p95_s": p95(errors), "max_s": max(errors)}  # fmt: skip


def after_clock_jump(world: World, reps: int) -> dict[str, Any]:
    """Wall clock moved past the due time through the clock seam -> the crawl starts within a tick."""
    db = world.database()
    env = world.env(db, SCHEDULER_SPIDERS="bench_000", SCHEDULER_TICK_SECONDS=str(JUMP_TICK_SECONDS))
    conn = world.pg.connect(db)
    insert_completed(conn, ["bench_000"], datetime.now(timezone.utc) - timedelta(hours=1))
    count = lambda: rows(conn, "SELECT count(*) FROM spider_runs")[0][0]  # noqa: E731
    delays = []
    settings_env = {k: v for k, v in env.items() if k not in ("PATH", "PYTHONPATH")}
    with SchedulerThread(settings_env, ["bench_000"]) as sched:
        os.environ.update({"BENCH_SITE_URL": world.site, "BENCH_SPIDERS": "1"})
        for rep in range(reps):
            before = count()
            wait_for(lambda: rows(conn, "SELECT count(*) FROM spider_runs WHERE status = 'running'")[0][0] == 0,
                     timeout=60, what="the previous crawl to end")  # fmt: skip
            time.sleep(JUMP_TICK_SECONDS * (rep + 1) / (reps + 1))  # the jump lands at a different point of a tick
            t0 = time.monotonic()
            sched.clock.jump(timedelta(hours=4))
            wait_for(lambda: count() > before, timeout=JUMP_TICK_SECONDS * 3 + 10, step=0.01, what="the crawl")
            delays.append(time.monotonic() - t0)
    conn.close()
    return {"tick_s": JUMP_TICK_SECONDS, "median_s": median(delays), "max_s": max(delays), "all_s": delays}


# ----------------------------------------------------------------------------- 3. idle cost
class PingReceiver:
    """A healthchecks-style receiver on 127.0.0.1: records the path of every POST, answers 200."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                paths.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def idle_cost(world: World, seconds: int) -> dict[str, Any]:
    """The daemon asleep between runs: resident memory, CPU per hour, statements per minute. Side
    by side, a second daemon with a ping URL (a local receiver) asleep after one run and its pings."""
    db = world.database()
    conn = world.pg.connect(db)
    insert_completed(conn, ["bench_000"], datetime.now(timezone.utc) - timedelta(minutes=1))
    rows(conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    env = world.env(db, SCHEDULER_SPIDERS="bench_000")  # the defaults: 4 h interval, 30 s tick
    logfile = world.workdir / "idle.log"
    receiver = PingReceiver()
    pinging_env = world.env(world.database(), SCHEDULER_SPIDERS="bench_000",
                            HEALTHCHECK_PING_URL=f"{receiver.url}/ping/bench")  # fmt: skip
    pinging_log = world.workdir / "idle-pings.log"
    # A third: an Apprise configuration with a json:// channel to the same receiver (issue 22: the
    # idle daemon must not grow with channels configured; Apprise lives in the sender process).
    channels = world.workdir / "apprise.txt"
    channels.write_text(f"oncall={receiver.url.replace('http://', 'json://')}/alerts\n")
    channels.chmod(0o600)
    alerting_db = world.database()
    alerting_conn = world.pg.connect(alerting_db)
    insert_completed(alerting_conn, ["bench_000"], datetime.now(timezone.utc) - timedelta(minutes=1))
    alerting_conn.close()
    alerting_env = world.env(alerting_db, SCHEDULER_SPIDERS="bench_000", SCHEDULER_NOTIFY_CONFIG=str(channels))
    alerting_log = world.workdir / "idle-channels.log"
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        with process([PYTHON, "-m", "daemon"], env, logfile) as proc, \
                process([PYTHON, "-m", "daemon"], pinging_env, pinging_log) as pinging, \
                process([PYTHON, "-m", "daemon"], alerting_env, alerting_log) as alerting:  # fmt: skip
            wait_event(logfile, "run_not_due", 60, proc)
            wait_event(alerting_log, "run_not_due", 60, alerting)
            wait_event(pinging_log, "run_completed", 120, pinging)  # no history: it runs once
            wait_for(lambda: "/ping/bench" in receiver.paths, timeout=60, what="the success ping")
            time.sleep(5)  # start-up is not idling
            rows(conn, "SELECT pg_stat_statements_reset()")
            cpu0, t0 = _cpu_ticks(proc.pid), time.monotonic()
            time.sleep(seconds)
            cpu1, t1 = _cpu_ticks(proc.pid), time.monotonic()
            status = Path(f"/proc/{proc.pid}/status").read_text()
            pinging_status = Path(f"/proc/{pinging.pid}/status").read_text()
            alerting_status = Path(f"/proc/{alerting.pid}/status").read_text()
            statements = rows(conn, "SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements WHERE dbid = "
                                    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                                    "AND query NOT LIKE %(mine)s", {"mine": "%pg_stat_statements%"})[0][0]  # fmt: skip
    finally:
        receiver.server.shutdown()
    conn.close()
    def field(name: str, text: str = status) -> float:
        return int(re.search(rf"^{name}:\s+(\d+) kB", text, re.M).group(1)) / 1024  # type: ignore[union-attr]

    minutes = (t1 - t0) / 60
    return {
        "seconds": round(t1 - t0, 1),
        "rss_mib": round(field("VmRSS"), 1),
        "rss_anon_mib": round(field("RssAnon"), 1),
        "rss_file_mib": round(field("RssFile"), 1),
        "threads": int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1)),
        "cpu_s_per_hour": round((cpu1 - cpu0) / ticks / (t1 - t0) * 3600, 3),
        "db_statements_per_minute": round(float(statements) / minutes, 2),
        "bare_interpreter_with_named_libraries_mib": _bare_rss(),
        "with_pings": {
            "pings_received": list(receiver.paths),
            "rss_mib": round(field("VmRSS", pinging_status), 1),
            "rss_anon_mib": round(field("RssAnon", pinging_status), 1),
            "rss_file_mib": round(field("RssFile", pinging_status), 1),
        },
        "with_channels": {
            "rss_mib": round(field("VmRSS", alerting_status), 1),
            "rss_anon_mib": round(field("RssAnon", alerting_status), 1),
            "rss_file_mib": round(field("RssFile", alerting_status), 1),
        },
    }


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _bare_rss() -> float:
    code = ("import psycopg2, structlog, schedule, dotenv;"
            "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])")  # fmt: skip
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True).stdout
    return round(int(out) / 1024, 1)


# ----------------------------------------------------------------------------- 4. overhead per run
def overhead(world: World, spiders: int, reps: int) -> dict[str, Any]:
    """N tiny crawls: by hand one after another, and through the daemon at concurrency 1, 2, 4."""
    names = [f"bench_{n:03d}" for n in range(spiders)]
    by_hand, daemon = [], {1: [], 2: [], 4: []}
    for _ in range(reps):
        env = world.env("unused", spiders)
        t0 = time.monotonic()
        for name in names:
            subprocess.run([PYTHON, "-m", "scrapy", "crawl", name], cwd=PROJECT, env=env, capture_output=True,
                           check=True, timeout=300)  # fmt: skip
        by_hand.append(time.monotonic() - t0)
        for concurrency in daemon:
            daemon[concurrency].append(daemon_run(world, spiders, SCHEDULER_CONCURRENCY=str(concurrency))["duration_s"])
    hand = median(by_hand)
    figures = {f"daemon_concurrency_{c}_s": median(v) for c, v in daemon.items()}
    return {
        "spiders": spiders,
        "by_hand_s": hand,
        **figures,
        "ratio_daemon_c1_to_by_hand": figures["daemon_concurrency_1_s"] / hand,
        "speedup_c2": hand / figures["daemon_concurrency_2_s"],
        "speedup_c4": hand / figures["daemon_concurrency_4_s"],
        "cores": os.cpu_count(),
    }


def all_crawled(conn: Any, spiders: int) -> bool:
    """Every one of `spiders` crawls recorded as ended, and no run under way."""
    return rows(conn, "SELECT (SELECT count(*) FROM spider_runs WHERE status <> 'running') >= %(n)s "
                      "AND NOT EXISTS (SELECT 1 FROM scheduler_state WHERE status = 'running')", {"n": spiders})[0][0]  # fmt: skip


def runs_span(conn: Any) -> tuple[str, int, float]:
    """(completed if every run did, crawls in them, seconds from the first run's start to the last one's end):
    each decision's crawls are a run of their own (issue 20), several when the slots are fewer than the jobs."""
    [(status, count, duration)] = rows(
        conn, "SELECT CASE WHEN bool_and(status = 'completed') THEN 'completed' ELSE 'failed' END, sum(spider_count), "
              "EXTRACT(EPOCH FROM max(finished_at) - min(last_run_at)) FROM scheduler_state")  # fmt: skip
    return status, int(count), float(duration)


def daemon_run(world: World, spiders: int, **extra: str) -> dict[str, Any]:
    """Every spider of the project crawled once through the daemon (empty history: all due at once).
    Each decision's crawls are a run of their own (issue 20), so with fewer slots than spiders there
    are several: the figures span them all, from the first run's start to the last one's end."""
    db = world.database()
    env = world.env(db, spiders, **extra)
    conn = world.pg.connect(db)
    over = lambda: all_crawled(conn, spiders)  # noqa: E731
    with process([PYTHON, "-m", "daemon"], env, world.workdir / f"run-{db}.log"):
        wait_for(over, timeout=spiders * 10 + 120, step=0.2, what="the runs to end")
    status, count, duration = runs_span(conn)
    [(completed, items, wrong)] = rows(
        conn, "SELECT count(*) FILTER (WHERE status = 'completed'), COALESCE(sum(items_scraped), 0), "
              "count(*) FILTER (WHERE status <> 'completed' OR items_scraped <> 15 OR finished_at IS NULL) "
              "FROM spider_runs")  # fmt: skip
    conn.close()
    return {"status": status, "spider_count": int(count), "duration_s": float(duration), "spiders_completed": completed,
            "items": int(items), "wrong_records": wrong}  # fmt: skip


# ----------------------------------------------------------------------------- 5. scale
GENERATE_RUNS = """
INSERT INTO scheduler_state (last_run_at, spider_count, status, created_at, updated_at, finished_at)
SELECT t, %(per_run)s, CASE WHEN g %% 10 = 0 THEN 'failed' ELSE 'completed' END, t, t, t + interval '2 minutes'
  FROM generate_series(1, %(runs)s) AS g,
       LATERAL (SELECT now() - (%(runs)s - g) * interval '4 minutes' AS t) AS at
"""
# Each spider's runs are those of the job named after it (the job given, not left to the trigger
# of sql/012_jobs.sql, which would cost a function call per row).
GENERATE_SPIDER_RUNS = """
INSERT INTO spider_runs (run_id, job, spider, status, failure, started_at, finished_at, exit_code, finish_reason,
                         items_scraped, error_count, message)
SELECT r.id, s.name, s.name,
       CASE WHEN (r.id + j) %% 10 = 0 THEN 'failed' ELSE 'completed' END,
       CASE WHEN (r.id + j) %% 10 = 0 THEN 'error' END,
       r.last_run_at, r.last_run_at + interval '1 minute', 0, 'finished', 15, 0, 'ok'
  FROM scheduler_state r, generate_series(0, %(per_run)s - 1) AS j,
       LATERAL (SELECT 'bench_' || lpad(((r.id * %(per_run)s + j) %% 20)::text, 3, '0') AS name) AS s
"""


def generate(conn: Any, query: str, params: dict[str, Any]) -> None:
    """Write generated history in bulk, as a restore would: without the row triggers (sql/012's job
    of a spider, sql/017's alert and baseline verdict), which cost about a millisecond a row and are
    for the daemon's own writes, one per crawl. The bench's server runs as a superuser."""
    rows(conn, "SET session_replication_role = replica")
    try:
        rows(conn, query, params)
    finally:
        rows(conn, "RESET session_replication_role")


def scale(world: World, runs: int, spider_rows: int, big_run_spiders: int) -> dict[str, Any]:
    dbname = world.database()
    conn = world.pg.connect(dbname)
    per_run = max(1, min(20, spider_rows // runs))
    t0 = time.monotonic()
    generate(conn, GENERATE_RUNS, {"runs": runs, "per_run": per_run})
    generate(conn, GENERATE_SPIDER_RUNS, {"per_run": per_run})
    rows(conn, "ANALYZE")
    generated_s = time.monotonic() - t0
    [(n_runs, n_spider_runs)] = rows(conn, "SELECT (SELECT count(*) FROM scheduler_state), "
                                           "(SELECT count(*) FROM spider_runs)")  # fmt: skip
    spiders = [f"bench_{n:03d}" for n in range(20)]
    # The decision query on a connection made the way the daemon makes its own.
    daemon_conn = db.connect(Settings.from_mapping({**world.pg.env(dbname), "SCRAPY_PROJECT_DIR": str(PROJECT)}))
    # JOB_HISTORY, the query the daemon decides from (per job): the generated rows are runs of the
    # jobs named after their spiders, as rows written before jobs existed are.
    decision = _timed(lambda: rows(daemon_conn, queries.JOB_HISTORY, {"jobs": spiders}), 20)
    plan = "\n".join(r[0] for r in rows(daemon_conn, "EXPLAIN (ANALYZE, BUFFERS) " + queries.JOB_HISTORY,
                                        {"jobs": spiders}))  # fmt: skip
    daemon_conn.close()
    monitoring = {}
    for n, query in enumerate(_monitoring_queries(), 1):
        monitoring[f"query_{n}_ms"] = _timed(lambda q=query: rows(conn, q), 5)
    # Query 4 as its view (sql/010): the same answer without LAG over every completed run.
    view = "SELECT * FROM hours_between_completed_runs"
    monitoring["query_4_as_its_view_ms"] = _timed(lambda: rows(conn, view), 5)
    monitoring["query_4_view_gives_the_same_rows"] = rows(conn, view) == rows(conn, _monitoring_queries()[3])
    env = world.env(dbname, 20)
    status_s = []
    for _ in range(3):
        t = time.monotonic()
        subprocess.run([PYTHON, "-m", "daemon", "status"], cwd=ROOT, env=env, capture_output=True, check=True,
                       timeout=120)  # fmt: skip
        status_s.append(time.monotonic() - t)
    conn.close()
    return {
        "runs": n_runs,
        "spider_runs": n_spider_runs,
        "generated_in_s": round(generated_s, 1),
        "decision_query_ms": decision,
        "decision_query_uses_index": "Index" in plan and "Seq Scan on spider_runs" not in plan,
        "decision_query_plan": plan,
        "status_command_s": median(status_s),
        "monitoring": monitoring,
        "big_run": daemon_run(world, big_run_spiders, SCHEDULER_CONCURRENCY="2"),
    }


def _timed(call: Callable[[], Any], times: int) -> float:
    spent = []
    for _ in range(times):
        t = time.perf_counter()
        call()
        spent.append((time.perf_counter() - t) * 1000)
    return round(median(spent), 3)


def _monitoring_queries() -> list[str]:
    text = "\n".join(line for line in (ROOT / "sql" / "monitoring.sql").read_text().splitlines()
                     if not line.lstrip().startswith("--"))  # fmt: skip
    return [q.strip() for q in text.split(";") if q.strip()]


# ----------------------------------------------------------------------------- 6. fast answers
def fast_catch_up(world: World, reps: int) -> dict[str, Any]:
    """PostgreSQL up -> first crawl, with the daemon itself (`python -m daemon`, the migrations
    applied) started before PostgreSQL and the project's spiders published by its previous life:
    the catch-up starts from them and `scrapy list` runs beside it. Next to it, one bare `scrapy
    list` of the same project, timed in the same run."""
    prepared = world.database()
    conn = world.pg.connect(prepared)
    insert_completed(conn, ["bench_000"], datetime.now(timezone.utc) - timedelta(minutes=1))
    conn.close()
    # The previous life: a daemon that found nothing due and published its jobs and spiders.
    env = world.env(prepared, SCHEDULER_SPIDERS="bench_000")
    logfile = world.workdir / "fast-catch-up-before.log"
    with process([PYTHON, "-m", "daemon"], env, logfile) as proc:
        wait_event(logfile, "run_not_due", 60, proc)
    latencies, listings, phases = [], [], {}
    for rep in range(reps):
        dbname = world.database(template=prepared)
        conn = world.pg.connect(dbname)
        rows(conn, "UPDATE spider_runs SET started_at = started_at - interval '5 hours', "
                   "finished_at = finished_at - interval '5 hours'")  # fmt: skip
        published = rows(conn, "SELECT spiders FROM jobs_source")[0][0]
        conn.close()
        env = world.env(dbname, SCHEDULER_SPIDERS="bench_000")
        logfile = world.workdir / f"fast-catch-up-{rep}.log"
        world.pg.stop("fast")
        with process([PYTHON, "-m", "daemon"], env, logfile) as proc:
            time.sleep(1.5)  # the daemon is waiting for PostgreSQL, retrying
            world.pg_start_nowait()
            accepted = world.first_accepted_connection()
            started = wait_event(logfile, "spider_started", 60, proc)
            latencies.append(log_time(started) - accepted)
            if rep == 0:
                for name in ("database_available", "scheduler_started", "runner_lock_acquired", "run_started",
                             "spider_started"):  # fmt: skip
                    event = first_event(logfile, name)
                    if event is not None:
                        phases[name] = round(log_time(event) - accepted, 3)
        t = time.monotonic()
        subprocess.run([PYTHON, "-m", "scrapy", "list"], cwd=PROJECT, env=env, capture_output=True, check=True,
                       timeout=120)  # fmt: skip
        listings.append(time.monotonic() - t)
    return {
        "published_spiders": published,
        "postgres_up_to_first_crawl_s": {"median": median(latencies), "max": max(latencies), "all": latencies},
        "phases_after_postgres_up_s": phases,
        "bare_scrapy_list_s": {"median": median(listings), "all": listings},
    }


COMMANDS = {
    "status": ["status"],
    "status --json": ["status", "--json"],
    "run-now": ["run-now", "bench_001"],
    "pause": ["pause", "bench_002"],
    "resume": ["resume", "bench_002"],
    "cancel": ["cancel", "bench_003"],
}


def commands(world: World, reps: int, spiders: int = 20) -> dict[str, Any]:
    """Each command as a whole process, against the jobs a daemon published (the bench project
    without a jobs file: one job per spider). The daemon is stopped first, so run-now only queues
    its request and no crawl competes for the CPU."""
    dbname = world.database()
    conn = world.pg.connect(dbname)
    insert_completed(conn, [f"bench_{n:03d}" for n in range(spiders)], datetime.now(timezone.utc))
    conn.close()
    env = world.env(dbname, spiders)
    logfile = world.workdir / "commands-daemon.log"
    with process([PYTHON, "-m", "daemon"], env, logfile) as proc:
        wait_event(logfile, "run_not_due", 60, proc)
    spent: dict[str, list[float]] = {name: [] for name in [*COMMANDS, "--help"]}
    for _ in range(reps):
        for name, argv in [*COMMANDS.items(), ("--help", ["--help"])]:
            t = time.monotonic()
            subprocess.run([PYTHON, "-m", "daemon", *argv], cwd=ROOT, env=env, capture_output=True, check=True,
                           timeout=120)  # fmt: skip
            spent[name].append(time.monotonic() - t)
    medians = {name: median(values) for name, values in spent.items()}
    others = {name: s for name, s in medians.items() if name not in ("status", "--help")}
    slowest = max(others, key=others.__getitem__)
    return {"jobs": spiders, "median_s": medians, "all_s": spent, "slowest_other": slowest,
            "slowest_other_s": others[slowest]}  # fmt: skip


# ----------------------------------------------------------------------------- 7. many jobs
def jobs_file(spiders: int, argsets: int, last_every: str) -> str:
    """`spiders` x `argsets` jobs, each spider with that many searches; the last job's `every` is
    the one a reload changes."""
    lines = ["[defaults]", 'every = "4h"', ""]
    for s in range(spiders):
        for a in range(argsets):
            lines += [f"[jobs.bench_{s:03d}-q{a:03d}]", f'spider = "bench_{s:03d}"',
                      f'args = {{ q = "search {a}", page = {a} }}', ""]  # fmt: skip
    lines.insert(-1, f'every = "{last_every}"')
    return "\n".join(lines)


# One completed crawl of every job of jobs_file, a minute ago (nothing is due).
GENERATE_JOB_RUNS = """
WITH run AS (
    INSERT INTO scheduler_state (last_run_at, spider_count, status, finished_at)
    VALUES (now() - interval '1 minute', %(spiders)s * %(argsets)s, 'completed', now()) RETURNING id)
INSERT INTO spider_runs (run_id, job, spider, args, status, started_at, finished_at, items_scraped)
SELECT run.id, 'bench_' || lpad(s::text, 3, '0') || '-q' || lpad(a::text, 3, '0'), 'bench_' || lpad(s::text, 3, '0'),
       jsonb_build_object('q', 'search ' || a, 'page', a::text), 'completed', now() - interval '1 minute', now(), 15
  FROM run, generate_series(0, %(spiders)s - 1) AS s, generate_series(0, %(argsets)s - 1) AS a
"""
MANY_JOBS_TICK_SECONDS = 2.0  # the daemon's tick here (default 30 s): how soon it notices a changed file unasked


def many_jobs(world: World, spiders: int, argsets: int, reps: int, ticks: int) -> dict[str, Any]:
    """A generated jobs file of spiders x argsets jobs (every job ran a minute ago): start-up to the
    first decision (first start, then a restart that finds the spiders published), resident
    memory once idle, `status --json`, reloading the file, and the loop's step in-process."""
    count = spiders * argsets
    path = world.workdir / "many-jobs.toml"
    path.write_text(jobs_file(spiders, argsets, "4h"))
    last_job = f"bench_{spiders - 1:03d}-q{argsets - 1:03d}"
    dbname = world.database()
    conn = world.pg.connect(dbname)
    generate(conn, GENERATE_JOB_RUNS, {"spiders": spiders, "argsets": argsets})
    rows(conn, "ANALYZE")
    env = world.env(dbname, spiders, SCHEDULER_JOBS_FILE=str(path), SCHEDULER_TICK_SECONDS=str(MANY_JOBS_TICK_SECONDS))
    out: dict[str, Any] = {"jobs": count, "spiders": spiders, "argument_sets": argsets,
                           "file_bytes": path.stat().st_size, "tick_s": MANY_JOBS_TICK_SECONDS}  # fmt: skip
    # First start: nothing published yet, so `scrapy list` runs before the first decision.
    logfile = world.workdir / "many-jobs-first.log"
    t0 = time.time()
    with process([PYTHON, "-m", "daemon"], env, logfile) as proc:
        out["first_start_to_first_decision_s"] = log_time(wait_event(logfile, "run_not_due", 300, proc)) - t0
    # A restart: the spiders published by the first start; the listing runs beside the loop.
    logfile = world.workdir / "many-jobs.log"
    t0 = time.time()
    with process([PYTHON, "-m", "daemon"], env, logfile) as proc:
        out["restart_to_first_decision_s"] = log_time(wait_event(logfile, "run_not_due", 300, proc)) - t0
        _wait_quiet(proc.pid)
        time.sleep(MANY_JOBS_TICK_SECONDS + 1)  # past the step that reads the listing's answer
        out["idle_rss_mib"] = _rss_mib(proc.pid)
        status_s = []
        for _ in range(reps):
            t = time.monotonic()
            done = subprocess.run([PYTHON, "-m", "daemon", "status", "--json"], cwd=ROOT, env=env, capture_output=True,
                                  text=True, check=True, timeout=300)  # fmt: skip
            status_s.append(time.monotonic() - t)
        shown = len(json.loads(done.stdout)["spiders"])
        out["status_json"] = {"median_s": median(status_s), "all_s": status_s, "jobs_shown": shown,
                              "bytes": len(done.stdout)}  # fmt: skip
        published = lambda: rows(conn, "SELECT every_s FROM jobs WHERE name = %(name)s", {"name": last_job})[0][0]  # noqa: E731
        reloads, loaded = [], []
        for rep in range(reps):
            hours = 5 + rep
            path.write_text(jobs_file(spiders, argsets, f"{hours}h"))
            t0 = time.time()
            os.kill(proc.pid, signal.SIGHUP)
            wait_for(lambda: published() == hours * 3600, timeout=60, step=0.005, what="the reloaded jobs published")
            reloads.append(time.time() - t0)
            event = next(e for e in reversed(json_lines(logfile.read_text())) if e.get("event") == "jobs_loaded")
            loaded.append(log_time(event) - t0)
            _wait_quiet(proc.pid)  # SIGHUP lists the spiders again, beside the loop
            time.sleep(MANY_JOBS_TICK_SECONDS + 1)  # the step that reads that listing
        out["reload_on_sighup"] = {"to_republished_median_s": median(reloads), "to_jobs_loaded_median_s": median(loaded),
                                   "to_republished_all_s": reloads, "to_jobs_loaded_all_s": loaded}  # fmt: skip
        path.write_text(jobs_file(spiders, argsets, "4h"))
        t0 = time.time()
        wait_for(lambda: published() == 4 * 3600, timeout=MANY_JOBS_TICK_SECONDS * 3 + 60, step=0.005,
                 what="the changed file noticed")  # fmt: skip
        out["reload_unasked_s"] = time.time() - t0
        _wait_quiet(proc.pid)
        out["rss_after_reloads_mib"] = _rss_mib(proc.pid)
    out["history_read_ms"] = _timed(lambda: rows(conn, queries.JOB_HISTORY, {"jobs": [
        f"bench_{s:03d}-q{a:03d}" for s in range(spiders) for a in range(argsets)]}), 5)  # fmt: skip
    conn.close()
    out["step"] = _steps_in_process(env, ticks)
    return out


def _steps_in_process(env: dict[str, str], ticks: int) -> dict[str, Any]:
    """The loop's step (Scheduler.step) in this process, with the daemon's parts, while nothing is
    due: decided from the history copy, as on most ticks; and with the copy dropped first, as
    after a run, on taking the lock and every HISTORY_REFRESH_SECONDS (the history read anew)."""
    import structlog.testing

    from daemon.jobs import jobfile
    from daemon.jobs.catalog import open_catalog
    from daemon.assemble import assemble
    from daemon.jobs.spiders import list_spiders, resolve_spiders

    settings = Settings.from_mapping({k: v for k, v in env.items() if k not in ("PATH", "PYTHONPATH")})
    os.environ.update({"BENCH_SITE_URL": env["BENCH_SITE_URL"], "BENCH_SPIDERS": env["BENCH_SPIDERS"]})  # `scrapy list`
    path = jobfile.resolve_path(str(settings.jobs_file or ""), settings.project_dir)
    store_conn = db.connect(settings)
    # No stored spiders: they are listed before the catalog opens, so no `scrapy list` runs beside
    # the steps measured (as it does for a few seconds after a real start).
    catalog = open_catalog(path, jobfile.JobDefaults.from_settings(settings), settings.spiders, None,
                           lambda: list_spiders(settings), lambda found: resolve_spiders(settings, found))  # fmt: skip
    scheduler = assemble(settings, catalog, conn=store_conn, environ={**os.environ, **env})
    from_copy, reading = [], []
    try:
        with structlog.testing.capture_logs() as events:
            # Up to the first decision (the lock, the recovery, settling), then one step more.
            deadline = time.monotonic() + 120
            while not any(e["event"] == "run_not_due" for e in events) and time.monotonic() < deadline:
                time.sleep(min(scheduler.step(scheduler.clock.now()), 1.0))
            scheduler.step(scheduler.clock.now())
            if not any(e["event"] == "run_not_due" for e in events):
                raise RuntimeError(f"no decision within 120 s: {[e['event'] for e in events]}")
            for _ in range(ticks):
                t = time.perf_counter()
                scheduler.step(scheduler.clock.now())
                from_copy.append((time.perf_counter() - t) * 1000)
                scheduler.history.invalidate()
                t = time.perf_counter()
                scheduler.step(scheduler.clock.now())
                reading.append((time.perf_counter() - t) * 1000)
    finally:
        scheduler.lease.release()
        store_conn.close()
    if any(e["event"] in ("run_started", "database_error") for e in events):
        raise RuntimeError(f"the steps were not idle: {[e['event'] for e in events]}")
    return {"jobs": len(catalog.jobs), "from_copy_ms": {"median": round(median(from_copy), 3),
                                                        "p95": round(p95(from_copy), 3)},
            "reading_history_ms": {"median": round(median(reading), 3), "p95": round(p95(reading), 3)}}  # fmt: skip


def _children(pid: int) -> list[str]:
    return [child for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()]


def _wait_quiet(pid: int) -> None:
    """Until the daemon has no child process (its `scrapy list` beside the loop is over) but its
    warm parent, started as it waited for PostgreSQL, which lingers a minute with nothing to fork."""

    def listing() -> list[str]:
        found = []
        for child in _children(pid):
            try:
                if b"daemon.engines.warm_parent" not in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(child)
            except OSError:
                pass  # ended meanwhile
        return found

    wait_for(lambda: not listing(), timeout=300, step=0.05, what="the daemon's children to end")


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return round(int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024, 1)  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- 8. a Scrapyd cluster
CLUSTER_PAGE_DELAY_S = 1.8  # each page of the slow site answers after this: a crawl mostly waits
CLUSTER_NODES = 3


class _SlowSite(_Site):
    """The benchmark site's three pages, each answered after CLUSTER_PAGE_DELAY_S (a slow site:
    the crawls are I/O-bound, so 2 cores are not what limits three at once)."""

    def do_GET(self) -> None:  # noqa: N802
        time.sleep(CLUSTER_PAGE_DELAY_S)
        super().do_GET()


class BenchNode:
    """One real Scrapyd 1.6 node on 127.0.0.1 with one slot (max_proc = 1), started inside its own
    copy of the bench project (served as project `default`) in a session of its own, with the
    repository on PYTHONPATH so its crawls load daemon.node_stats. Configured like the node image
    (poll_interval = 0.2). `kill` ends its whole process group."""

    def __init__(self, base: Path, name: str, site: str, spiders: int) -> None:
        from tests.conftest import free_port

        self.dir = base / name
        shutil.copytree(PROJECT, self.dir, ignore=shutil.ignore_patterns("__pycache__"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = ["[scrapyd]", f"http_port = {self.port}", "bind_address = 127.0.0.1", "max_proc = 1",
                "poll_interval = 0.2", "jobs_to_keep = 100", f"logs_dir = {self.dir / 'logs'}",
                f"eggs_dir = {self.dir / 'eggs'}", f"dbs_dir = {self.dir / 'dbs'}", "items_dir ="]  # fmt: skip
        (self.dir / "scrapyd.conf").write_text("\n".join(conf) + "\n")
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SCRAPYD_", "SCRAPY_", "SCHEDULER_"))},
                    "PYTHONPATH": str(ROOT), "BENCH_SITE_URL": site, "BENCH_SPIDERS": str(spiders)}  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BenchNode:
        with (self.dir / "scrapyd.out").open("ab") as out:
            self.proc = subprocess.Popen([PYTHON, "-m", "scrapyd", "--pidfile="], cwd=self.dir, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        return self

    def wait_answering(self) -> BenchNode:
        from daemon.engines.scrapyd.client import ScrapydClient, ScrapydError

        client = ScrapydClient(self.url)

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"scrapyd exited: {(self.dir / 'scrapyd.out').read_text()[-1500:]}")
            try:
                client.daemonstatus()
                return True
            except ScrapydError:
                return False

        wait_for(answers, timeout=60, step=0.1, what=f"scrapyd on port {self.port}")
        return self

    def list_spiders(self) -> float:
        """Scrapyd runs `scrapy list` (blocking) on its first schedule.json of a project, then
        keeps the answer: listspiders.json fills that cache. The seconds it took."""
        import urllib.request

        t = time.monotonic()
        with urllib.request.urlopen(f"{self.url}/listspiders.json?project=default", timeout=60) as answer:
            listed = json.loads(answer.read())
        if listed.get("status") != "ok":
            raise RuntimeError(f"listspiders.json on {self.url}: {listed}")
        return time.monotonic() - t

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def crawls_run(self) -> int:
        return len(list((self.dir / "logs").glob("default/*/*.log")))


def cluster(world: World, crawls: int, reps: int) -> dict[str, Any]:
    """The same I/O-bound crawls (the slow site: three pages, each answered after
    CLUSTER_PAGE_DELAY_S), all due at once, run by the daemon (`python -m daemon`, the real
    PostgreSQL): with the local runner at concurrency 1, then with SCHEDULER_ENGINE=scrapyd on 1, 2
    and 3 real Scrapyd nodes of one slot each. A run's wall time is its record's start to its
    finish (every crawl recorded); the dispatch overhead per crawl is (1 node - local runner) / N,
    both running the N crawls one at a time."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    slow = f"http://127.0.0.1:{server.server_address[1]}"
    base = world.workdir / "cluster"
    base.mkdir()
    nodes: list[BenchNode] = []
    configs = ["local", *(f"nodes_{n}" for n in range(1, CLUSTER_NODES + 1))]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    load_before = os.getloadavg()
    try:
        for n in range(CLUSTER_NODES):
            nodes.append(BenchNode(base, f"node-{n + 1}", slow, crawls).start())
        for node in nodes:
            node.wait_answering()
        # Each node's first schedule.json would list the spiders first: measured apart, here.
        first_listing = [node.list_spiders() for node in nodes]
        for _ in range(reps):
            runs["local"].append(cluster_run(world, crawls, BENCH_SITE_URL=slow, SCHEDULER_CONCURRENCY="1"))
            for n in range(1, CLUSTER_NODES + 1):
                runs[f"nodes_{n}"].append(cluster_run(
                    world, crawls, BENCH_SITE_URL=slow, SCHEDULER_ENGINE="scrapyd",
                    SCRAPYD_NODES=",".join(f"{node.url}=1" for node in nodes[:n])))  # fmt: skip
        sent = sum(node.crawls_run() for node in nodes)
    finally:
        for node in nodes:
            node.kill()
        server.shutdown()
    wall = {c: median([r["duration_s"] for r in runs[c]]) for c in configs}
    per_crawl = {c: median([d for r in runs[c] for d in r["crawl_s"]]) for c in configs}
    # Around each crawl: from its record's start to Scrapy's start_time in it (launch), and from its
    # finish_time to its record's finish (collect); the crawl's own time, the same work both ways,
    # left out. Medians of each phase (one slow start on a shared machine moves one sample only).
    phases = {c: {name: median([d for r in runs[c] for d in r[name]]) for name in ("launch_s", "crawl_own_s",
                                                                                   "collect_s")}
              for c in configs}  # fmt: skip
    around = {c: phases[c]["launch_s"] + phases[c]["collect_s"] for c in configs}
    return {
        "crawls": crawls,
        "reps": reps,
        "pages_per_crawl": 3,
        "page_delay_s": CLUSTER_PAGE_DELAY_S,
        "cores": os.cpu_count(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "wall_s": wall,
        "speedup_2_nodes": wall["nodes_1"] / wall["nodes_2"],
        "speedup_3_nodes": wall["nodes_1"] / wall["nodes_3"],
        "dispatch_overhead_per_crawl_s": around["nodes_1"] - around["local"],
        "around_crawl_s": around,
        "phases_s": phases,
        "run_overhead_per_crawl_s": (wall["nodes_1"] - wall["local"]) / crawls,
        "per_crawl_s": per_crawl,
        "per_crawl_overhead_s": per_crawl["nodes_1"] - per_crawl["local"],
        "node_first_listing_s": {"median": median(first_listing), "all": first_listing},
        "most_nodes_used": {c: max(r["nodes_used"] for r in runs[c]) for c in configs},
        "wrong_records": sum(r["wrong_records"] for c in configs for r in runs[c]),
        "schedule_json_sent": sent,
        "remote_crawls_recorded": sum(r["spiders_completed"] for c in configs[1:] for r in runs[c]),
        "runs": runs,
    }


def cluster_run(world: World, spiders: int, **extra: str) -> dict[str, Any]:
    """One run of every spider of the project (empty history: all due at once) by `python -m
    daemon`; its wall time, each crawl's (recorded start to recorded finish) and the nodes used."""
    dbname = world.database()
    env = world.env(dbname, spiders, **extra)
    conn = world.pg.connect(dbname)
    over = lambda: all_crawled(conn, spiders)  # noqa: E731
    logfile = world.workdir / f"cluster-{dbname}.log"
    with process([PYTHON, "-m", "daemon"], env, logfile) as proc:
        def ended() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited ({proc.returncode}): {logfile.read_text()[-1500:]}")
            return over()

        wait_for(ended, timeout=spiders * 15 + 120, step=0.2, what="the run to end")
    status, _, duration = runs_span(conn)
    crawl_s, launch_s, own_s, collect_s = [], [], [], []
    for started, finished, began, ended in rows(
            conn, "SELECT started_at, finished_at, stats->>'start_time', stats->>'finish_time' FROM spider_runs "
                  "WHERE finished_at IS NOT NULL ORDER BY id"):  # fmt: skip
        crawl_s.append((finished - started).total_seconds())
        if began and ended:  # Scrapy's own clock inside the crawl: its start and finish
            launch_s.append(_stats_time(began) - started.timestamp())
            own_s.append(_stats_time(ended) - _stats_time(began))
            collect_s.append(finished.timestamp() - _stats_time(ended))
    [(completed, wrong, nodes_used)] = rows(
        conn, "SELECT count(*) FILTER (WHERE status = 'completed'), "
              "count(*) FILTER (WHERE status <> 'completed' OR items_scraped IS DISTINCT FROM 15 "
              "OR finished_at IS NULL), count(DISTINCT node) FROM spider_runs")  # fmt: skip
    conn.close()
    wrong += max(0, spiders - completed - wrong)  # a crawl never recorded is wrong too
    return {"status": status, "duration_s": float(duration), "crawl_s": crawl_s, "launch_s": launch_s,
            "crawl_own_s": own_s, "collect_s": collect_s, "spiders_completed": completed, "wrong_records": wrong,
            "nodes_used": nodes_used}  # fmt: skip


def _stats_time(text: str) -> float:
    """A time in Scrapy's stats (ISO; UTC when it names no zone) as Unix time."""
    at = datetime.fromisoformat(text)
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


# ----------------------------------------------------------------------------- 9. how a crawl starts
def crawl_starts(world: World, crawls: int, reps: int) -> dict[str, Any]:
    """Cold against warm crawl starts (issue 24), by the daemon's own starter: bench/warm_starts.py."""
    from warm_starts import crawl_starts as measure, timed_site  # bench/ is this script's directory

    site, first_request, shutdown = timed_site(_Site)
    env = {**world.env("unused", crawls), "BENCH_SITE_URL": site}
    try:
        return measure(PROJECT, env, crawls, reps, world.workdir, first_request)
    finally:
        shutdown()


# ----------------------------------------------------------------------------- the report
# ----------------------------------------------------------------------------- the endpoint under a flood
HTTP_FLOOD_CONNECTIONS = 3000
HTTP_FLOOD_EVERY_S = 15  # the job's interval: crawls go on beside the flood


def http_flood(world: World, hold_s: int) -> dict[str, Any]:
    """The endpoint of a daemon running one job every 15 s (the issue's setting): a client fetching
    the page and /metrics twice a second, idle and then beside 3,000 connections that send half a
    request and wait (tests/flood.py, its own process, from 100 loopback addresses, each re-opened a
    second after it is cut); the daemon's threads and resident memory in each phase."""
    from tests.flood import fetch, proc_figures

    port = free_port()
    env = world.env(world.database(), SCHEDULER_SPIDERS="bench_000", SCHEDULER_HTTP_PORT=str(port),
                    SCHEDULER_TICK_SECONDS="1", SCHEDULER_INTERVAL_HOURS=str(HTTP_FLOOD_EVERY_S / 3600))  # fmt: skip
    logfile = world.workdir / "http-flood.log"

    def phase(seconds: int) -> dict[str, Any]:
        page, metrics, samples = [], [], []
        for _ in range(seconds * 2):
            tick = time.monotonic()
            page.append(fetch(port, "/", None))
            metrics.append(fetch(port, "/metrics", None))
            samples.append(proc_figures(proc.pid))
            time.sleep(max(0.0, 0.5 - (time.monotonic() - tick)))
        return {
            "page_ms": {"p50": median([t * 1000 for _, t in page]), "p95": p95([t * 1000 for _, t in page])},
            "metrics_ms": {"p50": median([t * 1000 for _, t in metrics]), "p95": p95([t * 1000 for _, t in metrics])},
            "not_200": sum(s != 200 for s, _ in page + metrics), "requests": len(page) + len(metrics),
            "threads_max": max(s[0] for s in samples), "rss_mib_max": round(max(s[1] for s in samples), 1),
        }  # fmt: skip

    with process([PYTHON, "-m", "daemon"], env, logfile) as proc:
        wait_event(logfile, "run_completed", 60, proc)
        fetch(port, "/", None), fetch(port, "/metrics", None)  # the page's modules loaded
        idle = phase(hold_s)
        flood = subprocess.Popen([PYTHON, "-m", "tests.flood", str(port), str(HTTP_FLOOD_CONNECTIONS), str(hold_s + 5)],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(3)
        under = phase(hold_s)
        flooded = json.loads(flood.communicate(timeout=60)[0] or "{}")
        time.sleep(5)
        threads, rss, _ = proc_figures(proc.pid)
    return {"connections": HTTP_FLOOD_CONNECTIONS, "hold_s": hold_s, "idle": idle, "flood": under,
            "flood_client": flooded, "after": {"threads": threads, "rss_mib": round(rss, 1)}}  # fmt: skip


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure a user feels: what was measured, the target, and whether it was met."""
    out: list[dict[str, Any]] = []

    def row(what: str, value: float | None, unit: str, target: float | None, better: str = "lower") -> None:
        met = None
        if value is not None and target is not None:
            met = value <= target if better == "lower" else value >= target
        out.append({"what": what, "value": None if value is None else round(value, 3), "unit": unit,
                    "target": target, "met": met})  # fmt: skip

    c = results.get("catch_up_local", {})
    if c:
        row("catch-up: Postgres up -> first crawl (median)", c["postgres_up_to_first_crawl_s"]["median"], "s", 1.0)
        row("catch-up: entrypoint start -> first crawl, Postgres up (median)",
            c["entrypoint_start_to_first_crawl_s"]["median"], "s", None)  # fmt: skip
    d = results.get("catch_up_container", {})
    if d and "skipped" not in d:
        row("container: Postgres healthy -> run started (median)", d["healthy_to_run_started_median_s"], "s", 5.0)
        row("container: docker compose up -d -> run started (median)", d["up_to_run_started_median_s"], "s", None)
        row(f"image size (base here: {d['image']['base_size_mb']:g} MB)", d["image"]["size_mb"], "MB", 300.0)
        row("image: the project's own layers", d["image"]["own_layers_mb"], "MB", None)
        row("image: docker run ... python -m daemon --help (median)", d["image"]["run_help_s"], "s", None)
    p = results.get("precision", {})
    if p:
        row(f"precision: |start - due| median over {p['runs']} runs", p["median_s"], "s", 1.0)
        row(f"precision: |start - due| p95 over {p['runs']} runs", p["p95_s"], "s", 1.0)
    j = results.get("clock_jump", {})
    if j:
        row(f"precision: wall-clock jump -> crawl, worst (tick {j['tick_s']:g} s)", j["max_s"], "s", j["tick_s"])
    i = results.get("idle", {})
    if i:
        row("idle: resident memory (RSS)", i["rss_mib"], "MiB", 30.0)
        row("idle with pings: resident memory (RSS), after one run", i["with_pings"]["rss_mib"], "MiB", 30.0)
        if "with_channels" in i:
            row("idle with alert channels (SCHEDULER_NOTIFY_CONFIG): resident memory (RSS)",
                i["with_channels"]["rss_mib"], "MiB", 30.0)  # fmt: skip
        row("idle: CPU per hour", i["cpu_s_per_hour"], "s/h", 2.0)
        row("idle: database statements per minute", i["db_statements_per_minute"], "/min", 2.0)
    o = results.get("overhead", {})
    if o:
        row(f"overhead: {o['spiders']} crawls by hand, one after another", o["by_hand_s"], "s", None)
        row("overhead: daemon at concurrency 1 / by hand", o["ratio_daemon_c1_to_by_hand"], "x", 1.05)
        row(f"overhead: speed-up at concurrency 2 ({o['cores']} cores)", o["speedup_c2"], "x", None)
        row(f"overhead: speed-up at concurrency 4 ({o['cores']} cores)", o["speedup_c4"], "x", None)
    s = results.get("scale", {})
    if s:
        size = f"{s['runs']:,} runs / {s['spider_runs']:,} spider rows"
        row(f"scale: decision query ({size}, median)", s["decision_query_ms"], "ms", 5.0)
        row("scale: python -m daemon status (median)", s["status_command_s"], "s", 1.0)
        for name, ms in s["monitoring"].items():
            if name.endswith("_ms"):
                row(f"scale: design monitoring {name.replace('_ms', '').replace('_', ' ')} (median)", ms, "ms", 200.0)
        b = s["big_run"]
        row(f"scale: a run of {b['spider_count']} spiders at concurrency 2", b["duration_s"], "s", None)
        row(f"scale: that run's records wrong ({b['spiders_completed']} completed)", b["wrong_records"], "", 0)
    f = results.get("fast_catch_up", {})
    if f:
        row("fast catch-up: Postgres up -> first crawl, daemon up first, spiders published (median)",
            f["postgres_up_to_first_crawl_s"]["median"], "s", 0.5)  # fmt: skip
        row("fast catch-up: one bare `scrapy list` of the same project, same run (median)",
            f["bare_scrapy_list_s"]["median"], "s", None)  # fmt: skip
    c = results.get("commands", {})
    if c:
        row(f"commands ({c['jobs']} published jobs): python -m daemon status (median)", c["median_s"]["status"], "s", 0.3)
        row(f"commands: the slowest other, {c['slowest_other']} (median)", c["slowest_other_s"], "s", 0.3)
        row("commands: python -m daemon --help, the interpreter's floor (median)", c["median_s"]["--help"], "s", None)
    m = results.get("many_jobs", {})
    if m:
        jobs = f"{m['jobs']:,} jobs"
        row(f"{jobs} ({m['spiders']} spiders x {m['argument_sets']} argument sets): first start -> first decision",
            m["first_start_to_first_decision_s"], "s", None)  # fmt: skip
        row(f"{jobs}: restart -> first decision (spiders published)", m["restart_to_first_decision_s"], "s", None)
        row(f"{jobs}: a tick (Scheduler.step from its history copy, median)", m["step"]["from_copy_ms"]["median"],
            "ms", 20.0)  # fmt: skip
        row(f"{jobs}: a tick reading the history anew (Scheduler.step, median)",
            m["step"]["reading_history_ms"]["median"], "ms", None)  # fmt: skip
        row(f"{jobs}: the history query alone (JOB_HISTORY, median)", m["history_read_ms"], "ms", None)
        row(f"{jobs}: python -m daemon status --json (median)", m["status_json"]["median_s"], "s", 1.0)
        row(f"{jobs}: idle resident memory (RSS)", m["idle_rss_mib"], "MiB", 35.0)
        row(f"{jobs}: reload, file changed + SIGHUP -> jobs republished (median)",
            m["reload_on_sighup"]["to_republished_median_s"], "s", 1.0)  # fmt: skip
        row(f"{jobs}: reload, file changed, no signal -> republished (tick {m['tick_s']:g} s)", m["reload_unasked_s"],
            "s", None)  # fmt: skip
    k = results.get("cluster", {})
    if k:
        what = (f"cluster: {k['crawls']} slow crawls due at once ({k['pages_per_crawl']} pages x "
                f"{k['page_delay_s']:g} s), daemon")  # fmt: skip
        row(f"{what}, local runner at concurrency 1", k["wall_s"]["local"], "s", None)
        for n in range(1, CLUSTER_NODES + 1):
            row(f"{what}, {n} Scrapyd node{'s' if n > 1 else ''} of 1 slot", k["wall_s"][f"nodes_{n}"], "s", None)
        row("cluster: speed-up, 2 nodes against 1", k["speedup_2_nodes"], "x", None)
        row("cluster: speed-up, 3 nodes against 1", k["speedup_3_nodes"], "x", 2.5, better="higher")
        row("cluster: dispatch overhead per crawl, 1 node - local runner (record -> Scrapy start + finish -> record)",
            k["dispatch_overhead_per_crawl_s"], "s", 0.2)  # fmt: skip
        row("cluster: the same from whole runs, (1 node - local runner) / crawls", k["run_overhead_per_crawl_s"], "s",
            None)  # fmt: skip
        row("cluster: a crawl's recorded start -> finish, 1 node - local runner (medians)",
            k["per_crawl_overhead_s"], "s", None)  # fmt: skip
        row("cluster: a node's first schedule.json, Scrapyd's own `scrapy list` (median, then cached)",
            k["node_first_listing_s"]["median"], "s", None)  # fmt: skip
        row(f"cluster: records wrong ({k['remote_crawls_recorded']} remote crawls completed, "
            f"{k['schedule_json_sent']} sent)", k["wrong_records"], "", 0)  # fmt: skip
    h = results.get("http_flood", {})
    if h:
        flood = f"under {h['connections']:,} half requests held {h['hold_s']} s"
        for name, key in (("page", "page_ms"), ("/metrics", "metrics_ms")):
            row(f"endpoint: {name} latency idle, p50", h["idle"][key]["p50"], "ms", None)
            row(f"endpoint: {name} latency idle, p95", h["idle"][key]["p95"], "ms", None)
            row(f"endpoint: {name} latency {flood}, p50", h["flood"][key]["p50"], "ms", None)
            row(f"endpoint: {name} latency {flood}, p95", h["flood"][key]["p95"], "ms", 1000.0)
        row(f"endpoint: answers other than 200 {flood} (of {h['flood']['requests']})", h["flood"]["not_200"], "", 0)
        row("endpoint: daemon threads idle (most)", h["idle"]["threads_max"], "", None)
        row(f"endpoint: daemon threads {flood} (most)", h["flood"]["threads_max"], "", None)
        row("endpoint: daemon RSS idle, the page viewed (most)", h["idle"]["rss_mib_max"], "MiB", None)
        row(f"endpoint: daemon RSS {flood} (most)", h["flood"]["rss_mib_max"], "MiB", None)
        row(f"endpoint: daemon RSS growth {flood}", h["flood"]["rss_mib_max"] - h["idle"]["rss_mib_max"], "MiB", 10.0)
    w = results.get("crawl_starts", {})
    if w:
        n = w["crawls"]
        for key, what in (("seq", "one after another"), ("c2", "at concurrency 2")):
            row(f"crawl start: {n} tiny crawls {what}, cold, wall", w["cold"][f"{key}_wall"], "s", None)
            row("crawl start: the same, warm (its parent's start included), wall", w["warm"][f"{key}_wall"], "s",
                None)  # fmt: skip
            row(f"crawl start: {n} {what}, warm / cold, wall", w[f"ratio_{key}_wall"], "x",
                0.3 if key == "seq" else None)  # fmt: skip
            row(f"crawl start: {n} {what}, warm / cold, CPU of all processes", w[f"ratio_{key}_cpu"], "x", 0.3)
        for key, what in (("seq_wall", "wall"), ("seq_cpu", "CPU of all processes")):
            row(f"crawl start: {n} one after another, a fresh parent each (SCHEDULER_WARM_PARENT_CRAWLS=1) / cold, "
                f"{what}", w.get(f"ratio_{key}_warm1"), "x", None)  # fmt: skip
        row("crawl start: one crawl's start -> first request, cold (median)", w["cold"]["first_request"], "s", None)
        row("crawl start: one crawl's start -> first request, warm (median)", w["warm"]["first_request"], "s", 0.1)
        row("crawl start: peak PSS of 4 crawls at once, cold", w["cold"]["peak_pss_4"], "MiB", None)
        row("crawl start: peak PSS of 4 crawls at once, warm (its parent included)", w["warm"]["peak_pss_4"], "MiB",
            None)  # fmt: skip
        row("crawl start: that peak PSS, warm / cold", w["ratio_peak_pss_4"], "x", 0.7)
        row("crawl start: crawls that failed (cold and warm)",
            sum(w[kind]["failed_crawls"] for kind in ("cold", "warm", "warm1")), "", 0)  # fmt: skip
    f = results.get("free_slots", {})
    if f:
        r, t = f["refill"], f["tick_with_crawl_running"]
        row(f"free slot: a crawl's recorded end -> the next crawl's recorded start, local (median of {r['crawls'] - 1})",
            r["median_s"], "s", 0.1)  # fmt: skip
        row("free slot: the same, worst", r["worst_s"], "s", 0.1)
        row(f"free slot: the loop's step at {t['jobs']:,} jobs with a crawl running (median)", t["median_ms"], "ms", 20)
        row("free slot: the same, p95", t["p95_ms"], "ms", None)
        for x in (f["mixed"], f["mixed_fitting"]):
            row(f"free slot: mixed load, one {x['long_s']} s crawl beside {x['short_jobs']} one-second jobs every 10 s "
                f"at concurrency 2: worst overdue of a short job ({x['short_crawls_while_long_ran']} short crawls; "
                f"tick {x['tick_s']:g} s)", x["worst_overdue_s"], "s", x["tick_s"])  # fmt: skip
    return out


def render(rows_: list[dict[str, Any]]) -> str:
    width = max(len(r["what"]) for r in rows_)
    lines = [f"{'what':<{width}}  {'value':>12}  {'target':>10}  met"]
    for r in rows_:
        value = "-" if r["value"] is None else f"{r['value']:.3f} {r['unit']}".strip()
        target = "-" if r["target"] is None else f"{r['target']:g}"
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        lines.append(f"{r['what']:<{width}}  {value:>12}  {target:>10}  {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short form (CI)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "latest.json", help="where to write the results")
    parser.add_argument("--only", nargs="*", help="run only these sections (default: all)")
    parser.add_argument("--no-docker", action="store_true", help="skip the container figures")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    size = MODES[mode]
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    workdir.chmod(0o755)  # the PostgreSQL server runs as an unprivileged user when we are root
    sections: dict[str, Callable[[World], dict[str, Any]]] = {
        "catch_up_local": lambda w: catch_up_local(w, size["catch_up_reps"]),
        "catch_up_container": lambda w: ({"skipped": "--no-docker"} if args.no_docker
                                         else catch_up_container(size["container_reps"])),  # fmt: skip
        "precision": lambda w: precision(w, size["precision_runs"]),
        "clock_jump": lambda w: after_clock_jump(w, size["jump_reps"]),
        "idle": lambda w: idle_cost(w, size["idle_seconds"]),
        "overhead": lambda w: overhead(w, size["overhead_spiders"], size["overhead_reps"]),
        "scale": lambda w: scale(w, size["scale_runs"], size["scale_spider_rows"], size["big_run_spiders"]),
        "fast_catch_up": lambda w: fast_catch_up(w, size["fast_catch_up_reps"]),
        "commands": lambda w: commands(w, size["commands_reps"]),
        "many_jobs": lambda w: many_jobs(w, size["many_jobs_spiders"], size["many_jobs_argsets"],
                                         size["many_jobs_reps"], size["many_jobs_ticks"]),
        "cluster": lambda w: cluster(w, size["cluster_crawls"], size["cluster_reps"]),
        "http_flood": lambda w: http_flood(w, size["http_flood_hold_s"]),
        "crawl_starts": lambda w: crawl_starts(w, size["warm_crawls"], size["warm_reps"]),
        "free_slots": lambda w: free_slots(w, process, PYTHON, crawls=size["refill_crawls"],
                                           jobs_spiders=size["free_slots_jobs_spiders"],
                                           jobs_argsets=size["free_slots_jobs_argsets"], ticks=size["free_slots_ticks"],
                                           long_s=size["mixed_long_s"], generate_job_runs=lambda conn, params: generate(conn, GENERATE_JOB_RUNS, params),
                                           jobs_file=jobs_file),  # fmt: skip
    }
    results: dict[str, Any] = {}
    started = time.monotonic()
    try:
        with World(workdir) as world:
            for name, section in sections.items():
                if args.only and name not in args.only:
                    continue
                log(f"{name} ...")
                t = time.monotonic()
                results[name] = section(world)
                log(f"{name} done in {time.monotonic() - t:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "mode": mode,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "duration_s": round(time.monotonic() - started, 1),
        "table": table(results),
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(render(report["table"]))
    print(f"({mode} run, {report['duration_s']:.0f} s; JSON in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
