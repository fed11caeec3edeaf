"""Row 8: PostgreSQL unreachable when a run is due. The spiders run anyway, their records go to the
local journal, and the journal reaches the database exactly once when it is back — also when the
daemon restarts in between, or dies between writing the journal and removing it."""

from __future__ import annotations

import shutil
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import figure
from tests.helpers import count, json_lines, rows, side_channel, wait_for

pytestmark = pytest.mark.faults


def crawls(env, spider="ok") -> int:
    return sum(
        1 for kind, _, _, name in side_channel(Path(env["SPIDER_SIDE_CHANNEL"])) if kind == "end" and name == spider
    )


def crawls_in_progress(env) -> set[int]:
    """Crawls that wrote their start to the side channel but not (yet) their end."""
    begun, ended = set(), set()
    for kind, _, pid, _ in side_channel(Path(env["SPIDER_SIDE_CHANNEL"])):
        (begun if kind == "start" else ended).add(pid)
    return begun - ended


def journal_text(env) -> str:
    return "".join(p.read_text() for p in Path(env["SCHEDULER_STATE_DIR"]).glob("journal-*.jsonl"))


def journals(env) -> list[Path]:
    return list(Path(env["SCHEDULER_STATE_DIR"]).glob("journal-*.jsonl"))


@pytest.fixture
def offline_run(pg_server, base_env, db, daemon_factory):
    """A daemon that ran once with the database, then once more while it was down."""
    env = {**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_INTERVAL_HOURS": "0.0015", "DB_WAIT_TIMEOUT_SECONDS": "60"}
    d = daemon_factory(env).start()
    wait_for(lambda: count(db, "status = 'completed'") == 1, timeout=60, what="the first run")
    db.close()
    pg_server.stop("fast")
    try:
        wait_for(lambda: crawls(env) == 2, timeout=60, what="the run made while PostgreSQL was down")
        wait_for(lambda: '"kind": "end"' in journal_text(env), timeout=30, what="the journaled end of the run")
    except BaseException:
        pg_server.start()
        raise
    return env, d


def test_a_due_run_happens_while_postgres_is_down_and_is_written_once_it_is_back(pg_server, offline_run):
    env, d = offline_run
    assert any(e.get("offline") for e in json_lines(d.output()) if e["event"] == "run_started")
    pg_server.start()
    conn = pg_server.connect(env["DB_NAME"])
    try:
        wait_for(lambda: count(conn, "journal_id IS NOT NULL AND status = 'completed'") == 1, timeout=60,
                 what="the journal replayed")  # fmt: skip
        wait_for(lambda: not journals(env), timeout=10, what="the journal removed")
        [(items, status)] = rows(conn, "SELECT r.items_scraped, r.status FROM spider_runs r JOIN scheduler_state s "
                                       "ON s.id = r.run_id WHERE s.journal_id IS NOT NULL")  # fmt: skip
        assert (items, status) == (15, "completed")
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
        # Nothing lost: every crawl that really ran is in the database.
        assert count(conn, "status = 'completed'", "spider_runs") == crawls(env)
    finally:
        conn.close()


def test_the_journal_is_replayed_exactly_once_across_restarts(pg_server, offline_run, daemon_factory):
    env, d = offline_run
    assert not crawls_in_progress(env)  # the kill lands between runs: every crawl so far is journaled
    d.signal(signal.SIGKILL)
    d.wait()
    [written] = journals(env)
    saved = written.with_suffix(".copy")
    shutil.copy(written, saved)
    pg_server.start()
    conn = pg_server.connect(env["DB_NAME"])
    try:
        again = daemon_factory(env).start()
        wait_for(lambda: count(conn, "journal_id IS NOT NULL") == 1, timeout=60, what="the replay after a restart")
        again.signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0
        # The daemon died after the commit but before removing the journal: it is replayed again.
        shutil.copy(saved, written)
        third = daemon_factory(env).start()
        wait_for(lambda: not journals(env), timeout=60, what="the second replay")
        time.sleep(0.5)
        third.signal(signal.SIGTERM)
        assert third.wait(timeout=30) == 0
        assert count(conn, "journal_id IS NOT NULL") == 1
        replays = [e for e in json_lines(third.output()) if e["event"] == "journal_replayed"]
        assert replays and replays[0]["records_written"] == 0
        assert count(conn, "status = 'running'") == 0
        # Against the spiders' own record: every crawl that ran (online, offline while PostgreSQL
        # was down, or after the restarts) is in spider_runs exactly once.
        ran = [pid for kind, _, pid, _ in side_channel(Path(env["SPIDER_SIDE_CHANNEL"])) if kind == "start"]
        written = Counter(pid for (pid,) in rows(conn, "SELECT pid FROM spider_runs WHERE pid IS NOT NULL"))
        assert len(ran) >= 2 and {pid: written[pid] for pid in ran} == {pid: 1 for pid in ran}
        assert max(written.values()) == 1, "a crawl written twice"
        offline = count(conn, "run_id IN (SELECT id FROM scheduler_state WHERE journal_id IS NOT NULL)", "spider_runs")
        figure(f"row 8: {len(ran)} crawls in the side channel ({offline} made offline), each in spider_runs exactly "
               "once after replays by a restarted daemon and by one that found the journal again")
    finally:
        conn.close()


def test_a_crawl_cut_by_a_daemon_killed_offline_is_recorded_as_stale(pg_server, base_env, db, daemon_factory):
    """Killed while a crawl runs offline: the crawl dies with it and never reports a result, yet
    the journal's spawn line records it, so the next daemon writes it as stale: nothing that ran
    is missing from the records."""
    env = {**base_env, "SCHEDULER_SPIDERS": "slow", "SLOW_SECONDS": "20", "SCHEDULER_INTERVAL_HOURS": "0.002",
           "DB_WAIT_TIMEOUT_SECONDS": "60"}  # fmt: skip
    from tests.helpers import insert_completed, utcnow
    from datetime import timedelta

    insert_completed(db, ["slow"], utcnow() - timedelta(seconds=7.2 - 4))  # due in 4 s
    d = daemon_factory(env).start()
    wait_for(lambda: '"run_not_due"' in d.output(), timeout=30, what="the daemon idle")
    db.close()
    pg_server.stop("fast")
    try:
        [pid] = wait_for(lambda: crawls_in_progress(env), timeout=30, what="the offline crawl")
        wait_for(lambda: '"kind": "spawn"' in journal_text(env), timeout=10, what="the journaled spawn")
        d.signal(signal.SIGKILL)
        d.wait()
    finally:
        pg_server.start()
    again = daemon_factory(env).start()
    conn = pg_server.connect(env["DB_NAME"])
    try:
        wait_for(lambda: '"journal_replayed"' in again.output(), timeout=60, what="the journal replayed")
        [(status, failure, spider)] = rows(conn, "SELECT status, failure, spider FROM spider_runs WHERE pid = %(p)s",
                                           {"p": pid})  # fmt: skip
        assert (status, failure, spider) == ("failed", "stale", "slow")
        again.signal(signal.SIGTERM)
        assert again.wait(timeout=60) == 0
        started = {p for kind, _, p, _ in side_channel(Path(env["SPIDER_SIDE_CHANNEL"])) if kind == "start"}
        recorded = {p for (p,) in rows(conn, "SELECT pid FROM spider_runs WHERE pid IS NOT NULL")}
        assert started <= recorded, f"crawls missing from the records: {started - recorded}"
    finally:
        conn.close()


def test_while_postgres_is_down_a_long_crawl_of_the_fail_safe_never_holds_a_quick_job(pg_server, base_env, db,
                                                                                       daemon_factory, tmp_path):  # fmt: skip
    """Issue 20 offline: the fail-safe's runs overlap like the others. Its long crawl (hung until
    its 20 s timeout) runs while the quick job's crawls keep their 4 s interval in the other slot,
    each recorded in the journal and written once PostgreSQL is back."""
    hang = tmp_path / "hang-long"
    env, d = quick_beside_long(base_env, db, daemon_factory, tmp_path, quick_every="4s",
                               long_job='every = "12s"\ntimeout = "20s"', SPIDER_HANG_FILE=str(hang))  # fmt: skip
    pg_server.stop("fast")
    down = time.time()
    hang.touch()
    try:
        wait_for(lambda: any(r.get("job") == "long" for r in _journal_lines(env) if r["kind"] == "spider"),
                 timeout=90, what="long's offline crawl journaled")  # fmt: skip
        journaled = _journal_lines(env)  # read before PostgreSQL is back: the replay removes it
    finally:
        hang.unlink()
        pg_server.start()
    side = side_channel(Path(env["SPIDER_SIDE_CHANNEL"]))
    [long_start] = [at for kind, at, _, spider in side if kind == "start" and spider == "long" and at > down]
    [long_end] = [r["finished_at"] for r in journaled if r["kind"] == "spider" and r.get("job") == "long"]
    long_end_at = datetime.fromisoformat(long_end).timestamp()
    beside = [at for kind, at, _, job in side if kind == "start" and job == "quick" and long_start < at < long_end_at]
    figure(f"offline, issue 20: quick crawled {len(beside)} times beside long's {long_end_at - long_start:.1f} s "
           "fail-safe crawl (interval 4 s)")
    assert len(beside) >= 3
    conn = pg_server.connect(env["DB_NAME"])
    try:
        wait_for(lambda: not journals(env), timeout=60, what="the journal replayed")
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
        assert count(conn, "status = 'running'", "spider_runs") == 0 and count(conn, "status = 'running'") == 0
        assert rows(conn, "SELECT status, failure FROM spider_runs WHERE job = 'long' ORDER BY id")[1] == ("failed",
                                                                                                      "timeout")
        no_job_crawled_twice_at_once(conn)
        each_crawl_recorded_once(conn, env)
    finally:
        conn.close()


def test_once_postgres_is_back_a_long_crawl_of_the_fail_safe_still_running_holds_no_other_job(pg_server, base_env,
                                                                                                db, daemon_factory,
                                                                                                tmp_path):  # fmt: skip
    """Issue "every job on its own clock": PostgreSQL comes back while the fail-safe's long crawl
    runs. The lock's holder adopts that run (written 'running', ended in PostgreSQL) and the quick
    job is crawled again, recorded in PostgreSQL, before the long crawl ends; the long crawl is
    recorded once, completed, and no crawl is lost or runs twice at once."""
    gate = tmp_path / "hold-long"
    env, d = quick_beside_long(base_env, db, daemon_factory, tmp_path, quick_every="3s", long_job='every = "8s"',
                               SPIDER_GATE_FILE=str(gate))  # fmt: skip
    gate.touch()  # long's next crawl, the fail-safe's, lasts until the gate is removed
    pg_server.stop("fast")
    down = time.time()
    side = Path(env["SPIDER_SIDE_CHANNEL"])
    try:
        long_start, long_pid = wait_for(lambda: [(at, pid) for kind, at, pid, job in side_channel(side)
                                                 if kind == "start" and job == "long" and at > down], timeout=30,
                                        what="long's offline crawl")[0]  # fmt: skip
        wait_for(lambda: any(r["kind"] == "spider" and r.get("job") == "quick"
                             and datetime.fromisoformat(r["started_at"]).timestamp() > long_start
                             for r in _journal_lines(env)), timeout=15, what="a quick crawl journaled beside it")  # fmt: skip
    finally:
        pg_server.start()
    up = time.time()
    conn = pg_server.connect(env["DB_NAME"])
    try:
        long_row = "job = 'long' AND pid = %d" % long_pid
        online_quick = ("SELECT extract(epoch FROM s.started_at)::float8 FROM spider_runs s "
                        "JOIN scheduler_state r ON r.id = s.run_id WHERE s.job = 'quick' "
                        "AND r.journal_id IS NULL AND s.started_at > to_timestamp(%(up)s) "
                        "AND s.started_at < to_timestamp(%(end)s)")  # fmt: skip
        try:
            # Held by the gate, long is still crawling: the quick job must be crawled beside it,
            # recorded in PostgreSQL, or this wait fails.
            wait_for(lambda: rows(conn, online_quick, {"up": up, "end": time.time() + 3600}), timeout=40,
                     what="a quick crawl recorded in PostgreSQL while long still runs")  # fmt: skip
        finally:
            gate.unlink()
        wait_for(lambda: count(conn, long_row + " AND status = 'completed'", "spider_runs") == 1, timeout=40,
                 what="long's offline crawl recorded completed")  # fmt: skip
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
        [(long_end,)] = rows(conn, f"SELECT extract(epoch FROM finished_at)::float8 FROM spider_runs WHERE {long_row}")
        # Recorded in PostgreSQL (an online run: no journal id) after it came back, before long ended.
        online_beside = rows(conn, online_quick, {"up": up, "end": long_end})
        figure(f"PostgreSQL back {long_end - up:.1f} s before the fail-safe's long crawl ended: quick crawled "
               f"{len(online_beside)} times beside it, recorded in PostgreSQL (interval 3 s)")
        assert len(online_beside) >= 1
        assert rows(conn, f"SELECT r.status, r.journal_id IS NOT NULL FROM spider_runs s JOIN scheduler_state r "
                          f"ON r.id = s.run_id WHERE {long_row}") == [("completed", True)]  # the adopted run
        assert count(conn, "status = 'running'", "spider_runs") == 0 and count(conn, "status = 'running'") == 0
        no_job_crawled_twice_at_once(conn)
        each_crawl_recorded_once(conn, env)
        assert not journals(env)
    finally:
        conn.close()


def quick_beside_long(base_env, db, daemon_factory, tmp_path, *, quick_every: str, long_job: str, **env_more):
    """A daemon with two slots, a quick `ok` job and a long `slow` one (`long_job`: its TOML lines),
    once long's first crawl is recorded; `db` is closed (PostgreSQL may now go). (env, daemon)."""
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[defaults]\nevery = "4h"\n\n[jobs.quick]\nspider = "ok"\nevery = "{quick_every}"\n\n'
                    f'[jobs.long]\nspider = "slow"\n{long_job}\n')  # fmt: skip
    env = {**base_env, "SCHEDULER_JOBS_FILE": str(jobs), "SCHEDULER_CONCURRENCY": "2", "SLOW_SECONDS": "1",
           "DB_WAIT_TIMEOUT_SECONDS": "60", "SCHEDULER_TICK_SECONDS": "1", **env_more}  # fmt: skip
    d = daemon_factory(env).start()
    wait_for(lambda: count(db, "job = 'long' AND status = 'completed'", "spider_runs") == 1, timeout=60,
             what="long's first crawl")  # fmt: skip
    db.close()
    return env, d


