"""Watching remote crawls, for the engine (daemon/engines/scrapyd/dispatch.py): reading the log of a crawl its node
does not know, collecting the outcome of one that ended, stopping one that ran out of time or was
cancelled, and keeping an eye on the crawls given up as lost.

A crawl is given up as `lost` when its node stayed silent beyond the limit. But Scrapyd keeps its
pending queue in its `dbs_dir`, which outlives a killed node: a node that comes back may still start
a crawl the daemon already gave up and sent elsewhere. So the crawls given up are remembered, their
nodes asked after them at every poll of a run, and one that shows up pending or running is killed at
once (`remote_crawl_lost_came_back`); its job's retry goes to another node when one has a free slot.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable

import structlog

from daemon.jobs.crawl import CrawlOutcome
from daemon.engines.scrapyd.placement import _Crawl, _Node
from daemon.engines.scrapyd.rules import LOG_TAIL_BYTES, EngineSettings, log_says_closed, log_tail, parse_dumped_stats, remote_outcome
from daemon.engines.scrapyd.client import ScrapydError

log = structlog.get_logger("daemon.dispatch")

LOST_REMEMBERED = 200  # crawls given up as lost whose nodes are still asked after them


class Watching:
    """The engine's watching of its crawls (a part of ScrapydEngine, on its settings and nodes)."""

    settings: EngineSettings
    _lost: collections.deque[tuple[_Node, str, str]]  # (node, job name, job id) given up as lost

    _node_failed: Callable[[_Node, ScrapydError, float], None]  # the engine's (daemon/engines/scrapyd/dispatch.py)

    def _look_at_log(self, crawl: _Crawl, now: float) -> str:
        """'absent' | 'open' | 'closed': the log of a crawl its node does not know (any more)."""
        assert crawl.node is not None
        client = crawl.node.client
        path = client.log_path(self.settings.project, crawl.job.spider, crawl.jobid)
        size = client.file_size(path)
        if size is None:
            return "absent"
        if size != crawl.log_size:
            crawl.log_size, crawl.log_changed_at, crawl.log_closed = size, now, None
        if crawl.log_closed is None:
            tail = client.tail(path, LOG_TAIL_BYTES)
            crawl.log_closed = tail is not None and log_says_closed(tail.decode("utf-8", "replace"))
        return "closed" if crawl.log_closed else "open"

    def _collect(self, crawl: _Crawl, now: float) -> CrawlOutcome:
        assert crawl.node is not None
        client, project, spider = crawl.node.client, self.settings.project, crawl.job.spider
        stats = client.stats(project, spider, crawl.jobid)
        source = "stats_file"
        tail = client.tail(client.log_path(project, spider, crawl.jobid), LOG_TAIL_BYTES)
        log_found = tail is not None
        if stats is None:
            stats = parse_dumped_stats(tail.decode("utf-8", "replace")) if tail else None
            source = "log" if stats is not None else "none"
        log.info("remote_crawl_collected", spider=spider, job=crawl.job.name, node=crawl.node.name,
                 jobid=crawl.jobid, stats_from=source)  # fmt: skip
        outcome = remote_outcome(crawl.job, stats, log_found=log_found, timed_out=crawl.timed_out,
                                 cancelled=crawl.cancelled, duration_s=now - crawl.dispatched_at)  # fmt: skip
        return dataclasses.replace(outcome, log_tail=log_tail(tail) if tail else None)

    def _enforce(self, crawl: _Crawl, now: float) -> None:
        """Stop a crawl that ran out of time or was cancelled (cancel.json), KILL it after the grace.
        A node that does not answer is asked again next poll."""
        if crawl.node is None or crawl.state == "finished":
            return
        grace = self.settings.stop_grace_s
        if crawl.stop_sent_at is None:
            # From the dispatch that started it: a crawl sent again after it never started gets
            # its whole timeout, not what was left of it.
            timed_out = now - crawl.sent_at >= crawl.job.timeout.total_seconds()
            if not (crawl.cancelled or timed_out):
                return
            crawl.timed_out = timed_out and not crawl.cancelled
            reason = "cancelled" if crawl.cancelled else "timeout"
            if self._send_cancel(crawl, "TERM", now):
                crawl.stop_sent_at = now
                log.warning("spider_stopping", spider=crawl.job.spider, job=crawl.job.name, node=crawl.node.name,
                            jobid=crawl.jobid, reason=reason, grace_s=grace)  # fmt: skip
        elif not crawl.killed and now - crawl.stop_sent_at >= grace:
            if self._send_cancel(crawl, "KILL", now):
                crawl.killed = True
                log.warning("spider_killed", spider=crawl.job.spider, job=crawl.job.name, node=crawl.node.name,
                            jobid=crawl.jobid, after_grace_s=grace)  # fmt: skip

    def _send_cancel(self, crawl: _Crawl, signal: str, now: float) -> bool:
        assert crawl.node is not None
        try:
            prevstate = crawl.node.client.cancel(self.settings.project, crawl.jobid, signal)
        except ScrapydError as exc:
            self._node_failed(crawl.node, exc, now)
            return False
        if prevstate is None and crawl.state == "unknown":
            # An orphan of a restarted Scrapyd: its node cannot stop it. It is watched until its
            # log closes or goes stale, and judged by the stop we asked for.
            log.warning("remote_crawl_cannot_be_stopped", spider=crawl.job.spider, job=crawl.job.name,
                        node=crawl.node.name, jobid=crawl.jobid)  # fmt: skip
        return True

    # Crawls given up as lost -------------------------------------------------------------------------

    def _gave_up(self, crawl: _Crawl) -> None:
        if crawl.node is not None:
            self._lost.append((crawl.node, crawl.job.name, crawl.jobid))

    def _lost_on(self, job_name: str) -> set[int]:
        """The nodes (their ids) that lost a crawl of this job: its retry goes elsewhere if it can."""
        return {id(node) for node, name, _ in self._lost if name == job_name}

    def _asked_after_lost(self) -> list[_Node]:
        return [node for node, _, _ in self._lost]

    def _lost_came_back(self, now: float) -> None:
        """A crawl given up as lost that its node (back again) holds pending or running is killed:
        its job was sent elsewhere. One its node says finished ran unwatched; that is logged."""
        for entry in list(self._lost):
            node, name, jobid = entry
            state = node.jobs.state(jobid) if node.jobs is not None else "unknown"
            if state == "unknown":
                continue
            self._lost.remove(entry)
            log.warning("remote_crawl_lost_came_back", job=name, node=node.name, jobid=jobid, state=state,
                        action="ran_unwatched" if state == "finished" else "killed")  # fmt: skip
            if state != "finished":
                try:
                    node.client.cancel(self.settings.project, jobid, "KILL")
                except ScrapydError as exc:
                    self._node_failed(node, exc, now)
                    self._lost.appendleft(entry)  # asked again next poll
