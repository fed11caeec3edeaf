"""Property test of the scheduling decision over any history, interval, clock and skew."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from daemon.plan.decision import CLOCK_SKEW_TOLERANCE, Cadence, SpiderHistory, decide, decide_jobs

EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
moments = st.integers(min_value=0, max_value=10 * 365 * 86400).map(lambda s: EPOCH + timedelta(seconds=s))
intervals = st.integers(min_value=1, max_value=30 * 86400).map(lambda s: timedelta(seconds=s))
delays = st.integers(min_value=1, max_value=86400).map(lambda s: timedelta(seconds=s))


@st.composite
def histories(draw):
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=6, unique=True))
    out = []
    for name in names:
        success = draw(st.none() | moments)
        failures = draw(st.integers(min_value=0, max_value=200))
        failed_at = draw(moments) if failures else None
        out.append(SpiderHistory(name, success, failures, failed_at))
    return out


@settings(max_examples=500, deadline=None)
@given(histories(), moments, intervals, delays)
def test_due_exactly_when_the_rules_say_and_never_a_wait_longer_than_the_interval(hist, now, interval, delay):
    plan = decide(hist, now, interval, delay)
    due = set(plan.due)
    for h, p in zip(hist, plan.spiders):
        if h.consecutive_failures == 0:
            if h.last_success_at is None:
                assert h.spider in due  # no history: run now
            elif h.last_success_at - now > CLOCK_SKEW_TOLERANCE:
                assert h.spider in due and p.clock_skew  # clock set back: run now, never later
            else:
                assert (h.spider in due) == (now - h.last_success_at >= interval)
        if p.due_at is not None:
            assert p.due_at - now <= interval + CLOCK_SKEW_TOLERANCE  # never waits beyond one interval
    # The plan lists each spider once, in order: two runs of one spider cannot be planned.
    assert [p.spider for p in plan.spiders] == [h.spider for h in hist]
    if plan.next_due_at is not None:
        assert plan.next_due_at > now and set(plan.due) != {h.spider for h in hist}


@settings(max_examples=400, deadline=None)
@given(histories(), moments, st.data())
def test_per_job_each_is_due_by_its_own_cadence_paused_ones_never_and_the_most_overdue_leads(hist, now, data):
    cadences = {
        h.spider: Cadence(data.draw(intervals), data.draw(delays), paused=data.draw(st.booleans()),
                          paused_until=data.draw(st.none() | moments))
        for h in hist
    }  # fmt: skip
    plan = decide_jobs(hist, now, cadences, Cadence(timedelta(hours=4), timedelta(minutes=15)))
    alone = {h.spider: decide([h], now, cadences[h.spider].every, cadences[h.spider].retry_delay) for h in hist}
    for h in hist:
        c = cadences[h.spider]
        paused = c.paused and (c.paused_until is None or c.paused_until > now)
        # A job's plan is its own: as if it were the only one, by its own interval; unless paused.
        assert (h.spider in plan.due) == (not paused and h.spider in alone[h.spider].due)
    # Each due job once, the most overdue by its own interval first (never-run jobs lead).
    order = plan.most_overdue_first
    assert sorted(order) == sorted(plan.due)
    ratios = [next(p for p in plan.spiders if p.spider == name).overdue(now) for name in order]
    assert ratios == sorted(ratios, reverse=True)


# ----------------------------------------------------------------------------- the loop, as a model
# The decision is pure, so "never two running" is a property of how the loop drives it. This
# machine drives it as the daemon's loop does, with the store modelled as a list of spider_runs
# rows read the way daemon/records/queries.py's SPIDER_HISTORY reads them: a step (only between runs, as
# a run blocks the loop) fails rows a dead daemon left 'running' as stale, decides, and starts the
# due spiders, at most `concurrency` at a time; crawls finish in any order with any outcome; the
# wall clock moves arbitrarily, forwards (a tick, a suspend of days) and backwards (an NTP step, a
# clock set back by weeks); and the daemon may die mid-run, its crawls dying with it.
STALE = "stale"
OUTCOMES = ("success", "error", "timeout", "interrupted")
TOLERANCE_S = CLOCK_SKEW_TOLERANCE.total_seconds()


def history_of(table: list[dict], spider: str) -> SpiderHistory:
    """What the store reads for `spider`: its newest success by insertion order, and its own
    failures (error, timeout) inserted after that success."""
    mine = [r for r in table if r["spider"] == spider]
    ok = next((r for r in reversed(mine) if r["status"] == "completed"), None)
    own = [r for r in mine if r["status"] == "failed" and r["failure"] in ("error", "timeout")
           and (ok is None or r["id"] > ok["id"])]  # fmt: skip
    return SpiderHistory(
        spider,
        ok["started_at"] if ok else None,
        len(own),
        max((r["finished_at"] for r in own), default=None),
    )


def due_by_the_rules(h: SpiderHistory, now: datetime, interval: timedelta, retry_delay: timedelta) -> bool:
    """README, "How it decides", in its own words."""
    if h.consecutive_failures:
        assert h.last_failure_at is not None
        if (h.last_failure_at - now).total_seconds() > TOLERANCE_S:
            return True  # the clock was set back: not trusted, run now
        wait = min(retry_delay.total_seconds() * 2 ** min(h.consecutive_failures - 1, 60), interval.total_seconds())
        return (now - h.last_failure_at).total_seconds() >= wait
    if h.last_success_at is None:
        return True
    if (h.last_success_at - now).total_seconds() > TOLERANCE_S:
        return True
    return now - h.last_success_at >= interval


class TheLoop(RuleBasedStateMachine):
    @initialize(
        names=st.lists(st.sampled_from("abcdef"), min_size=1, max_size=4, unique=True),
        interval=intervals,
        retry_delay=delays,
        concurrency=st.integers(min_value=1, max_value=3),
        start=moments,
    )
    def configure(self, names, interval, retry_delay, concurrency, start):
        self.spiders, self.interval, self.retry_delay, self.concurrency = names, interval, retry_delay, concurrency
        self.now = start
        self.table: list[dict] = []  # spider_runs, in insertion order
        self.crawling: dict[str, dict] = {}  # spider -> the row of its live crawl process
        self.queued: list[str] = []  # due in this run, waiting for a free slot
        self.decisions = self.starts = 0

    # -- the world
    @rule(seconds=st.one_of(
        st.integers(min_value=0, max_value=300),  # a tick or a few
        st.integers(min_value=0, max_value=60 * 86400),  # a suspend, a wall clock set forward
        st.integers(min_value=-90, max_value=0),  # an NTP step back
        st.integers(min_value=-60 * 86400, max_value=0),  # the clock set back by days or weeks
    ))  # fmt: skip
    def the_wall_clock_moves(self, seconds):
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: self.crawling)
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def a_crawl_finishes(self, data, outcome):
        spider = data.draw(st.sampled_from(sorted(self.crawling)))
        row = self.crawling.pop(spider)
        row["status"] = "completed" if outcome == "success" else "failed"
        row["failure"] = None if outcome == "success" else outcome
        row["finished_at"] = self.now
        self._start_queued()  # a slot just freed

    @precondition(lambda self: self.crawling or self.queued)
    @rule()
    def the_daemon_dies_mid_run(self):
        # The kernel kills its crawls with it (PR_SET_PDEATHSIG); their rows stay 'running'.
        self.crawling.clear()
        self.queued.clear()

    # -- the loop
    @precondition(lambda self: not self.crawling and not self.queued)
    @rule()
    def the_loop_steps(self):
        for row in self.table:  # taking the lock: what a dead daemon left running is failed
            if row["status"] == "running":
                row.update(status="failed", failure=STALE, finished_at=self.now)
        histories = [history_of(self.table, s) for s in self.spiders]
        plan = decide(histories, self.now, self.interval, self.retry_delay)
        self.decisions += 1
        assert [p.spider for p in plan.spiders] == self.spiders
        assert len(set(plan.due)) == len(plan.due)
        for h, p in zip(histories, plan.spiders):
            assert (p.spider in plan.due) == due_by_the_rules(h, self.now, self.interval, self.retry_delay), (h, p)
            if p.due_at is not None:
                # The promise's wait: never longer than one interval (plus the skew tolerance).
                assert (p.due_at - self.now).total_seconds() <= self.interval.total_seconds() + TOLERANCE_S
        if plan.next_due_at is not None:
            assert plan.next_due_at > self.now
            assert plan.next_due_at == min(p.due_at for p in plan.spiders if p.spider not in plan.due)
        self.queued = list(plan.due)
        self._start_queued()

    def _start_queued(self):
        while self.queued and len(self.crawling) < self.concurrency:
            spider = self.queued.pop(0)
            assert spider not in self.crawling, f"{spider} started while its previous crawl still runs"
            row = {"id": len(self.table) + 1, "spider": spider, "status": "running", "failure": None,
                   "started_at": self.now, "finished_at": None}  # fmt: skip
            self.table.append(row)
            self.crawling[spider] = row
            self.starts += 1

    @invariant()
    def never_two_crawls_of_one_spider(self):
        live = [row["spider"] for row in self.crawling.values()]
        assert len(live) == len(set(live)) <= self.concurrency
        # Every live crawl is the newest row of its spider, still 'running'.
        for spider, row in self.crawling.items():
            assert row["status"] == "running" and row is [r for r in self.table if r["spider"] == spider][-1]


TheLoop.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_the_loop_never_starts_a_spider_twice_and_never_waits_beyond_the_interval = TheLoop.TestCase
