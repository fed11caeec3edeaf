"""The one boundary: parse the command line, build the settings, run a command, and turn every
exception into a one-line message and an exit code.

Exit codes: 0 done; 1 unexpected error; 2 invalid setting; 3 PostgreSQL unreachable;
4 migration failed; 5 the Scrapy project's spiders could not be listed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from dotenv import dotenv_values

from daemon import heartbeat, logs
from daemon.config import Settings
from daemon.errors import SchedulerError


def load_environment(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> dict[str, str]:
    """The process environment over the `.env` file of the working directory (if there is one)."""
    environ = os.environ if environ is None else environ
    dotenv = dotenv or Path.cwd() / ".env"
    values: dict[str, str] = {}
    if dotenv.is_file():
        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(environ)
    return values


def cmd_run(settings: Settings) -> int:
    from daemon import db
    from daemon.scheduler import Scheduler
    from daemon.spiders import list_spiders, resolve_spiders

    stop, force = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        # Only set events: the loop decides. A second signal means "now".
        if stop.is_set():
            force.set()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    spiders = resolve_spiders(settings, list_spiders(settings))
    conn = db.wait_for_database(settings, stop)
    Scheduler(settings, spiders, stop=stop, force=force, conn=conn).run()
    return 0


def cmd_migrate(settings: Settings) -> int:
    from daemon.migrations import apply_migrations

    apply_migrations(settings)
    return 0


def cmd_wait_db(settings: Settings) -> int:
    from daemon import db

    db.wait_for_database(settings).close()
    return 0


def cmd_healthcheck(settings: Settings) -> int:
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


COMMANDS: dict[str, tuple[Callable[[Settings], int], str]] = {
    "run": (cmd_run, "run the scheduling loop (the default command)"),
    "migrate": (cmd_migrate, "apply pending sql/NNN_*.sql migrations, each once, then exit"),
    "wait-db": (cmd_wait_db, "wait until PostgreSQL accepts connections (DB_WAIT_TIMEOUT_SECONDS)"),
    "healthcheck": (cmd_healthcheck, "exit 0 while the loop's heartbeat is fresh, 1 when it is stale"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m daemon",
        description="The persistent scheduler: runs every spider of a Scrapy project at least once "
        "every SCHEDULER_INTERVAL_HOURS, remembering its runs in PostgreSQL.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command, _ = COMMANDS[args.command or "run"]
    try:
        settings = Settings.from_mapping(load_environment())
        logs.configure(settings.log_level, settings.log_format)
        return command(settings)
    except SchedulerError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the boundary: anything unexpected becomes one line and exit 1
        print(f"unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
