"""Running crawls as subprocesses: concurrency, timeouts, stopping, and their output.

Each crawl runs in its own process group, so a timeout or a shutdown reaches the whole tree
(SIGTERM, then SIGKILL after the grace period) and no crawl process outlives its turn. Each line a
crawl prints becomes a `spider_output` log event tagged with the spider and the channel. A crawl
starts cold (`python -m scrapy crawl`) or forked from the warm parent (daemon/engines/crawl_starts.py,
`SCHEDULER_CRAWL_START`); the rest of this module cannot tell them apart.
"""

from __future__ import annotations

import dataclasses
import ctypes
import functools
import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import structlog

from daemon.system import statedir
from daemon.system.clock import Clock
from daemon.settings.config import Settings
from daemon.jobs.crawl import CrawlOutcome, crawl_command, crawl_environment, judge
from daemon.engines.crawllog import CrawlLog
from daemon.engines.engine import OnDispatch, OnFinish, OnSpawn, OnStart
from daemon.jobs.jobfile import Job, crawl_arguments

log = structlog.get_logger("daemon.runner")


PR_SET_PDEATHSIG = 1


def _die_with_the_daemon(daemon_pid: int) -> None:
    """In the child, before exec: if the daemon is killed (SIGKILL, power cut of the process), the
    kernel kills the crawl too, so no crawl is ever orphaned to run beside the next daemon's."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):  # not Linux: the process-group handling still applies
        return
    if os.getppid() != daemon_pid:
        # The daemon died between the fork and the prctl: no signal will ever come. Never exec.
        os._exit(1)


class _Crawl:
    def __init__(self, job: Job, token: Any, stats_file: Path, proc: Any, started: float):  # a Popen or WarmCrawl
        self.job = job
        self.spider = job.spider
        self.token = token
        self.stats_file = stats_file
        self.proc = proc
        self.started = started
        self.term_sent_at: float | None = None
        self.killed = False
        self.timed_out = False
        self.interrupted = False
        self.cancelled = False
        self.log: CrawlLog | None = None
        self.readers: list[threading.Thread] = []
        self.on_finish: OnFinish = lambda token, outcome: None  # its run's recorder

    def signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already gone

    def terminate(self, now: float) -> None:
        if self.term_sent_at is None:
            self.term_sent_at = now
            self.signal_group(signal.SIGTERM)

    def kill(self) -> None:
        if not self.killed:
            self.killed = True
            self.signal_group(signal.SIGKILL)


class CrawlRunner:
    """The local engine (daemon/engines/engine.py): each crawl a `scrapy crawl` subprocess of this daemon,
    in a process group of its own, that dies with it."""

    reattaches = False  # a local crawl never outlives its daemon: one left 'running' is stale
    detached: tuple[()] = ()
    not_started: str | None = None

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        stop: threading.Event,
        force: threading.Event,
        *,
        on_poll: Callable[[], None] = lambda: None,
        environ: dict[str, str] | None = None,
        abort: threading.Event | None = None,
        wake: threading.Event | None = None,
        starts: Any = None,
    ) -> None:
        """`wake`: set when a crawl's process has exited (the loop's wake event, so that a freed slot
        is given again at once, not on the next poll)."""
        self.settings = settings
        self.clock = clock
        self.stop = stop
        self.force = force
        # Set when this daemon must give way at once (it lost the runner lock): like a second
        # signal, every crawl is killed now, but the daemon itself goes on.
        self.abort = abort or threading.Event()
        self.on_poll = on_poll
        self.env = crawl_environment(dict(os.environ) if environ is None else environ)
        self.stats_dir = settings.state_dir / "stats"
        self._wake = wake or threading.Event()
        self._active: list[_Crawl] = []  # the crawls under way, of every run
        # daemon.engines.crawl_starts.CrawlStarts: made at the first crawl, or before the daemon waited for
        # PostgreSQL (`prewarmed_starts`), its parent warming meanwhile.
        self._starts: Any = starts

    @property
    def busy(self) -> int:
        """How many crawls run now (each holds one of SCHEDULER_CONCURRENCY's slots)."""
        return len(self._active)

    def free(self) -> int:
        """SCHEDULER_CONCURRENCY's slots not taken by a crawl under way."""
        return max(0, self.settings.concurrency - len(self._active))

    def attach(self, run: Any, on_finish: OnFinish, on_dispatch: OnDispatch | None = None) -> None:
        """Nothing to re-attach to: a local crawl dies with its daemon."""
        raise ValueError("the local runner has no crawls to re-attach to")

    def launch(self, job: Job, on_start: OnStart, on_finish: OnFinish, on_spawn: OnSpawn = lambda token, pid: None,
               on_dispatch: OnDispatch | None = None) -> bool:  # fmt: skip
        """Start `job`'s crawl now, beside those under way; `on_finish` hears its outcome from a
        later `poll`. False when `on_start` could not record it (then it is not started)."""
        statedir.make_directory(self.settings.state_dir)
        statedir.make_directory(self.stats_dir, follow_symlink=False)
        self._prepare_starts()
        token = on_start(job)
        if token is None:
            return False
        crawl = self._start(job, token)
        crawl.on_finish = on_finish
        self._active.append(crawl)
        on_spawn(token, crawl.proc.pid)
        return True

    def _prepare_starts(self) -> None:
        """The warm starter, made at the first crawl. Its "run" (a warm start that failed makes the
        rest of it cold) lasts while crawls are under way: it begins anew when none is."""
        if self.settings.crawl_start == "cold":
            return
        if self._starts is None:
            from daemon.engines.crawl_starts import CrawlStarts

            self._starts = CrawlStarts(self.settings.crawl_start, self.settings.project_dir, self.env,
                                       crawls_per_parent=self.settings.warm_parent_crawls)  # fmt: skip
        if not self._active:
            self._starts.begin_run()

    def poll(self) -> int:
        """Stop the crawls over their timeout (or all of them when the daemon stops or gives way),
        collect those that ended, each told to its run's `on_finish`, then `on_poll` (the lease's
        probe, cancels, the heartbeat); how many ended."""
        now = self.clock.monotonic()
        stopping = self.stop.is_set() or self.abort.is_set()
        grace = self.settings.stop_grace_seconds
        for crawl in self._active:
            self._enforce(crawl, now, stopping, crawl.job.timeout.total_seconds(), grace)
        finished = [c for c in self._active if c.proc.poll() is not None]
        for crawl in finished:
            self._active.remove(crawl)
            crawl.on_finish(crawl.token, self._finish(crawl))
        self.on_poll()
        return len(finished)

    def _enforce(self, crawl: _Crawl, now: float, stopping: bool, timeout_s: float, grace: float) -> None:
        """Stop a crawl that ran out of time or must make way for shutdown; kill it after the grace."""
        if crawl.proc.poll() is not None:
            return
        if crawl.term_sent_at is None and (stopping or now - crawl.started >= timeout_s):
            crawl.timed_out = not stopping
            crawl.interrupted = stopping
            log.warning(
                "spider_stopping",
                spider=crawl.spider,
                job=crawl.job.name,
                reason=("lock_lost" if self.abort.is_set() else "shutdown") if stopping else "timeout",
                grace_s=grace,
            )
            crawl.terminate(now)
        if self.force.is_set() or self.abort.is_set():
            crawl.interrupted = crawl.interrupted or not crawl.timed_out
            crawl.kill()
        elif crawl.term_sent_at is not None and now - crawl.term_sent_at >= grace and not crawl.killed:
            log.warning("spider_killed", spider=crawl.spider, job=crawl.job.name, after_grace_s=grace)
            crawl.kill()

    def cancel(self, name: str) -> bool:
        """`cancel JOB`: stop its running crawl (SIGTERM to its group, SIGKILL after the grace); its
        verdict is 'cancelled'. False when no crawl of that job runs here."""
        crawl = next((c for c in self._active if c.job.name == name and c.proc.poll() is None), None)
        if crawl is None:
            return False
        crawl.cancelled = True
        log.warning("spider_stopping", spider=crawl.spider, job=name, reason="cancelled",
                    grace_s=self.settings.stop_grace_seconds)  # fmt: skip
        crawl.terminate(self.clock.monotonic())
        return True

    def _start(self, job: Job, token: Any) -> _Crawl:
        spider = job.spider
        stats_file = self.stats_dir / f"{spider}-{uuid.uuid4().hex}.json"
        command = crawl_command(spider, stats_file, crawl_arguments(job), job.name)
        # Forked from the warm parent (daemon/engines/crawl_starts.py), or None: a cold start, as before.
        proc = self._starts.start(command[3:]) if self._starts is not None else None
        proc = proc or subprocess.Popen(
            command,
            cwd=self.settings.project_dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # its own process group: signals reach the whole crawl
            preexec_fn=functools.partial(_die_with_the_daemon, os.getpid()),
        )
        crawl = _Crawl(job, token, stats_file, proc, self.clock.monotonic())
        crawl.log = CrawlLog(self.settings.state_dir, job.name, self.clock.now(), proc.pid)
        log.info("spider_started", spider=spider, job=job.name, pid=proc.pid,
                 start="cold" if isinstance(proc, subprocess.Popen) else "warm")  # fmt: skip
        for channel, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            reader = threading.Thread(
                target=self._pump, args=(crawl, channel, stream), name=f"{spider}-{channel}", daemon=True
            )
            reader.start()
            crawl.readers.append(reader)
        return crawl

    def _pump(self, crawl: _Crawl, channel: str, stream: IO[str] | None) -> None:
        if stream is None:
            return
        with stream:
            for line in stream:
                log.info("spider_output", spider=crawl.spider, job=crawl.job.name, channel=channel,
                         line=line.rstrip("\n"))  # fmt: skip
                crawl.log.write(line)  # type: ignore[union-attr]
        # The output ends a moment before the process does: wake the loop once it has exited,
        # so a finished crawl is collected (and the next one started) at once, not a poll later.
        crawl.proc.wait()
        self._wake.set()

    def _finish(self, crawl: _Crawl) -> CrawlOutcome:
        # Anything the crawl left behind in its group goes with it.
        crawl.signal_group(signal.SIGKILL)
        for reader in crawl.readers:
            reader.join(timeout=2)
        stats = _read_stats(crawl.stats_file)
        outcome = judge(
            crawl.spider,
            job=crawl.job.name,
            cancelled=crawl.cancelled,
            min_items=crawl.job.min_items,
            exit_code=crawl.proc.returncode,
            stats=stats,
            timed_out=crawl.timed_out,
            interrupted=crawl.interrupted,
            interrupt_message=(
                "stopped because this daemon lost the runner lock"
                if self.abort.is_set()
                else "stopped because the daemon was shutting down"
            ),
            max_errors=crawl.job.max_errors,
            timeout_minutes=crawl.job.timeout.total_seconds() / 60,
            duration_s=self.clock.monotonic() - crawl.started,
            pid=crawl.proc.pid,
        )
        return dataclasses.replace(outcome, log_tail=crawl.log.close() if crawl.log else None)


def _read_stats(path: Path) -> dict[str, Any] | None:
    """The crawl's stats, or None: none written, unreadable, or a file the crawl did not write (a
    symbolic link, another owner), which is refused unread, so the crawl counts as failed."""
    try:
        with os.fdopen(statedir.open_own(path, os.O_RDONLY), encoding="utf-8") as fh:
            data = json.load(fh)
    except statedir.RefusedFile as refused:
        statedir.refuse(path, refused.reason)
        return None
    except (OSError, ValueError):
        return None
    finally:
        for leftover in (path, path.with_name(path.name + ".tmp")):
            try:
                leftover.unlink()  # a link itself, never its target
            except OSError:
                pass
    return data if isinstance(data, dict) else None


def prewarmed_starts(settings: Settings, environ: dict[str, str] | None = None) -> Any:
    """The crawl starter with its warm parent already starting, for a daemon about to wait for
    PostgreSQL: a catch-up (the container and PostgreSQL started together, the PC woken) is due the
    moment PostgreSQL answers, and its first crawl then forks from a parent that imported Scrapy
    meanwhile instead of paying those imports after. None on the Scrapyd engine or with
    SCHEDULER_CRAWL_START=cold. A parent nobody uses lingers out by itself (warm.LINGER_S)."""
    if settings.engine != "local" or settings.crawl_start == "cold":
        return None
    from daemon.engines.crawl_starts import CrawlStarts

    starts = CrawlStarts(settings.crawl_start, settings.project_dir,
                         crawl_environment(dict(os.environ) if environ is None else environ),
                         crawls_per_parent=settings.warm_parent_crawls)  # fmt: skip
    starts.prewarm()
    return starts
