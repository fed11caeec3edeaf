"""The one boundary: parse the command line, build the settings, run a command, and turn every
exception into a one-line message and an exit code.

Exit codes: 0 done; 1 unexpected error; 2 invalid setting (or jobs file, or a command's argument:
an unknown job, a paused one to run); 3 PostgreSQL unreachable; 4 migration failed; 5 the Scrapy
project's spiders could not be listed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

# The daemon idles for hours, so what it imports is what it costs (issue "Performance": an idle
# daemon within 30 MiB resident). Two optional imports of its libraries are kept out:
# - structlog imports its Twisted helpers whenever Twisted is installed (Scrapy needs it): ~2 MiB
#   for nothing, as crawls are subprocesses. Marked absent, that optional import fails quietly.
# - psycopg2 and asyncio (which structlog.stdlib imports) both import Python's `ssl` if they can,
#   loading the system's OpenSSL (~3.5 MiB) beside the one libpq bundles and uses for TLS to
#   PostgreSQL. Both treat a missing `ssl` as normal (libpq then sets up its own OpenSSL, as in
#   any C program), and the daemon never uses asyncio. `ssl` is hidden only while they load, so a
#   later `import ssl` (https webhooks, through urllib) works as usual.
# - structlog imports greenlet whenever it is installed (for its deprecated threadlocal module,
#   which falls back to threading.local without it): ~1.2 MiB with the C++ runtime it loads, for a
#   daemon that runs no greenlets. Hidden, like ssl, only while structlog loads.
# Only this process is affected: crawls start a fresh interpreter.
sys.modules.setdefault("twisted", None)  # type: ignore[arg-type]
_hidden = [name for name in ("ssl", "greenlet") if name not in sys.modules]
for _name in _hidden:
    sys.modules[_name] = None  # type: ignore[assignment]
try:
    import psycopg2  # noqa: F401,E402 (loaded here, without ssl)
    import structlog  # noqa: F401,E402
finally:
    for _name in _hidden:
        del sys.modules[_name]

from daemon.telemetry import heartbeat, logs  # noqa: E402 (after the guards above)
from daemon.settings.config import Settings  # noqa: E402
from daemon.system.errors import DatabaseUnavailable, SchedulerError  # noqa: E402


def load_environment(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> dict[str, str]:
    """The process environment over the `.env` file of the working directory (if there is one)."""
    environ = os.environ if environ is None else environ
    dotenv = dotenv or Path.cwd() / ".env"
    values: dict[str, str] = {}
    if dotenv.is_file():
        from dotenv import dotenv_values  # only when there is a file: python-dotenv costs ~1 MiB resident

        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(environ)
    return values


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.jobs import jobfile, rules as jobrules
    from daemon.records import db
    from daemon.jobs.catalog import open_catalog
    from daemon.assemble import assemble
    from daemon.jobs.spiders import list_spiders, resolve_spiders
    from daemon.engines.local import prewarmed_starts
    from daemon.records.store import Store

    stop, force, wake, reload = threading.Event(), threading.Event(), threading.Event(), threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        # Only set events: the loop decides. A second signal means "now".
        if stop.is_set():
            force.set()
        stop.set()
        wake.set()

    def on_hup(signum: int, frame: object) -> None:
        reload.set()  # read the jobs file and list the spiders again
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    make_state_directory(settings)
    path = jobfile.resolve_path(str(settings.jobs_file or ""), settings.project_dir)
    # The channels' tags, which a job's `notify` must name (asked of Apprise in its own process, once).
    defaults = jobfile.JobDefaults.from_settings(settings, notify_tags=notify_tags(settings))
    # A bad file is exit 2 at once, not after waiting for PostgreSQL.
    preloaded = jobrules.load(path, defaults) if path is not None else None
    db.answer_within_a_deadline()  # a frozen PostgreSQL never holds the loop (see db.py)
    # The catch-up is due the moment PostgreSQL answers: its first crawl forks from a warm parent
    # that imports Scrapy while we wait (started from this thread, which runs the loop: PDEATHSIG).
    starts = prewarmed_starts(settings)
    try:
        conn = db.wait_for_database(settings, stop)
    except DatabaseUnavailable:
        if stop.is_set():
            return 0  # asked to stop while waiting for PostgreSQL: nothing ran, nothing to record
        raise
    if getattr(args, "migrate", False):  # the entrypoint's default command: see build_parser
        from daemon.records.migrations import apply_migrations

        apply_migrations(settings)
    source = Store(conn).jobs_source()  # the spiders listed last time: no `scrapy list` before a catch-up
    catalog = open_catalog(path, defaults, settings.spiders, source[3] if source else None,
                           lambda: list_spiders(settings), lambda found: resolve_spiders(settings, found),
                           preloaded=preloaded)  # fmt: skip
    assemble(settings, catalog, stop=stop, force=force, wake=wake, reload=reload, conn=conn, starts=starts).run()
    return 0


def notify_tags(settings: Settings) -> frozenset[str]:
    """Every tag of SCHEDULER_NOTIFY_CONFIG's channels (none without it); exit 2 when Apprise cannot
    read the file, naming its lines, never their text."""
    if settings.notify_config is None:
        return frozenset()
    from daemon.telemetry.channels import ChannelsError, describe
    from daemon.system.errors import ConfigError

    try:
        return frozenset(tag for channel in describe(settings.notify_config) for tag in channel.tags)
    except ChannelsError as exc:
        raise ConfigError([f"SCHEDULER_NOTIFY_CONFIG={str(settings.notify_config.path)!r} is not allowed: {exc}"]) from None


def make_state_directory(settings: Settings) -> None:
    """The state directory, created with mode 0700 before the loop writes anything there; one that
    is not this user's alone (made by someone else since the settings were checked) is exit 2."""
    from daemon.system import statedir
    from daemon.system.errors import ConfigError

    try:
        statedir.make_directory(settings.state_dir)
    except OSError as exc:
        reason = str(exc) if isinstance(exc, statedir.UntrustedDirectory) else statedir.why(exc)
        raise ConfigError([f"SCHEDULER_STATE_DIR={str(settings.state_dir)!r} is not allowed: a directory of this "
                           f"user's alone ({reason})"]) from None  # fmt: skip


