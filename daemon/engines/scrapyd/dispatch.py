"""Dispatching crawls to Scrapyd nodes: the engine behind SCHEDULER_ENGINE=scrapyd.

It has the local runner's contract (daemon/engines/local.py): crawls launched one by one beside
those under way (`launch`, `attach` for one a former daemon left), each crawl's end told to its own
run at the poll that sees it (`poll`, at most every `poll_s` however often the loop calls it), so
the loop gives a node's freed slot to the most overdue due job within one poll and never waits for
a run. At most `concurrency` crawls at a time, each job's timeout enforced, the stop and abort
events honoured. What differs is where a crawl runs and what the daemon can know of it; the facts
it rests on are in docs/scrapyd-facts.md.

- Write ahead: `on_dispatch(token, node, jobid, log_url)` is called before schedule.json is sent,
  with our own job id, so a daemon that dies at any point finds the crawl again.
- A crawl never waits in a node's queue (which dies with the node): it goes to a node whose load
  (running + pending, whoever scheduled them, plus our crawls it has forgotten) is below its
  slots, least loaded first, skipping nodes that failed in the last `node_retry_s`.
- schedule.json is never sent twice blindly: when the answer is lost, the node is asked first.
- Each remote crawl is watched through listjobs.json (one request per node per poll) and, when
  Scrapyd does not know it, through its log under /logs/. `classify` (pure, table-driven tests) says
  what to do: watch, collect, dispatch again, or give it up as lost.
- Its outcome is judged by daemon.jobs.crawl.judge from the stats the crawl wrote next to its log
  (daemon/node_stats.py), else from the stats Scrapy dumped into the log. A crawl that ended with
  no stats at all failed (`process_died`); one whose node or log went silent beyond the limit, or
  whose stats and log were both gone before they were read, is `lost`.
- Timeouts and `cancel JOB`: cancel.json (SIGTERM), then signal=KILL after the grace.
- The daemon's own stop (or losing the runner lock) never cancels remote crawls: they are left
  running, listed in `detached`, for the next daemon to re-attach with `attach`.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

import structlog

from daemon.system.clock import Clock
from daemon.settings.config import Settings
from daemon.jobs.crawl import CrawlOutcome
from daemon.jobs.jobfile import Job
from daemon.engines.engine import OnDispatch, OnFinish, OnSpawn, OnStart, RemoteRun
from daemon.engines.scrapyd.placement import Placement, _Crawl, _Node
from daemon.engines.scrapyd.rules import Action, EngineSettings, Limits, Observation, classify, lost_outcome
from daemon.settings.addresses import Node
from daemon.engines.scrapyd.client import ScrapydClient, ScrapydError
from daemon.engines.scrapyd.watching import LOST_REMEMBERED, Watching

log = structlog.get_logger("daemon.dispatch")



class ScrapydEngine(Placement, Watching):
    """The Scrapyd engine (daemon/engines/engine.py): each crawl a job on a Scrapyd node."""

    reattaches = True  # a remote crawl outlives its daemon: the next one re-attaches to it

    def __init__(
        self,
        settings: EngineSettings,
        clock: Clock,
        stop: threading.Event,
        *,
        on_poll: Callable[[], None] = lambda: None,
        abort: threading.Event | None = None,
        client_factory: Callable[[str], Any] | None = None,
        on_node: Callable[[str, bool, str], None] = lambda node, up, why: None,
    ) -> None:
        """on_node(node, up, why): a node stopped answering (up False: once per outage, with why) or
        answers again (up True); the daemon alerts it."""
        self.settings = settings
        self.on_node = on_node
        self.clock = clock
        self.stop = stop
        self.abort = abort or threading.Event()  # this daemon lost the runner lock: leave, at once
        self.on_poll = on_poll
        self.limits = settings.limits
        self._make_client = client_factory or (
            lambda url: ScrapydClient(url, username=settings.username, password=settings.password,
                                      timeout=settings.request_timeout_s)  # fmt: skip
        )
        self.nodes = [_Node(spec, self._make_client(spec.url)) for spec in settings.nodes]
        self.concurrency = settings.concurrency or sum(node.slots for node in settings.nodes)
        self.detached: list[RemoteRun] = []  # left running at the last stop, for the next daemon
        self.not_started: str | None = None  # why the last launch started nothing (None: on_start refused)
        self._active: list[_Crawl] = []  # the crawls under way on the nodes, of every run
        self._again: collections.deque[_Crawl] = collections.deque()  # recorded crawls to (re)send first
        self._ended: list[tuple[_Crawl, CrawlOutcome]] = []  # ended, to be told to their runs
        self._polled_at = float("-inf")  # when the nodes running our crawls were last asked
        self._all_asked_at = float("-inf")  # when every node was last asked (for its free slots)
        self._former_nodes: list[_Node] = []  # nodes no longer configured that still have our crawls
        self._lost: collections.deque[tuple[_Node, str, str]] = collections.deque(maxlen=LOST_REMEMBERED)

    # The runner's interface: crawls one by one, beside those under way ----------------------------

    @property
    def busy(self) -> int:
        """Our crawls under way (each holds a node's slot), to be sent again, or ended and not yet told."""
        return len(self._active) + len(self._again) + len(self._ended)

    def free(self) -> int:
        """How many crawls could be launched now: the nodes' free slots (every node asked at most
        a poll ago, whoever's crawls fill them), at most `concurrency` of ours. When no node answers,
        the slots are offered anyway: the launch then says why nothing started."""
        now = self.clock.monotonic()
        self._ask_all(now)
        ours = self.concurrency - len(self._active) - len(self._again)
        room = self._room(now)
        return max(0, ours if room < 0 else min(ours, room))

    def launch(self, job: Job, on_start: OnStart, on_finish: OnFinish, on_spawn: OnSpawn = lambda token, pid: None,
               on_dispatch: OnDispatch = lambda token, node, jobid, log_url: None) -> bool:  # fmt: skip
        """Send `job`'s crawl now to the node `free` found room on, recorded first (`on_start`, then
        `on_dispatch`); `on_finish` hears its outcome from a later `poll`. False when it was not
        started: no node has a free slot (`not_started` says why) or `on_start` refused it."""
        now = self.clock.monotonic()
        self.not_started = None
        self._ask_all(now)
        node = self._choose(now, avoid=self._lost_on(job.name))
        if node is None or len(self._active) + len(self._again) >= self.concurrency:
            self.not_started = "every Scrapyd node's slots are taken" if self._answering(now) else self._none_answered()
            log.warning("spiders_not_started", spiders=[job.name], reason="no_node",
                        nodes=[n.name for n in self.nodes])  # fmt: skip
            return False
        token = on_start(job)
        if token is None:
            return False
        self._send(_Crawl(job, token, now, on_finish, on_dispatch), node, now)
        return True

    def _ask_all(self, now: float) -> None:
        """Every node asked for its jobs, unless that was done less than a poll ago."""
        if now - self._all_asked_at >= self.settings.poll_s:
            self._observe(wanted=True, now=now)

    def attach(self, run: RemoteRun, on_finish: OnFinish,
               on_dispatch: OnDispatch = lambda token, node, jobid, log_url: None) -> None:  # fmt: skip
        """Re-attach to a crawl a former daemon recorded and did not see end (at start-up, after a
        take-over), beside those under way: asked after at the next poll and `classify`'d like the
        others (watched to its end, sent again if it never started, judged if gone)."""
        self._active.append(self._attached(run, self.clock.monotonic(), on_finish, on_dispatch))

    def poll(self) -> int:
        """At most every poll: ask the nodes after our crawls, act on each (`classify`: collect,
        stop, send again, give up), send again what must be; then tell each crawl that ended to its
        run's `on_finish` and call `on_poll` (the lease's probe, cancels, the heartbeat). The daemon
        stopping or giving way leaves every crawl on its node (`detached`), cancelling nothing. How
        many crawls were told ended."""
        now = self.clock.monotonic()
        if self.stop.is_set() or self.abort.is_set():
            told = self._tell()
            self._leave(now)
            return told
        if now - self._polled_at >= self.settings.poll_s:
            self._poll_nodes(now)
            self._place(now)
        told = self._tell()
        self.on_poll()
        return told

    def cancel(self, name: str) -> bool:
        """`cancel JOB`: cancel.json to its node (SIGTERM), signal=KILL after the grace; its verdict
        is 'cancelled'. False when no crawl of that job is under way here."""
        crawl = next((c for c in self._active if c.job.name == name and not c.cancelled), None)
        if crawl is None:
            return False
        crawl.cancelled = True
        self._enforce(crawl, self.clock.monotonic())
        return True

    # Polling the nodes ----------------------------------------------------------------------------

    def _poll_nodes(self, now: float) -> None:
        """Ask the nodes (every one when a crawl waits to be sent again), act on each crawl under
        way as `classify` says."""
        self._polled_at = now
        self._observe(wanted=bool(self._again), now=now)
        for crawl in list(self._active):
            self._step(crawl, now)

    def _attached(self, run: RemoteRun, now: float, on_finish: OnFinish, on_dispatch: OnDispatch) -> _Crawl:
        crawl = _Crawl(run.job, run.token, now - max(0.0, run.age_s), on_finish, on_dispatch)
        node = self._node_for(run.node)
        crawl.sent(node, run.jobid, node.client.log_url(self.settings.project, run.job.spider, run.jobid),
                   crawl.dispatched_at)  # fmt: skip
        log.info("spider_reattaching", spider=run.job.spider, job=run.job.name, node=node.name, jobid=run.jobid)
        return crawl

    def _finish(self, crawl: _Crawl, outcome: CrawlOutcome) -> None:
        """`crawl` has ended: out of the crawls under way, its outcome told at the end of this poll."""
        if crawl in self._active:
            self._active.remove(crawl)
        self._ended.append((crawl, outcome))

    def _tell(self) -> int:
        ended, self._ended = self._ended, []
        for crawl, outcome in ended:
            crawl.on_finish(crawl.token, outcome)
        return len(ended)

    def _leave(self, now: float) -> None:
        """The daemon stops (or gives way): nothing more is sent, nothing is cancelled."""
        reason = "lock_lost" if self.abort.is_set() else "stopping"
        # A recorded crawl waiting to be sent (again) is left like the others: the next daemon finds
        # it unknown to its node, without a log, and sends it.
        left = [*self._active, *self._again]
        self._active.clear()
        self._again.clear()
        if left:
            self.detached = [
                RemoteRun(c.token, c.job, c.node.spec.url if c.node else "", c.jobid, now - c.dispatched_at)
                for c in left
            ]
            log.info("remote_crawls_left_running", reason=reason,
                     crawls=[{"job": c.job.name, "node": c.node.name if c.node else None, "jobid": c.jobid}
                             for c in left])  # fmt: skip

    def _observe(self, wanted: bool, now: float) -> None:
        """Ask each node that matters this poll for its jobs: those running our crawls, those that
        lost one (`Watching._lost_came_back`), and, when a crawl waits for a slot, those not resting
        after a failure."""
        asked = {id(c.node): c.node for c in self._active if c.node is not None}
        others = [*self.nodes] if wanted else []
        for node in [*others, *self._asked_after_lost()]:
            if not node.cooling(now, self.limits.node_retry_s):
                asked.setdefault(id(node), node)
        for node in self.nodes:
            if id(node) not in asked:
                node.jobs = None
        for node in asked.values():
            try:
                node.jobs = node.client.listjobs()
            except ScrapydError as exc:
                node.jobs = None
                self._node_failed(node, exc, now)
                continue
            node.added = 0
            if node.failed_at is not None:
                log.info("scrapyd_node_back", node=node.name)
                node.failed_at = None
                self.on_node(node.name, True, "")
        # The nodes not asked hold no answer now: `free` asks them all again before it counts.
        self._all_asked_at = now if wanted else float("-inf")
        self._lost_came_back(now)

    def _node_failed(self, node: _Node, exc: ScrapydError, now: float) -> None:
        if node.failed_at is None:
            log.warning("scrapyd_node_failed", node=node.name, error=str(exc), retry_after_s=self.limits.node_retry_s)
            self.on_node(node.name, False, str(exc))
        node.failed_at = now

    def _step(self, crawl: _Crawl, now: float) -> None:
        node = crawl.node
        assert node is not None
        state = node.jobs.state(crawl.jobid) if node.jobs is not None else "unreachable"
        seen_log = "unread"
        if state == "unknown":
            try:
                seen_log = self._look_at_log(crawl, now)
            except ScrapydError as exc:
                self._node_failed(node, exc, now)
                state = "unreachable"
        if state == "unreachable":
            crawl.unreachable_since = crawl.unreachable_since if crawl.unreachable_since is not None else now
        else:
            crawl.unreachable_since = None
        crawl.state = state
        seen = Observation(
            state=state,
            log=seen_log,
            log_still_s=now - crawl.log_changed_at,
            unreachable_s=now - crawl.unreachable_since if crawl.unreachable_since is not None else 0.0,
            since_dispatch_s=now - crawl.sent_at,
            stopped=crawl.stop_sent_at is not None,
        )
        action, reason = classify(seen, self.limits)
        fields = {"spider": crawl.job.spider, "job": crawl.job.name, "node": node.name, "jobid": crawl.jobid}
        if action is Action.WATCH:
            if reason in ("orphan", "node_unreachable") and reason not in crawl.noticed:
                crawl.noticed.add(reason)
                log.warning("remote_crawl_" + reason, **fields, lost_after_s=self.limits.lost_after_s)
            self._enforce(crawl, now)
        elif action is Action.COLLECT:
            try:
                outcome = self._collect(crawl, now)
            except ScrapydError as exc:
                self._node_failed(node, exc, now)  # read again next poll
                return
            self._finish(crawl, outcome)
        elif action is Action.LOST:
            log.warning("remote_crawl_lost", **fields, reason=reason, after_s=self.limits.lost_after_s)
            self._gave_up(crawl)
            self._finish(crawl, lost_outcome(crawl.job, reason, now - crawl.dispatched_at, node.name,
                                             self.limits.lost_after_s))  # fmt: skip
        else:  # Action.DISPATCH_AGAIN
            log.warning("remote_crawl_never_started", **fields, after_s=self.limits.never_started_after_s)
            if crawl in self._active:
                self._active.remove(crawl)
            self._again.append(crawl)

    # Placing crawls on nodes ----------------------------------------------------------------------

    def _node_for(self, url: str) -> _Node:
        """The configured node of that URL, or one made for a node no longer configured (its crawls
        are still watched to their end, never sent new ones)."""
        url = url.rstrip("/")
        for node in [*self.nodes, *self._former_nodes]:
            if node.spec.url == url:
                return node
        node = _Node(Node(url, 0), self._make_client(url))
        self._former_nodes.append(node)
        return node


def engine_settings(settings: Settings) -> EngineSettings:
    """What the Scrapyd engine takes from the settings: the nodes, their auth and project, the limit
    after which a silent crawl is lost, the grace between cancel and kill. At most as many crawls at
    once as the nodes have slots (SCHEDULER_CONCURRENCY is the local runner's)."""
    return EngineSettings(
        nodes=settings.scrapyd_nodes, project=settings.scrapyd_project, username=settings.scrapyd_username,
        password=settings.scrapyd_password if settings.scrapyd_username else None,
        stop_grace_s=settings.stop_grace_seconds, limits=Limits(lost_after_s=settings.scrapyd_lost_after_seconds),
    )  # fmt: skip
