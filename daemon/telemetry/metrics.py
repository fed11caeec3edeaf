"""The daemon's metrics, in a registry of its own (exposed on GET /metrics).

Nobody can read them while the HTTP endpoint is off (the default), and prometheus_client pulls in
http.server, urllib and wsgiref (~3.5 MiB resident): `Metrics.for_endpoint(False)` gives the same
interface with nothing behind it, so an idle daemon stays small.
"""

from __future__ import annotations

from typing import Any


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("scheduler_runs", "Spider runs (one per batch of due spiders) by status", ["status"],
                            registry=r)  # fmt: skip
        self.spider_runs = Counter("scheduler_spider_runs", "Crawls by job, spider and status",
                                   ["job", "spider", "status"], registry=r)  # fmt: skip
        self.suspect_crawls = Counter("scheduler_suspect_crawls", "Successful crawls judged suspect against the "
                                      "job's own baseline (few items, or long), by job and spider", ["job", "spider"],
                                      registry=r)  # fmt: skip
        self.items = Counter("scheduler_items_scraped", "Items scraped by job and spider", ["job", "spider"],
                             registry=r)  # fmt: skip
        self.last_success = Gauge("scheduler_last_success_timestamp_seconds",
                                  "Start of each job's latest successful crawl (Unix time)", ["job", "spider"],
                                  registry=r)  # fmt: skip
        self.run_duration = Histogram("scheduler_run_duration_seconds", "Duration of a spider run",
                                      buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400),
                                      registry=r)  # fmt: skip
        self.until_next_due = Gauge("scheduler_seconds_until_next_due",
                                    "Seconds until the next spider is due (0 while one is due)",
                                    registry=r)  # fmt: skip
        self.is_running = Gauge("scheduler_is_running", "1 while a spider run is in progress", registry=r)
        self.cache_cleanup_runs = Counter("scheduler_cache_cleanup_runs", "cache_cleanup job runs", registry=r)
        self.cache_entries_removed = Counter("scheduler_cache_entries_removed",
                                             "HTTP-cache entries removed by cache_cleanup", registry=r)  # fmt: skip
        self.cache_cleanup_duration = Histogram("scheduler_cache_cleanup_duration_seconds",
                                                "Duration of a cache_cleanup run", registry=r)  # fmt: skip
        self.job_runs = Counter("scheduler_job_runs", "Housekeeping job runs by job and status", ["job", "status"],
                                registry=r)  # fmt: skip
        # For alerting rules (contrib/prometheus/alerts.yml): is a job overdue, failing, paused; can
        # the loop use its database. The per-job gauges are set from each plan, a job's series
        # removed once it is no longer scheduled (so a removed job never alerts).
        self.database_up = Gauge("scheduler_database_up", "0 while the loop's statements to PostgreSQL fail "
                                 "(unreachable, or refused), else 1", registry=r)  # fmt: skip
        self.database_up.set(1)  # no failure known yet (the first step may be a long catch-up run)
        self.job_interval = Gauge("scheduler_job_interval_seconds", "Each job's interval: it runs at least once "
                                  "per interval", ["job", "spider"], registry=r)  # fmt: skip
        self.job_paused = Gauge("scheduler_job_paused", "1 while the job is paused (jobs file or pause), else 0",
                                ["job"], registry=r)  # fmt: skip
        self.job_failures = Gauge("scheduler_job_consecutive_failures",
                                  "The job's own failed crawls since its latest success", ["job", "spider"],
                                  registry=r)  # fmt: skip
        # Calendar jobs (issue 21): the ledger's missed slots this daemon wrote, by cause, and each
        # calendar job's next slot.
        self.slots_missed = Counter("scheduler_slots_missed", "Slots of calendar jobs recorded missed in the "
                                    "freshness ledger (by the daemon that wrote them), by job and cause",
                                    ["job", "cause"], registry=r)  # fmt: skip
        self.next_slot = Gauge("scheduler_next_slot_timestamp_seconds", "Each calendar job's next slot (Unix time)",
                               ["job"], registry=r)  # fmt: skip
        self.alerts_undelivered = Gauge("scheduler_alerts_undelivered", "Alerts a channel failed to take and the outbox "
                                        "retries with backoff (later ones waiting behind them not counted)", ["channel"], registry=r)  # fmt: skip

    @staticmethod
    def for_endpoint(enabled: bool) -> Metrics:
        return Metrics() if enabled else UnreadMetrics()  # type: ignore[return-value]


class _Nothing:
    """A metric nobody can read: every call is accepted and forgotten."""

    def labels(self, *values: Any) -> _Nothing:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass

    def remove(self, *values: Any) -> None:
        pass


class UnreadMetrics:
    """Metrics' interface when the HTTP endpoint is off."""

    registry = None

    def __getattr__(self, name: str) -> _Nothing:
        return _NOTHING


_NOTHING = _Nothing()
