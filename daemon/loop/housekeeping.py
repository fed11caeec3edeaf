"""The daemon's housekeeping jobs, run by the `schedule` library beside the spider job.

`schedule` is used for what it is good at (every N seconds/hours, re-arming after each run) with
its pitfalls handled here:
- it reads the naive local clock: intervals only (no wall-clock `at()` times), and the image runs
  with TZ=UTC; the jobs themselves take `now` from the daemon's clock;
- a job that raises would propagate out of run_pending: every job catches and logs its own errors,
  records the failure, and simply runs again at its next turn;
- it remembers nothing: each run is recorded in `job_runs`, and on start a job whose last recorded
  run is older than its period runs at once instead of a whole period later.
Only the daemon holding the runner lock runs jobs, so two daemons never clean up at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone

import psycopg2
import schedule
import structlog

from daemon.records import audit, db
from daemon.engines import crawllog
from daemon.loop import httpcache
from daemon.system.clock import Clock
from daemon.settings.config import Settings
from daemon.telemetry.metrics import Metrics
from daemon.telemetry.notify import Notifier
from daemon.records.store import Store

log = structlog.get_logger("daemon.housekeeping")

RETENTION_BATCH = 1000  # runs deleted per statement: short transactions, no long locks


@dataclasses.dataclass
class JobState:
    name: str
    every: timedelta
    last_run_at: datetime | None = None
    last_status: str | None = None
    last_message: str | None = None


class Housekeeping:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        store: Callable[[], Store | None],
        metrics: Metrics | None = None,
        notifier: Notifier | None = None,
        *,
        spiders: Sequence[str] = (),
        watch: Callable[[], Mapping[str, timedelta]] | None = None,
    ) -> None:
        """spiders: the jobs the daemon runs, each alerted on after SCHEDULER_ALERT_AFTER_HOURS; or
        watch: the jobs to alert on now (paused ones left out), each with its own limit."""
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.store = store  # the lock holder's store, or None: then jobs wait
        self.scheduler = schedule.Scheduler()
        self.states: dict[str, JobState] = {}
        self.notifier = notifier
        self.alerts = OverdueAlerts(settings, spiders, notifier, watch=watch)
        # Cache alert kind -> when it last went to the webhook: like an overdue spider, a cache that
        # stays nearly full is told once, then again only after another SCHEDULER_ALERT_AFTER_HOURS.
        self._cache_alerted: dict[str, datetime] = {}
        self._anchored = False
        self._add("history_retention", timedelta(days=1), self.history_retention)
        self._add("overdue_check", settings.overdue_check_every, self.alerts.check)
        self._add("cache_cleanup", settings.cache_cleanup_every, self.cache_cleanup)
        self._cache: httpcache.CacheConfig | None | bool = False  # False: not asked yet

    def _add(self, name: str, every: timedelta, func: Callable[[Store, datetime], str]) -> None:
        self.states[name] = JobState(name, every)
        self.scheduler.every(max(1, int(every.total_seconds()))).seconds.do(self._run, name, func).tag(name)

    def run_pending(self) -> None:
        """Called by the loop on each step while this daemon holds the runner lock."""
        store = self.store()
        if store is None:
            return
        if not self._anchored:
            self._anchor(store)
        self.scheduler.run_pending()

    def _anchor(self, store: Store) -> None:
        """Pick up each job's last run from Postgres; run at once what is overdue."""
        now = self.clock.now()
        last = dict(store.last_job_runs_detail())
        self._anchored = True  # only once it has been read: a failed read is tried again next step
        # Failures are alerted from where the last daemon's overdue_check left off, not only
        # from the last check period: a crawl that failed just before a restart is still told.
        self.alerts.anchor = last.get("overdue_check", (None, None))[0]
        for job in list(self.scheduler.jobs):
            name = next(iter(job.tags))
            started, status = last.get(name, (None, None))
            self.states[name].last_run_at, self.states[name].last_status = started, status
            if started is None or now - started >= self.states[name].every:
                job.run()

    def _run(self, name: str, func: Callable[[Store, datetime], str]) -> None:
        state = self.states[name]
        store = self.store()
        if store is None:
            return
        now = self.clock.now()
        started = self.clock.monotonic()
        try:
            message = func(store, now)
            status = "completed"
        except psycopg2.Error as exc:
            message, status = f"{type(exc).__name__}: {db.first_line(exc)}", "failed"
        except Exception as exc:  # a job must never stop the loop; it runs again next time
            message, status = f"{type(exc).__name__}: {exc}", "failed"
        duration_ms = round((self.clock.monotonic() - started) * 1000, 1)
        state.last_run_at, state.last_status, state.last_message = now, status, message
        self.metrics.job_runs.labels(name, status).inc()
        (log.info if status == "completed" else log.error)(
            "job_finished", job=name, status=status, duration_ms=duration_ms, message=message
        )
        try:
            store.record_job_run(name, now, self.clock.now(), status, message)
        except psycopg2.Error as exc:
            log.warning("job_record_failed", job=name, error=db.first_line(exc))

    # ----------------------------------------------------------------- the jobs
    def history_retention(self, store: Store, now: datetime) -> str:
        cutoff = now - timedelta(days=self.settings.history_retention_days)
        runs = spider_runs = 0
        while True:
            deleted_runs, deleted_spider_runs = store.delete_history_batch(cutoff, RETENTION_BATCH)
            runs += deleted_runs
            spider_runs += deleted_spider_runs
            if deleted_runs < RETENTION_BATCH:
                break
        job_runs, requests = store.delete_old_bookkeeping(cutoff)
        slots = store.remove_slots_older_than(cutoff)  # the freshness ledger's rows (sql/019)
        actions = audit.delete_old(store.conn, cutoff)  # the audit of actions is kept like the history
        # Crawl log files go with the history they belong to (their rows keep only the tail anyway).
        log_files = crawllog.remove_older_than(self.settings.state_dir, cutoff)
        log.info("history_retention_deleted", runs=runs, spider_runs=spider_runs, job_runs=job_runs,
                 run_requests=requests, ledger_slots=slots, actions=actions, log_files=log_files,
                 older_than=cutoff.isoformat())  # fmt: skip
        return (f"deleted {runs} run(s), {spider_runs} spider run(s), {job_runs} job run(s), {requests} "
                f"run-now request(s), {slots} ledger slot(s), {actions} action(s) and {log_files} crawl log "
                f"file(s) older than {cutoff.isoformat()}")

    def view(self) -> list[dict[str, object]]:
        """Each job as GET /jobs shows it."""
        out = []
        for job in self.scheduler.jobs:
            state = self.states[next(iter(job.tags))]
            # schedule keeps next_run as a naive local time; astimezone() reads it as such.
            next_due = job.next_run.astimezone(timezone.utc).isoformat() if job.next_run else None
            out.append({
                "id": state.name, "every_s": state.every.total_seconds(),
                "last_run": state.last_run_at.isoformat() if state.last_run_at else None,
                "last_status": state.last_status, "last_message": state.last_message, "running": False,
                "next_due": next_due,
            })  # fmt: skip
        return out

    def cache_cleanup(self, store: Store, now: datetime) -> str:
        if self._cache is False:
            self._cache = httpcache.project_cache(self.settings)
            if self._cache is None:
                log.info("cache_cleanup_idle", message="The Scrapy project uses no filesystem HTTP cache; "
                                                       "cache_cleanup has nothing to do")  # fmt: skip
        if self._cache is None:
            return "no filesystem HTTP cache"
        started = self.clock.monotonic()
        swept = httpcache.sweep(self._cache)
        duration_ms = round((self.clock.monotonic() - started) * 1000, 1)
        hits, misses = store.httpcache_counts(latest=50)
        hit_rate = round(100 * hits / (hits + misses), 1) if hits + misses else None
        self.metrics.cache_cleanup_runs.inc()
        self.metrics.cache_entries_removed.inc(swept.entries_removed)
        self.metrics.cache_cleanup_duration.observe(duration_ms / 1000)
        log.info("cache_cleanup_done", entries_removed=swept.entries_removed,
                 kb_freed=round(swept.bytes_freed / 1024, 1), duration_ms=duration_ms,
                 hit_rate_percent=hit_rate, cache_mb=round(swept.bytes_left / 2**20, 2))  # fmt: skip
        limit = self.settings.cache_max_mb
        cache_mb = round(swept.bytes_left / 2**20, 2)
        self._cache_alert("cache_nearly_full", now, swept.bytes_left > 0.9 * limit * 2**20,
                          f"The HTTP cache holds {cache_mb:g} MiB, more than 90% of CACHE_MAX_MB ({limit:g} MiB): "
                          "consider raising the limit or lowering the expiration",
                          cache_mb=cache_mb, limit_mb=limit)  # fmt: skip
        self._cache_alert("cache_hit_rate_low", now, hit_rate is not None and hit_rate < 60,
                          f"The HTTP cache hit rate of the latest crawls is {hit_rate}%, below 60%",
                          hit_rate_percent=hit_rate)  # fmt: skip
        return f"removed {swept.entries_removed} entries ({swept.bytes_freed} bytes), hit rate {hit_rate}%"

    def _cache_alert(self, kind: str, now: datetime, holds: bool, message: str, **fields: object) -> None:
        """WARN `kind` in the log at every cleanup while it holds; POST it to the webhook when it
        starts to hold, then again only after another SCHEDULER_ALERT_AFTER_HOURS (an hourly
        reminder that nothing changed is a webhook people mute)."""
        if not holds:
            self._cache_alerted.pop(kind, None)
            return
        log.warning(kind, message=message, **fields)
        alerted = self._cache_alerted.get(kind)
        if self.notifier is not None and (alerted is None or now - alerted >= self.settings.alert_after):
            self._cache_alerted[kind] = now
            self.notifier.alert(kind, message, level="warning", **fields)


