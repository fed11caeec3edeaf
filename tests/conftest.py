"""Shared fixtures: a real PostgreSQL server, a local web site for the crawls, and settings.

The server is started by the tests themselves from the PostgreSQL 15 binaries, as an unprivileged
user when the tests run as root (initdb refuses root). A template database is migrated once and
cloned per test, which keeps each test's database fresh and cheap.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_PROJECT = ROOT / "tests" / "scrapy_project"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
# A canary: tests assert that this never shows up in logs, errors or reprs.
PG_PASSWORD = "canary-pw-7d41f0c2"
PROJECT_PREFIXES = ("DB_", "SCHEDULER_", "SCRAPY_", "LOG_", "CACHE_", "ALERT_", "HEALTHCHECK_")

sys.path.insert(0, str(ROOT))


FIGURES: list[str] = []


def figure(line: str) -> None:
    """Report a measured figure: printed in the test summary (timings are reported, never asserted)."""
    FIGURES.append(line)
    print(line)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001 (pytest hook)
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end: the daemon as a real process")
    config.addinivalue_line("markers", "docker: end-to-end: the real container stack (needs a Docker engine)")
    config.addinivalue_line("markers", "faults: the fault-injection suite (real processes, real PostgreSQL)")
    config.addinivalue_line("markers", "bench: the benchmark's quick run (bench/bench.py --quick)")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell must not leak settings into the tests."""
    for name in list(os.environ):
        if name.startswith(PROJECT_PREFIXES):
            monkeypatch.delenv(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1, controllable with pg_ctl (stop/start)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.socket_dir = base / "run"
        self.logfile = base / "postgres.log"
        self.port = free_port()
        self.user = None if os.geteuid() != 0 else "nobody"
        self.password = PG_PASSWORD

    def _as_owner(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in (self.base, self.socket_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.base.chmod(0o700)
        self._as_owner(
            [
                str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8",
            ]
        )  # fmt: skip
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\nfull_page_writes = off\n"  # fast, yet a commit survives pg_ctl stop -m immediate
                "max_connections = 200\n"
                # Abort a statement whose client died, as the fault tests kill clients mid-query.
                "client_connection_check_interval = 100ms\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
            )

    def start(self) -> None:
        self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w", "start"])

    def stop(self, mode: str = "fast") -> None:
        self._as_owner([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def connect(self, dbname: str = "postgres"):
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", password=self.password, dbname=dbname
        )
        conn.autocommit = True
        return conn

    def execute(self, statement: str) -> None:
        """One statement on the maintenance database (CREATE/DROP DATABASE cannot take parameters)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def env(self, dbname: str) -> dict[str, str]:
        return {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(self.port),
            "DB_NAME": dbname,
            "DB_USER": "postgres",
            "DB_PASSWORD": self.password,
        }


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL server binaries not found in {PG_BIN} (tests/run.sh installs them)")
    base = Path(tempfile.mkdtemp(prefix="scheduler-pg-"))
    server = PostgresServer(base)
    server.init()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server: PostgresServer) -> str:
    from daemon.settings.config import Settings
    from daemon.records.migrations import apply_migrations

    name = "scheduler_template"
    pg_server.execute(f'CREATE DATABASE "{name}"')
    settings = Settings.from_mapping({**pg_server.env(name), "SCRAPY_PROJECT_DIR": str(TEST_PROJECT)})
    apply_migrations(settings)
    return name


_db_numbers = itertools.count(1)


def _throwaway_database(pg_server: PostgresServer, prefix: str, template: str | None) -> Iterator[str]:
    name = f"{prefix}_{os.getpid()}_{next(_db_numbers)}"
    pg_server.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    yield name
    pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database(pg_server: PostgresServer, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    yield from _throwaway_database(pg_server, "test", template_db)


@pytest.fixture
def empty_database(pg_server: PostgresServer) -> Iterator[str]:
    """A database with no migrations applied."""
    yield from _throwaway_database(pg_server, "empty", None)


@pytest.fixture
def db(pg_server: PostgresServer, database: str):
    """An autocommit connection to the test's database, for arranging and checking rows."""
    conn = pg_server.connect(database)
    yield conn
    conn.close()


def send_html(handler: BaseHTTPRequestHandler, html: str) -> None:
    """Answer a test site's request with a 200 HTML page."""
    body = html.encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _Site(BaseHTTPRequestHandler):
    """Three pages of items, linked by a.next; /slow answers after a pause."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        page = 1
        if self.path.startswith("/page/"):
            try:
                page = int(self.path.rsplit("/", 1)[1])
            except ValueError:
                page = 99
        if page > 3:
            self.send_error(404)
            return
        items = "".join(f"<li class='item'>item {page}.{i}</li>" for i in range(1, 6))
        link = f"<a class='next' href='/page/{page + 1}'>next</a>" if page < 3 else ""
        send_html(self, f"<html><body><ul>{items}</ul>{link}</body></html>")

    def log_message(self, format: str, *args: object) -> None:  # keep the test output quiet
        pass


@pytest.fixture(scope="session")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def base_env(pg_server: PostgresServer, database: str, site: str, tmp_path: Path) -> dict[str, str]:
    """Settings for a daemon against the test's database and the local site, tuned for speed."""
    return {
        **pg_server.env(database),
        "SCRAPY_PROJECT_DIR": str(TEST_PROJECT),
        "SCHEDULER_STATE_DIR": str(tmp_path / "state"),
        "SCHEDULER_TICK_SECONDS": "0.5",
        "SCHEDULER_STOP_GRACE_SECONDS": "3",
        "LOG_FORMAT": "json",
        "TEST_SITE_URL": site,
        "SPIDER_SIDE_CHANNEL": str(tmp_path / "side-channel.log"),
    }


@pytest.fixture
def daemon_factory(tmp_path):
    """Start `python -m daemon` as a real process (the way the entrypoint ends); killed at teardown."""
    from tests.helpers import DaemonProcess

    made: list[DaemonProcess] = []

    def make(env: dict[str, str], *args: str) -> DaemonProcess:
        workdir = tmp_path / f"d{len(made)}"
        workdir.mkdir()
        d = DaemonProcess(env, workdir, args)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
