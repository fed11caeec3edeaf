"""The Scrapyd engine's decisions: what to do with a remote crawl, which node takes the next one, how a
remote crawl is judged, what its log says, and the engine's loop against nodes faked through its
client seam (the real nodes are in tests/e2e/test_scrapyd.py)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.jobs.crawl import CrawlOutcome
from daemon.engines.scrapyd.dispatch import ScrapydEngine
from daemon.engines.scrapyd.rules import (
    Action,
    EngineSettings,
    Limits,
    Observation,
    choose_node,
    classify,
    log_says_closed,
    node_settings,
    parse_dumped_stats,
    remote_outcome,
)
from daemon.engines.engine import RemoteRun
from daemon.settings.addresses import Node, parse_nodes
from daemon.jobs.jobfile import Job, make_job
from daemon.engines.scrapyd.client import Jobs, ScrapydClient, ScrapydError
from tests.helpers import crawl_to_end
from tests.unit.fakes import FakeClock
from tests.unit.test_jobfile import ENV

LIMITS = Limits(lost_after_s=300, never_started_after_s=30, node_retry_s=30)


def job(name: str = "quotes", spider: str | None = None, **values: Any) -> Job:
    return make_job(name=name, spider=spider or name, defaults=ENV, **values)


# classify: the table ---------------------------------------------------------------------

WATCH, COLLECT, AGAIN, LOST = Action.WATCH, Action.COLLECT, Action.DISPATCH_AGAIN, Action.LOST


@pytest.mark.parametrize(
    ("seen", "action", "reason"),
    [
        (Observation("pending"), WATCH, "pending"),
        (Observation("running"), WATCH, "running"),
        (Observation("running", stopped=True), WATCH, "running"),
        (Observation("finished"), COLLECT, "finished"),
        (Observation("unknown", log="closed"), COLLECT, "closed_while_forgotten"),
        (Observation("unknown", log="open", log_still_s=0), WATCH, "orphan"),
        (Observation("unknown", log="open", log_still_s=299.9), WATCH, "orphan"),
        (Observation("unknown", log="open", log_still_s=300), LOST, "log_stale"),
        (Observation("unknown", log="absent", since_dispatch_s=29.9), WATCH, "not_started_yet"),
        (Observation("unknown", log="absent", since_dispatch_s=30), AGAIN, "never_started"),
        (Observation("unknown", log="absent", since_dispatch_s=999, stopped=True), COLLECT, "stopped_before_start"),
        (Observation("unreachable", unreachable_s=0), WATCH, "node_unreachable"),
        (Observation("unreachable", unreachable_s=299.9), WATCH, "node_unreachable"),
        (Observation("unreachable", unreachable_s=300), LOST, "node_unreachable"),
    ],
    ids=lambda value: value.state if isinstance(value, Observation) else None,
)
def test_what_becomes_of_a_remote_crawl_follows_what_its_node_and_its_log_say(seen, action, reason):
    assert classify(seen, LIMITS) == (action, reason)


def test_a_crawl_that_may_still_start_is_never_dispatched_again_before_the_limit():
    for since in (0, 1, 10, 29.99):
        assert classify(Observation("unknown", log="absent", since_dispatch_s=since), LIMITS)[0] is not AGAIN


# choose_node ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loads", "chosen"),
    [
        ([], None),
        ([(0, 1)], 0),
        ([(1, 1)], None),  # full: the crawl waits here, never in the node's queue
        ([(1, 1), (0, 1)], 1),
        ([(0, 1), (0, 1)], 0),  # equal: the configured order
        ([(2, 4), (1, 1), (1, 4)], 2),  # least loaded for its slots
        ([(1, 2), (2, 4)], 0),  # same share: the fewer crawls
        ([(5, 4), (0, 2)], 1),  # over its slots (others' crawls): skipped
    ],
)
def test_the_next_crawl_goes_to_the_least_loaded_node_with_a_free_slot(loads, chosen):
    assert choose_node(loads) == chosen


@pytest.mark.parametrize(
    ("loads", "avoid", "last_sent", "chosen"),
    [
        ([(0, 1), (0, 1)], set(), [5.0, 1.0], 1),  # equal: the one sent a crawl least recently
        ([(0, 1), (0, 1), (0, 1)], set(), [3.0, 2.0, 2.0], 1),  # then the configured order
        ([(0, 1), (0, 1)], {0}, [0.0, 9.0], 1),  # it lost this job's crawl: another node
        ([(0, 2), (1, 2)], {0}, [0.0, 0.0], 1),  # even a busier one
        ([(0, 1), (1, 1)], {0}, [0.0, 0.0], 0),  # unless no other has a free slot
    ],
)
def test_a_retry_avoids_the_node_that_lost_its_crawl_and_equal_nodes_take_turns(loads, avoid, last_sent, chosen):
    assert choose_node(loads, avoid=avoid, last_sent=last_sent) == chosen


# the verdict ----------------------------------------------------------------------------------------

GOOD = {"finish_reason": "finished", "item_scraped_count": 15, "log_count/ERROR": 0}


@pytest.mark.parametrize(
    ("stats", "log_found", "flags", "failure", "words"),
    [
        (GOOD, True, {}, None, "scraped 15"),
        ({**GOOD, "finish_reason": "shutdown"}, True, {}, "error", "finish_reason='shutdown'"),
        (None, True, {}, "process_died", "died"),
        (None, False, {}, "lost", "jobs_to_keep"),
        (None, True, {"cancelled": True}, "cancelled", "cancelled"),
        (None, False, {"timed_out": True}, "timeout", "longer than"),
        ({**GOOD, "finish_reason": "shutdown"}, True, {"timed_out": True}, "timeout", "longer than"),
    ],
)
def test_a_remote_crawl_is_judged_from_what_it_left_on_its_node(stats, log_found, flags, failure, words):
    outcome = remote_outcome(job(), stats, log_found=log_found, timed_out=flags.get("timed_out", False),
                             cancelled=flags.get("cancelled", False), duration_s=2.0)  # fmt: skip
    assert (outcome.ok, outcome.failure) == (failure is None, failure)
    assert words in outcome.message
    assert outcome.exit_code is None  # Scrapyd does not say; never a made-up 0


# the log ----------------------------------------------------------------------------------------

DUMP = """2026-12-01 20:47:20 [scrapy.core.engine] INFO: Closing spider (finished)
2026-12-01 20:47:20 [scrapy.statscollectors] INFO: Dumping Scrapy stats:
{'downloader/request_bytes': 744,
 'elapsed_time_seconds': 0.01928967300000295,
 'finish_reason': 'finished',
 'finish_time': datetime.datetime(2026, 12, 1, 20, 47, 20, 103531, tzinfo=datetime.timezone.utc),
 'item_scraped_count': 15,
 'items_per_minute': None,
 'log_count/ERROR': 2,
 'odd': "a } brace\\n and {more}",
 'hostile': __import__('os').system('touch /tmp/never'),
 'negative': -3,
 'start_time': datetime.datetime(2026, 12, 1, 20, 47, 20, 84235, tzinfo=datetime.timezone.utc)}
