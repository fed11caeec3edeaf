"""Settings: one frozen, typed object built from an explicit mapping.

`Settings.from_mapping(environ)` validates every variable, collects every problem and raises a
single `ConfigError` listing them all, one line each: the variable, the value (never a secret) and
what is allowed. Nothing here reads `os.environ` by itself, so tests pass plain dicts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A spider name as Scrapy projects spell them; anything else never reaches a command line or SQL.
SPIDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")

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
        settings = cls(
            db_host=reader.text("DB_HOST", "localhost"),
            db_port=reader.integer("DB_PORT", 5432, low=1, high=65535),
            db_name=reader.text("DB_NAME", "jobsearchtools"),
            db_user=reader.text("DB_USER", "postgres"),
            db_password=reader.password(),
            enabled=reader.boolean("SCHEDULER_ENABLED", True),
            interval=timedelta(hours=reader.number("SCHEDULER_INTERVAL_HOURS", 4, unit="hours")),
            timezone=reader.timezone("SCHEDULER_TIMEZONE", "UTC"),
            project_dir=reader.project_dir("SCRAPY_PROJECT_DIR", str(PROJECT_ROOT / "example_project")),
            spiders=reader.spiders("SCHEDULER_SPIDERS"),
            concurrency=reader.integer("SCHEDULER_CONCURRENCY", 1, low=1, high=64),
            spider_timeout=timedelta(minutes=reader.number("SCHEDULER_SPIDER_TIMEOUT_MINUTES", 120, unit="minutes")),
            retry_delay=timedelta(minutes=reader.number("SCHEDULER_RETRY_DELAY_MINUTES", 15, unit="minutes")),
            max_spider_errors=reader.integer("SCHEDULER_MAX_SPIDER_ERRORS", 0, low=0, high=10**9),
            stop_grace_seconds=reader.number("SCHEDULER_STOP_GRACE_SECONDS", 20, unit="seconds", high=3600),
            tick_seconds=reader.number("SCHEDULER_TICK_SECONDS", 30, unit="seconds", high=300),
            db_wait_timeout_seconds=reader.number(
                "DB_WAIT_TIMEOUT_SECONDS", 60, unit="seconds", allow_zero=True, high=86400
            ),
            state_dir=reader.path("SCHEDULER_STATE_DIR", "/tmp/persistent-scheduler"),
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
            http_host=reader.text("SCHEDULER_HTTP_HOST", "127.0.0.1"),
            http_port=reader.integer("SCHEDULER_HTTP_PORT", 0, low=0, high=65535),
            alert_webhook_url=reader.url("ALERT_WEBHOOK_URL"),
            healthcheck_ping_url=reader.url("HEALTHCHECK_PING_URL"),
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

    def text(self, name: str, default: str) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if any(ord(c) < 32 for c in raw):
            self._bad(name, raw, "printable text without control characters")
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
        if "\x00" in raw or any(ord(c) < 32 for c in raw):
            self._bad(name, raw, "a file-system path")
            return Path(default)
        return Path(raw)

    def project_dir(self, name: str, default: str) -> Path:
        path = self.path(name, default)
        if not (path / "scrapy.cfg").is_file():
            self._bad(name, str(path), "a directory holding a Scrapy project (with a scrapy.cfg)")
        return path

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
            try:
                content = Path(file_name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                self._bad("DB_PASSWORD_FILE", file_name, f"a readable file holding the password ({reason})")
                return Secret("")
            # Secret files usually end with one newline; the password itself is the first line.
            return Secret(content.splitlines()[0] if content else "")
        return Secret(direct or "")

    def url(self, name: str) -> Secret:
        """An http(s) URL; it may hold a token, so an error shows only its scheme and host."""
        raw = self._raw(name)
        if raw is None:
            return Secret("")
        try:
            parts = urlsplit(raw)
            hostname = parts.hostname
        except ValueError:
            self.problems.append(f"{name}=<hidden> is not allowed: an http:// or https:// URL with a host")
            return Secret("")
        if parts.scheme not in ("http", "https") or not hostname or any(c.isspace() for c in raw):
            shown = f"{parts.scheme}://{hostname}/..." if parts.scheme and hostname else "<hidden>"
            self.problems.append(f"{name}={shown!r} is not allowed: an http:// or https:// URL with a host")
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


def _show(value: str) -> str:
    """A value as it may appear in an error: quoted, shortened, control characters escaped."""
    shown = value if len(value) <= 80 else value[:77] + "..."
    return repr(shown)
