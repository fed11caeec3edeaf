"""Settings: one frozen, typed object built from an explicit mapping.

Each variable is declared once, as a field of `Settings`: its name, parser (with the text of what
it allows), default and meaning. `Settings.from_mapping(environ)` reads them in three steps: the
pure parsers (daemon/settings/parsers.py, daemon/settings/addresses.py), the checks that take two values together, and the file
probes (daemon/settings/probes.py: the state directory, the password file, the project). Every
problem is collected and raised at once in one `ConfigError`, one line each: the variable, the
value (never a secret) and what is allowed. Nothing here reads `os.environ` by itself, so tests
pass plain dicts. README's settings table is made from the same declarations (`settings_table()`,
or `python -m daemon.settings.config`), and a test keeps them equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from daemon.settings import addresses as a, checks, notify_config, parsers as p
from daemon.system import statedir
from daemon.system.errors import ConfigError
from daemon.settings.secret import Secret

__all__ = ["PROJECT_ROOT", "Settings", "Variable", "settings_table"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # daemon/settings/config.py -> the project
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("auto", "json", "console")
ENGINES = ("local", "scrapyd")

Default = str | Callable[[Mapping[str, str]], str] | None


@dataclasses.dataclass(frozen=True)
class Variable:
    """One environment variable: all that the settings, their errors and README's table say of it."""

    name: str
    parser: p.Parser
    default: Default  # text, parsed as if it were given; a function of the mapping; None: the parser's unset
    meaning: str  # README's Meaning column
    shown_default: str | None = None  # README's Default column, when not the default text itself
    note: str | None = None  # added to what is allowed in README's Allowed column
    field: str = ""  # the field of Settings it fills

    def text(self, env: Mapping[str, str]) -> str | None:
        """The value given (stripped, unless the parser takes it as it is), else the default text."""
        value = env.get(self.name)
        given = value if not self.parser.strip else (value or "").strip() or None
        if given:
            return given
        return self.default(env) if callable(self.default) else self.default


def variable(name: str, parser: p.Parser, default: Default = None, *, meaning: str,
             shown_default: str | None = None, note: str | None = None) -> Any:  # fmt: skip
    """A field of Settings, filled from the variable `name`."""
    return dataclasses.field(metadata={"variable": Variable(name, parser, default, meaning, shown_default, note)})


