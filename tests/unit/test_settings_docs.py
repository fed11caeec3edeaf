"""Each variable is declared once, in daemon/settings/config.py: README's settings table is made from those
declarations, and .env.example names every one of them."""

from __future__ import annotations

import re

from daemon.settings.config import VARIABLES, settings_table
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV_EXAMPLE = (ROOT / ".env.example").read_text(encoding="utf-8")
HOW_TO_FIX = "README's settings table is `python -m daemon.settings.config`'s output: paste it over the table"


def readme_table(readme: str) -> list[str]:
    """The rows of README's settings table, its header included."""
    lines = readme.splitlines()
    start = lines.index(settings_table().splitlines()[0])
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def rows_differing(readme: str) -> list[str]:
    """The variables whose row README lacks or words otherwise than their declaration."""
    written = set(readme_table(readme))
    return [var.name for var, row in zip(VARIABLES, settings_table().splitlines()[2:]) if row not in written]


def missing_from_env_example(text: str) -> list[str]:
    return [var.name for var in VARIABLES if not re.search(rf"^(# ?)?{var.name}=", text, re.MULTILINE)]


def test_readmes_settings_table_is_the_one_the_declarations_make():
    assert rows_differing(README) == [], HOW_TO_FIX
    assert readme_table(README) == settings_table().splitlines(), HOW_TO_FIX  # and nothing more, in that order


def test_env_example_names_every_variable():
    assert missing_from_env_example(ENV_EXAMPLE) == []


def test_a_variable_missing_from_the_readme_or_env_example_is_named():
    without_port = "\n".join(line for line in README.splitlines() if not line.startswith("| `DB_PORT` |"))
    assert rows_differing(without_port) == ["DB_PORT"]
    reworded = README.replace("| `LOG_LEVEL` | `INFO` |", "| `LOG_LEVEL` | `DEBUG` |")
    assert rows_differing(reworded) == ["LOG_LEVEL"]
    assert missing_from_env_example(ENV_EXAMPLE.replace("\nDB_PORT=", "\nDB_PORTS=")) == ["DB_PORT"]


def test_each_variable_fills_one_field_and_names_are_unique():
    assert len({var.name for var in VARIABLES}) == len(VARIABLES)
    assert len({var.field for var in VARIABLES}) == len(VARIABLES) and all(var.field for var in VARIABLES)
