"""Connecting to PostgreSQL, and waiting for it to come up. Messages name host and port, never
the password (psycopg2's own error text never contains it either)."""

from __future__ import annotations

import re
import select
import threading
import time
from collections.abc import Mapping
from typing import Any

import psycopg2
import psycopg2.extensions
import structlog

from daemon.settings.config import Settings
from daemon.system.errors import DatabaseUnavailable

log = structlog.get_logger("daemon.db")

# Errors that mean "the server or the connection is gone": reconnect and carry on.
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)
RETRY_CAP_SECONDS = 0.25  # the longest pause between two attempts to connect at start-up


def connect_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection keywords for psycopg2; the only place the password is revealed."""
    kwargs: dict[str, Any] = {
        "host": settings.db_host,
        "port": settings.db_port,
        "dbname": settings.db_name,
        "user": settings.db_user,
        "application_name": "persistent-scheduler",
        "connect_timeout": 5,
        # A server that vanished without closing the connection is noticed within ~25 s.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        # Every query of the daemon reads a handful of rows through an index, yet on a large
        # history the planner's estimates cross jit_above_cost and it JIT-compiles them: 5 ms
        # of compiling for 0.4 ms of work (bench/, 10 million spider rows).
        "options": "-c jit=off",
    }
    if settings.db_password:
        kwargs["password"] = settings.db_password.reveal()
    return kwargs


def connect(
    settings: Settings,
    *,
    autocommit: bool = True,
    connect_timeout: int | None = None,
    session: Mapping[str, str] | None = None,
    application_name: str | None = None,
) -> psycopg2.extensions.connection:
    """A connection with the settings' keywords. `session`: server settings for this session only
    (e.g. {"default_transaction_read_only": "on", "statement_timeout": "2s"}), values without spaces."""
    kwargs = connect_kwargs(settings)
    if connect_timeout is not None:
        kwargs["connect_timeout"] = connect_timeout
    if session:
        if any(not re.fullmatch(r"[A-Za-z0-9_.]+", f"{name}{value}") for name, value in session.items()):
            raise ValueError(f"session settings must be plain words: {sorted(session)}")
        options = [f"-c {name}={value}" for name, value in session.items()]
        kwargs["options"] = " ".join([kwargs.get("options", ""), *options]).strip()
    if application_name is not None:
        kwargs["application_name"] = application_name
    conn = psycopg2.connect(**kwargs)
    conn.autocommit = autocommit
    return conn


# The daemon's loop never waits on PostgreSQL for longer than this. A server that freezes without
# closing its connections (SIGSTOP, `docker pause`) leaves the kernel answering for it: TCP
# keepalives never fire, and a blocking libpq call would wait for as long as the freeze lasts,
# with crawls' timeouts and SIGTERM unattended. Every statement the loop makes is a few ms.
ANSWER_WITHIN_SECONDS = 10.0


class NoAnswer(psycopg2.OperationalError):
    """PostgreSQL did not answer in time: treated like an unreachable server."""


def _wait_with_a_deadline(conn: psycopg2.extensions.connection) -> None:
    """psycopg2's wait callback (see `answer_within_a_deadline`): the same waiting libpq does, in Python, with
    a deadline; a signal's handler also runs while waiting."""
    limit = ANSWER_WITHIN_SECONDS
    if conn.status == psycopg2.extensions.STATUS_SETUP:
        # Connecting: libpq leaves connect_timeout to whoever waits, so it is kept here.
        asked = re.search(r"\bconnect_timeout=(\d+)", conn.dsn)
        if asked and int(asked.group(1)) > 0:
            limit = min(limit, float(asked.group(1)))
    deadline = time.monotonic() + limit
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            # psycopg2 then treats the connection as broken; the caller drops it (a frozen server
            # could not be sent a cancel request either).
            raise NoAnswer(f"PostgreSQL did not answer within {limit:g} s")
        if state == psycopg2.extensions.POLL_READ:
            select.select([conn.fileno()], [], [], min(remaining, 1.0))
        elif state == psycopg2.extensions.POLL_WRITE:
            select.select([], [conn.fileno()], [], min(remaining, 1.0))
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")


def answer_within_a_deadline() -> None:
    """From now on, in this process, no statement or connection attempt waits for longer than
    ANSWER_WITHIN_SECONDS. For the daemon's loop only: migrations may rightly take longer."""
    psycopg2.extensions.set_wait_callback(_wait_with_a_deadline)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def wait_for_database(
    settings: Settings,
    stop: threading.Event | None = None,
    *,
    timeout: float | None = None,
) -> psycopg2.extensions.connection:
    """Connect, retrying with backoff until `timeout` seconds pass.

    The retries start at 0.1 s and double up to RETRY_CAP_SECONDS: a refused connection costs
    nothing, and the gap between PostgreSQL accepting connections and this noticing is the start
    of every catch-up (issue "Performance": Postgres up -> first crawl within 1 s). The warning is
    logged at attempts 1, 2, 4, 8, ... so a long wait stays readable.
    """
    timeout = settings.db_wait_timeout_seconds if timeout is None else timeout
    stop = stop or threading.Event()
    # Durations are measured on the monotonic clock: nothing here depends on the wall time.
    deadline = time.monotonic() + timeout
    delay, attempt, last_error = 0.1, 0, ""
    while True:
        attempt += 1
        try:
            conn = connect(settings)
        except CONNECTION_ERRORS as exc:
            last_error = first_line(exc)
        else:
            if attempt > 1:
                log.info("database_available", host=settings.db_host, port=settings.db_port, attempts=attempt)
            return conn
        remaining = deadline - time.monotonic()
        if remaining <= 0 or stop.is_set():
            raise DatabaseUnavailable(
                f"PostgreSQL at {settings.db_host}:{settings.db_port} (database {settings.db_name!r}, "
                f"user {settings.db_user!r}) did not accept a connection within {timeout:g} s: {last_error}"
            )
        if attempt & (attempt - 1) == 0:
            log.warning(
                "database_unavailable",
                message="Waiting for PostgreSQL",
                host=settings.db_host,
                port=settings.db_port,
                attempt=attempt,
                retry_in_s=round(min(delay, remaining), 2),
                error=last_error,
            )
        stop.wait(min(delay, remaining))
        delay = min(delay * 2, RETRY_CAP_SECONDS)