@dataclasses.dataclass(frozen=True)
class Settings:
    # PostgreSQL. DB_PORT comes first: a Unix-socket DB_HOST is checked against it.
    db_port: int = variable("DB_PORT", p.integer(1, 65535), "5432", meaning="PostgreSQL port")
    db_host: str = variable(
        "DB_HOST", a.db_host(), "localhost", meaning="PostgreSQL host",
        shown_default="`localhost` (`.env.example`: `postgres`)",
        note="`_` as Docker service names use it, never all-digit like `1.2.3`; `fe80::1%eth0` too; a socket "
             "directory as libpq takes it (`<dir>/.s.PGSQL.<port>` must fit in 107 bytes; it may appear later)",
    )  # fmt: skip
    db_name: str = variable("DB_NAME", p.pg_name(), "jobsearchtools", meaning="database",
                            note="PostgreSQL would cut a longer name silently")  # fmt: skip
    db_user: str = variable("DB_USER", p.pg_name(), "postgres", meaning="user")
    db_password: Secret = variable("DB_PASSWORD", p.password(), meaning="password (never logged or shown)",
                                   shown_default="empty", note="an error says `<hidden>`")  # fmt: skip
    db_password_file: Path | None = variable(
        "DB_PASSWORD_FILE", p.password_file(),
        meaning="file holding the password, its first line (e.g. a compose secret); not together with `DB_PASSWORD`",
        note="symlinks followed; never a directory, FIFO, socket or device, which are not even opened; a byte-order "
             "mark and a `\\r` ending the line are dropped; an error names the file and why, never its content",
    )  # fmt: skip
    db_wait_timeout_seconds: float = variable(
        "DB_WAIT_TIMEOUT_SECONDS", p.number("seconds", allow_zero=True, high=86400), "60",
        meaning="how long start-up waits for PostgreSQL (then exit code 3)",
    )  # fmt: skip
    # What runs, and how often.
    enabled: bool = variable("SCHEDULER_ENABLED", p.boolean(), "true",
                             meaning="`false`: stay up, log that scheduling is disabled, run nothing")  # fmt: skip
    interval: timedelta = variable("SCHEDULER_INTERVAL_HOURS", p.duration("hours"), "4",
                                   meaning="every spider succeeds at least this often",
                                   note="`0.001` = 3.6 s")  # fmt: skip
    timezone: ZoneInfo = variable("SCHEDULER_TIMEZONE", p.timezone(), "UTC",
                                  meaning="how times are shown in logs; the time zone of a jobs file's "
                                          "`cron` and `window` where no `timezone` is given")  # fmt: skip
    max_instances: int = variable("SCHEDULER_MAX_INSTANCES", p.only("1"), "1",
                                  meaning="runs never overlap; anything else is rejected")  # fmt: skip
    project_dir: Path = variable("SCRAPY_PROJECT_DIR", p.project_dir(), str(PROJECT_ROOT / "example_project"),
                                 meaning="the Scrapy project",
                                 shown_default="`example_project/` (container: `/project`)")  # fmt: skip
    spiders: tuple[str, ...] = variable(
        "SCHEDULER_SPIDERS", p.spiders(), shown_default="empty = all",
        meaning="subset to keep; an unknown name is a start-up error",
    )  # fmt: skip
    jobs_file: Path | None = variable(
        "SCHEDULER_JOBS_FILE",
        p.absolute_path("the absolute path of a TOML jobs file", relative="this path is relative"),
        shown_default="empty = the project's `schedule.toml` if it exists",
        meaning="the jobs to run (see [Jobs](#jobs)); without a file, every spider (or those of `SCHEDULER_SPIDERS`) "
                "is one job with the settings above",
    )  # fmt: skip
    concurrency: int = variable("SCHEDULER_CONCURRENCY", p.integer(1, 64), "1", meaning="crawls at once")
    crawl_start: str = variable(
        "SCHEDULER_CRAWL_START", p.choice("cold", "warm", "warm-project"), "warm",
        meaning="how a local crawl starts: `warm` forks it from a parent that imported Scrapy once (about six times "
                "cheaper; no project code in that parent); `warm-project`: that parent also imports the project's "
                "settings and spiders (for projects slow to import); `cold`: a fresh `python -m scrapy` each time",
    )  # fmt: skip
    warm_parent_crawls: int = variable(
        "SCHEDULER_WARM_PARENT_CRAWLS", p.integer(1, 10**6), "100",
        meaning="crawls one warm parent forks before a fresh parent takes over; its crawls share its string hash "
                "seed: `1` gives each crawl a seed of its own, as cold does, at a cold start's CPU (paid ahead)",
    )  # fmt: skip
    spider_timeout: timedelta = variable("SCHEDULER_SPIDER_TIMEOUT_MINUTES", p.duration("minutes"), "120",
                                         meaning="per-crawl time limit")  # fmt: skip
    retry_delay: timedelta = variable(
        "SCHEDULER_RETRY_DELAY_MINUTES", p.duration("minutes"), "15",
        meaning="first retry delay; doubles per failure, capped at the interval",
    )  # fmt: skip
    max_spider_errors: int = variable("SCHEDULER_MAX_SPIDER_ERRORS", p.integer(0, 10**9), "0",
                                      meaning="more logged errors than this fails a crawl")  # fmt: skip
    stop_grace_seconds: float = variable(
        "SCHEDULER_STOP_GRACE_SECONDS", p.number("seconds", high=3600), "20",
        meaning="grace between SIGTERM and SIGKILL (shutdown and timeout)",
    )  # fmt: skip
    tick_seconds: float = variable("SCHEDULER_TICK_SECONDS", p.number("seconds", high=300), "30",
                                   meaning="longest single wait; the heartbeat period")  # fmt: skip
    state_dir: Path = variable(
        "SCHEDULER_STATE_DIR",
        p.absolute_path("an absolute path to a directory the daemon can write, or can create",
                        relative="this path is relative"),
        lambda env: str(statedir.default_directory(env)),
        shown_default="`$XDG_STATE_HOME/persistent-scheduler`, else `~/.local/state/persistent-scheduler` "
                      "(container: `/var/lib/persistent-scheduler`, a volume)",
        note="this user's, and writable by nobody else (another owner, or group or others allowed to write, is "
             "refused, naming owner and mode; the daemon creates it with mode 0700); checked at start without "
             "creating anything, for every command (`healthcheck` and `status` too)",
        meaning="heartbeat file, crawl stats, and the journal of runs made while PostgreSQL was unreachable (see "
                "[Security](#the-state-directory))",
    )  # fmt: skip
    # Housekeeping and alerts.
    history_retention_days: float = variable(
        "SCHEDULER_HISTORY_RETENTION_DAYS", p.number("days", high=36500), "90", note="and at least two intervals",
        meaning="the daily `history_retention` job deletes older runs (and their spider rows)",
    )  # fmt: skip
    alert_after: timedelta = variable(
        "SCHEDULER_ALERT_AFTER_HOURS", p.duration("hours", allow_zero=True), "0",
        shown_default="twice the interval (`0` = default)",
        meaning="`overdue_check` warns about a spider without a success for longer",
    )  # fmt: skip
    overdue_check_every: timedelta = variable("SCHEDULER_OVERDUE_CHECK_MINUTES", p.duration("minutes", high=1440),
                                              "5", meaning="how often `overdue_check` runs")  # fmt: skip
    http_port: int = variable(
        "SCHEDULER_HTTP_PORT", p.integer(0, 65535), "0", shown_default="`0` (off; compose: `9464`)",
        meaning="the HTTP endpoint; compose publishes container port 9464 on "
                "`127.0.0.1:${SCHEDULER_HTTP_HOST_PORT:-9464}`",
    )  # fmt: skip
    http_host: str = variable(
        "SCHEDULER_HTTP_HOST", a.host(), "127.0.0.1", meaning="where the endpoint listens",
        shown_default="`127.0.0.1` (compose: `0.0.0.0`)", note="`0.0.0.0` and `::` too",
    )  # fmt: skip
    http_user: str | None = variable(
        "SCHEDULER_HTTP_USER", p.user_name(), shown_default="unset (no auth)",
        meaning="with `SCHEDULER_HTTP_PASSWORD` (or `_FILE`): the page and the API ask for this user (basic auth); "
                "`/healthz` and `/metrics` stay open for probes",
    )  # fmt: skip
    http_password: Secret = variable("SCHEDULER_HTTP_PASSWORD", p.password(), shown_default="unset",
                                     meaning="the page's password (never logged or shown)",
                                     note="an error says `<hidden>`")  # fmt: skip
    http_password_file: Path | None = variable(
        "SCHEDULER_HTTP_PASSWORD_FILE", p.password_file(),
        meaning="file holding the page's password, its first line; not together with `SCHEDULER_HTTP_PASSWORD`",
    )  # fmt: skip
    http_allowed_hosts: tuple[str, ...] = variable(
        "SCHEDULER_HTTP_ALLOWED_HOSTS", a.host_list(), shown_default="empty (loopback names, the bound address)",
        meaning="more `Host` headers the page answers (a name behind a reverse proxy); any other is refused "
                "(DNS rebinding)",
    )  # fmt: skip
    # The endpoint's limits (issue 25; daemon/web/httpserver.py): what any client can take is bounded.
    http_threads: int = variable("SCHEDULER_HTTP_THREADS", p.integer(1, 64), "4",
                                 meaning="threads answering the page (/healthz and /metrics have one more of their "
                                         "own); 32 more page requests may wait, then 503")  # fmt: skip
    http_max_connections: int = variable(
        "SCHEDULER_HTTP_MAX_CONNECTIONS", p.integer(8, 10000), "256",
        meaning="open connections at most; at the limit a new one replaces the one waiting longest without a "
                "whole request, or is closed at once",
    )  # fmt: skip
    http_max_connections_per_address: int = variable(
        "SCHEDULER_HTTP_MAX_CONNECTIONS_PER_ADDRESS", p.integer(1, 10000), "32",
        meaning="open connections from one client address at most (more are closed at once); behind a proxy "
                "every client has the proxy's address",
    )  # fmt: skip
    http_header_timeout_seconds: float = variable(
        "SCHEDULER_HTTP_HEADER_TIMEOUT_SECONDS", p.number("seconds", high=300), "5",
        meaning="a request's line and headers must arrive within this (from the connection or the end of the "
                "previous answer), else it is cut",
    )  # fmt: skip
    http_idle_timeout_seconds: float = variable(
        "SCHEDULER_HTTP_IDLE_TIMEOUT_SECONDS", p.number("seconds", high=3600), "10",
        meaning="a request's body, the writing of an answer, and an idle kept-alive connection are each cut "
                "after this",
    )  # fmt: skip
    http_readonly: bool = variable(
        "SCHEDULER_HTTP_READONLY", p.boolean(), "false",
        meaning="`true`: the page and its API stay read-only even with basic auth (no run now, pause, resume or "
                "cancel from the web)",
    )  # fmt: skip
    jitter: timedelta = variable(
        "SCHEDULER_JITTER_MINUTES", p.duration("minutes", allow_zero=True, high=1440), "0",
        meaning="a random delay (fixed per due time) added to each regular run; never to a catch-up, a first run, a "
                "retry or run-now",
    )  # fmt: skip
    cache_cleanup_every: timedelta = variable("CACHE_CLEANUP_INTERVAL_HOURS", p.duration("hours", high=24 * 365),
                                              "1", meaning="how often `cache_cleanup` runs")  # fmt: skip
    cache_max_mb: float = variable(
        "CACHE_MAX_MB", p.number("MiB", high=10**7), "1024",
        meaning="`cache_cleanup` warns when the HTTP cache holds more than 90 % of this",
    )  # fmt: skip
    alert_webhook_url: Secret = variable(
        "ALERT_WEBHOOK_URL", a.url(), shown_default="unset", note="an error shows at most scheme, host and port",
        meaning="each alert is POSTed as JSON with a `text` field (Slack/Mattermost incoming webhooks show it); "
                "never logged",
    )  # fmt: skip
    notify_config: Any = variable(
        "SCHEDULER_NOTIFY_CONFIG", dataclasses.replace(p.password_file(), allowed=notify_config.ALLOWED),
        shown_default="unset", note="read at start, again on `SIGHUP` or a change (a bad new file keeps the last good one); an error "
             "names the file and why, never its content",
        meaning="the alert channels: an Apprise configuration file (Slack, Telegram, e-mail, ntfy, Discord, JSON "
                "webhooks, ...; tags route a job's alerts, see [Alerts](#alerts)); its URLs are never logged or shown",
    )  # fmt: skip
    public_url: Secret = variable(
        "SCHEDULER_PUBLIC_URL", a.url(query_allowed=False), shown_default="unset",
        meaning="where people reach the page (e.g. `https://scheduler.example.com`, behind a proxy): each alert "
                "about a job ends with the link to the job's page there",
    )  # fmt: skip
    # Pings append /start and /fail to it: a query or a fragment would swallow them.
    healthcheck_ping_url: Secret = variable(
        "HEALTHCHECK_PING_URL", a.url(query_allowed=False), shown_default="unset",
        meaning="healthchecks.io-style pings: `/start` when a run starts, the bare URL on success, `/fail` on "
                "failure",
    )  # fmt: skip
    # Where crawls run (README: "Beyond one machine").
    engine: str = variable(
        "SCHEDULER_ENGINE", p.choice(*ENGINES), "local",
        meaning="`local`: each crawl is a `scrapy crawl` process here; `scrapyd`: crawls are dispatched to the "
                "Scrapyd nodes of `SCRAPYD_NODES`",
    )  # fmt: skip
    scrapyd_nodes: tuple[Any, ...] = variable(
        "SCRAPYD_NODES", a.scrapyd_nodes(), shown_default="unset", note="required with `SCHEDULER_ENGINE=scrapyd`; "
        "an error shows at most scheme, host and port",
        meaning="the Scrapyd nodes, e.g. `http://scrapyd-1:6800=2,http://scrapyd-2:6800`: `=N` is how many crawls "
                "that node runs at once (at most its `max_proc`); with scrapyd these slots, not "
                "`SCHEDULER_CONCURRENCY`, say how many crawls run at once",
    )  # fmt: skip
    scrapyd_node_slots: int = variable("SCRAPYD_NODE_SLOTS", p.integer(1, 1000), "1",
                                       meaning="the slots of a node listed without `=N`")  # fmt: skip
    scrapyd_username: str | None = variable(
        "SCRAPYD_USERNAME", p.user_name(), shown_default="unset (no auth)",
        meaning="with `SCRAPYD_PASSWORD` (or `_FILE`): the nodes' basic auth (Scrapyd's `username`/`password`)",
    )  # fmt: skip
    scrapyd_password: Secret = variable("SCRAPYD_PASSWORD", p.password(), shown_default="unset",
                                        meaning="the nodes' password (never logged or shown)",
                                        note="an error says `<hidden>`")  # fmt: skip
    scrapyd_password_file: Path | None = variable(
        "SCRAPYD_PASSWORD_FILE", p.password_file(),
        meaning="file holding the nodes' password, its first line; not together with `SCRAPYD_PASSWORD`",
    )  # fmt: skip
    scrapyd_project: str = variable("SCRAPYD_PROJECT", p.project_name(), "default",
                                    meaning="the Scrapyd project the spiders are in (`default`: the project a node "
                                            "was started inside)")  # fmt: skip
    scrapyd_lost_after_seconds: float = variable(
        "SCRAPYD_LOST_AFTER_SECONDS", p.number("seconds", high=86400), "300",
        meaning="a node that does not answer, or a crawl it forgot whose log does not grow, for this long: the crawl "
                "is `lost` and runs again elsewhere (keep it above a minute: Scrapy logs once a minute)",
    )  # fmt: skip
    log_level: str = variable("LOG_LEVEL", p.choice(*LOG_LEVELS, upper=True), "INFO",
                              meaning="how much the daemon logs")  # fmt: skip
    log_format: str = variable("LOG_FORMAT", p.choice(*LOG_FORMATS), "auto",
                               meaning="`auto`: JSON unless stdout is a terminal")  # fmt: skip

    @property
    def interval_hours(self) -> float:
        return self.interval.total_seconds() / 3600

    @property
    def heartbeat_file(self) -> Path:
        return self.state_dir / "heartbeat"

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        values, texts, problems = _parse(env)
        late = checks.together(values, texts, env, problems, _BY_NAME)
        checks.probe(values, texts, problems, _BY_NAME)
        checks.auth(texts, env, problems)
        checks.engine(values, problems, _BY_NAME)
        if problems or late:
            raise ConfigError([problems[v.name] for v in VARIABLES if v.name in problems] + late)
        if not values["alert_after"]:
            # Default: twice the interval (0 or unset means "use the default").
            values["alert_after"] = 2 * values["interval"]
        return cls(**values)


