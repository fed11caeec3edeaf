"""What the loop asks of an engine, the part that runs crawls. Two implementations: the local runner
(daemon/engines/local.py: `scrapy crawl` subprocesses) and the Scrapyd engine (daemon/engines/scrapyd/dispatch.py: crawls
on Scrapyd nodes); a Kubernetes Jobs engine would be a third. `SCHEDULER_ENGINE` picks one
(daemon/assemble.py); daemon/loop/batch.py and daemon/loop/runs.py are its callers.

Both overlap their crawls: the loop launches each crawl as a slot frees (`launch`, `free`), polls
them (`poll`: timeouts, cancels, the daemon's stop) and hears each crawl's end through its run's
callback (daemon/loop/runs.py), online and offline alike; it never waits for a run.
The callbacks are the recorder's (daemon/loop/recording.py): `on_start(job)` writes the crawl's row and
returns its token (None: not written, so not started); `on_dispatch(token, node, jobid, log_url)`
writes where a remote crawl goes before it is sent (False: not written, so not sent); `on_spawn`
gives a local crawl's pid; `on_finish(token, outcome)` writes its outcome.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from daemon.jobs.crawl import CrawlOutcome
from daemon.jobs.jobfile import Job

OnStart = Callable[[Job], Any]
OnFinish = Callable[[Any, CrawlOutcome], None]
OnSpawn = Callable[[Any, int], None]
OnDispatch = Callable[[Any, str, str, str], Any]


@dataclasses.dataclass(frozen=True)
class RemoteRun:
    """A remote crawl recorded by a daemon (on_dispatch's row) and not known to have ended."""

    token: Any  # the row's id, given back to on_finish / on_dispatch
    job: Job
    node: str  # the node's URL as on_dispatch recorded it
    jobid: str
    age_s: float  # seconds since it was dispatched (now - the row's start): its timeout counts from there


class Engine(Protocol):
    """Crawls started one by one beside those under way; each one's end told at the poll that sees it."""

    # Crawls outlive the daemon (remote ones): a crawl left 'running' is re-attached by the next
    # daemon (`attach`) instead of failed as stale.
    reattaches: bool
    # The crawls the last stop left running (remote ones), for the next daemon: not failures.
    detached: Sequence[Any]
    # Why the last launch did not start its job (None: `on_start` refused it, or the daemon was stopping).
    not_started: str | None

    def launch(self, job: Job, on_start: OnStart, on_finish: OnFinish, on_spawn: OnSpawn = ...,
               on_dispatch: OnDispatch = ...) -> bool:  # fmt: skip
        """Start `job`'s crawl now beside those under way; False: not started (`on_start` refused
        it, or the engine found no free slot after all: `not_started` says why)."""
        ...

    def attach(self, run: RemoteRun, on_finish: OnFinish, on_dispatch: OnDispatch = ...) -> None:
        """Watch beside those under way a crawl a former daemon left running (`reattaches` only)."""
        ...

    def poll(self) -> int:
        """Enforce timeouts and stops, tell each ended crawl to its `on_finish`; how many ended.
        A remote engine's stop leaves its crawls on their nodes (`detached`): none is told ended."""
        ...

    def free(self) -> int:
        """How many crawls could start now (the slots not taken)."""
        ...

    @property
    def busy(self) -> int:
        """The crawls under way, each holding a slot."""
        ...

    def cancel(self, name: str) -> bool:
        """`cancel JOB`: stop its crawl under way (its verdict: cancelled); False if none runs."""
        ...
