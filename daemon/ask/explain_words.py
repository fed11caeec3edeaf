"""How `explain` says it (daemon/ask/explain.py decides): the rule codes, and one paragraph in plain
English for an explanation, times in SCHEDULER_TIMEZONE, durations as people say them. Text from
the database or the project is kept to one line, control characters escaped, long messages cut."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta
from typing import Any

RUNNING = "running"
FILE_ERROR = "file_error"
PAUSED = "paused"
NO_RUNNER = "no_runner"
DUE_RUN_NOW = "due_run_now"
WAITING_SLOT = "waiting_slot"
WAITING_RUN = "waiting_run"
DUE_FIRST_RUN = "due_first_run"
DUE_CLOCK_SKEW = "due_clock_skew"
DUE_RETRY = "due_retry"
DUE_CATCH_UP = "due_catch_up"
DUE_INTERVAL = "due_interval"
WAITING_BACKOFF = "waiting_backoff"
WAITING_INTERVAL = "waiting_interval"
DUE_CALENDAR = "due_calendar"  # a calendar job due for a slot (or its retry)
WAITING_CALENDAR = "waiting_calendar"  # a calendar job waiting: its next slot, its retry, its window
RULES = (RUNNING, FILE_ERROR, PAUSED, NO_RUNNER, DUE_RUN_NOW, WAITING_SLOT, WAITING_RUN, DUE_FIRST_RUN,
         DUE_CLOCK_SKEW, DUE_RETRY, DUE_CATCH_UP, DUE_INTERVAL, WAITING_BACKOFF, WAITING_INTERVAL, DUE_CALENDAR,
         WAITING_CALENDAR)  # fmt: skip

MESSAGE_SHOWN = 200  # characters of a crawl's message or a file problem in the paragraph (--json: whole)


def sentences(e: Any) -> list[str]:
    """The paragraph of an Explanation, sentence by sentence."""
    return _Paragraph(e).sentences()


def humanize(span: timedelta) -> str:
    """A duration as people say it: "45 s", "12 min", "2 h 10 min", "1 d 5 h" (its absolute value)."""
    seconds = round(abs(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        h, m = divmod(minutes, 60)
        return f"{h} h" + (f" {m} min" if m else "")
    d, h = divmod(round(seconds / 3600), 24)
    return f"{d} d" + (f" {h} h" if h else "")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def oneline(text: str, limit: int = MESSAGE_SHOWN) -> str:
    """Text from the database or the project on one line: whitespace collapsed, control characters
    escaped, cut at `limit` characters."""
    flat = " ".join(text.split())
    flat = "".join(c if unicodedata.category(c)[0] != "C" else repr(c)[1:-1] for c in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def paused_by(e: Any) -> str | None:
    if not e.plan.paused:
        return None
    return "file" if e.job.paused else "command"


class _Paragraph:
    def __init__(self, e: Any) -> None:
        self.e = e
        self.name = oneline(e.job.name, 100)

    def at(self, moment: datetime) -> str:
        return moment.astimezone(self.e.timezone).strftime("%Y-%m-%d %H:%M")

    def when(self, moment: datetime) -> str:
        """"2026-05-01 14:20 (in 2 h 10 min)" or "(3 min ago)"."""
        span = moment - self.e.now
        if abs(span) < timedelta(seconds=1):
            return f"{self.at(moment)} (now)"
        relative = f"in {humanize(span)}" if span > timedelta(0) else f"{humanize(span)} ago"
        return f"{self.at(moment)} ({relative})"

    def sentences(self) -> list[str]:
        e = self.e
        out: list[str] = []
        rules = e.rules
        if rules[0] == RUNNING:
            out.append(self.running())
        else:
            for rule in rules[:-1]:
                out.append(getattr(self, rule)())
            out.append(self.timing(standalone=len(rules) == 1))
        out += self.runner()
        out += self.verdict()
        out += self.notes()
        out.append(f"Times in {e.timezone}.")
        return [s for s in out if s]

    # ---- the rules that override the job's own cadence
    def running(self) -> str:
        e, crawl = self.e, self.e.facts.last_crawl
        assert crawl is not None
        stop_at = crawl.started_at + e.job.timeout
        text = (f"{self.name} is running: its crawl started at {self.when(crawl.started_at)}; it is stopped if it "
                f"runs past its timeout of {humanize(e.job.timeout)}, at {self.at(stop_at)}.")  # fmt: skip
        if not e.holder.locked:
            text += (" But no daemon holds the runner lock: the daemon that started it lost PostgreSQL or died. If "
                     "it lost PostgreSQL, it goes on and journals the result; otherwise the next daemon to take the "
                     "lock records the crawl as failed (stale).")  # fmt: skip
        return text

    def file_error(self) -> str:
        problems = "; ".join(oneline(p) for p in self.e.file_problems)
        return (f"The jobs file has a problem with {self.name}, so the daemon keeps running it as it was last "
                f"loaded until the file is fixed: {problems}.")  # fmt: skip

    def paused(self) -> str:
        e = self.e
        if e.job.paused:
            return (f"{self.name} is paused in the jobs file (paused = true): it never runs until that is set to "
                    "false.")  # fmt: skip
        until = e.facts.paused_until
        if until is None or e.plan.due_at is None:
            return f"{self.name} is paused until resumed (python -m daemon resume {self.name})."
        then = "it is due at once" if e.plan.due_at <= until else f"it is due at {self.at(e.plan.due_at)}"
        return f"{self.name} is paused until {self.when(until)} by python -m daemon pause; then {then}."

    def no_runner(self) -> str:
        h = self.e.holder
        if not h.owner:
            return "No daemon holds the runner lock (the last one stopped cleanly), so nothing runs until one starts."
        since = f", since {self.at(h.since)}" if h.since else ""
        return (f"No daemon holds the runner lock, so nothing runs until one starts. The last holder ({h.who}{since}) "
                "did not stop cleanly: if it lost PostgreSQL, it keeps running due jobs from its last read and "
                "journals them (the fail-safe); if it died, the next daemon to start takes over.")  # fmt: skip

    def due_run_now(self) -> str:
        e = self.e
        assert e.facts.run_now_at is not None
        after = ""
        if e.facts.run is not None:
            after = f" once the run under way since {self.at(e.facts.run.started_at)} ends"
        return (f"A run-now request for {self.name}, made at {self.when(e.facts.run_now_at)}, waits for the daemon "
                f"holding the runner lock, which takes it within a second or so and runs it at once, without "
                f"jitter{after}.")  # fmt: skip

    def waiting_slot(self) -> str:
        e = self.e
        run = e.facts.run
        assert run is not None
        return (f"{self.name} is due and waits for a concurrency slot: the run under way since "
                f"{self.at(run.started_at)} has started {run.started} of its {run.planned} crawls, {run.running} "
                f"running (at most {e.facts.concurrency} at a time, SCHEDULER_CONCURRENCY); it starts when one of "
                "them ends.")  # fmt: skip

    def waiting_run(self) -> str:
        run = self.e.facts.run
        assert run is not None
        return (f"{self.name} is due and waits for the run under way since {self.at(run.started_at)} "
                f"({_count(run.running, 'crawl')} running) to end: a new run starts only after it.")  # fmt: skip

    # ---- the job's own cadence
    def timing(self, standalone: bool) -> str:
        verdict, why = self.cadence()
        if standalone:
            return f"{self.name} {verdict}: {why}."
        if self.e.rules[-2] == FILE_ERROR:
            return f"As last loaded, {self.name} {verdict}: {why}."
        return f"By its own rule it {verdict}: {why}."

    def cadence(self) -> tuple[str, str]:
        e = self.e
        h, own, timing = e.history, e.own, e.timing
        every = f"it runs every {humanize(e.job.every)}"
        if timing == DUE_FIRST_RUN:
            never = "it has never run" if e.facts.last_crawl is None else "it has never succeeded"
            return "is due now", f"{never}, and a first run starts at once, without jitter"
        if timing == DUE_CLOCK_SKEW:
            latest = max(t for t in (h.last_success_at, h.last_failure_at) if t is not None)
            return "is due now", (f"its latest crawl is recorded at {self.at(latest)}, in the future (the clock was "
                                  "set back), so the daemon does not wait for it")  # fmt: skip
        if timing in (DUE_CALENDAR, WAITING_CALENDAR):
            from daemon.ask.calendar_words import describe

            said = describe(e.job.calendar).rstrip(".")
            schedule = said[:1].lower() + said[1:]  # "At 08:00 ..." inside a sentence
            if timing == DUE_CALENDAR:
                return "is due now", f"its schedule is {schedule}"
            verdict = f"waits until {self.when(own.due_at)}" if own.due_at is not None else "waits"
            return verdict, f"its schedule is {schedule}"
        assert own.due_at is not None
        if timing in (DUE_RETRY, WAITING_BACKOFF):
            verdict = f"has been due since {self.when(own.due_at)}" if timing == DUE_RETRY else \
                f"waits until {self.when(own.due_at)}"  # fmt: skip
            latest = f" (the latest at {self.at(h.last_failure_at)})" if h.last_failure_at else ""
            since = " since its last success" if h.last_success_at else " and no success yet"
            return verdict, (f"{_count(h.consecutive_failures, 'failure')} in a row{since}{latest} put its retry "
                             f"after a backoff of {humanize(e.backoff)} (its retry delay of "
                             f"{humanize(e.job.retry_delay)}, doubled per failure, at most its interval of "
                             f"{humanize(e.job.every)})")  # fmt: skip
        success = f"its last success started at {self.at(h.last_success_at)}" if h.last_success_at else ""
        jitter = e.job.jitter
        if timing == WAITING_INTERVAL:
            why = f"{success} and {every}"
            if jitter:
                why += f"; then it may be held back by up to {humanize(jitter)} (jitter)"
            return f"waits until {self.when(own.due_at)}", why
        if timing == DUE_CATCH_UP:
            assert e.holder.since is not None
            return f"has been due since {self.when(own.due_at)}", (
                f"{success} and {every}; it was already due when the daemon holding the runner lock took it at "
                f"{self.at(e.holder.since)}, so that daemon runs it in its catch-up, at once and without jitter, "
                "the most overdue jobs first")  # fmt: skip
        why = f"{success} and {every}"
        if jitter and e.now < own.due_at + jitter:
            why += (f"; it may be held back by up to {humanize(jitter)} (jitter) after it is due, so it starts by "
                    f"{self.at(own.due_at + jitter)} at the latest")  # fmt: skip
        return f"has been due since {self.when(own.due_at)}", why

    # ---- what else is known
    def runner(self) -> list[str]:
        e, h = self.e, self.e.holder
        if NO_RUNNER in e.rules:
            return []
        if not h.locked:
            either = "No daemon holds the runner lock either: nothing runs until one starts."
            return [] if e.rule == RUNNING else [either]
        if not h.owner:
            return ["A daemon holds the runner lock (who it is is not recorded)."]
        since = f", since {self.at(h.since)}" if h.since else ""
        unblocked = [rule for rule in e.rules if rule != FILE_ERROR] == [e.timing]
        ticks = ", which starts due jobs within a tick" if unblocked and e.due else ""
        return [f"It runs on the daemon holding the runner lock ({h.who}{since}){ticks}."]

    def verdict(self) -> list[str]:
        e, crawl = self.e, self.e.facts.last_crawl
        if crawl is None:
            return [] if e.timing == DUE_FIRST_RUN else [f"{self.name} has never run."]
        if crawl.status == "running":
            return []
        took = f" after {humanize(crawl.finished_at - crawl.started_at)}" if crawl.finished_at else ""
        if crawl.status == "completed":
            items = f" with {_count(crawl.items, 'item')}" if crawl.items is not None else ""
            return [f"Its last crawl, started at {self.at(crawl.started_at)}, completed{items}{took}.", *self.suspect()]
        why = f" ({oneline(crawl.failure, 40)})" if crawl.failure else ""
        message = f": {oneline(crawl.message)}" if crawl.message else ""
        return [f"Its last crawl, started at {self.at(crawl.started_at)}, {oneline(crawl.status, 40)}{why}{took}"
                f"{message}" + ("" if message.endswith(".") else "."), *self.suspect()]  # fmt: skip

    def suspect(self) -> list[str]:
        """The latest success that looked wrong against the job's own baseline, and why."""
        e, suspect = self.e, self.e.facts.last_suspect
        if suspect is None:
            return []
        started, why = suspect
        last = e.facts.last_crawl is not None and e.facts.last_crawl.started_at == started
        which = "That crawl" if last else f"Its last suspect crawl, started at {self.when(started)},"
        return [f"{which} succeeded but looks wrong against its baseline: {oneline(why)} (it still counts as a "
                "success for the schedule)."]  # fmt: skip

    def notes(self) -> list[str]:
        e = self.e
        out = self.calendar()
        if e.facts.file_error and not e.file_problems:
            out.append("The jobs file has an error elsewhere: the daemon keeps running its last good jobs until it "
                       "is fixed (python -m daemon status shows it).")  # fmt: skip
        if not e.facts.published:
            out.append(f"No daemon has published its jobs yet: {self.name} stands in for spider "
                       f"{oneline(e.job.spider, 100)} with the environment's interval.")  # fmt: skip
        return out


    def calendar(self) -> list[str]:
        """A calendar job's sentences: the slot it is due for or waits for, missed slots, catch-up,
        the window, a retry, DST (daemon/ask/calendar_words.py)."""
        e = self.e
        cal = e.job.calendar
        if cal is None:
            return []
        from daemon.ask.calendar_words import describe_window, explain_plan, when

        if e.own.calendar is not None:
            return explain_plan(cal, e.own.calendar)
        if e.own.reason == "waiting_window" and cal.window is not None and e.own.due_at is not None:
            return [f"It {describe_window(cal.window)} ({cal.tz.key}): it waits for its window to open at "
                    f"{when(e.own.due_at, cal.tz)}."]  # fmt: skip
        if e.own.reason == "never_open":
            return ["Its window never opens: it never runs."]
        return []


def unreachable(problem: str, journal_files: int, journal_runs: int) -> str:
    """The one line of `explain` when PostgreSQL cannot be reached (exit 3): the problem, the
    fail-safe, and how many runs wait in this machine's journal files."""
    waiting = ""
    if journal_files:
        waiting = (f" On this machine, {_count(journal_runs, 'run')} wait{'s' if journal_runs == 1 else ''} in "
                   f"{_count(journal_files, 'journal file')} (SCHEDULER_STATE_DIR), to be written to PostgreSQL "
                   "once it is back.")  # fmt: skip
    return (f"{problem.rstrip('.')}. Nothing can be explained without it. A daemon that was running the spiders "
            f"keeps running due jobs from its last read and journals them (the fail-safe).{waiting}")  # fmt: skip