VARIABLES: tuple[Variable, ...] = tuple(
    dataclasses.replace(f.metadata["variable"], field=f.name) for f in dataclasses.fields(Settings)
)
_BY_NAME = {v.name: v for v in VARIABLES}


def _parse(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Each variable through its pure parser: (field -> value, name -> text read, name -> problem).
    A value refused falls back to its default, so the checks below still have one."""
    values: dict[str, Any] = {}
    texts: dict[str, str] = {}
    problems: dict[str, str] = {}
    for var in VARIABLES:
        text = var.text(env)
        if text is None:
            values[var.field] = var.parser.unset
            continue
        texts[var.name] = text
        try:
            values[var.field] = var.parser.parse(text)
        except (ValueError, OverflowError) as exc:
            problems[var.name] = var.parser.problem(var.name, text, getattr(exc, "detail", None))
            values[var.field] = _fallback(var, env)
    return values, texts, problems


def _fallback(var: Variable, env: Mapping[str, str]) -> Any:
    default = var.default(env) if callable(var.default) else var.default
    try:
        return var.parser.unset if default is None else var.parser.parse(default)
    except ValueError:
        return var.parser.unset


def settings_table() -> str:
    """README's settings table, one row per variable, as declared above."""
    rows = ["| Variable | Default | Allowed | Meaning |", "| --- | --- | --- | --- |"]
    for var in VARIABLES:
        default = var.shown_default or (f"`{var.default}`" if isinstance(var.default, str) else "unset")
        allowed = var.parser.allowed + (f"; {var.note}" if var.note else "")
        rows.append(f"| `{var.name}` | {default} | {allowed} | {var.meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
