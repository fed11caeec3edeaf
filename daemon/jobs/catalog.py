"""The catalog: which jobs this daemon runs, kept up to date without a restart.

The jobs come from the jobs file (daemon/jobs/jobfile.py), or, without one, one per spider of the
project. The lock holder notices a changed file within a tick (its size, time or inode), and at
once on SIGHUP, and lists the project's spiders again then (`scrapy list`, beside the loop in a
thread: a catch-up never waits for it). A file that does not validate keeps the last good jobs
running: the problem is logged (`jobs_file_invalid`), sent to the webhook once, and published, so
`status` shows it until the file is fixed. What the catalog holds is published to PostgreSQL (the
`jobs` table) on every change, so the commands answer without starting Scrapy.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from daemon.system import memory
from daemon.jobs import jobfile, rules as jobrules
from daemon.plan.decision import Cadence
from daemon.system.errors import JobsFileError, SchedulerError
from daemon.jobs.jobfile import Job, JobDefaults

log = structlog.get_logger("daemon.catalog")

Signature = tuple[int, int, int] | None  # (inode, size, mtime in ns) of the file; None: no file


def signature(path: Path | None) -> Signature:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return (0, -1, 0)  # gone or unreadable: a change, which load() then explains
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class Catalog:
    def __init__(
        self,
        path: Path | None,
        defaults: JobDefaults,
        lister: Callable[[], list[str]],
        *,
        jobs: Sequence[Job],
        spiders: Sequence[str] | None,
        chosen: Sequence[str] = (),
        on_invalid: Callable[[str], None] = lambda text: None,
    ) -> None:
        """path: the jobs file (None: one job per spider). lister: runs `scrapy list`. jobs: what to
        run until the file or the list says otherwise. spiders: the project's spiders as last listed
        (None: unknown yet). chosen: SCHEDULER_SPIDERS, the spiders to keep without a file."""
        self.path = path
        self.defaults = defaults
        self.lister = lister
        self.chosen = tuple(chosen)
        self.on_invalid = on_invalid
        self.jobs: tuple[Job, ...] = tuple(jobs)
        self.spiders: tuple[str, ...] | None = tuple(spiders) if spiders is not None else None
        self.error: str | None = None
        self.dirty = True  # to be published
        # Each calendar job's name -> since when its schedule is published as it is (the board's
        # schedule_since, read back at each publication): its slots are owed from then.
        self.since: dict[str, datetime] = {}
        self._signature = signature(path)
        self._listing: threading.Thread | None = None
        self._listed: list[str] | Exception | None = None

    def notify_tags(self, tags: frozenset[str]) -> None:
        """The alert channels' tags after their file was reloaded: what `notify` may name from the next
        parse on (the file in use stays as it is; a tag gone was refused by the reload)."""
        if self.defaults.notify_tags is not None:
            self.defaults = dataclasses.replace(self.defaults, notify_tags=tags)

    def alert_with(self, on_invalid: Callable[[str], None]) -> None:
        """How a file that does not validate on reload is told (the webhook)."""
        self.on_invalid = on_invalid

    # ----------------------------------------------------------------- questions
    def names(self) -> tuple[str, ...]:
        """The jobs' names: the same tuple while the jobs stay the same (asked for on every tick)."""
        names = getattr(self, "_names", None)
        if names is None or names[0] is not self.jobs:
            names = self._names = (self.jobs, tuple(job.name for job in self.jobs))
        return names[1]

    def job(self, name: str) -> Job | None:
        # Asked for every job on every tick (the spider of each, for the metrics), so the jobs are
        # indexed by name, anew whenever they are replaced: a search through them made a tick take
        # 2-3 s at 10,000 jobs (bench/bench.py, many_jobs).
        index = getattr(self, "_by_name", None)
        if index is None or index[0] is not self.jobs:
            index = self._by_name = (self.jobs, {job.name: job for job in self.jobs})
        return index[1].get(name)

    def spider_of(self, name: str) -> str:
        job = self.job(name)
        return job.spider if job is not None else name

    def jobs_named(self, names: Sequence[str]) -> list[Job]:
        """The jobs of `names`, in that order (a name no longer in the catalog is left out)."""
        return [job for name in names if (job := self.job(name)) is not None]

    def alert_limits(self, pauses: Collection[str], alert_after: timedelta) -> dict[str, timedelta]:
        """The jobs to alert on when overdue (none paused), each after SCHEDULER_ALERT_AFTER_HOURS or
        two of its own intervals, whichever is longer. A calendar job's interval is the longest gap
        between its slots (a weekday job: Friday to Monday); a window adds a day (it may hold a due
        crawl overnight)."""
        return {job.name: max(alert_after, 2 * _spacing(job)) for job in self.jobs
                if not job.paused and job.name not in pauses}  # fmt: skip

    def publish(self, store: Any, now: datetime, owner: str) -> None:
        """Write what this daemon runs to PostgreSQL (the `jobs` table), for the commands."""
        store.publish_jobs(self.jobs, path=str(self.path) if self.path else None, error=self.error,
                           spiders=self.spiders, now=now, owner=owner)  # fmt: skip
        if any(job.calendar is not None for job in self.jobs):
            self.since = store.schedules_since()
        self.dirty = False
        memory.release()  # the rows and the JSON of every job, just freed (daemon/system/memory.py)

    def cadences(self, pauses: dict[str, object]) -> dict[str, Cadence]:
        """Each job's cadence, paused by the file (until it changes) or by `pause` (until when).
        The same dict while the jobs and the pauses stay the same (the history copy moves its last
        plan while they do), a new one when either changes; never to be changed in place."""
        made = getattr(self, "_cadences", None)
        if made is not None and made[0] is self.jobs and made[1] == pauses and made[3] is self.since:
            return made[2]
        same: dict[Cadence, Cadence] = {}  # one object per distinct cadence, shared by the jobs that have it
        cadences = {job.name: same.setdefault(made, made) for job in self.jobs
                    for made in (cadence(job, pauses, self.since.get(job.name)),)}  # fmt: skip
        self._cadences = (self.jobs, dict(pauses), cadences, self.since)
        return cadences

    def resolve(self, names: Sequence[str] | None) -> set[str]:
        """Job names for names that may be jobs or spiders (a spider's name: all its jobs)."""
        if names is None:
            return set(self.names())
        wanted = set(names)
        return {job.name for job in self.jobs if job.name in wanted or job.spider in wanted}

    # ----------------------------------------------------------------- keeping it up to date
    def list_spiders(self) -> None:
        """Start `scrapy list` beside the loop (once at a time); `refresh` picks up its answer."""
        if self._listing is not None and self._listing.is_alive():
            return

        def work() -> None:
            try:
                self._listed = self.lister()
            except SchedulerError as exc:
                self._listed = exc

        self._listing = threading.Thread(target=work, name="scrapy-list", daemon=True)
        self._listing.start()

    def refresh(self, hup: bool = False) -> bool:
        """Re-read what changed: the spiders' listing when it is back, the file when it changed or on
        SIGHUP (which also lists the spiders again). True when the jobs (or their error) changed."""
        listed, self._listed = self._listed, None
        if isinstance(listed, Exception):
            log.warning("spider_listing_failed", error=str(listed).splitlines()[0])
            listed = None
        spiders_changed = False
        if listed is not None:
            listed_now = tuple(sorted(listed))
            if listed_now != self.spiders:
                log.info("spiders_listed", spiders=list(listed_now))
                self.dirty = spiders_changed = True
            self.spiders = listed_now
        now_signature = signature(self.path)
        file_changed = now_signature != self._signature
        if hup or file_changed:
            self._signature = now_signature
            log.info("jobs_reload", reason="sighup" if hup else "file_changed", file=str(self.path or ""))
            self.list_spiders()
        if not (hup or file_changed or spiders_changed):
            return False
        if not (hup or file_changed) and self.path is not None and self.error is None \
                and {job.spider for job in self.jobs} <= set(self.spiders or ()):  # fmt: skip
            return False  # the file as loaded still names only spiders the project has: no new parse
        return self._rebuild()

    def _rebuild(self) -> bool:
        before = (self.jobs, self.error)
        try:
            self.jobs, self.error = self._load(), None
        except JobsFileError as exc:
            text = "; ".join(exc.problems)
            if text != self.error:
                log.error("jobs_file_invalid", file=str(self.path), problems=exc.problems,
                          message="The jobs file is not valid; the last good jobs keep running")  # fmt: skip
            if self.error is None:  # alerted once per episode: until a valid file ends it, not per edit
                self.on_invalid(text)
            self.error = text
        changed = (self.jobs, self.error) != before
        if changed:
            log.info("jobs_loaded", jobs=len(self.jobs), file=str(self.path or ""), error=self.error)
        self.dirty = self.dirty or changed
        return changed

    def _load(self) -> tuple[Job, ...]:
        if self.path is not None:
            return jobrules.load(self.path, self.defaults, self.spiders)
        if self.spiders is None:
            return self.jobs
        chosen = [s for s in self.chosen if s in self.spiders] if self.chosen else list(self.spiders)
        return jobfile.default_jobs(chosen, self.defaults)


