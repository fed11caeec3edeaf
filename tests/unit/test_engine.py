"""The engine boundary (daemon/engines/engine.py): the local runner and the Scrapyd engine are two
implementations of one interface, the loop's only view of either."""

from __future__ import annotations

import inspect
import threading
from types import SimpleNamespace

import pytest

from daemon.system.clock import SystemClock
from daemon.engines.scrapyd.dispatch import ScrapydEngine
from daemon.engines.engine import Engine, RemoteRun
from daemon.engines.scrapyd.rules import EngineSettings
from daemon.settings.addresses import Node
from daemon.engines.local import CrawlRunner
from tests.helpers import crawl_to_end
from tests.unit.test_dispatch import job

MEMBERS = ("reattaches", "detached", "not_started", "launch", "attach", "poll", "free", "busy", "cancel")


@pytest.mark.parametrize("engine", [CrawlRunner, ScrapydEngine])
def test_each_engine_offers_every_member_of_the_interface_with_its_parameters(engine):
    declared = set(Engine.__annotations__) | {name for name in vars(Engine) if not name.startswith("_")}
    assert declared == set(MEMBERS)
    for name in ("launch", "attach", "poll", "free", "cancel"):
        wanted = list(inspect.signature(getattr(Engine, name)).parameters)
        assert list(inspect.signature(getattr(engine, name)).parameters) == wanted, name
    assert isinstance(inspect.getattr_static(engine, "busy"), property)


def test_only_the_scrapyd_engine_has_crawls_that_outlive_the_daemon():
    assert ScrapydEngine.reattaches is True and CrawlRunner.reattaches is False


def test_the_local_runner_refuses_to_re_attach_to_a_crawl_and_runs_an_empty_batch_at_once(tmp_path):
    settings = SimpleNamespace(state_dir=tmp_path / "state", concurrency=1, stop_grace_seconds=1, crawl_start="warm",
                               project_dir=tmp_path)  # an empty batch starts no warm parent
    runner = CrawlRunner(settings, SystemClock(), threading.Event(), threading.Event(), environ={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no crawls to re-attach"):
        runner.attach(RemoteRun("t", job("quotes"), "http://a:6800", "quotes-1", 0.0), lambda t, o: None)
    assert crawl_to_end(runner, [], lambda job: None, lambda t, o: None) == [] and runner.detached == ()
    assert runner._starts is None  # no crawl: neither a warm parent nor its client


def test_a_scrapyd_engine_starts_with_nothing_detached_and_nothing_left_unstarted():
    engine = ScrapydEngine(EngineSettings(nodes=(Node("http://a:6800", 1),)), SystemClock(), threading.Event())
    assert engine.detached == [] and engine.not_started is None
