"""The local journal survives a torn last line and groups records by run."""

from datetime import datetime, timezone

from daemon.crawl import judge
from daemon.journal import Journal

T = datetime(2026, 11, 23, tzinfo=timezone.utc)


def outcome(spider):
    return judge(spider, exit_code=0, stats={"finish_reason": "finished", "item_scraped_count": 3},
                 timed_out=False, interrupted=False, max_errors=0, timeout_minutes=1, duration_s=1)  # fmt: skip


def test_a_torn_last_line_loses_only_itself(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    run = j.start_run(T, ["a", "b"], "me")
    j.spider(run, T, T, outcome("a"))
    with j.path.open("a") as fh:
        fh.write('{"kind": "spider", "run": "')  # the power went out mid-write
    [only] = list(j.runs())
    assert only["planned"] == ["a", "b"] and [s["spider"] for s in only["spiders"]] == ["a"]
    assert only["end"] is None


def test_runs_and_ends_are_grouped_and_cleared(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    first = j.start_run(T, ["a"], "me")
    j.spider(first, T, T, outcome("a"))
    j.end_run(first, T, True, None)
    j.finish_online_run(7, [], T, False, "x: failed")
    runs = list(j.runs())
    assert len(runs) == 1 and runs[0]["end"]["ok"] is True
    assert [f["run_id"] for f in j.finishes()] == [7]
    j.clear()
    assert not j.exists() and list(j.runs()) == []