def open_catalog(
    path: Path | None, defaults: JobDefaults, chosen: Sequence[str], stored_spiders: Sequence[str] | None,
    lister: Callable[[], list[str]], resolve: Callable[[list[str]], list[str]], *,
    on_invalid: Callable[[str], None] = lambda text: None, preloaded: tuple[Job, ...] | None = None,
) -> Catalog:  # fmt: skip
    """The catalog at start-up, without waiting for `scrapy list` when the spiders listed last time
    (stored with the published jobs) name every spider the jobs need: then the crawls of a catch-up
    start at once and the listing runs beside them. Otherwise (a first start, a job for a spider
    added since) the spiders are listed first. A bad jobs file, or SCHEDULER_SPIDERS naming a spider
    the project lacks (`resolve`, from daemon/jobs/spiders.py), raises: exit 2. `preloaded`: the file's
    jobs as already read (unchecked against the spiders), so a large file is parsed once."""
    stored = tuple(stored_spiders) if stored_spiders else None
    if path is not None and preloaded is None:
        preloaded = jobrules.load(path, defaults, None)  # the file's own problems first
    jobs = preloaded or ()
    needed = {job.spider for job in jobs} if path is not None else set(chosen)
    listed = lister() if stored is None or not needed <= set(stored) else None
    spiders = tuple(sorted(listed)) if listed is not None else stored
    if path is None:
        jobs = jobfile.default_jobs(resolve(list(spiders or ())), defaults)
    elif not needed <= set(spiders or ()):
        jobs = jobrules.load(path, defaults, spiders)  # raises, naming the spiders the project lacks
    catalog = Catalog(path, defaults, lister, jobs=jobs, spiders=spiders, chosen=chosen, on_invalid=on_invalid)
    if listed is None:
        catalog.list_spiders()  # beside the catch-up: spiders added or removed since the last listing
    return catalog