2026-12-01 20:47:20 [scrapy.core.engine] INFO: Spider closed (finished)
"""


def test_the_stats_scrapy_dumped_into_its_log_are_read_without_evaluating_anything():
    stats = parse_dumped_stats(DUMP)
    assert stats == {
        "downloader/request_bytes": 744,
        "elapsed_time_seconds": 0.01928967300000295,
        "finish_reason": "finished",
        "finish_time": "2026-12-01T20:47:20.103531+00:00",  # as the stats collectors write it
        "item_scraped_count": 15,
        "items_per_minute": None,
        "log_count/ERROR": 2,
        "odd": "a } brace\n and {more}",  # a repr'd newline: never the end of the dict
        "hostile": "__import__('os').system('touch /tmp/never')",  # its text, never run
        "negative": -3,
        "start_time": "2026-12-01T20:47:20.084235+00:00",
    }


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-12-01 20:47:20 [scrapy.core.engine] INFO: Spider opened\n",
        DUMP[: DUMP.index("'item_scraped_count'")],  # cut off mid-dump (the crawl was killed)
        "INFO: Dumping Scrapy stats:\n",
    ],
    ids=["empty", "no dump", "cut off", "no dict"],
)
def test_a_log_without_a_complete_dump_gives_no_stats(text):
    assert parse_dumped_stats(text) is None


def test_the_last_dump_counts_when_a_log_holds_two():
    twice = DUMP.replace("'item_scraped_count': 15", "'item_scraped_count': 1") + DUMP
    assert parse_dumped_stats(twice)["item_scraped_count"] == 15


def test_a_log_says_its_spider_closed_only_with_scrapys_line():
    assert log_says_closed(DUMP)
    assert not log_says_closed(DUMP.replace("Spider closed", "Spider opened"))
    assert not log_says_closed("the item said Spider closed (finished) somewhere")


# settings and arguments -------------------------------------------------------------------------


def test_a_crawl_on_a_node_gets_the_jobs_settings_then_ours_with_the_nodes_stats_collector():
    settings = node_settings(job("python-remote", "quotes", settings={"DOWNLOAD_DELAY": "2"}))
    assert settings[0] == ("DOWNLOAD_DELAY", "2")
    ours = dict(settings[1:])
    assert ours["STATS_CLASS"] == "daemon.node_stats.NodeStatsCollector"
    assert ours["SCHEDULER_JOB"] == "python-remote"
    assert ours["TELNETCONSOLE_ENABLED"] == "False"
    assert "SCHEDULER_STATS_FILE" not in ours  # the node's collector writes next to the log


def test_nodes_are_comma_separated_urls_each_with_optional_slots():
    assert parse_nodes(" http://scrapyd-1:6800=4, http://scrapyd-2:6800/ ,", default_slots=2) == (
        Node("http://scrapyd-1:6800", 4),
        Node("http://scrapyd-2:6800", 2),
    )


def test_every_problem_with_the_nodes_is_named_at_once():
    with pytest.raises(ValueError) as error:
        parse_nodes("ftp://a:21,http://user:pw@b:6800,http://c:6800=0,http://d:6800,http://d:6800,http://e:99999")
    message = str(error.value)
    for words in ("'ftp://a:21' is not an http(s)", "b: credentials go in SCRAPYD_USERNAME", "http://c:6800: slots",
                  "'http://d:6800' is listed twice", "'http://e:99999' is not a URL"):  # fmt: skip
        assert words in message
    assert "pw" not in message
    with pytest.raises(ValueError, match="at least one"):
        parse_nodes(" , ")


def test_an_argument_scrapyd_would_swallow_is_refused_before_anything_is_sent():
    client = ScrapydClient("http://127.0.0.1:9")  # nothing listens: a request would fail differently
    with pytest.raises(ValueError, match="jobid, project"):
        client.schedule("default", "quotes", "x", [("project", "a"), ("jobid", "b"), ("q", "c")])


# the engine, against nodes faked through its client seam ------------------------------------------


class TickingClock(FakeClock):
    """Time moves only when the engine waits between polls."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.advance(seconds)
        return event.is_set()