def _command(name: str) -> Callable[[Settings, argparse.Namespace], int]:
    """A command of daemon/ask/commands.py (status, run-now, pause, resume, cancel, explain, logs), imported when it runs."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        from daemon.ask import commands

        return int(getattr(commands, name)(settings, args))

    return run


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.records.migrations import apply_migrations

    apply_migrations(settings)
    return 0


def cmd_wait_db(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.records import db

    db.wait_for_database(settings).close()
    return 0


def cmd_healthcheck(settings: Settings, args: argparse.Namespace) -> int:
    age = heartbeat.age_seconds(settings.heartbeat_file)
    limit = heartbeat.max_age_seconds(settings.tick_seconds)
    if age is None:
        print(f"unhealthy: no heartbeat at {settings.heartbeat_file}")
        return 1
    if age > limit:
        print(f"unhealthy: the loop's last heartbeat was {age:.0f} s ago (limit {limit:.0f} s)")
        return 1
    print(f"healthy: heartbeat {age:.1f} s ago")
    return 0


COMMANDS: dict[str, tuple[Callable[[Settings, argparse.Namespace], int], str]] = {
    "run": (cmd_run, "run the scheduling loop (the default command)"),
    "migrate": (cmd_migrate, "apply pending sql/NNN_*.sql migrations, each once, then exit"),
    "wait-db": (cmd_wait_db, "wait until PostgreSQL accepts connections (DB_WAIT_TIMEOUT_SECONDS)"),
    "healthcheck": (cmd_healthcheck, "exit 0 while the loop's heartbeat is fresh, 1 when it is stale"),
    "status": (_command("status"), "show each job: spider, args, every, last run, status, items, next due, "
               "paused, running"),
    "run-now": (_command("run_now"), "ask the running daemon to run these jobs (a spider's name: all its jobs; "
                "none: every job) now"),
    "pause": (_command("pause"), "pause jobs, for every daemon and across restarts (--for DURATION, or until resumed)"),
    "resume": (_command("resume"), "resume paused jobs"),
    "cancel": (_command("cancel"), "stop the running crawl of these jobs (recorded failed: cancelled)"),
    "explain": (_command("explain"), "say in one paragraph why a job runs now, or when it will and why not sooner"),
    "logs": (_command("logs"), "show a job's latest crawl's output (--run ID: that "
             "crawl; --follow: until it ends)"),
    "notify-test": (lambda settings, args: _notify_test(settings, args), "send one test alert to each channel "
                    "(or to those of TAG) and say, per channel, delivered or why not; exit 1 if any failed"),
}


def _notify_test(settings: Settings, args: argparse.Namespace) -> int:
    from daemon.telemetry.channels import notify_test

    code, lines = notify_test(settings, args)
    print("\n".join(lines))
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m daemon",
        description="The persistent scheduler: runs every spider of a Scrapy project at least once "
        "every SCHEDULER_INTERVAL_HOURS, remembering its runs in PostgreSQL.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    parsers = {name: sub.add_parser(name, help=text, description=text) for name, (_, text) in COMMANDS.items()}
    from daemon.ask.commands import add_arguments

    add_arguments(parsers)
    # One process from start to loop for the container's default command: its warm parent imports
    # Scrapy while PostgreSQL starts, and no interpreter is started for the wait and the migrations.
    parsers["run"].add_argument("--migrate", action="store_true",
                                help="apply the pending migrations once PostgreSQL answers, before the loop "
                                     "(the entrypoint's default command)")  # fmt: skip
    parsers["logs"].add_argument("job", metavar="JOB")
    parsers["logs"].add_argument("--run", type=int, metavar="ID", help="that crawl (spider_runs.id), not the latest")
    parsers["logs"].add_argument("--follow", action="store_true", help="while it runs, print what it adds")
    parsers["notify-test"].add_argument("tag", metavar="TAG", nargs="?", help="only the channels with this tag")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command, _ = COMMANDS[args.command or "run"]
    try:
        settings = Settings.from_mapping(load_environment())
        logs.configure(settings.log_level, settings.log_format)
        return command(settings, args)
    except SchedulerError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the boundary: anything unexpected becomes one line and exit 1
        # One line: PostgreSQL's errors go on with the statement and a caret ("LINE 3: ..."). Never
        # the chained causes or the traceback: their frames' locals hold connection strings.
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"unexpected error: {type(exc).__name__}" + (f": {first}" if first else ""), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
