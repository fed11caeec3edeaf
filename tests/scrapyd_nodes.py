"""Real Scrapyd nodes for the tests: one `scrapyd` process per node on 127.0.0.1, each with its own
copy of the test project, port, logs and side channel (the `start/end <time> <pid> <job>` lines the
test spiders append), and the questions the tests ask of what the nodes really ran."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from daemon.engines.scrapyd.client import ScrapydClient, ScrapydError
from daemon.settings.secret import Secret
from tests.conftest import ROOT, TEST_PROJECT, free_port
from tests.helpers import wait_for


class ScrapydNode:
    """One Scrapyd process, its own directory (a copy of the test project plus scrapyd.conf), its
    own port, logs, queue database and side channel; started in a session of its own."""

    def __init__(self, base: Path, name: str, site: str, *, max_proc: int = 2, jobs_to_keep: int = 20,
                 username: str | None = None, password: str | None = None,
                 slow_seconds: float = 3) -> None:  # fmt: skip
        self.dir = base / name
        shutil.copytree(TEST_PROJECT, self.dir, ignore=shutil.ignore_patterns("__pycache__"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.side_channel = self.dir / "side-channel.log"
        self.logs = self.dir / "logs"
        self.username, self.password = username, password
        conf = [
            "[scrapyd]", f"http_port = {self.port}", "bind_address = 127.0.0.1", f"max_proc = {max_proc}",
            "poll_interval = 0.2", f"jobs_to_keep = {jobs_to_keep}", f"logs_dir = {self.logs}",
            f"eggs_dir = {self.dir / 'eggs'}", f"dbs_dir = {self.dir / 'dbs'}", "items_dir =",
        ]  # fmt: skip
        if username and password:
            conf += [f"username = {username}", f"password = {password}"]
        (self.dir / "scrapyd.conf").write_text("\n".join(conf) + "\n")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SCRAPYD_", "SCRAPY_", "SCHEDULER_"))},
            "PYTHONPATH": str(ROOT),  # the node's crawls load daemon.node_stats
            "TEST_SITE_URL": site,
            "SLOW_SECONDS": str(slow_seconds),
            "SPIDER_SIDE_CHANNEL": str(self.side_channel),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None

    def client(self, **kwargs: Any) -> ScrapydClient:
        if self.password and "password" not in kwargs:
            kwargs = {"username": self.username, "password": Secret(self.password), **kwargs}
        return ScrapydClient(self.url, **kwargs)

    def start(self) -> ScrapydNode:
        out = open(self.dir / "scrapyd.out", "ab")  # noqa: SIM115 (closed with the process)
        # --pidfile=: no twistd.pid, which would refuse a restart while a stale pid lives on.
        self.proc = subprocess.Popen([sys.executable, "-m", "scrapyd", "--pidfile="], cwd=self.dir, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        out.close()
        self.pgid = self.proc.pid if self.pgid is None else self.pgid
        client = self.client()

        def answers() -> bool:
            try:
                client.daemonstatus()
                return True
            except ScrapydError:
                assert self.proc is not None and self.proc.poll() is None, (self.dir / "scrapyd.out").read_text()
                return False

        wait_for(answers, timeout=30, what=f"scrapyd on port {self.port}")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Scrapyd alone: its crawls live on (orphans)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=10)

    def kill_group(self) -> None:
        """The whole node: Scrapyd and every crawl it started (they stay in its process group)."""
        for pgid in {self.pgid, self.proc.pid if self.proc else None} - {None}:
            try:
                os.killpg(pgid, signal.SIGKILL)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def crawls(self) -> list[tuple[str, float, int, str]]:
        """(start|end, time, pid, job) for every crawl this node really ran."""
        if not self.side_channel.exists():
            return []
        rows = []
        for line in self.side_channel.read_text().splitlines():
            kind, at, pid, job = line.split(" ", 3)
            rows.append((kind, float(at), int(pid), job))
        return rows


def crawling(node: ScrapydNode, job_name: str) -> list[int]:
    """The pids of the crawls of that job the node runs now, past their spider's opening."""
    rows = node.crawls()
    ended = {pid for kind, _, pid, name in rows if kind == "end"}
    return [pid for kind, _, pid, name in rows if kind == "start" and name == job_name and pid not in ended]


def most_at_once(rows: list[tuple[str, float, int, str]]) -> int:
    running, most = 0, 0
    for kind, *_ in sorted(rows, key=lambda row: (row[1], row[0] == "start")):
        running += 1 if kind == "start" else -1
        most = max(most, running)
    return most


def overlapping_runs_of_one_job(rows: list[tuple[str, float, int, str]]) -> list[str]:
    open_by_job: dict[str, int] = {}
    overlaps = []
    for kind, _, _, job in sorted(rows, key=lambda row: (row[1], row[0] == "start")):
        open_by_job[job] = open_by_job.get(job, 0) + (1 if kind == "start" else -1)
        if open_by_job[job] > 1:
            overlaps.append(job)
    return overlaps