def _spacing(job: Job) -> timedelta:
    """What the overdue alert counts as a job's interval (Catalog.alert_limits)."""
    calendar = job.calendar
    if calendar is None:
        return job.every
    every = job.every
    if calendar.cron is not None:
        from daemon.plan.calendar import longest_gap  # cronsim only for a calendar

        every = longest_gap(calendar.cron, calendar.tz) or timedelta(days=366)
    return every + (timedelta(days=1) if calendar.window is not None else timedelta(0))


def cadence(job: Job, pauses: Mapping[str, datetime | None], since: datetime | None = None) -> Cadence:
    """A published job's cadence: its interval and retry delay (or its calendar, published as it is
    since `since`), paused by the file (until it is edited) or by `pause JOB` (until its time, or
    until resumed)."""
    calendar = dict(calendar=job.calendar, published_at=since) if job.calendar is not None else {}
    # A cron job is decided by its slots; its `every` (for the overdue order and the interval on
    # /metrics, which the overdue alert doubles) is the longest gap between them.
    every = _spacing(job) if job.calendar is not None and job.calendar.cron is not None else job.every
    if job.paused:
        return Cadence(every, job.retry_delay, paused=True, **calendar)
    if job.name in pauses:
        return Cadence(every, job.retry_delay, paused=True, paused_until=pauses[job.name], **calendar)
    return Cadence(every, job.retry_delay, **calendar)
