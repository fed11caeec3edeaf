"""The failures that count against a job are spelled out in SQL twice (the history query and its
index, so the planner can prove the index usable); both must stay the decision's list."""

from __future__ import annotations

import re

import pytest

from daemon.records import queries
from daemon.plan.decision import COUNTED_FAILURES
from daemon.records.migrations import SQL_DIR

LISTED = re.compile(r"failure IN \(([^)]*)\)")


def _listed(text: str) -> tuple[str, ...]:
    found = LISTED.search(text)
    assert found, text
    return tuple(name.strip(" '\n") for name in found.group(1).split(","))


def _index(name: str) -> str:
    """The index as the newest migration that creates it defines it."""
    text = next(t for f in sorted(SQL_DIR.glob("[0-9]*.sql"), reverse=True)
                if f"CREATE INDEX {name}" in (t := f.read_text()))  # fmt: skip
    return text[text.index(f"CREATE INDEX {name}"):]


@pytest.mark.parametrize("where", ["the history query", "the failures index"])
def test_the_failures_counted_against_a_job_are_the_decisions(where):
    text = queries.JOB_HISTORY if where == "the history query" else _index("spider_runs_job_failures")
    assert _listed(text) == COUNTED_FAILURES