def no_job_crawled_twice_at_once(conn) -> None:
    spans = rows(conn, "SELECT job, started_at, finished_at FROM spider_runs ORDER BY job, started_at")
    for (job_a, _, end), (job_b, start, _) in zip(spans, spans[1:]):
        assert job_a != job_b or end <= start, "two crawls of one job at once"


def each_crawl_recorded_once(conn, env) -> None:
    """Nothing lost, nothing twice: every crawl that began (online, offline, or cut by the stop) has
    exactly one row, by its pid; a row of a crawl that never began is one the stop cut before it did
    (the spider writes its start only once Scrapy is up)."""
    began = {pid: job for kind, _, pid, job in side_channel(Path(env["SPIDER_SIDE_CHANNEL"])) if kind == "start"}
    recorded = rows(conn, "SELECT pid, job, failure FROM spider_runs")
    assert Counter(pid for pid, _, _ in recorded if pid in began) == Counter(set(began)), "a crawl lost or doubled"
    assert {(pid, job) for pid, job, _ in recorded if pid in began} == set(began.items())
    assert all(failure == "interrupted" for pid, _, failure in recorded if pid not in began)


def _journal_lines(env) -> list[dict]:
    import json

    return [json.loads(line) for line in journal_text(env).splitlines() if line.strip()]
