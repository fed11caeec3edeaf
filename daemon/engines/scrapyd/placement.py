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
from daemon.engines.engine import OnDispatch, OnStart
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
    def __init__(self, job: Job, token: Any, dispatched_at: float) -> None:
        self.job = job
        self.token = token
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
    not_started: str | None

    _node_failed: Callable[[_Node, ScrapydError, float], None]  # the engine's (daemon/engines/scrapyd/dispatch.py)

    _lost_on: Callable[[str], set[int]]  # the engine's (daemon/engines/scrapyd/watching.py): nodes that lost a crawl of a job

    def _place(self, pending: collections.deque[Job], again: collections.deque[_Crawl], active: list[_Crawl],
               on_start: OnStart, on_dispatch: OnDispatch, finish: Callable[[_Crawl, CrawlOutcome], None],
               now: float) -> None:  # fmt: skip
        while (pending or again) and len(active) < self.concurrency:
            node = self._choose(active, now, avoid=self._lost_on(again[0].job.name if again else pending[0].name))
            if node is None:
                if not any(not n.cooling(now, self.limits.node_retry_s) for n in self.nodes):
                    self._no_node(pending, again, finish, now)
                return
            if again:
                crawl = again.popleft()
            else:
                job = pending.popleft()
                token = on_start(job)
                if token is None:
                    # Its record could not be written: a crawl nobody could account for. It and
                    # the rest stay due; the crawls under way go on.
                    log.warning("spiders_not_started", spiders=[j.name for j in (job, *pending)],
                                reason="record_failed")  # fmt: skip
                    self.not_started = "their records could not be written"
                    pending.clear()
                    return
                crawl = _Crawl(job, token, now)
            if not self._send(crawl, node, active, again, on_dispatch, finish, now):
                # Its node and job id could not be recorded first: the jobs not started stay due,
                # the crawls under way go on.
                if pending:
                    log.warning("spiders_not_started", spiders=[j.name for j in pending], reason="record_failed")
                    self.not_started = "their records could not be written"
                    pending.clear()
                return

    def _choose(self, active: list[_Crawl], now: float, avoid: set[int]) -> _Node | None:
        """The node for the next crawl; `avoid`: nodes that lost a crawl of its job (ids)."""
        usable = [n for n in self.nodes if n.jobs is not None and not n.cooling(now, self.limits.node_retry_s)]
        # Our crawls a restarted node forgot still occupy its slots.
        forgotten = collections.Counter(id(c.node) for c in active if c.state == "unknown")
        index = choose_node([(n.jobs.load + n.added + forgotten[id(n)], n.spec.slots) for n in usable],
                            avoid={i for i, n in enumerate(usable) if id(n) in avoid},
                            last_sent=[n.last_sent_at for n in usable])  # fmt: skip
        return usable[index] if index is not None else None

    def _no_node(self, pending: collections.deque[Job], again: collections.deque[_Crawl],
                 finish: Callable[[_Crawl, CrawlOutcome], None], now: float) -> None:  # fmt: skip
        """Every node failed recently: the jobs not started stay due (the loop tries again later);
        a recorded crawl that could not be sent anywhere fails."""
        if pending:
            log.warning("spiders_not_started", spiders=[job.name for job in pending], reason="no_node",
                        nodes=[n.name for n in self.nodes])  # fmt: skip
            self.not_started = "no Scrapyd node answered: " + ", ".join(n.name for n in self.nodes)
            pending.clear()
        while again:
            crawl = again.popleft()
            names = ", ".join(n.name for n in self.nodes)
            finish(crawl, self._not_sent(crawl, now, f"no Scrapyd node answered: {names}"))

    def _send(self, crawl: _Crawl, node: _Node, active: list[_Crawl], again: collections.deque[_Crawl],
              on_dispatch: OnDispatch, finish: Callable[[_Crawl, CrawlOutcome], None], now: float) -> bool:  # fmt: skip
        """Send one crawl to `node`, its node and job id recorded first. False when that record could
        not be written (`on_dispatch` returned False): then nothing was sent and the crawl has failed."""
        job, project = crawl.job, self.settings.project
        jobid = new_jobid(job)
        crawl.sent(node, jobid, node.client.log_url(project, job.spider, jobid), now)
        if on_dispatch(crawl.token, node.spec.url, jobid, crawl.log_url) is False:  # write ahead
            finish(crawl, self._not_sent(crawl, now, "its node and job id could not be recorded first"))
            return False
        fields = {"spider": job.spider, "job": job.name, "node": node.name, "jobid": jobid}
        try:
            node.client.schedule(project, job.spider, jobid, job.args, node_settings(job))
        except ValueError as exc:  # arguments Scrapyd cannot pass: it was never sent
            finish(crawl, self._not_sent(crawl, now, str(exc)))
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
                active.append(crawl)
                node.added += 1
                return True
            if exc.node_failed:  # not taken (no connection, refused credentials): another node
                self._node_failed(node, exc, now)
                again.appendleft(crawl)
                return True
            finish(crawl, self._not_sent(crawl, now, str(exc)))  # the node refused this crawl
            return True
        log.info("spider_dispatched", **fields)
        crawl.state = "pending"
        active.append(crawl)
        node.added += 1
        node.last_sent_at = now
        return True

    def _not_sent(self, crawl: _Crawl, now: float, why: str) -> CrawlOutcome:
        log.error("spider_not_dispatched", spider=crawl.job.spider, job=crawl.job.name, error=why)
        outcome = remote_outcome(crawl.job, None, log_found=False, timed_out=False, cancelled=False,
                                 duration_s=now - crawl.dispatched_at)  # fmt: skip
        return dataclasses.replace(outcome, failure="error", message=f"not dispatched: {why}")
