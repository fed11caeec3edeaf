"""Placing remote crawls on Scrapyd nodes, for the engine (daemon/engines/scrapyd/dispatch.py): which node takes the
next crawl (a free slot, least loaded first, none that failed recently), sending it with its node
and job id recorded first, and never twice blindly (a lost answer is asked about, not resent).
Also the engine's view of a node and of a crawl it watches."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any

import structlog

from daemon.jobs.crawl import CrawlOutcome
from daemon.engines.engine import OnDispatch, OnFinish
from daemon.jobs.jobfile import Job
from daemon.engines.scrapyd.rules import EngineSettings, Limits, choose_node, new_jobid, node_settings, remote_outcome
from daemon.settings.addresses import Node
from daemon.engines.scrapyd.client import ScrapydError

log = structlog.get_logger("daemon.dispatch")



class _Node:
    def __init__(self, spec: Node, client: Any) -> None:
        self.spec = spec
        self.client = client
        self.failed_at: float | None = None  # when it last failed; None: it answers
        self.jobs: Any = None  # its last listjobs.json this poll; None: not asked or no answer
        self.added = 0  # crawls sent to it since that answer
        self.last_sent_at = float("-inf")  # when it was last sent a crawl: equal nodes take turns

    @property
    def name(self) -> str:
        return self.client.name

    def cooling(self, now: float, retry_s: float) -> bool:
        return self.failed_at is not None and now - self.failed_at < retry_s


class _Crawl:
    def __init__(self, job: Job, token: Any, dispatched_at: float, on_finish: OnFinish,
                 on_dispatch: OnDispatch) -> None:  # fmt: skip
        self.job = job
        self.token = token
        self.on_finish = on_finish  # its run's: told its outcome at the poll that sees it end
        self.on_dispatch = on_dispatch  # its run's: records where it goes, before each sending
        self.dispatched_at = dispatched_at  # the first dispatch: the job's timeout counts from here
        self.node: _Node | None = None
        self.jobid = ""
        self.log_url = ""
        self.sent_at = dispatched_at  # this dispatch
        self.unreachable_since: float | None = None
        self.log_size: int | None = None
        self.log_changed_at = dispatched_at
        self.log_closed: bool | None = None
        self.state = "unread"
        self.stop_sent_at: float | None = None
        self.killed = False
        self.timed_out = False
        self.cancelled = False
        self.noticed: set[str] = set()  # reasons already logged, so each is said once

    def sent(self, node: _Node, jobid: str, log_url: str, now: float) -> None:
        self.node, self.jobid, self.log_url, self.sent_at = node, jobid, log_url, now
        self.unreachable_since = None
        self.log_size, self.log_changed_at, self.log_closed = None, now, None
        self.noticed.clear()


class Placement:
    """The engine's placing of crawls (a part of ScrapydEngine, on its nodes, limits and settings)."""

    settings: EngineSettings
    limits: Limits
    nodes: list[_Node]
    concurrency: int
    _active: list[_Crawl]  # the crawls under way, of every run
    _again: collections.deque[_Crawl]  # recorded crawls to (re)send first, to a node that answers

    _node_failed: Callable[[_Node, ScrapydError, float], None]  # the engine's (daemon/engines/scrapyd/dispatch.py)
    _finish: Callable[[_Crawl, CrawlOutcome], None]  # the engine's: the crawl has ended, its outcome told next

    _lost_on: Callable[[str], set[int]]  # the engine's (daemon/engines/scrapyd/watching.py): nodes that lost a crawl of a job

    def _place(self, now: float) -> None:
        """Send the recorded crawls waiting to be sent (again: their node never started them, or
        failed as they were sent), while slots are free; with no node answering, they fail."""
        while self._again and len(self._active) < self.concurrency:
            node = self._choose(now, avoid=self._lost_on(self._again[0].job.name))
            if node is None:
                if not self._answering(now):
                    self._no_node(now)
                return
            if not self._send(self._again.popleft(), node, now):
                return  # its node and job id could not be recorded first: it failed; the rest wait a poll

    def _answering(self, now: float) -> bool:
        """Some node is not resting after a failure."""
        return any(not n.cooling(now, self.limits.node_retry_s) for n in self.nodes)

    def _room(self, now: float) -> int:
        """Free slots on the nodes as last asked, ours and others' crawls counted (-1: no node answers)."""
        usable = self._usable(now)
        return sum(max(0, slots - load) for load, slots in self._loads(usable)) if usable else -1

    def _usable(self, now: float) -> list[_Node]:
        return [n for n in self.nodes if n.jobs is not None and not n.cooling(now, self.limits.node_retry_s)]

    def _loads(self, usable: list[_Node]) -> list[tuple[int, int]]:
        """(load, slots) of each node: what it said it holds, what was sent to it since, and our
        crawls it forgot (a restarted node), which still occupy its slots."""
        forgotten = collections.Counter(id(c.node) for c in self._active if c.state == "unknown")
        return [(n.jobs.load + n.added + forgotten[id(n)], n.spec.slots) for n in usable]

    def _choose(self, now: float, avoid: set[int]) -> _Node | None:
        """The node for the next crawl; `avoid`: nodes that lost a crawl of its job (ids)."""
        usable = self._usable(now)
        index = choose_node(self._loads(usable), avoid={i for i, n in enumerate(usable) if id(n) in avoid},
                            last_sent=[n.last_sent_at for n in usable])  # fmt: skip
        return usable[index] if index is not None else None

    def _no_node(self, now: float) -> None:
        """Every node failed recently: a recorded crawl that could not be sent anywhere fails."""
        while self._again:
            crawl = self._again.popleft()
            self._finish(crawl, self._not_sent(crawl, now, self._none_answered()))

    def _none_answered(self) -> str:
        return "no Scrapyd node answered: " + ", ".join(n.name for n in self.nodes)

    def _send(self, crawl: _Crawl, node: _Node, now: float) -> bool:
        """Send one crawl to `node`, its node and job id recorded first. False when that record could
        not be written (`on_dispatch` returned False): then nothing was sent and the crawl has failed."""
        job, project = crawl.job, self.settings.project
        jobid = new_jobid(job)
        crawl.sent(node, jobid, node.client.log_url(project, job.spider, jobid), now)
        if crawl.on_dispatch(crawl.token, node.spec.url, jobid, crawl.log_url) is False:  # write ahead
            self._finish(crawl, self._not_sent(crawl, now, "its node and job id could not be recorded first"))
            return False
        fields = {"spider": job.spider, "job": job.name, "node": node.name, "jobid": jobid}
        try:
            node.client.schedule(project, job.spider, jobid, job.args, node_settings(job))
        except ValueError as exc:  # arguments Scrapyd cannot pass: it was never sent
            self._finish(crawl, self._not_sent(crawl, now, str(exc)))
            return True
        except ScrapydError as exc:
            if exc.maybe_delivered:
                # Never sent again blindly: the node says whether it took it.
                try:
                    state = node.client.status(jobid)
                except ScrapydError as again_exc:
                    self._node_failed(node, again_exc, now)
                    state = "unreachable"
                log.warning("scrapyd_schedule_unconfirmed", **fields, error=str(exc), state=state)
                crawl.state = state
                self._active.append(crawl)
                node.added += 1
                return True
            if exc.node_failed:  # not taken (no connection, refused credentials): another node
                self._node_failed(node, exc, now)
                self._again.appendleft(crawl)
                return True
            self._finish(crawl, self._not_sent(crawl, now, str(exc)))  # the node refused this crawl
            return True
        log.info("spider_dispatched", **fields)
        crawl.state = "pending"
        self._active.append(crawl)
        node.added += 1
        node.last_sent_at = now
        return True

    def _not_sent(self, crawl: _Crawl, now: float, why: str) -> CrawlOutcome:
        log.error("spider_not_dispatched", spider=crawl.job.spider, job=crawl.job.name, error=why)
        outcome = remote_outcome(crawl.job, None, log_found=False, timed_out=False, cancelled=False,
                                 duration_s=now - crawl.dispatched_at)  # fmt: skip
        return dataclasses.replace(outcome, failure="error", message=f"not dispatched: {why}")
