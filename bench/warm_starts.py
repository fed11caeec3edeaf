"""The benchmark's crawl-start section (issue 24): the same tiny crawls started cold (`python -m
scrapy crawl`, as the local runner did before) and forked from the warm parent (daemon/engines/warm.py), side
by side in one run, through the daemon's own starter, without PostgreSQL in the way.

- wall time and CPU of every process (user + system from RUSAGE_CHILDREN: the cold crawls, or the
  warm parent and the crawls it reaped, counted once the parent itself has exited), for N crawls
  one after another and N at concurrency 2;
- one crawl's start -> its first request reaching the site;
- the peak total PSS of four crawls at once (the warm parent's included), sampled every 20 ms.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from daemon.jobs.crawl import crawl_command, crawl_environment
from daemon.engines.crawl_starts import CrawlStarts

Start = Callable[[list[str]], Any]  # argv after `python -m scrapy` -> a Popen-like crawl


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cold(project: Path, env: dict[str, str]) -> Start:
    def start(argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(argv, cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip

    return start


def _finish(crawl: Any) -> int:
    crawl.stdout.read()
    crawl.stderr.read()
    return crawl.wait(timeout=300)


def _batch(start: Start, names: list[str], stats_dir: Path, concurrency: int,
           on_start: Callable[[Any], None] | None = None) -> list[int]:  # fmt: skip
    """Run the crawls of `names`, at most `concurrency` at once; their exit codes."""
    codes: list[int] = []
    pending = list(names)
    running: list[threading.Thread] = []
    while pending or running:
        running = [t for t in running if t.is_alive()]
        while pending and len(running) < concurrency:
            # Started from this thread, as the runner does (the warm parent's PDEATHSIG follows it).
            name = pending.pop(0)
            crawl = start(crawl_command(name, stats_dir / f"{name}-{time.monotonic_ns()}.json"))
            if on_start:
                on_start(crawl)
            t = threading.Thread(target=lambda c=crawl: codes.append(_finish(c)), daemon=True)
            t.start()
            running.append(t)
        time.sleep(0.005)
    return codes


def timed_site(handler: type) -> tuple[str, Callable[[], float | None], Callable[[], None]]:  # a BaseHTTPRequestHandler
    """The benchmark's site, noting when the first request after each reset arrived: (its URL, a
    function returning that time and resetting, a function that shuts it down)."""
    seen: list[float] = []

    class Timed(handler):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:  # noqa: N802
            if not seen:
                seen.append(time.monotonic())
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Timed)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def first_request() -> float | None:
        found = seen[0] if seen else None
        seen.clear()
        return found

    return f"http://127.0.0.1:{server.server_address[1]}", first_request, server.shutdown


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _mode(kind: str, project: Path, env: dict[str, str]) -> tuple[Start, Callable[[], None], CrawlStarts | None]:
    """A starter for `kind`, and what ends it (the warm parent drained, exited and reaped)."""
    if kind == "cold":
        return (lambda argv: _cold(project, env)(argv)), (lambda: None), None
    # "warm1": SCHEDULER_WARM_PARENT_CRAWLS=1, a fresh parent (a fresh hash seed) for every crawl.
    starts = CrawlStarts("warm", project, env, crawls_per_parent=1 if kind == "warm1" else 100)
    starts.begin_run()
    parents: list[Any] = []

    def start(argv: list[str]) -> Any:
        parent = starts.parent
        crawl = starts.start(argv[3:])
        if crawl is None:
            raise RuntimeError(f"the warm parent could not start a crawl: {starts._cold_reason}")
        parents.extend(p for p in (parent, starts.parent) if p is not None and p not in parents)
        return crawl

    def end() -> None:
        for parent in parents:
            parent.close()
            parent.proc.wait(timeout=60)
        time.sleep(0.05)  # their reader threads have reaped them; RUSAGE_CHILDREN now holds their crawls

    return start, end, starts


def crawl_starts(project: Path, env: dict[str, str], crawls: int, reps: int, workdir: Path,
                 first_request: Callable[[], float | None]) -> dict[str, Any]:  # fmt: skip
    """Cold against warm, side by side: see the module's docstring. `first_request()` is the
    monotonic time the site last saw a request arrive after being reset (None: none yet)."""
    env = crawl_environment({**env, "PYTHONPATH": env.get("PYTHONPATH", "")})
    names = [f"bench_{n:03d}" for n in range(crawls)]
    stats_dir = workdir / "warm-bench-stats"
    stats_dir.mkdir(exist_ok=True)
    out: dict[str, Any] = {"crawls": crawls}
    for kind in ("cold", "warm", "warm1"):
        figures: dict[str, list[float]] = {"seq_wall": [], "seq_cpu": [], "c2_wall": [], "c2_cpu": [],
                                           "first_request": [], "peak_pss_4": []}  # fmt: skip
        failed = 0
        for _ in range(reps):
            for concurrency, key in ((1, "seq"), (2, "c2"))[: 1 if kind == "warm1" else 2]:
                cpu, wall = _cpu_children(), time.monotonic()
                start, end, _ = _mode(kind, project, env)
                failed += sum(code != 0 for code in _batch(start, names, stats_dir, concurrency))
                end()
                figures[f"{key}_wall"].append(time.monotonic() - wall)
                figures[f"{key}_cpu"].append(_cpu_children() - cpu)
            if kind == "warm1":
                continue  # its cost, one after another, is the figure wanted; its start is warm's
            start, end, starts = _mode(kind, project, env)
            if starts is not None:  # the parent ready first: this is one crawl's start, not the parent's
                _finish(start(crawl_command(names[0], stats_dir / "warmup.json")))
            for _ in range(3):
                first_request()  # reset
                t0 = time.monotonic()
                _finish(start(crawl_command(names[0], stats_dir / f"first-{time.monotonic_ns()}.json")))
                seen = first_request()
                if seen is not None:
                    figures["first_request"].append(seen - t0)
            pids: list[int] = []
            peak = [0]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    parent = [starts.parent.pid] if starts is not None and starts.parent is not None else []
                    peak[0] = max(peak[0], sum(_pss_kib(pid) for pid in [*pids, *parent]))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            _batch(start, names[:4], stats_dir, 4, on_start=lambda c: pids.append(c.pid))
            stop.set()
            sampler.join()
            end()
            figures["peak_pss_4"].append(peak[0] / 1024)
        out[kind] = {name: statistics.median(values) if values else None for name, values in figures.items()}
        out[kind]["failed_crawls"] = failed
    for key in ("seq_wall", "seq_cpu", "c2_wall", "c2_cpu", "peak_pss_4"):
        out[f"ratio_{key}"] = out["warm"][key] / out["cold"][key] if out["cold"][key] else None
    for key in ("seq_wall", "seq_cpu"):
        out[f"ratio_{key}_warm1"] = out["warm1"][key] / out["cold"][key] if out["cold"][key] else None
    return out
