"""Settings: one frozen, typed object built from an explicit mapping.

`Settings.from_mapping(environ)` validates every variable, collects every problem and raises a
single `ConfigError` listing them all, one line each: the variable, the value (never a secret) and
what is allowed. Nothing here reads `os.environ` by itself, so tests pass plain dicts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon import statedir
from daemon.errors import ConfigError
from daemon.statedir import kind, why

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A spider name as Scrapy projects spell them; anything else never reaches a command line or SQL.
SPIDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")

# A host name: dot-separated labels of letters, digits and hyphens (RFC 1123), 1-63 characters,
# not starting or ending with a hyphen; `_` is allowed too, as Docker service names use it.
HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
# An IPv6 zone, as in fe80::1%eth0: an interface name.
IPV6_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# libpq connects to <directory>/.s.PGSQL.<port>, and a Unix socket path holds at most 107 bytes.
SOCKET_PATH_MAX_BYTES = 107
# PostgreSQL cuts longer names to NAMEDATALEN - 1 bytes without a word.
PG_NAME_MAX_BYTES = 63
PASSWORD_FILE_MAX_BYTES = 64 * 1024

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("auto", "json", "console")
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


class Secret:
    """A value that never shows itself in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "<SECRET>"

    __str__ = __repr__


@dataclasses.dataclass(frozen=True)
class Settings:
    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: Secret
    enabled: bool
    interval: timedelta
    timezone: ZoneInfo
    project_dir: Path
    spiders: tuple[str, ...]  # empty: every spider `scrapy list` reports
    jobs_file: Path | None  # None: the project's schedule.toml if it exists, else one job per spider
    concurrency: int
    spider_timeout: timedelta
    retry_delay: timedelta
    max_spider_errors: int
    stop_grace_seconds: float
    tick_seconds: float
    db_wait_timeout_seconds: float
    state_dir: Path
    history_retention_days: float
    alert_after: timedelta
    overdue_check_every: timedelta
    cache_cleanup_every: timedelta
    cache_max_mb: float
    jitter: timedelta
    http_host: str
    http_port: int
    alert_webhook_url: Secret
    healthcheck_ping_url: Secret
    log_level: str
    log_format: str

    @property
    def interval_hours(self) -> float:
        return self.interval.total_seconds() / 3600

    @property
    def heartbeat_file(self) -> Path:
        return self.state_dir / "heartbeat"

    def dsn_kwargs(self) -> dict[str, Any]:
        """Connection keywords for psycopg2; the only place the password is revealed."""
        kwargs: dict[str, Any] = {
            "host": self.db_host,
            "port": self.db_port,
            "dbname": self.db_name,
            "user": self.db_user,
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
        if self.db_password:
            kwargs["password"] = self.db_password.reveal()
        return kwargs

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        reader = _Reader(env)
        db_port = reader.integer("DB_PORT", 5432, low=1, high=65535)
        settings = cls(
            db_host=reader.db_host("DB_HOST", "localhost", db_port),
            db_port=db_port,
            db_name=reader.pg_name("DB_NAME", "jobsearchtools"),
            db_user=reader.pg_name("DB_USER", "postgres"),
            db_password=reader.password(),
            enabled=reader.boolean("SCHEDULER_ENABLED", True),
            interval=timedelta(hours=reader.number("SCHEDULER_INTERVAL_HOURS", 4, unit="hours")),
            timezone=reader.timezone("SCHEDULER_TIMEZONE", "UTC"),
            project_dir=reader.project_dir("SCRAPY_PROJECT_DIR", str(PROJECT_ROOT / "example_project")),
            spiders=reader.spiders("SCHEDULER_SPIDERS"),
            jobs_file=reader.jobs_file("SCHEDULER_JOBS_FILE"),
            concurrency=reader.integer("SCHEDULER_CONCURRENCY", 1, low=1, high=64),
            spider_timeout=timedelta(minutes=reader.number("SCHEDULER_SPIDER_TIMEOUT_MINUTES", 120, unit="minutes")),
            retry_delay=timedelta(minutes=reader.number("SCHEDULER_RETRY_DELAY_MINUTES", 15, unit="minutes")),
            max_spider_errors=reader.integer("SCHEDULER_MAX_SPIDER_ERRORS", 0, low=0, high=10**9),
            stop_grace_seconds=reader.number("SCHEDULER_STOP_GRACE_SECONDS", 20, unit="seconds", high=3600),
            tick_seconds=reader.number("SCHEDULER_TICK_SECONDS", 30, unit="seconds", high=300),
            db_wait_timeout_seconds=reader.number(
                "DB_WAIT_TIMEOUT_SECONDS", 60, unit="seconds", allow_zero=True, high=86400
            ),
            state_dir=reader.state_dir("SCHEDULER_STATE_DIR"),
            history_retention_days=reader.number("SCHEDULER_HISTORY_RETENTION_DAYS", 90, unit="days", high=36500),
            alert_after=timedelta(hours=reader.number("SCHEDULER_ALERT_AFTER_HOURS", 0, unit="hours", allow_zero=True)),
            overdue_check_every=timedelta(
                minutes=reader.number("SCHEDULER_OVERDUE_CHECK_MINUTES", 5, unit="minutes", high=1440)
            ),
            cache_cleanup_every=timedelta(
                hours=reader.number("CACHE_CLEANUP_INTERVAL_HOURS", 1, unit="hours", high=24 * 365)
            ),
            cache_max_mb=reader.number("CACHE_MAX_MB", 1024, unit="MiB", high=10**7),
            jitter=timedelta(
                minutes=reader.number("SCHEDULER_JITTER_MINUTES", 0, unit="minutes", allow_zero=True, high=1440)
            ),
            http_host=reader.host("SCHEDULER_HTTP_HOST", "127.0.0.1"),
            http_port=reader.integer("SCHEDULER_HTTP_PORT", 0, low=0, high=65535),
            alert_webhook_url=reader.url("ALERT_WEBHOOK_URL"),
            # Pings append /start and /fail to it: a query or a fragment would swallow them.
            healthcheck_ping_url=reader.url("HEALTHCHECK_PING_URL", query_allowed=False),
            log_level=reader.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            log_format=reader.choice("LOG_FORMAT", "auto", LOG_FORMATS),
        )
        reader.max_instances()
        if settings.history_retention_days * 24 < 2 * settings.interval_hours:
            # Retention shorter than the history the decision reads would delete a spider's last
            # success and run it again and again: keep at least two intervals. The line names the
            # setting that was given first (the other may be a default).
            retention = ("SCHEDULER_HISTORY_RETENTION_DAYS", f"{settings.history_retention_days:g}")
            interval = ("SCHEDULER_INTERVAL_HOURS", f"{settings.interval_hours:g}")
            first, other = (retention, interval) if env.get(retention[0]) else (interval, retention)
            reader.problems.append(
                f"{first[0]}={_show(first[1])} is not allowed with {other[0]}={_show(other[1])}: the history "
                f"kept must cover at least two intervals ({2 * settings.interval_hours / 24:g} days or more)"
            )
        if reader.problems:
            raise ConfigError(reader.problems)
        if not settings.alert_after:
            # Default: twice the interval (0 or unset means "use the default").
            settings = dataclasses.replace(settings, alert_after=2 * settings.interval)
        return settings


class _Reader:
    """Reads one variable at a time, remembering every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def _bad(self, name: str, value: str, allowed: str) -> None:
        self.problems.append(f"{name}={_show(value)} is not allowed: {allowed}")

    def _parse(self, name: str, default: Any, parse: Callable[[str], Any], allowed: str) -> Any:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except (ValueError, OverflowError):
            self._bad(name, raw, allowed)
            return default

    def host(self, name: str, default: str) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if not _is_host(raw):
            self._bad(name, raw, f"{HOST_ALLOWED} or an IP address (1.2.3.4, ::1, without [ ] or a port)")
            return default
        return raw

    def db_host(self, name: str, default: str, port: int) -> str:
        """What libpq's `host` takes: a host name, an IP address, or a Unix-socket directory."""
        raw = self._raw(name)
        if raw is None:
            return default
        allowed = (
            f"{HOST_ALLOWED}, an IP address (1.2.3.4, ::1, without [ ] or a port), or the absolute path of "
            "a Unix-socket directory"
        )
        if raw.startswith("/"):
            socket = f"{raw.rstrip('/')}/.s.PGSQL.{port}"
            if not raw.isprintable():
                self._bad(name, raw, allowed + " (printable characters only)")
            elif len(socket.encode()) > SOCKET_PATH_MAX_BYTES:
                limit = f"the socket path, {len(socket.encode())} bytes, must fit in {SOCKET_PATH_MAX_BYTES}"
                self._bad(name, raw, f"{allowed} ({limit})")
            else:
                return raw
            return default
        if not _is_host(raw):
            self._bad(name, raw, allowed)
            return default
        return raw

    def pg_name(self, name: str, default: str) -> str:
        """A database or role name: PostgreSQL would silently cut a longer one, and connect elsewhere."""
        raw = self._raw(name)
        if raw is None:
            return default
        if not raw.isprintable() or len(raw.encode()) > PG_NAME_MAX_BYTES:
            self._bad(
                name,
                raw,
                f"a PostgreSQL name of at most {PG_NAME_MAX_BYTES} bytes in UTF-8 (a longer one is cut short), "
                "printable characters only (no control or format characters, no space but the plain one)",
            )
            return default
        return raw

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        allowed = f"a whole number from {low} to {high}"

        def parse(raw: str) -> int:
            if not re.fullmatch(r"[+-]?\d{1,12}", raw):
                raise ValueError
            value = int(raw)
            if not low <= value <= high:
                raise ValueError
            return value

        return self._parse(name, default, parse, allowed)

    def number(
        self,
        name: str,
        default: float,
        *,
        unit: str,
        allow_zero: bool = False,
        high: float = 24 * 365 * 100,
    ) -> float:
        bound = "0 or more" if allow_zero else "greater than 0"
        allowed = f"a number of {unit} {bound} and at most {high:g} (decimals allowed, e.g. 0.5)"

        def parse(raw: str) -> float:
            if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", raw):
                raise ValueError
            value = float(raw)
            if not math.isfinite(value) or value > high or value < 0 or (value == 0 and not allow_zero):
                raise ValueError
            return value

        return self._parse(name, default, parse, allowed)

    def boolean(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            word = raw.lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise ValueError

        return self._parse(name, default, parse, "true or false (also 1/0, yes/no, on/off)")

    def choice(self, name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
        def parse(raw: str) -> str:
            value = raw.upper() if upper else raw.lower()
            if value not in choices:
                raise ValueError
            return value

        return self._parse(name, default, parse, "one of " + ", ".join(choices))

    def timezone(self, name: str, default: str) -> ZoneInfo:
        def parse(raw: str) -> ZoneInfo:
            try:
                return ZoneInfo(raw)
            except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: odd path-like names
                raise ValueError from exc

        return self._parse(name, ZoneInfo(default), parse, "an IANA time zone name such as UTC or America/Bogota")

    def path(self, name: str, default: str) -> Path:
        raw = self._raw(name) or default
        if not raw.isprintable():
            self._bad(name, raw, "a file-system path of printable characters")
            return Path(default)
        return Path(raw)

    def state_dir(self, name: str) -> Path:
        """A directory of this user's alone that the daemon can write, or can create: checked without
        creating anything (the daemon creates it, mode 0700). The default is private to the user."""
        raw = self._raw(name) or str(statedir.default_directory(self.env))
        allowed = "an absolute path to a directory the daemon can write, or can create"
        if not raw.isprintable():
            self._bad(name, raw, allowed + " (printable characters only)")
        elif not raw.startswith("/"):
            self._bad(name, raw, allowed + " (this path is relative)")
        else:
            reason = statedir.directory_problem(Path(raw))
            if reason is None:
                return Path(raw)
            self._bad(name, raw, f"{allowed} ({reason})")
        return Path(raw)

    def project_dir(self, name: str, default: str) -> Path:
        path = self.path(name, default)
        if not (path / "scrapy.cfg").is_file():
            self._bad(name, str(path), "a directory holding a Scrapy project (with a scrapy.cfg)")
        return path

    def jobs_file(self, name: str) -> Path | None:
        """An absolute path (whether it can be read and is valid is the jobs file's to say, at start)."""
        raw = self._raw(name)
        if raw is None:
            return None
        if not raw.isprintable() or not raw.startswith("/"):
            self._bad(name, raw, "the absolute path of a TOML jobs file (printable characters only)")
            return None
        return Path(raw)

    def spiders(self, name: str) -> tuple[str, ...]:
        raw = self._raw(name)
        if raw is None:
            return ()
        names = [part.strip() for part in raw.split(",") if part.strip()]
        allowed = (
            "a comma-separated list of distinct spider names "
            "(letters, digits, _ . -, starting with a letter or _, at most 100 characters)"
        )
        if not names or any(not SPIDER_NAME.fullmatch(n) for n in names) or len(set(names)) != len(names):
            self._bad(name, raw, allowed)
            return ()
        return tuple(names)

    def password(self) -> Secret:
        direct = self.env.get("DB_PASSWORD")
        file_name = self._raw("DB_PASSWORD_FILE")
        if direct and file_name:
            self.problems.append(
                f"DB_PASSWORD and DB_PASSWORD_FILE={_show(file_name)} are both set: set only one of them"
            )
            return Secret("")
        if file_name:
            return self._password_file("DB_PASSWORD_FILE", file_name)
        if direct and _has_control_characters(direct):
            # Never shown, not even in part: a stray carriage return or newline (an edited .env)
            # would fail every connection, and undecodable bytes would fail it with an encoding error.
            self.problems.append(
                "DB_PASSWORD=<hidden> is not allowed: a password without control characters (a stray "
                "carriage return or newline?) or bytes that are not UTF-8"
            )
            return Secret("")
        return Secret(direct or "")

    def _password_file(self, name: str, file_name: str) -> Secret:
        """The first line of a regular UTF-8 file; a problem names the file, never its content."""
        allowed = (
            f"a regular, readable UTF-8 file of at most {PASSWORD_FILE_MAX_BYTES // 1024} KiB "
            "whose first line is the password"
        )
        if not file_name.isprintable():
            self._bad(name, file_name, allowed + " (the path holds control characters)")
            return Secret("")
        reason, line = _read_password_file(Path(file_name))
        if reason is not None:
            self._bad(name, file_name, f"{allowed} ({reason})")
            return Secret("")
        return Secret(line)

    def url(self, name: str, *, query_allowed: bool = True) -> Secret:
        """An http(s) URL; it may hold a token, so an error shows at most its scheme, host and port."""
        raw = self._raw(name)
        if raw is None:
            return Secret("")
        allowed = (
            "an http:// or https:// URL with a host name or IP address, an optional port from 1 to 65535, "
            "printable ASCII without spaces (percent-encode the rest), and no user:password@"
        )
        if not query_allowed:
            allowed += ", ?query or #fragment (/start and /fail are appended to it)"
        shown, fine = "<hidden>", False
        try:
            parts = urlsplit(raw)
            host, port = parts.hostname, parts.port
        except ValueError:  # e.g. a port that is no number, or a broken [IPv6] address
            pass
        else:
            if parts.scheme and host and _is_host(host) and parts.scheme.isalnum():
                where = f"[{host}]" if ":" in host else host
                shown = repr(f"{parts.scheme}://{where}" + (f":{port}" if port is not None else "") + "/...")
            fine = (
                parts.scheme in ("http", "https")
                and bool(host)
                and _is_host(host)  # type: ignore[arg-type]
                and port != 0
                and parts.username is None
                and all(33 <= ord(c) <= 126 for c in raw)
                and (query_allowed or not (parts.query or parts.fragment or raw.endswith(("?", "#"))))
            )
        if not fine:
            self.problems.append(f"{name}={shown} is not allowed: {allowed}")
            return Secret("")
        return Secret(raw)

    def max_instances(self) -> None:
        raw = self._raw("SCHEDULER_MAX_INSTANCES")
        if raw is not None and raw != "1":
            self._bad(
                "SCHEDULER_MAX_INSTANCES",
                raw,
                "only 1 (the scheduler never runs two spider runs at once)",
            )


HOST_ALLOWED = "a host name (letters, digits, - and _ in dot-separated labels of at most 63 characters)"


def _is_ip(value: str) -> bool:
    address, zone = value.split("%", 1) if "%" in value else (value, None)
    if zone is not None and not (":" in address and IPV6_ZONE.fullmatch(zone)):
        return False
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _is_host(value: str) -> bool:
    """An IP address or a host name."""
    return _is_ip(value) or _is_host_name(value)


def _is_host_name(value: str) -> bool:
    name = value[:-1] if value.endswith(".") else value  # a fully qualified name may end with a dot
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    # RFC 1123 2.1: a name never looks like a (bad) dotted-decimal address such as 256.1.1.1 or 1.2.3.
    return all(HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _has_control_characters(value: str) -> bool:
    """Control characters, or surrogates (what bytes that are not UTF-8 become in os.environ)."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in value)


def _read_password_file(path: Path) -> tuple[str | None, str]:
    """(why the file cannot hold the password, or None; the password). Never opens what is not a
    regular file: a FIFO would block the start forever, and opening a device may do something."""
    try:
        if not stat.S_ISREG(mode := os.stat(path).st_mode):
            return f"it is {kind(mode)}", ""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(mode := os.fstat(fh.fileno()).st_mode):  # replaced since the stat
                return f"it is {kind(mode)}", ""
            data = fh.read(PASSWORD_FILE_MAX_BYTES + 1)
    except OSError as exc:
        return why(exc), ""
    if len(data) > PASSWORD_FILE_MAX_BYTES:
        return f"it holds more than {PASSWORD_FILE_MAX_BYTES // 1024} KiB", ""
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not part of the password
    except UnicodeDecodeError:
        return "it is not UTF-8 text", ""
    # Secret files usually end with one newline; the password itself is the first line.
    line = text.split("\n", 1)[0].removesuffix("\r")
    if not line.strip():
        return "its first line is empty", ""
    if _has_control_characters(line):
        return "its first line holds control characters", ""
    return None, line


def _show(value: str) -> str:
    """A value as it may appear in an error: quoted, shortened, control characters escaped."""
    shown = value if len(value) <= 80 else value[:77] + "..."
    return repr(shown)
