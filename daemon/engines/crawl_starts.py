"""How the local runner starts a crawl (`SCHEDULER_CRAWL_START`): forked from a warm parent that has
imported Scrapy once (daemon/engines/warm.py, daemon/engines/warm_parent.py), or cold (`python -m
scrapy`), each crawl the same to the rest of the daemon.

`CrawlStarts` is the runner's one object for it. It starts the warm parent at the first crawl that
needs it (or ahead: `prewarm`). When the parent cannot start, refuses a fork, reports itself
unusable or dies, the rest of that run starts cold, said once in a `crawl_start_cold` event with the
reason; a parent unusable for the project (a reactor or a thread at import) is not tried again until
the project's files change.

The crawls of one parent share its interpreter's string hash seed (only an exec makes a new one): a
parent forks at most `crawls_per_parent` crawls (SCHEDULER_WARM_PARENT_CRAWLS), then forks no more
and exits once they end, and a fresh parent, started at once, serves the next crawl. At 1 each crawl
has a seed of its own, as a cold crawl has; it then pays a cold crawl's imports, ahead of its start.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import structlog

from daemon.engines.warm import LINGER_S, WarmCrawl, WarmParentProcess, WarmUnavailable

log = structlog.get_logger("daemon.warm")

CRAWLS_PER_PARENT = 100  # SCHEDULER_WARM_PARENT_CRAWLS' default: then a fresh parent (a fresh hash seed)


class CrawlStarts:
    """The runner's starter: a warm crawl, or None for a cold start (and why, logged once a run)."""

    def __init__(self, mode: str, project_dir: Path, env: dict[str, str], linger_s: float = LINGER_S,
                 crawls_per_parent: int = CRAWLS_PER_PARENT) -> None:  # fmt: skip
        self.mode = mode
        self.crawls_per_parent = crawls_per_parent
        self.project_dir = project_dir
        self.env = env
        self.linger_s = linger_s
        self.parent: WarmParentProcess | None = None
        self._cold_reason: str | None = None  # this run starts cold, for this reason
        self._unusable: tuple[str, str] | None = None  # (the project's fingerprint, why)
        self._fingerprint = ""
        self._prewarmed = False  # the parent was started ahead (prewarm) and has forked no crawl yet

    def prewarm(self) -> None:
        """Start the warm parent now, without waiting for its imports: the daemon calls this before
        it waits for PostgreSQL, so that the catch-up's first crawl forks from a parent already warm
        (or warming). A parent that cannot start is met again, and said, at the first crawl."""
        if self.mode == "cold" or self.parent is not None:
            return
        if self.mode == "warm-project":
            self._fingerprint = project_fingerprint(self.project_dir)
        try:
            self.parent = WarmParentProcess(self.mode, self.project_dir, self.env, self.linger_s, wait=False)
            self._prewarmed = True
        except OSError as exc:  # it did not even start: the first crawl tries again, and says why
            log.info("warm_parent_not_prewarmed", error=type(exc).__name__)

    def begin_run(self) -> None:
        """A new run: warm starts are tried again; a project changed since its parent was made
        (warm-project: the parent holds its code) gets a new parent."""
        self._cold_reason = None
        if self.parent is not None and self.parent.died:
            self.parent = None
        if self.mode == "warm-project":
            fingerprint = project_fingerprint(self.project_dir)
            if fingerprint != self._fingerprint and self.parent is not None:
                self.parent.close()
                self.parent = None
            self._fingerprint = fingerprint
        if self._unusable and self._unusable[0] == self._fingerprint:
            self._cold_reason = self._unusable[1]  # said once already

    def start(self, argv: Sequence[str]) -> WarmCrawl | None:
        if self.mode == "cold" or self._cold_reason is not None:
            return None
        prewarmed, self._prewarmed = self._prewarmed, False
        try:
            if self.parent is not None and self.parent.died:
                raise WarmUnavailable(self.parent.gone or "the warm parent died")
            if self.parent is None or self.parent.gone:
                self.parent = None
                self.parent = WarmParentProcess(self.mode, self.project_dir, self.env, self.linger_s)
            crawl = self.parent.spawn(argv)
            if self.parent.forked >= self.crawls_per_parent:
                self._retire()
            return crawl
        except WarmUnavailable as exc:
            lingered = self.parent is not None and self.parent.gone and self.parent.gone.endswith("(linger)")
            if lingered or (prewarmed and not exc.lasting):
                self.parent = None  # it had lingered out (waiting for PostgreSQL, maybe): a new one, once
                return self.start(argv)
            self._cold_reason = str(exc)
            if exc.lasting:
                self._unusable = (self._fingerprint, str(exc))
            log.warning("crawl_start_cold", reason=str(exc), mode=self.mode, until="the project changes"
                        if exc.lasting else "the end of this run")  # fmt: skip
            return None

    def _retire(self) -> None:
        """The parent has forked its share: it forks no more and exits once its crawls end; a fresh
        one (a fresh interpreter, so a fresh hash seed) starts now, warm by the next crawl."""
        assert self.parent is not None
        log.debug("warm_parent_retired", pid=self.parent.pid, crawls=self.parent.forked)
        self.parent.close()
        self.parent = None
        self.prewarm()


def project_fingerprint(project_dir: Path) -> str:
    """The project's Python files' names, sizes and mtimes, in short: a changed project, a new parent."""
    stamps = []
    for root, dirs, files in os.walk(project_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for name in files:
            if name.endswith((".py", ".cfg")):
                try:
                    info = os.stat(os.path.join(root, name))
                except OSError:
                    continue
                stamps.append(f"{root}/{name}:{info.st_size}:{info.st_mtime_ns}")
    return str(hash("\n".join(sorted(stamps))))
