"""Remote crawls on Scrapyd nodes, the pure part: the nodes and limits as configured, what to do with
a crawl the daemon sees (`classify`, table-driven tests), where the next crawl goes (`choose_node`)
and how a remote crawl is judged (`remote_outcome`, from its stats or the stats its log dumped).
The engine that asks the nodes and acts is daemon/engines/scrapyd/dispatch.py."""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Container, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from daemon.settings.addresses import Node
from daemon.jobs.crawl import TAIL_LINES, TAIL_MAX_BYTES, CrawlOutcome, crawl_command, judge
from daemon.jobs.jobfile import Job

if TYPE_CHECKING:
    from daemon.settings.secret import Secret

log = structlog.get_logger("daemon.dispatch")


POLL_SECONDS = 0.1  # how often the nodes are asked while crawls run; a node's own poll_interval adds to it
LOG_TAIL_BYTES = 64 * 1024  # enough for Scrapy's final stats dump and the "Spider closed" line after it
NODE_STATS_COLLECTOR = "daemon.node_stats.NodeStatsCollector"



# Settings ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Limits:
    # A node that does not answer, or a forgotten crawl whose log does not grow, for this long is
    # given up: the crawl is `lost` (failed, retried like any failure, on a node that answers).
    # Longer than Scrapy's LOGSTATS_INTERVAL (60 s), which writes a log line every minute even
    # while a crawl waits on slow pages (at LOG_LEVEL INFO).
    lost_after_s: float = 300.0
    # A crawl neither Scrapyd nor its logs know, this long after schedule.json was sent, never
    # started: dispatched again. Long enough for a crawl to open its log after it was spawned.
    never_started_after_s: float = 30.0
    # A node that failed (no connection, no answer, refused our credentials) is not offered new
    # crawls for this long; its crawls are still watched.
    node_retry_s: float = 30.0


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    nodes: tuple[Node, ...]
    project: str = "default"  # Scrapyd's name for a project it was started inside
    username: str | None = None
    password: Secret | None = None
    request_timeout_s: float = 10.0
    stop_grace_s: float = 20.0  # after cancel.json, this long before signal=KILL
    concurrency: int | None = None  # at most this many crawls at once; None: the nodes' slots
    limits: Limits = Limits()
    poll_s: float = POLL_SECONDS


# The decision ------------------------------------------------------------------------------------


class Action(enum.Enum):
    WATCH = "watch"  # it runs, waits, or may yet: keep watching (re-attach)
    COLLECT = "collect"  # it ended: read its stats and judge it
    DISPATCH_AGAIN = "dispatch_again"  # it never started: send it (to a node) again
    LOST = "lost"  # its node or its log went silent beyond the limit: failed


@dataclasses.dataclass(frozen=True)
class Observation:
    state: str  # what the node says: 'pending' | 'running' | 'finished' | 'unknown' | 'unreachable'
    log: str = "unread"  # read only when the node says 'unknown': 'absent' | 'open' | 'closed'
    log_still_s: float = 0.0  # how long its log's size has not changed, by our clock (0: first look)
    unreachable_s: float = 0.0  # how long the node has not answered (0: it answers)
    since_dispatch_s: float = 0.0  # since schedule.json was sent (or written ahead)
    stopped: bool = False  # we asked the node to stop it (timeout, cancel)


def classify(seen: Observation, limits: Limits) -> tuple[Action, str]:
    """What to do with one remote crawl, and why (a stable word for the logs)."""
    if seen.state == "unreachable":
        if seen.unreachable_s >= limits.lost_after_s:
            return Action.LOST, "node_unreachable"
        return Action.WATCH, "node_unreachable"
    if seen.state in ("pending", "running"):
        return Action.WATCH, seen.state
    if seen.state == "finished":
        return Action.COLLECT, "finished"
    # Scrapyd does not know it: restarted (it forgets its running crawls, which go on as orphans),
    # forgot it (finished_to_keep), or never got it. Its log says which.
    if seen.log == "closed":
        return Action.COLLECT, "closed_while_forgotten"
    if seen.log == "open":
        if seen.log_still_s >= limits.lost_after_s:
            return Action.LOST, "log_stale"
        return Action.WATCH, "orphan"
    if seen.stopped:
        return Action.COLLECT, "stopped_before_start"  # cancelled while pending: it never ran
    if seen.since_dispatch_s >= limits.never_started_after_s:
        return Action.DISPATCH_AGAIN, "never_started"
    return Action.WATCH, "not_started_yet"


def choose_node(loads: Sequence[tuple[int, int]], *, avoid: Container[int] = (),
                last_sent: Sequence[float] = ()) -> int | None:  # fmt: skip
    """Which node takes the next crawl: the index, among `loads` ((load, slots) of each usable node),
    of one with a free slot. Not one of `avoid` (a node that lost a crawl of this job) unless no other
    is free; then the least loaded (load / slots, then load); then the one sent a crawl least
    recently (`last_sent`, so equal nodes take turns); then the configured order."""
    free = [(i in avoid, load / slots, load, last_sent[i] if last_sent else 0.0, i)
            for i, (load, slots) in enumerate(loads) if load < slots]  # fmt: skip
    return min(free)[-1] if free else None


