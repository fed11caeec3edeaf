"""The local journal: survives a torn last line, groups records by run, and never hands over the
journal of a daemon that is still alive."""

import subprocess
import sys
import time
from datetime import datetime, timezone

from daemon.jobs.crawl import judge
from daemon.records.journal import Journal
from tests.conftest import ROOT

T = datetime(2026, 11, 23, tzinfo=timezone.utc)


def outcome(spider):
    return judge(spider, exit_code=0, stats={"finish_reason": "finished", "item_scraped_count": 3},
                 timed_out=False, interrupted=False, max_errors=0, timeout_minutes=1, duration_s=1)  # fmt: skip


def test_a_torn_last_line_loses_only_itself(tmp_path):
    j = Journal(tmp_path)
    run = j.start_run(T, ["a", "b"], "me")
    j.spider(run, T, T, outcome("a"))
    with j.path.open("a") as fh:
        fh.write('{"kind": "spider", "run": "')  # the power went out mid-write
    [only] = j.pending().runs()
    assert only["planned"] == ["a", "b"] and [s["spider"] for s in only["spiders"]] == ["a"]
    assert only["end"] is None


def test_runs_and_ends_are_grouped_and_removed_when_done(tmp_path):
    j = Journal(tmp_path)
    first = j.start_run(T, ["a"], "me")
    j.spider(first, T, T, outcome("a"))
    j.end_run(first, T, True, None)
    j.finish_online_run(7, [], T, False, "x: failed")
    pending = j.pending()
    runs = pending.runs()
    assert len(runs) == 1 and runs[0]["end"]["ok"] is True
    assert [f["run_id"] for f in pending.finishes()] == [7]
    pending.done()
    assert j.pending() is None and list(tmp_path.glob("journal-*")) == []


def test_a_live_daemons_journal_is_left_alone_and_a_dead_ones_is_taken(tmp_path):
    writer = (
        "import sys, time; from datetime import datetime, timezone; sys.path.insert(0, sys.argv[1]);"
        "from daemon.records.journal import Journal; from pathlib import Path;"
        "j = Journal(Path(sys.argv[2])); j.start_run(datetime.now(timezone.utc), ['a'], 'other');"
        "print('written', flush=True); time.sleep(60)"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", writer, str(ROOT), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline().strip() == "written"
        me = Journal(tmp_path)
        assert me.pending() is None  # alive and holding its lock: not ours to replay
    finally:
        other.kill()
        other.wait()
    time.sleep(0.1)
    pending = Journal(tmp_path).pending()
    assert pending is not None and [r["owner"] for r in pending.runs()] == ["other"]


def test_a_crawl_started_but_never_finished_is_handed_over_as_cut(tmp_path):
    import dataclasses

    j = Journal(tmp_path)
    run = j.start_run(T, ["a", "b"], "me")
    j.spawned(run, "a", T, 11)
    j.spawned(run, "b", T, 12)
    j.spider(run, T, T, dataclasses.replace(outcome("a"), pid=11))
    [only] = j.pending().runs()  # the daemon died while b crawled
    assert [s["spider"] for s in only["spiders"]] == ["a"]
    assert [(c["spider"], c["pid"]) for c in only["cut"]] == [("b", 12)]