class OverdueAlerts:
    """WARN when a spider has gone without a success for too long, ERROR on every failed spider run,
    WARN when a spider that used to scrape items scraped none."""

    def __init__(self, settings: Settings, spiders: Sequence[str], notifier: Notifier | None = None, *,
                 watch: Callable[[], Mapping[str, timedelta]] | None = None) -> None:  # fmt: skip
        self.settings = settings
        # The jobs the daemon runs, not those with rows: a job that never ran has no row to be found
        # by, and a job gone from the catalog (or paused) is no longer ours to alert on.
        self.watch = watch or (lambda: dict.fromkeys(spiders, settings.alert_after))
        self.notifier = notifier
        self.seen_failures: int | None = None  # the highest spider_runs.id already alerted on
        self.anchor: datetime | None = None  # when the last recorded overdue_check ran (Postgres)
        self.seen_zero: set[tuple[str, object]] = set()
        # Each overdue job is alerted once per episode: told when it becomes overdue, then not again
        # until a success ends the episode (a channel told every few hours that nothing changed is a
        # channel people mute). The jobs told in an episode still open; a job told by an earlier
        # daemon is found in the outbox (told after its last success), so a restart tells nothing again.
        self.overdue_alerted: dict[str, datetime | None] = {}  # job -> its last success when told

    def check(self, store: Store, now: datetime) -> str:
        alerts = 0
        watched = self.watch()
        running = store.running_jobs()
        overdue: list[tuple[str, datetime | None]] = []
        for spider, last_success in store.last_successes(list(watched)):
            if spider in running:
                continue  # its crawl is under way: a success ends the episode, a failure is alerted as such
            if last_success is not None and now - last_success <= watched[spider]:
                self.overdue_alerted.pop(spider, None)  # the episode is over: the next one is told again
            elif spider not in self.overdue_alerted or self.overdue_alerted[spider] != last_success:
                overdue.append((spider, last_success))  # a new episode (a success since the last one's told)
        for gone in self.overdue_alerted.keys() - watched.keys():  # removed or paused: its episode is forgotten
            del self.overdue_alerted[gone]
        told = store.last_told("overdue", [spider for spider, _ in overdue]) if overdue else {}
        for spider, last_success in overdue:
            self.overdue_alerted[spider] = last_success
            if spider in told and (last_success is None or told[spider] > last_success):
                continue  # told by an earlier daemon, and no success since: the same episode
            alerts += 1
            limit = watched[spider]
            hours = "never" if last_success is None else f"{(now - last_success).total_seconds() / 3600:.1f} h ago"
            self._alert("warning", "overdue", spider,
                        f"Job {spider} has had no successful run for more than "
                        f"{limit.total_seconds() / 3600:g} hours (last success: {hours})",
                        last_success=hours)  # fmt: skip
        # On the first check, failures since the last recorded check count (or, with none, those of
        # the last period); after that, every new one.
        after_id = self.seen_failures if self.seen_failures is not None else 0
        since = (self.anchor or now - self.settings.overdue_check_every) if self.seen_failures is None else None
        self.seen_failures = after_id
        for spider_run_id, job, failure, message, spider in store.failed_spider_runs_since(after_id, since):
            alerts += 1
            self.seen_failures = max(self.seen_failures, spider_run_id)
            self._alert("error", "spider_failed", job, f"Job {job} failed ({failure}): {message}", spider=spider,
                        failure=failure)  # fmt: skip
        for job, last_success_at, previous_items, spider in store.spiders_scraping_zero():
            if (job, last_success_at) in self.seen_zero:
                continue
            self.seen_zero.add((job, last_success_at))
            alerts += 1
            self._alert("warning", "zero_items", job,
                        f"Job {job} scraped 0 items (it scraped {previous_items} before): has the site changed?",
                        spider=spider, previous_items=previous_items)  # fmt: skip
        return f"{alerts} alert(s)"

    def _alert(self, level: str, kind: str, job: str, message: str, **fields: object) -> None:
        """An alert names its job, and its spider where known (else the job's name, which is the
        spider's for a job named after it: the alerts' fields before jobs)."""
        fields.setdefault("spider", job)
        getattr(log, level)("alert", kind=kind, job=job, message=message, **fields)
        if self.notifier is not None:
            self.notifier.alert(kind, message, job=job, level=level, **fields)