def remote_outcome(job: Job, stats: dict[str, Any] | None, *, log_found: bool, timed_out: bool, cancelled: bool,
                   duration_s: float) -> CrawlOutcome:  # fmt: skip
    """The verdict on a remote crawl that ended, from what it left on its node."""
    outcome = judge(
        job.spider, job=job.name, exit_code=0, stats=stats, timed_out=timed_out, interrupted=False,
        max_errors=job.max_errors, timeout_minutes=job.timeout.total_seconds() / 60, duration_s=duration_s,
        min_items=job.min_items, cancelled=cancelled,
    )  # fmt: skip
    if outcome.failure == "error" and stats is None:
        if log_found:
            outcome = dataclasses.replace(outcome, failure="process_died", message=(
                "ended without its final stats: the crawl process died (killed, out of memory, or its node "
                "stopped under it)"))  # fmt: skip
        else:
            outcome = dataclasses.replace(outcome, failure="lost", message=(
                "neither its stats nor its log are on the node to say how it went (rotated away by Scrapyd's "
                "jobs_to_keep, deleted, or it died before it opened its log)"))  # fmt: skip
    # Scrapyd does not report exit codes (a crawl killed with -9 is 'finished' like any other).
    return dataclasses.replace(outcome, exit_code=None)


def lost_outcome(job: Job, reason: str, duration_s: float, node: str, limit_s: float) -> CrawlOutcome:
    message = {
        "node_unreachable": f"its Scrapyd node {node} did not answer for {limit_s:g} s",
        "log_stale": f"its Scrapyd node {node} forgot it and its log did not grow for {limit_s:g} s",
    }.get(reason, f"lost on Scrapyd node {node}")
    outcome = remote_outcome(job, None, log_found=False, timed_out=False, cancelled=False, duration_s=duration_s)
    return dataclasses.replace(outcome, failure="lost", message=message)


# Reading a crawl's log -----------------------------------------------------------------------------

_CLOSED = re.compile(r"\] INFO: Spider closed \(")
_DUMP = "Dumping Scrapy stats:"


def log_tail(tail: bytes) -> str:
    """A crawl's last lines, as its row keeps them (the local runner's limits): whole lines only."""
    text = tail[-TAIL_MAX_BYTES:].decode("utf-8", "replace")
    lines = text.splitlines(keepends=True)
    if len(tail) > TAIL_MAX_BYTES and lines:
        lines = lines[1:]  # the first line was cut
    return "".join(lines[-TAIL_LINES:])


def log_says_closed(tail: str) -> bool:
    """Scrapy wrote "Spider closed (<reason>)": the crawl ended (the process may linger a moment)."""
    return _CLOSED.search(tail) is not None


def parse_dumped_stats(text: str) -> dict[str, Any] | None:
    """The stats Scrapy dumps into its log at the end ("Dumping Scrapy stats:" and a pprint'ed dict),
    read without evaluating anything: literals only, `datetime.datetime(...)` as its ISO text (as the
    stats collectors write it). None when there is no (complete) dump."""
    import ast
    from datetime import datetime, timedelta, timezone

    at = text.rfind(_DUMP)
    if at < 0:
        return None
    start = text.find("{", at)
    if start < 0:
        return None

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            operand = value(node.operand)
            if isinstance(operand, (int, float)) and not isinstance(operand, bool):
                return -operand
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "datetime.datetime" and all(
            isinstance(a, ast.Constant) and isinstance(a.value, int) for a in node.args
        ):
            tz = None
            for keyword in node.keywords:
                if keyword.arg == "tzinfo" and ast.unparse(keyword.value) == "datetime.timezone.utc":
                    tz = timezone.utc
                else:
                    return ast.unparse(node)
            try:
                return datetime(*(a.value for a in node.args), tzinfo=tz).isoformat()  # type: ignore[attr-defined]
            except (TypeError, ValueError, OverflowError):
                return ast.unparse(node)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "datetime.timedelta":
            try:
                return str(timedelta(**{k.arg: value(k.value) for k in node.keywords if k.arg}))
            except (TypeError, ValueError, OverflowError):
                return ast.unparse(node)
        return ast.unparse(node)  # anything else is kept as its text, never evaluated

    # The dict ends at the first "}" at the end of a line where the text parses (a "}" inside a
    # repr'd string is never followed by a real newline).
    for match in re.finditer(r"\}[ \t]*(?:\r?\n|$)", text[start:]):
        try:
            tree = ast.parse(text[start : start + match.start() + 1], mode="eval")
        except SyntaxError:
            continue
        if not isinstance(tree.body, ast.Dict):
            return None
        stats: dict[str, Any] = {}
        for key, item in zip(tree.body.keys, tree.body.values):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                stats[key.value] = value(item)
        return stats
    return None


# The engine --------------------------------------------------------------------------------------


def node_settings(job: Job) -> list[tuple[str, str]]:
    """The settings a job's crawl gets on a node: the job's, then ours (they win: Scrapyd keeps the
    last of a name), the local crawl's own (daemon.jobs.crawl.crawl_command) with the node's stats collector,
    which writes next to the log where the daemon can read it."""
    ours: list[tuple[str, str]] = []
    argv = crawl_command(job.spider, Path("unused"), (), job.name)
    for flag, item in zip(argv, argv[1:]):
        if flag != "-s":
            continue
        name, _, value = item.partition("=")
        if name == "SCHEDULER_STATS_FILE":
            continue
        ours.append((name, NODE_STATS_COLLECTOR if name == "STATS_CLASS" else value))
    taken = {name for name, _ in ours}
    return [*(pair for pair in job.settings if pair[0] not in taken), *ours]


def new_jobid(job: Job) -> str:
    """Our own Scrapyd job id: the job's name (readable in Scrapyd's pages) and 64 random bits. Never
    reused, not even for the same crawl sent again: Scrapyd accepts duplicate ids, and two runs of
    one id share a log file and confuse status.json."""
    return f"{job.name}-{os.urandom(8).hex()}"
