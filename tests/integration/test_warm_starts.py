"""A crawl forked from the warm parent (daemon/engines/crawl_starts.py, warm.py, warm_parent.py) is the cold crawl:
the same exit codes, items, stats and log lines, the same stops, its own process group and pipes;
a parent that dies or cannot be used costs no crawl. Real `scrapy crawl`s against the local site."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from daemon.system.clock import SystemClock
from daemon.settings.config import Settings
from daemon.jobs.crawl import crawl_command, crawl_environment
from daemon.jobs.jobfile import Job
from daemon.engines.local import CrawlRunner
from daemon.engines.crawl_starts import CrawlStarts
from daemon.engines.warm import WarmCrawl
from tests.conftest import TEST_PROJECT, figure
from tests.helpers import alive, crawl_to_end, process_tree, survivors, until_empty, wait_for

STAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[.,\d]*|0x[0-9a-f]+|\d+(\.\d+)?(e-?\d+)?")


def normalised(log: str) -> list[str]:
    """The lines of a crawl's log with times, numbers and addresses taken out, and a traceback's
    launcher frames (`python -m`'s runpy and scrapy/__main__.py: a forked crawl has none) left out."""
    lines, skip = [], False
    for line in log.splitlines():
        if line.startswith('  File "<frozen runpy>"') or (line.startswith("  File ") and "scrapy/__main__.py" in line):
            skip = "__main__" in line
            continue
        if skip and line.startswith("    "):
            continue
        skip = False
        lines.append(STAMP.sub("N", line))
    return lines


def hostile_project(root: Path, settings: str = "", spider_module: str = "") -> Path:
    """A Scrapy project with the tests' spiders, plus `settings` and a spider module of its own."""
    (root / "hostile" / "spiders").mkdir(parents=True)
    (root / "scrapy.cfg").write_text("[settings]\ndefault = hostile.settings\n")
    (root / "hostile" / "__init__.py").write_text("")
    (root / "hostile" / "settings.py").write_text(
        'SPIDER_MODULES = ["testproject.spiders", "hostile.spiders"]\nROBOTSTXT_OBEY = False\n'
        'LOG_LEVEL = "INFO"\nRETRY_ENABLED = False\n' + settings
    )  # fmt: skip
    (root / "hostile" / "spiders" / "__init__.py").write_text("")
    (root / "hostile" / "spiders" / "own.py").write_text(spider_module or PROBE)
    return root


# Reports what a crawl's interpreter looks like from inside, to its `out` argument.
PROBE = '''
import json, os, random, sys, threading
import scrapy
from testproject.spiders.local import OkSpider

SEEN = []  # a module-level registry, mutated at run time

class Probe(OkSpider):
    name = "probe"
    def closed(self, reason):
        from twisted.internet import reactor
        SEEN.append(os.getpid())
        with open(self.out, "w") as fh:
            main = getattr(sys.modules["__main__"].__spec__, "name", None)
            json.dump({"seen": SEEN, "random": random.random(), "main": main, "hash": hash("abc"),
                       "ppid": os.getppid(),
                       "threads": threading.active_count(), "reactor": type(reactor).__name__,
                       "pid": os.getpid(), "pgid": os.getpgid(0), "fds": sorted(os.listdir("/proc/self/fd"))}, fh)
'''


@pytest.fixture
def crawl_env(site, tmp_path):
    return crawl_environment({"PATH": os.environ["PATH"], "TEST_SITE_URL": site, "PYTHONPATH": str(TEST_PROJECT),
                              "SPIDER_SIDE_CHANNEL": str(tmp_path / "side-channel.log"),
                              "SLOW_SECONDS": "2"})  # fmt: skip


@pytest.fixture
def starts(crawl_env):
    made: list[CrawlStarts] = []

    def make(mode: str = "warm", project: Path = TEST_PROJECT) -> CrawlStarts:
        made.append(CrawlStarts(mode, project, crawl_env, linger_s=30))
        made[-1].begin_run()
        return made[-1]

    yield make
    for s in made:
        if s.parent is not None:
            s.parent.kill()


def run(how: str | CrawlStarts, argv: list[str], env: dict, project: Path, tmp_path: Path) -> dict:
    """One crawl to its end: exit code, stdout, stderr, stats."""
    stats_file = tmp_path / f"stats-{time.monotonic_ns()}.json"
    command = [*crawl_command(argv[0], stats_file), *argv[1:]]
    if how == "cold":
        proc = subprocess.Popen(command, cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
        out, err = proc.communicate(timeout=120)
    else:
        proc = how.start(command[3:])  # type: ignore[union-attr]
        assert isinstance(proc, WarmCrawl), "the crawl was started cold"
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(timeout=60)
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else None
    return {"exit": proc.returncode, "out": out, "err": err, "stats": stats}


CASES = {
    "ok": ["ok"], "boom, exit 0 after a parse error": ["boom"], "empty": ["empty"], "crash": ["crash"],
    "segv": ["segv"], "unknown spider, exit 1": ["nosuch"], "usage error, exit 2": ["ok", "-a", "novalue"],
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_forked_crawl_gives_the_cold_crawls_exit_code_items_stats_and_log_line_by_line(
    case, starts, crawl_env, tmp_path
):
    argv = CASES[case]
    cold = run("cold", argv, crawl_env, TEST_PROJECT, tmp_path)
    warm = run(starts("warm"), argv, crawl_env, TEST_PROJECT, tmp_path)
    assert warm["exit"] == cold["exit"]
    assert warm["out"] == cold["out"]
    assert normalised(warm["err"]) == normalised(cold["err"])
    assert (warm["stats"] is None) == (cold["stats"] is None)
    if cold["stats"]:
        assert sorted(warm["stats"]) == sorted(cold["stats"])
        for key in ("finish_reason", "item_scraped_count", "log_count/ERROR"):
            assert warm["stats"].get(key) == cold["stats"].get(key)
    figure(f"warm start, {case}: exit {warm['exit']}, {len(warm['err'].splitlines())} log lines equal to cold")


@pytest.mark.parametrize("mode", ["warm", "warm-project"])
def test_a_spider_module_that_fails_to_import_exits_1_as_cold_does(mode, starts, crawl_env, tmp_path):
    project = hostile_project(tmp_path / "p", spider_module="raise ImportError('no module named lxml2')\n")
    cold = run("cold", ["ok"], crawl_env, project, tmp_path)
    s = starts(mode, project)
    proc = s.start(crawl_command("ok", tmp_path / "s.json")[3:])
    if mode == "warm":
        assert proc is not None
        err = proc.stderr.read()
        proc.wait(timeout=60)
        assert proc.returncode == cold["exit"] == 1
        assert normalised(err)[-1] == normalised(cold["err"])[-1] == "ImportError: no module named lxmlN"
    else:  # the parent could not import the project: the run starts cold, and says why once
        assert proc is None
        assert "ImportError" in (s._cold_reason or "")


def test_a_forked_crawl_has_its_own_group_main_random_stream_reactor_and_descriptors(starts, crawl_env, tmp_path):
    project = hostile_project(tmp_path / "p")
    s = starts("warm", project)
    probes = []
    for i in range(2):
        out = tmp_path / f"probe{i}.json"
        assert run(s, ["probe", "-a", f"out={out}"], crawl_env, project, tmp_path)["exit"] == 0
        probes.append(json.loads(out.read_text()))
    run("cold", ["probe", "-a", f"out={tmp_path / 'cold.json'}"], crawl_env, project, tmp_path)
    cold = json.loads((tmp_path / "cold.json").read_text())
    for probe in probes:
        assert probe["pid"] == probe["pgid"]
        assert probe["main"] == cold["main"] == "scrapy.__main__"
        assert probe["reactor"] == cold["reactor"] and probe["threads"] == cold["threads"]
        assert len(probe["fds"]) == len(cold["fds"])
    assert probes[0]["random"] != probes[1]["random"]
    # The one difference left: crawls of one parent share its string hash seed (see the next test).
    assert probes[0]["ppid"] == probes[1]["ppid"] and probes[0]["hash"] == probes[1]["hash"] != cold["hash"]


@pytest.mark.parametrize("per_parent", [1, 2])
def test_a_parent_forks_its_share_of_crawls_then_a_fresh_one_gives_the_next_a_new_hash_seed(per_parent, crawl_env,
                                                                                             tmp_path):  # fmt: skip
    """SCHEDULER_WARM_PARENT_CRAWLS: after its share a parent forks no more and exits once its crawls
    end; the next crawl forks, warm, from a fresh interpreter with a string hash seed of its own."""
    project = hostile_project(tmp_path / "p")
    s = CrawlStarts("warm", project, crawl_env, linger_s=30, crawls_per_parent=per_parent)
    s.begin_run()
    probes = []
    with capture_logs() as logs:
        for i in range(4):
            out = tmp_path / f"probe{i}.json"
            assert run(s, ["probe", "-a", f"out={out}"], crawl_env, project, tmp_path)["exit"] == 0
            probes.append(json.loads(out.read_text()))
    try:
        parents = [p["ppid"] for p in probes]
        assert parents == [parents[i - i % per_parent] for i in range(4)]
        assert len(set(parents)) == 4 // per_parent
        seeds = {p["ppid"]: p["hash"] for p in probes}
        assert len(set(seeds.values())) == len(seeds) and all(seeds[p["ppid"]] == p["hash"] for p in probes)
        assert not [e for e in logs if e["event"] == "crawl_start_cold"]
        # The retired parents drained and exited; the one serving the next crawl is already there.
        assert until_empty(lambda: [p for p in set(parents) if alive(p)], timeout=30) == []
        assert s.parent is not None and s.parent.pid not in parents
    finally:
        if s.parent is not None:
            s.parent.kill()


def test_a_project_whose_settings_install_a_reactor_runs_cold_with_one_line_saying_why(starts, crawl_env, tmp_path):
    project = hostile_project(tmp_path / "p", settings=(
        'TWISTED_REACTOR = "twisted.internet.epollreactor.EPollReactor"\n'
        "from twisted.internet import reactor  # noqa\n"))  # fmt: skip
    s = starts("warm-project", project)
    with structlog.testing.capture_logs() as logs:
        assert s.start(crawl_command("ok", tmp_path / "a.json")[3:]) is None
        assert s.start(crawl_command("ok", tmp_path / "b.json")[3:]) is None
        s.begin_run()  # the next run: the project has not changed, the parent is not tried again
        assert s.start(crawl_command("ok", tmp_path / "c.json")[3:]) is None
    [line] = [e for e in logs if e["event"] == "crawl_start_cold"]
    assert "twisted.internet.reactor" in line["reason"] and line["until"] == "the project changes"
    assert run("cold", ["ok"], crawl_env, project, tmp_path)["exit"] == 0  # and it does run cold
    # At `warm`, no project code runs in the parent: the same project forks.
    assert run(starts("warm", project), ["ok"], crawl_env, project, tmp_path)["stats"]["item_scraped_count"] == 15


def test_a_project_that_starts_a_thread_at_import_runs_cold_at_warm_project(starts, crawl_env, tmp_path):
    project = hostile_project(tmp_path / "p", settings=(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"))
    s = starts("warm-project", project)
    with structlog.testing.capture_logs() as logs:
        assert s.start(crawl_command("ok", tmp_path / "a.json")[3:]) is None
    assert [e["reason"] for e in logs if e["event"] == "crawl_start_cold"] == ["the warm parent has 2 threads"]


def test_four_forked_crawls_at_once_share_no_descriptor_and_the_parent_keeps_its_own(starts, crawl_env, tmp_path):
    s = starts("warm")
    first = s.start(crawl_command("empty", tmp_path / "0.json")[3:])
    first.stdout.read(), first.stderr.read(), first.wait(timeout=60)
    parent = s.parent.pid
    before = {fd: os.readlink(f"/proc/{parent}/fd/{fd}") for fd in os.listdir(f"/proc/{parent}/fd")}
    crawls = [s.start(crawl_command("slow", tmp_path / f"{i}.json")[3:]) for i in range(4)]
    time.sleep(1)
    pipes = {}
    for c in crawls:
        links = {os.readlink(f"/proc/{c.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{c.pid}/fd")}
        pipes[c.pid] = {link for link in links if link.startswith(("pipe:", "socket:"))}
        assert os.readlink(f"/proc/{c.pid}/fd/1") != os.readlink(f"/proc/{c.pid}/fd/2")
    for c in crawls:
        others = set().union(*(p for pid, p in pipes.items() if pid != c.pid))
        assert not pipes[c.pid] & others, "two crawls share a descriptor"
        assert not pipes[c.pid] & set(before.values()), "a crawl holds one of the parent's descriptors"
    for c in crawls:
        c.stdout.read(), c.stderr.read()
        assert c.wait(timeout=60) == 0
    after = {fd: os.readlink(f"/proc/{parent}/fd/{fd}") for fd in os.listdir(f"/proc/{parent}/fd")}
    assert after == before


def test_the_warm_parent_killed_mid_crawl_reports_it_killed_and_the_run_goes_on_cold(starts, crawl_env, tmp_path):
    s = starts("warm")
    crawl = s.start(crawl_command("slow", tmp_path / "a.json")[3:])
    wait_for(lambda: (tmp_path / "side-channel.log").exists(), timeout=30, what="the crawl's start")
    with structlog.testing.capture_logs() as logs:
        os.kill(s.parent.pid, signal.SIGKILL)
        crawl.stdout.read()
        assert crawl.wait(timeout=10) == -signal.SIGKILL  # never "no status"
        assert until_empty(lambda: [crawl.pid] if alive(crawl.pid) else [], timeout=5) == []
        wait_for(lambda: s.parent.gone, timeout=5, what="the parent seen gone")
        assert s.start(crawl_command("ok", tmp_path / "b.json")[3:]) is None  # the rest of this run: cold
    events = [e["event"] for e in logs]
    assert "warm_parent_died" in events and events.count("crawl_start_cold") == 1
    s.begin_run()  # the next run tries a new parent
    assert run(s, ["ok"], crawl_env, TEST_PROJECT, tmp_path)["exit"] == 0


def test_a_warm_parent_with_nothing_to_do_exits_after_its_linger_and_the_next_crawl_gets_a_new_one(
    crawl_env, tmp_path
):
    s = CrawlStarts("warm", TEST_PROJECT, crawl_env, linger_s=1)
    s.begin_run()
    assert run(s, ["empty"], crawl_env, TEST_PROJECT, tmp_path)["exit"] == 0
    first = s.parent.pid
    assert until_empty(lambda: [first] if alive(first) else [], timeout=15) == []
    assert run(s, ["empty"], crawl_env, TEST_PROJECT, tmp_path)["exit"] == 0
    assert s.parent.pid != first
    s.parent.kill()


def job(name: str, spider: str, timeout_s: float = 600) -> Job:
    return Job(name=name, spider=spider, args=(), settings=(), every=timedelta(hours=4),
               timeout=timedelta(seconds=timeout_s), retry_delay=timedelta(minutes=15), max_errors=0, min_items=0,
               jitter=timedelta(0), paused=False)  # fmt: skip


def runner_for(base_env, **more) -> tuple[CrawlRunner, threading.Event, threading.Event]:
    env = {**base_env, "SCHEDULER_CRAWL_START": "warm", **more}
    stop, force = threading.Event(), threading.Event()
    runner = CrawlRunner(Settings.from_mapping(env), SystemClock(), stop, force, environ={**os.environ, **env,
                         "SLOW_SECONDS": "4"})  # fmt: skip
    return runner, stop, force


def test_through_the_runner_timeout_cancel_and_the_stop_grace_act_on_forked_crawls(base_env):
    runner, stop, _ = runner_for(base_env, SCHEDULER_STOP_GRACE_SECONDS="5", SCHEDULER_CONCURRENCY="3")
    pids: list[int] = []
    jobs = [job("timed", "slow", timeout_s=2), job("cancelled", "slow"), job("deaf", "hang")]

    def cancel_then_stop() -> None:
        time.sleep(2)
        assert runner.cancel("cancelled")
        time.sleep(4)
        stop.set()

    threading.Thread(target=cancel_then_stop, daemon=True).start()
    with structlog.testing.capture_logs() as logs:
        outcomes = crawl_to_end(runner, jobs, lambda j: j.name, lambda t, o: None,
                                on_spawn=lambda t, pid: pids.append(pid))  # fmt: skip
    by_job = {o.name: o for o in outcomes}
    assert [e["start"] for e in logs if e["event"] == "spider_started"] == ["warm"] * 3
    assert (by_job["timed"].failure, by_job["timed"].finish_reason) == ("timeout", "shutdown")
    assert by_job["cancelled"].failure == "cancelled"
    assert by_job["deaf"].failure == "interrupted" and by_job["deaf"].exit_code == -signal.SIGKILL
    assert [e["job"] for e in logs if e["event"] == "spider_killed"] == ["deaf"]
    assert [pid for pid in pids if alive(pid)] == []


def test_the_daemon_sigkilled_mid_crawl_leaves_neither_parent_nor_crawl(base_env, tmp_path):
    script = (
        "import os, sys, time\nfrom daemon.engines.crawl_starts import CrawlStarts\nfrom daemon.jobs.crawl import crawl_command\n"
        "from daemon.jobs.crawl import crawl_environment\nfrom pathlib import Path\n"
        f"s = CrawlStarts('warm', Path({str(TEST_PROJECT)!r}), crawl_environment(dict(os.environ)))\n"
        f"s.begin_run()\nc = s.start(crawl_command('slow', Path({str(tmp_path / 's.json')!r}))[3:])\n"
        "print(s.parent.pid, c.pid, flush=True)\ntime.sleep(600)\n"
    )  # fmt: skip
    env = {**os.environ, "TEST_SITE_URL": base_env["TEST_SITE_URL"], "SLOW_SECONDS": "60",
           "SPIDER_SIDE_CHANNEL": base_env["SPIDER_SIDE_CHANNEL"], "PYTHONPATH": str(TEST_PROJECT.parent.parent)}
    daemon = subprocess.Popen([os.sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    parent, crawl = map(int, next(line for line in daemon.stdout if line[0].isdigit() and "-" not in line).split())
    wait_for(lambda: Path(base_env["SPIDER_SIDE_CHANNEL"]).exists(), timeout=30, what="the crawl's start")
    tree = process_tree(daemon.pid)
    assert {parent, crawl} <= set(tree)
    daemon.kill()
    daemon.wait()
    assert until_empty(lambda: survivors(tree), timeout=5) == []
    assert "end" not in Path(base_env["SPIDER_SIDE_CHANNEL"]).read_text()


def test_a_crawl_of_the_warm_parent_imports_no_third_party_module_the_parent_could_have(crawl_env, tmp_path):
    """What the parent preloads covers what a crawl loads (a missed handler cost 0.2 CPU-s a crawl)."""
    script = (
        "import sys\nfrom daemon.engines.warm_parent import preload\npreload('warm')\nbefore = set(sys.modules)\n"
        "import atexit\natexit.register(lambda: print('NEW', sorted(set(sys.modules) - before), file=sys.stderr))\n"
        "from scrapy.cmdline import execute\nsys.argv = ['scrapy', *sys.argv[1:]]\nexecute()\n"
    )  # fmt: skip
    argv = crawl_command("ok", tmp_path / "s.json")[3:]
    done = subprocess.run([os.sys.executable, "-c", script, *argv], cwd=TEST_PROJECT, env=crawl_env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    [line] = [line for line in done.stderr.splitlines() if line.startswith("NEW ")]
    new = eval(line[4:])  # noqa: S307 - a list printed by the crawl above
    own = ("testproject", "twisted.internet.reactor")
    assert [m for m in new if not m.startswith(own) and m.split(".")[0] not in sys.stdlib_module_names] == []
    assert "twisted.internet.reactor" in new  # installed by the crawl, never by the parent


def test_a_project_that_opens_a_file_at_import_runs_cold_at_warm_project(starts, crawl_env, tmp_path):
    project = hostile_project(tmp_path / "p", settings=f"held = open({str(tmp_path / 'held')!r}, 'w')\n")
    s = starts("warm-project", project)
    with structlog.testing.capture_logs() as logs:
        assert s.start(crawl_command("ok", tmp_path / "a.json")[3:]) is None
    [reason] = [e["reason"] for e in logs if e["event"] == "crawl_start_cold"]
    assert reason.startswith("the warm parent holds other descriptors (1 more")


def test_each_forked_crawl_installs_the_reactor_its_own_settings_ask_for(starts, crawl_env, tmp_path):
    project = hostile_project(tmp_path / "p")
    s = starts("warm", project)
    epoll = ["-s", "TWISTED_REACTOR=twisted.internet.epollreactor.EPollReactor"]
    for name, extra in (("epoll", epoll), ("default", [])):
        out = tmp_path / f"{name}.json"
        assert run(s, ["probe", "-a", f"out={out}", *extra], crawl_env, project, tmp_path)["exit"] == 0
    assert json.loads((tmp_path / "epoll.json").read_text())["reactor"] == "EPollReactor"
    assert json.loads((tmp_path / "default.json").read_text())["reactor"] == "AsyncioSelectorReactor"


def test_at_warm_project_a_crawl_never_sees_what_the_previous_one_did_to_a_module(starts, crawl_env, tmp_path):
    project = hostile_project(tmp_path / "p")
    s = starts("warm-project", project)
    for i in range(2):
        out = tmp_path / f"probe{i}.json"
        assert run(s, ["probe", "-a", f"out={out}"], crawl_env, project, tmp_path)["exit"] == 0
        probe = json.loads(out.read_text())
        assert probe["seen"] == [probe["pid"]]  # its own mutation only, on the module imported once


def test_at_warm_project_a_changed_project_gets_a_new_parent_at_the_next_run(starts, crawl_env, tmp_path):
    project = hostile_project(tmp_path / "p")
    s = starts("warm-project", project)
    assert run(s, ["empty"], crawl_env, project, tmp_path)["exit"] == 0
    first = s.parent
    s.begin_run()  # unchanged: the same parent
    assert run(s, ["empty"], crawl_env, project, tmp_path)["exit"] == 0 and s.parent is first
    settings = project / "hostile" / "settings.py"
    settings.write_text(settings.read_text() + "CHANGED = True\n")
    os.utime(settings, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    s.begin_run()
    assert run(s, ["empty"], crawl_env, project, tmp_path)["exit"] == 0 and s.parent is not first
    assert until_empty(lambda: [first.pid] if alive(first.pid) else [], timeout=10) == []  # the old one drained


def test_a_parent_started_ahead_serves_the_first_crawl_without_starting_another(crawl_env, tmp_path):
    """The daemon starts its warm parent before it waits for PostgreSQL (prewarm): the catch-up's
    first crawl forks from that very parent, warm, once its imports are done."""
    s = CrawlStarts("warm", TEST_PROJECT, crawl_env, linger_s=30)
    with capture_logs() as logs:
        s.prewarm()
        ahead = s.parent.pid
        s.begin_run()
        assert run(s, ["ok"], crawl_env, TEST_PROJECT, tmp_path)["exit"] == 0
    assert s.parent.pid == ahead
    # (Events of other tests' parents, killed at their teardown, may land here too: this one's by pid.)
    assert [e["pid"] for e in logs if e["event"] == "warm_parent_started"] == [ahead]
    assert not [e for e in logs if e["event"] == "crawl_start_cold" or e.get("pid") == ahead and "died" in e["event"]]
    s.parent.kill()


def test_a_parent_started_ahead_that_lingered_out_before_any_crawl_is_replaced_and_the_crawl_is_warm(
    crawl_env, tmp_path
):
    """PostgreSQL stayed down longer than the parent's linger: the first crawl gets a new parent, not a
    cold start for the rest of the run."""
    s = CrawlStarts("warm", TEST_PROJECT, crawl_env, linger_s=1)
    s.prewarm()
    ahead = s.parent.pid
    assert until_empty(lambda: [ahead] if alive(ahead) else [], timeout=30) == []
    s.begin_run()
    with capture_logs() as logs:
        assert run(s, ["ok"], crawl_env, TEST_PROJECT, tmp_path)["exit"] == 0
    assert s.parent.pid != ahead and not [e for e in logs if e["event"] == "crawl_start_cold"]
    s.parent.kill()


def test_nothing_is_started_ahead_for_cold_starts_nor_on_the_scrapyd_engine(base_env):
    from daemon.engines.local import prewarmed_starts

    assert prewarmed_starts(Settings.from_mapping({**base_env, "SCHEDULER_CRAWL_START": "cold"})) is None
    scrapyd = {**base_env, "SCHEDULER_ENGINE": "scrapyd", "SCRAPYD_NODES": "http://127.0.0.1:6800"}
    assert prewarmed_starts(Settings.from_mapping(scrapyd)) is None
