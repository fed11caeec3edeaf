"""The Scrapyd engine overlaps its crawls (issue 20): the loop launches each crawl as a node's slot
frees and never waits for a run; the engine's poll tells each crawl's end to its own run. Against
nodes faked through the client seam, on a clock that moves only when the test says."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from daemon.engines.engine import RemoteRun
from tests.unit.test_dispatch import FakeNode, Harness, job


class Told:
    """Each run's on_finish: which crawls it was told ended, and how."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, bool]] = []

    def of(self, name: str) -> Any:
        return lambda token, outcome: self.ended.append((name, outcome.ok))


def launch(h: Harness, told: Told, name: str) -> bool:
    return h.engine.launch(job(name), h.on_start, told.of(name), on_dispatch=h.on_dispatch)


def node_of(h: Harness, name: str) -> FakeNode:
    return next(fake for fake in h.fakes.values() if h.jobid_of(name) in fake.states)


def test_a_launch_returns_at_once_and_a_crawls_end_is_told_to_its_own_run_and_frees_its_slot_within_a_poll():
    a, b = FakeNode("http://a:6800"), FakeNode("http://b:6800")
    h, told = Harness((a, 1), (b, 1)), Told()
    assert h.engine.free() == 2
    assert launch(h, told, "long") and launch(h, told, "quick")
    assert sorted(len(n.sent()) for n in (a, b)) == [1, 1] and h.engine.busy == 2 and h.engine.free() == 0
    node_of(h, "quick").finish(h.jobid_of("quick"))
    h.clock.advance(1)
    assert h.engine.poll() == 1 and told.ended == [("quick", True)]
    assert h.engine.free() == 1 and h.engine.busy == 1  # quick's node took it back; long runs on
    assert launch(h, told, "flaky") and node_of(h, "flaky") is not node_of(h, "long")


def test_the_free_slots_count_others_crawls_on_the_nodes_and_never_exceed_the_engines_concurrency():
    a, b = FakeNode("http://a:6800"), FakeNode("http://b:6800")
    b.others = 1
    assert Harness((a, 1), (b, 1)).engine.free() == 1
    assert Harness((a, 2), (b, 2), concurrency=2).engine.free() == 2
    h = Harness((a, 2), concurrency=1)
    assert launch(h, Told(), "first") and h.engine.free() == 0


def test_with_no_node_answering_the_slot_is_offered_and_the_launch_says_why_without_recording_a_crawl():
    a = FakeNode("http://a:6800")
    a.down = True
    h = Harness((a, 1))
    assert h.engine.free() == 1
    with capture_logs() as logs:
        assert launch(h, Told(), "first") is False
    assert h.started == [] and "no Scrapyd node answered: a:6800" in (h.engine.not_started or "")
    assert [e["reason"] for e in logs if e["event"] == "spiders_not_started"] == ["no_node"]


def test_a_re_attached_crawl_is_watched_beside_new_ones_without_blocking_and_never_sent_again():
    a = FakeNode("http://a:6800")
    a.states["left-1"] = "running"
    h, told = Harness((a, 2)), Told()
    h.engine.attach(RemoteRun("t-left", job("long"), a.url, "left-1", age_s=5), told.of("long"), h.on_dispatch)
    assert h.engine.busy == 1 and h.engine.free() == 1  # the node counts it among its running
    assert launch(h, told, "quick")
    a.finish("left-1")
    h.clock.advance(1)
    assert h.engine.poll() == 1 and told.ended == [("long", True)]
    assert a.sent() == [h.jobid_of("quick")]  # left-1 never sent again


def test_the_nodes_are_asked_at_most_once_a_poll_however_often_the_loop_polls():
    a = FakeNode("http://a:6800")
    h = Harness((a, 1))
    launch(h, Told(), "first")
    a.calls.clear()
    for _ in range(5):
        h.engine.poll()
        h.clock.advance(0.1)  # the loop's own poll is 0.1 s; the engine's is 1 s here
    assert a.calls.count(("listjobs",)) == 1


def test_the_daemons_stop_leaves_every_crawl_on_its_node_for_the_next_daemon_and_tells_none_ended():
    a, b = FakeNode("http://a:6800"), FakeNode("http://b:6800")
    h, told = Harness((a, 1), (b, 1)), Told()
    launch(h, told, "first")
    launch(h, told, "second")
    h.stop.set()
    with capture_logs() as logs:
        assert h.engine.poll() == 0
    assert h.engine.busy == 0 and told.ended == []
    assert sorted(run.job.name for run in h.engine.detached) == ["first", "second"]
    assert not any(call[0] == "cancel" for fake in (a, b) for call in fake.calls)
    assert [e["reason"] for e in logs if e["event"] == "remote_crawls_left_running"] == ["stopping"]


def test_a_crawl_its_node_never_started_is_sent_again_by_the_poll_with_its_new_id_recorded_by_its_run():
    a = FakeNode("http://a:6800")
    h, told = Harness((a, 1)), Told()
    launch(h, told, "first")
    first = h.jobid_of("first")
    del a.states[first]  # the node lost it before it started (no log either)
    h.clock.advance(h.engine.limits.never_started_after_s + 1)
    h.engine.poll()
    again = h.jobid_of("first")
    assert again != first and a.sent() == [first, again] and h.engine.busy == 1 and told.ended == []
