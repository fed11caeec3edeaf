"""What the loop asks of an engine, the part that runs crawls. Two implementations: the local runner
(daemon/runner.py: `scrapy crawl` subprocesses) and the Scrapyd engine (daemon/dispatch.py: crawls
on Scrapyd nodes); a Kubernetes Jobs engine would be a third. `SCHEDULER_ENGINE` picks one
(daemon/scheduler.py's `assemble`); daemon/batch.py is its only caller.

Both run a batch the same way: start its crawls (at most `concurrency` at once), poll them, stop
those over their timeout or cancelled, and return when the last has ended or the daemon stops.
The callbacks are the recorder's (daemon/recording.py): `on_start(job)` writes the crawl's row and
returns its token (None: not written, so not started); `on_dispatch(token, node, jobid, log_url)`
writes where a remote crawl goes before it is sent (False: not written, so not sent); `on_spawn`
gives a local crawl's pid; `on_finish(token, outcome)` writes its outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from daemon.crawl import CrawlOutcome
from daemon.jobfile import Job

OnStart = Callable[[Job], Any]
OnFinish = Callable[[Any, CrawlOutcome], None]
OnSpawn = Callable[[Any, int], None]
OnDispatch = Callable[[Any, str, str, str], Any]


class Engine(Protocol):
    # Crawls outlive the daemon (remote ones): a crawl left 'running' is re-attached by the next
    # daemon (`reconcile`) instead of failed as stale.
    reattaches: bool
    # The crawls the last stop left running (remote ones), for the next daemon: not failures.
    detached: Sequence[Any]
    # Why the last run left some jobs not started (None: the daemon was stopping).
    not_started: str | None
    # Crawls are started one by one while others run (`launch`, `poll`, `busy`): the loop gives a
    # freed slot at once and never waits for a run. False: a run is crawled to its end by `run`.
    overlaps: bool

    def run(self, jobs: Sequence[Job], on_start: OnStart, on_finish: OnFinish, on_spawn: OnSpawn = ...,
            on_dispatch: OnDispatch = ...) -> list[CrawlOutcome]:  # fmt: skip
        """Run `jobs`' crawls to their end (blocking); the outcomes of those that ended."""
        ...

    def reconcile(self, runs: Iterable[Any], on_finish: OnFinish, on_dispatch: OnDispatch = ..., *,
                  jobs: Sequence[Job] = (), on_start: OnStart = ...) -> list[CrawlOutcome]:  # fmt: skip
        """Watch to their end the crawls a former daemon left running (daemon.remote.RemoteRun),
        beside `jobs` run as `run` would; the outcomes of those that ended."""
        ...

    def cancel(self, name: str) -> bool:
        """`cancel JOB`: stop its crawl under way (its verdict: cancelled); False if none runs."""
        ...


class OverlappingEngine(Engine, Protocol):
    """An engine whose `overlaps` is True: the loop starts crawls one by one beside those under way."""

    def launch(self, job: Job, on_start: OnStart, on_finish: OnFinish, on_spawn: OnSpawn = ...) -> bool:
        """Start `job`'s crawl now beside those under way; False: `on_start` refused it."""
        ...

    def poll(self) -> int:
        """Enforce timeouts and stops, tell each ended crawl to its `on_finish`; how many ended."""
        ...

    @property
    def busy(self) -> int:
        """The crawls under way, each holding a slot."""
        ...