class FakeNode:
    """A node as the engine sees it through its client: job states the test moves, files under
    /logs/, and a record of every call."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = url.split("//")[1]
        self.states: dict[str, str] = {}
        self.others = 0  # crawls of someone else's, pending or running here
        self.files: dict[str, bytes] = {}
        self.stats_by_job: dict[str, dict[str, Any]] = {}
        self.down = False
        self.lose_answers = 0  # schedule.json requests taken whose answer is lost
        self.calls: list[tuple[str, ...]] = []

    def _check(self) -> None:
        if self.down:
            raise ScrapydError(self.name, "unreachable (Connection refused)", unreachable=True)

    def log_path(self, project: str, spider: str, jobid: str, suffix: str = ".log") -> str:
        return ScrapydClient.log_path(project, spider, jobid, suffix)

    def log_url(self, project: str, spider: str, jobid: str) -> str:
        return self.url + self.log_path(project, spider, jobid)

    def schedule(self, project: str, spider: str, jobid: str, args: Any = (), settings: Any = ()) -> str:
        self.calls.append(("schedule", jobid))
        self._check()
        self.states[jobid] = "pending"
        if self.lose_answers:
            self.lose_answers -= 1
            raise ScrapydError(self.name, "no answer to /schedule.json (timed out)", maybe_delivered=True)
        return jobid

    def status(self, jobid: str, project: str | None = None) -> str:
        self.calls.append(("status", jobid))
        self._check()
        return self.states.get(jobid, "unknown")

    def listjobs(self, project: str | None = None) -> Jobs:
        self.calls.append(("listjobs",))
        self._check()
        ids = {s: tuple(j for j, st in self.states.items() if st == s) for s in ("pending", "running", "finished")}
        others = tuple(f"other-{i}" for i in range(self.others))
        return Jobs(ids["pending"] + others, ids["running"], ids["finished"], {})

    def cancel(self, project: str, jobid: str, signal: str = "TERM") -> str | None:
        self.calls.append(("cancel", jobid, signal))
        self._check()
        return self.states.get(jobid) if self.states.get(jobid) in ("pending", "running") else None

    def file_size(self, path: str) -> int | None:
        self._check()
        return len(self.files[path]) if path in self.files else None

    def tail(self, path: str, max_bytes: int) -> bytes | None:
        self._check()
        return self.files[path][-max_bytes:] if path in self.files else None

    def stats(self, project: str, spider: str, jobid: str) -> dict[str, Any] | None:
        self._check()
        return self.stats_by_job.get(jobid)

    def sent(self) -> list[str]:
        return [call[1] for call in self.calls if call[0] == "schedule"]

    def finish(self, jobid: str, stats: dict[str, Any] | None = GOOD) -> None:
        self.states[jobid] = "finished"
        if stats is not None:
            self.stats_by_job[jobid] = stats


class Harness:
    def __init__(self, *nodes: tuple[FakeNode, int], grace: float = 5, limits: Limits = LIMITS,
                 concurrency: int | None = None) -> None:  # fmt: skip
        self.clock = TickingClock()
        self.stop = threading.Event()
        self.fakes = {fake.url: fake for fake, _ in nodes}
        self.hooks: list[Any] = []
        self.started: list[str] = []
        self.dispatched: list[tuple[Any, str, str, str]] = []
        self.finished: dict[Any, CrawlOutcome] = {}
        settings = EngineSettings(nodes=tuple(Node(fake.url, slots) for fake, slots in nodes), stop_grace_s=grace,
                                  limits=limits, poll_s=1.0, concurrency=concurrency)  # fmt: skip
        self.engine = ScrapydEngine(settings, self.clock, self.stop, on_poll=self._poll,
                                    client_factory=lambda url: self.fakes[url])  # fmt: skip

    def _poll(self) -> None:
        for hook in self.hooks:
            hook(self)
        assert self.clock.mono < 1000 + 3600, "the engine never finished"

    def on_start(self, job: Job) -> int:
        self.started.append(job.name)
        return len(self.started)

    def on_dispatch(self, token: Any, node: str, jobid: str, log_url: str) -> None:
        assert jobid not in self.fakes[node].states, "recorded before it is sent"
        self.dispatched.append((token, node, jobid, log_url))

    def on_finish(self, token: Any, outcome: CrawlOutcome) -> None:
        assert token not in self.finished
        self.finished[token] = outcome

    def run(self, *jobs: Job) -> list[CrawlOutcome]:
        return crawl_to_end(self.engine, jobs, self.on_start, self.on_finish, on_dispatch=self.on_dispatch)

    def jobid_of(self, name: str) -> str:
        return [jobid for _, _, jobid, _ in self.dispatched if jobid.startswith(name + "-")][-1]

    @property
    def now(self) -> float:
        return self.clock.mono - 1000


def runs_for(seconds: float):
    """A hook that finishes every crawl `seconds` after it was first seen running."""
    seen: dict[str, float] = {}

    def hook(h: Harness) -> None:
        for fake in h.fakes.values():
            for jobid, state in list(fake.states.items()):
                if state == "pending":
                    fake.states[jobid] = "running"
                    seen[jobid] = h.now
                elif state == "running" and h.now - seen.setdefault(jobid, h.now) >= seconds:
                    fake.finish(jobid)

    return hook


def test_crawls_never_wait_in_a_nodes_queue_and_go_to_the_least_loaded_node_first():
    a, b = FakeNode("http://a:6800"), FakeNode("http://b:6800")
    b.others = 1  # someone else's crawl waits on b: b has one slot of two free
    h = Harness((a, 1), (b, 2))
    most = {a.url: 0, b.url: 0}

    def count(h: Harness) -> None:
        for fake in (a, b):
            busy = sum(state in ("pending", "running") for state in fake.states.values()) + fake.others
            most[fake.url] = max(most[fake.url], busy)

    h.hooks += [count, runs_for(10)]
    outcomes = h.run(*(job(f"j{i}", "quotes") for i in range(5)))
    assert [o.ok for o in outcomes] == [True] * 5
    assert most == {a.url: 1, b.url: 2}  # never more than its slots, others' crawls included
    assert [node for _, node, _, _ in h.dispatched][:2] == [a.url, b.url]  # a (0/1) before b (1/2)
    assert len(a.sent()) + len(b.sent()) == 5


def test_a_crawl_over_its_timeout_is_cancelled_then_killed_after_the_grace_and_judged_timed_out():
    a = FakeNode("http://a:6800")
    h = Harness((a, 1), grace=5)
    h.hooks.append(lambda h: a.states.update({j: "running" for j, s in a.states.items() if s == "pending"}))

    def dies_of_kill(h: Harness) -> None:
        if any(call[-1] == "KILL" for call in a.calls):
            a.finish(h.jobid_of("slow"), stats=None)

    h.hooks.append(dies_of_kill)
    with capture_logs() as logs:
        [outcome] = h.run(job("slow", timeout=timedelta(seconds=60)))
    cancels = [(call[2], call[1]) for call in a.calls if call[0] == "cancel"]
    assert cancels == [("TERM", h.jobid_of("slow")), ("KILL", h.jobid_of("slow"))]
    assert outcome.failure == "timeout"
    stopping, killed = (next(e for e in logs if e["event"] == name) for name in ("spider_stopping", "spider_killed"))
    assert stopping["reason"] == "timeout" and killed["after_grace_s"] == 5


def test_cancel_asks_the_node_to_stop_the_jobs_crawl_and_says_when_none_runs_here():
    a = FakeNode("http://a:6800")
    h = Harness((a, 1))
    answers: list[bool] = []

    def cancel_once_running(h: Harness) -> None:
        if not answers and "running" in a.states.values():
            answers.extend([h.engine.cancel("nothing-of-that-name"), h.engine.cancel("slow")])
        if any(call[0] == "cancel" for call in a.calls):
            a.finish(h.jobid_of("slow"), stats=None)

    h.hooks += [lambda h: a.states.update({j: "running" for j, s in a.states.items() if s == "pending"}),
                cancel_once_running]  # fmt: skip
    [outcome] = h.run(job("slow"))
    assert answers == [False, True]
    assert outcome.failure == "cancelled"


def test_a_lost_answer_to_schedule_is_asked_about_and_the_crawl_never_sent_twice():
    a = FakeNode("http://a:6800")
    a.lose_answers = 1
    h = Harness((a, 1))
    h.hooks.append(runs_for(3))
    with capture_logs() as logs:
        [outcome] = h.run(job("quotes"))
    assert outcome.ok
    jobid = h.jobid_of("quotes")
    assert a.sent() == [jobid]
    sent_at = a.calls.index(("schedule", jobid))
    assert a.calls[sent_at + 1] == ("status", jobid)  # asked at once, before anything else
    assert [e["state"] for e in logs if e["event"] == "scrapyd_schedule_unconfirmed"] == ["pending"]


def test_a_crawl_its_node_never_got_is_sent_again_after_the_limit_with_a_new_id_recorded_first():
    a = FakeNode("http://a:6800")
    h = Harness((a, 1))
    a.lose_answers = 1
    original = a.schedule

    def never_arrives(project: str, spider: str, jobid: str, args: Any = (), settings: Any = ()) -> str:
        if not a.sent():
            a.calls.append(("schedule", jobid))
            raise ScrapydError(a.name, "no answer to /schedule.json (timed out)", maybe_delivered=True)
        return original(project, spider, jobid, args, settings)

    a.schedule = never_arrives  # type: ignore[method-assign]
    h.hooks.append(runs_for(3))
    [outcome] = h.run(job("quotes"))
    assert outcome.ok
    first, second = a.sent()
    assert first != second  # never the same id twice
    assert [jobid for _, _, jobid, _ in h.dispatched] == [first, second]  # each written ahead
    assert len(h.started) == 1 and set(h.finished) == {1}  # one crawl, one record, one outcome


def test_a_node_unreachable_beyond_the_limit_loses_its_crawl_and_is_not_offered_new_ones():
    a, b = FakeNode("http://a:6800"), FakeNode("http://b:6800")
    h = Harness((a, 1), (b, 1), limits=Limits(lost_after_s=60, never_started_after_s=30, node_retry_s=600))

    def a_dies_once_running(h: Harness) -> None:
        a.states.update({j: "running" for j, s in a.states.items() if s == "pending"})
        if "running" in a.states.values():
            a.down = True

    h.hooks += [a_dies_once_running, runs_for(5)]
    with capture_logs() as logs:
        outcomes = h.run(job("first"), job("second"))
    by_name = {o.name: o for o in outcomes}
    assert by_name["first"].failure == "lost" and "did not answer for 60 s" in by_name["first"].message
    assert by_name["second"].ok
    assert [node for _, node, _, _ in h.dispatched] == [a.url, b.url]
    lost = [e for e in logs if e["event"] == "remote_crawl_lost"]
    assert [e["reason"] for e in lost] == ["node_unreachable"]
    assert len([e for e in logs if e["event"] == "scrapyd_node_failed"]) == 1  # said once per outage


def test_a_crawl_given_up_as_lost_that_its_node_starts_once_back_is_killed_and_its_retry_went_elsewhere():
    a, b = FakeNode("http://a:6800"), FakeNode("http://b:6800")
    h = Harness((a, 1), (b, 1), limits=Limits(lost_after_s=20, never_started_after_s=30, node_retry_s=5))
    b.others = 1  # b busy with someone else's crawl at first: the job goes to a

    def a_dies_with_the_crawl_pending(h: Harness) -> None:
        if "pending" in a.states.values() and not h.hooks_seen:
            a.down, h.hooks_seen = True, True

    h.hooks_seen = False  # type: ignore[attr-defined]
    h.hooks.append(a_dies_with_the_crawl_pending)
    with capture_logs() as logs:
        [lost] = h.run(job("first"))
    assert lost.failure == "lost"
    [gone] = a.sent()
    # Back again, Scrapyd starts what its queue (kept in its dbs_dir) held; b is free now.
    a.down, b.others = False, 0
    # The retry lasts beyond a's rest after its failure (node_retry_s), when a is asked again.
    h.hooks = [lambda h: a.states.update({gone: "running"}) if a.states.get(gone) == "pending" else None,
               runs_for(10)]  # fmt: skip
    with capture_logs() as logs:
        [retry] = h.run(job("first"))
    assert retry.ok and b.sent() and h.dispatched[-1][1] == b.url  # the retry went to the other node
    assert ("cancel", gone, "KILL") in a.calls  # the lost crawl was killed as soon as it showed up
    [came_back] = [e for e in logs if e["event"] == "remote_crawl_lost_came_back"]
    assert came_back["jobid"] == gone and came_back["action"] == "killed"


def test_a_crawl_sent_again_after_it_never_started_gets_its_whole_timeout():
    a, b = FakeNode("http://a:6800"), FakeNode("http://b:6800")
    h = Harness((a, 1), (b, 1), limits=Limits(lost_after_s=300, never_started_after_s=30, node_retry_s=30))
    quick = job("quick", "quotes", timeout=timedelta(seconds=45))

    def a_forgets_the_first(h: Harness) -> None:
        first = a.sent()[0] if a.sent() else None
        if a.states.get(first) == "pending":  # type: ignore[arg-type]
            del a.states[first]  # type: ignore[arg-type]  # taken, then forgotten: never started there

    h.hooks += [a_forgets_the_first, runs_for(40)]
    [outcome] = h.run(quick)
    assert len(a.sent() + b.sent()) == 2  # sent again after 30 s
    assert outcome.ok, outcome.message  # 30 s waiting + 40 s crawling, yet within its 45 s from its start


def test_with_every_node_down_nothing_is_started_and_the_jobs_stay_due():
    a = FakeNode("http://a:6800")
    a.down = True
    h = Harness((a, 2))
    with capture_logs() as logs:
        assert h.run(job("first"), job("second")) == []
    assert h.started == [] and a.sent() == []
    [not_started] = [e for e in logs if e["event"] == "spiders_not_started"]
    # The engine speaks of the job it was asked to launch; the loop leaves the rest due (runs.py).
    assert not_started["reason"] == "no_node" and not_started["spiders"] == ["first"]
    assert h.engine.not_started == "no Scrapyd node answered: a:6800"


def test_the_daemons_stop_leaves_remote_crawls_running_for_the_next_daemon_and_cancels_nothing():
    a = FakeNode("http://a:6800")
    h = Harness((a, 2))

    def stop_once_running(h: Harness) -> None:
        a.states.update({j: "running" for j, s in a.states.items() if s == "pending"})
        if "running" in a.states.values():
            h.stop.set()

    h.hooks.append(stop_once_running)
    assert h.run(job("first"), job("second"), job("third")) == []
    assert not any(call[0] == "cancel" for call in a.calls)
    assert [(run.job.name, run.node) for run in h.engine.detached] == [("first", a.url), ("second", a.url)]
    assert h.finished == {}


def test_a_crawl_whose_record_cannot_be_written_is_never_sent():
    a = FakeNode("http://a:6800")
    h = Harness((a, 2))
    assert h.engine.launch(job("first"), lambda job: None, h.on_finish, on_dispatch=h.on_dispatch) is False
    assert a.sent() == [] and h.dispatched == [] and h.engine.busy == 0
    assert h.engine.not_started is None  # no reason of the engine's: the loop says 'record_failed


def test_a_restarted_daemon_reattaches_collects_and_sends_again_only_what_never_started():
    a = FakeNode("http://a:6800")
    a.states.update({"running-1": "running", "done-1": "finished"})
    a.stats_by_job["done-1"] = GOOD
    log_path = ScrapydClient.log_path("default", "quotes", "orphan-1")
    a.files[log_path] = b"2026-12-01 20:47:20 [scrapy.core.engine] INFO: Spider opened\n"
    runs = [
        RemoteRun("t-running", job("quotes"), a.url, "running-1", age_s=10),
        RemoteRun("t-done", job("quotes"), a.url, "done-1", age_s=10),
        RemoteRun("t-orphan", job("quotes"), a.url, "orphan-1", age_s=10),
        RemoteRun("t-never", job("quotes"), a.url, "never-1", age_s=100),  # its daemon died before sending it
    ]
    h = Harness((a, 4))

    def orphan_closes_later(h: Harness) -> None:
        if h.now >= 5 and b"Spider closed" not in a.files[log_path]:
            # It dumps its stats into its log (its stats file is not there) and closes.
            a.files[log_path] += DUMP.replace("'log_count/ERROR': 2", "'log_count/ERROR': 0").encode()

    h.hooks += [orphan_closes_later, runs_for(2)]
    with capture_logs() as logs:
        outcomes = crawl_to_end(h.engine, (), h.on_start, h.on_finish, on_dispatch=h.on_dispatch, attach=runs)
    assert all(o.ok for o in outcomes) and set(h.finished) == {"t-running", "t-done", "t-orphan", "t-never"}
    [(token, _, resent, _)] = h.dispatched
    assert token == "t-never" and a.sent() == [resent]  # only what never started is sent again
    assert h.finished["t-orphan"].items_scraped == 15  # from the dump in its log
    assert [e["jobid"] for e in logs if e["event"] == "remote_crawl_orphan"] == ["orphan-1"]


def test_jobs_due_while_re_attaching_are_dispatched_at_once_into_the_free_slots_beside_the_re_attached_crawl():
    a = FakeNode("http://a:6800")
    a.states["left-1"] = "running"
    h = Harness((a, 2))
    h.hooks.append(runs_for(30))
    with capture_logs() as logs:
        outcomes = crawl_to_end(h.engine, [job("first"), job("second")], h.on_start, h.on_finish,
                                on_dispatch=h.on_dispatch,
                                attach=[RemoteRun("t-left", job("quotes"), a.url, "left-1", age_s=5)])  # fmt: skip
    order = [(e["event"], e["job"]) for e in logs if e["event"] in ("spider_dispatched", "remote_crawl_collected")]
    # One free slot beside the re-attached crawl: first goes at once, second when a slot frees up
    # (never into the node's own queue).
    assert order[0] == ("spider_dispatched", "first") and order.index(("spider_dispatched", "second")) > 1
    assert set(h.finished) == {1, 2, "t-left"} and all(o.ok for o in outcomes)
    assert [sent for _, _, sent, _ in h.dispatched] == a.sent() and len(a.sent()) == 2  # left-1 never sent again


def test_an_orphan_whose_log_stops_growing_is_lost_after_the_limit():
    a = FakeNode("http://a:6800")
    log_path = ScrapydClient.log_path("default", "quotes", "orphan-1")
    a.files[log_path] = b"2026-12-01 20:47:20 [scrapy.core.engine] INFO: Spider opened\n"
    h = Harness((a, 1), limits=Limits(lost_after_s=60, never_started_after_s=30, node_retry_s=30))

    def grows_for_a_while(h: Harness) -> None:
        if h.now < 30:
            a.files[log_path] += b"2026-12-01 20:47:21 [scrapy.extensions.logstats] INFO: Crawled 1 pages\n"

    h.hooks.append(grows_for_a_while)
    [outcome] = crawl_to_end(h.engine, (), h.on_start, h.on_finish,
                             attach=[RemoteRun("t", job("quotes"), a.url, "orphan-1", age_s=0)])
    assert outcome.failure == "lost" and "did not grow for 60 s" in outcome.message
    assert 90 <= h.now < 95  # the limit counts from its last growth, not from the first look


def test_a_crawl_on_a_node_no_longer_configured_is_watched_to_its_end_and_the_node_gets_no_new_crawl():
    old, new = FakeNode("http://old:6800"), FakeNode("http://new:6800")
    old.states.update({"a-1": "running", "b-1": "running"})
    h = Harness((new, 1))
    h.fakes[old.url] = old  # reachable through the client seam, though not among the nodes
    polls: list[float] = []
    h.hooks += [runs_for(3), lambda h: polls.append(h.now)]
    runs = [RemoteRun(t, job(t), old.url + "/", f"{t}-1", age_s=1) for t in ("a", "b")]
    # Polled at the engine's own pace, so that each poll asks the nodes.
    outcomes = crawl_to_end(h.engine, (), h.on_start, h.on_finish, attach=runs, poll_s=h.engine.settings.poll_s)
    assert [o.ok for o in outcomes] == [True, True]
    assert old.sent() == [] and new.sent() == []
    assert old.calls.count(("listjobs",)) == len(polls)  # one question per poll for both crawls


def test_a_crawl_whose_node_and_job_id_cannot_be_recorded_first_is_never_sent_and_fails():
    a = FakeNode("http://a:6800")
    h = Harness((a, 2))
    with capture_logs() as logs:
        outcomes = crawl_to_end(h.engine, [job("first"), job("second")], h.on_start, h.on_finish,
                                on_dispatch=lambda token, node, jobid, log_url: False)  # fmt: skip
    assert a.sent() == []
    # Each launch is its own: each crawl recorded, refused its write-ahead, failed unsent.
    assert [(o.name, o.failure) for o in outcomes] == [("first", "error"), ("second", "error")]
    assert all("could not be recorded" in o.message for o in outcomes)
    assert h.started == ["first", "second"] and set(h.finished) == {1, 2}
    assert [e["job"] for e in logs if e["event"] == "spider_not_dispatched"] == ["first", "second"]


def test_a_node_that_stops_answering_is_told_once_per_outage_and_again_when_it_answers():
    a = FakeNode("http://a:6800")
    h = Harness((a, 2))
    h.hooks.append(runs_for(1))
    told: list[tuple[str, bool, str]] = []
    h.engine.on_node = lambda node, up, why: told.append((node, up, why))
    a.down = True
    for _ in range(3):  # asked again after each rest, still down: the same outage
        h.run(job("first"))
        h.clock.advance(LIMITS.node_retry_s + 1)
    assert [(node, up) for node, up, _ in told] == [("a:6800", False)] and "Connection refused" in told[0][2]
    a.down = False
    h.run(job("first"))
    assert [(node, up) for node, up, _ in told] == [("a:6800", False), ("a:6800", True)]
    a.down = True  # a new outage is told again
    h.clock.advance(LIMITS.node_retry_s + 1)
    h.run(job("second"))
    assert [(node, up) for node, up, _ in told][2:] == [("a:6800", False)]
