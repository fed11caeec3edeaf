"""docker-compose.yml hands every setting to the scheduler's container, from .env or a default.

Compose reads .env only to fill in `${VAR}` (a fresh clone has no .env at all), so a setting the
daemon declares (daemon/settings/config.py's VARIABLES) that docker-compose.yml does not name would silently
never reach the container. So would a variable .env.example documents (libpq's PGSSLMODE, compose's
own SCRAPY_PROJECT_HOST_DIR) that the file never reads.
"""

from __future__ import annotations

import re

import pytest

from daemon.settings.config import VARIABLES
from tests.conftest import ROOT

COMPOSE = (ROOT / "docker-compose.yml").read_text()
# Fixed by docker-compose.yml, as the container's layout needs them (each says why there).
FIXED = {
    "DB_PASSWORD_FILE": "/run/secrets/db_password",  # the file the db-password service wrote
    "SCHEDULER_HTTP_HOST": "0.0.0.0",  # inside the compose network; published on 127.0.0.1 only
    "SCHEDULER_STATE_DIR": "/var/lib/persistent-scheduler",  # the scheduler-state volume
}
# Never a variable of the scheduler's container: it reads the password from the file instead.
NEVER = {"DB_PASSWORD"}
# Compose's own, read by compose itself (.env.example shows how to turn the cluster profile on).
COMPOSE_OWN = {"COMPOSE_PROFILES"}


def env_example_names() -> set[str]:
    """Every variable .env.example documents, set or shown commented out (`# NAME=value`)."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^(?:# ?)?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def environment(service: str) -> dict[str, str]:
    """The `environment:` mapping of one service of docker-compose.yml, as written (not interpolated)."""
    lines = iter(COMPOSE.splitlines())
    for line in lines:
        if line == f"  {service}:":
            break
    else:
        raise AssertionError(f"docker-compose.yml has no service {service!r}")
    for line in lines:
        if line == "    environment:":
            break
        if re.match(r"  \S", line):
            return {}
    found = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r" {6}([A-Za-z_][A-Za-z0-9_]*): ?(.*)", line)
        if not match:
            break
        found[match[1]] = match[2]
    return found


def test_every_setting_the_daemon_declares_reaches_the_scheduler_container():
    wanted = {var.name for var in VARIABLES} - NEVER
    assert sorted(wanted - set(environment("scheduler"))) == []


def test_every_variable_of_env_example_is_read_by_docker_compose():
    names = environment("scheduler")
    for name in sorted(env_example_names() - COMPOSE_OWN):
        assert name in names or f"${{{name}:-" in COMPOSE, f"{name} (.env.example) never reaches the stack"


@pytest.mark.parametrize("name", sorted(set(environment("scheduler")) - set(FIXED)))
def test_a_setting_comes_from_env_with_the_daemons_default_when_unset(name):
    value = environment("scheduler")[name]
    assert re.fullmatch(rf"\$\{{{name}:-[^}}]*\}}", value), f"{name}: {value}"


def test_the_settings_the_layout_needs_are_fixed():
    names = environment("scheduler")
    assert {name: names.get(name) for name in FIXED} == FIXED


def test_the_password_is_a_variable_of_no_long_running_container():
    assert NEVER.isdisjoint(environment("scheduler"))
    assert "POSTGRES_PASSWORD" not in environment("postgres")
    assert environment("db-password") == {"DB_PASSWORD": "${DB_PASSWORD:-}"}
