"""The layers of daemon/ hold: each package imports only what its row of the table allows (imports
inside functions and under TYPE_CHECKING count too), no two packages import each other even
indirectly, and every package's __init__.py is a docstring alone (an __init__ that imported its
modules would load them all, and the idle daemon's memory depends on what it does not load)."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAEMON = ROOT / "daemon"

# package: the packages it may import besides itself. The README's Architecture table says the same.
MAY_IMPORT = {
    "system": set(),
    "plan": set(),
    "settings": {"system"},
    "jobs": {"settings", "plan", "system"},
    "records": {"jobs", "settings", "plan", "system"},
    "telemetry": {"jobs", "settings", "plan", "system"},
    "engines": {"jobs", "settings", "system"},
    "leadership": {"records", "telemetry", "system"},
    "ask": {"engines", "records", "jobs", "settings", "plan", "system"},
    "loop": {"leadership", "engines", "records", "telemetry", "jobs", "settings", "plan", "system"},
    "web": {"ask", "records", "telemetry", "jobs", "settings", "plan", "system"},
}
# The root keeps only what is used from outside: `python -m daemon`, the wiring the bench and the
# tests build the daemon with, and the two stats collectors crawls load by dotted name.
ROOT_MODULES = {"__init__", "__main__", "assemble", "scrapy_stats", "node_stats"}


def package_of(module: str) -> str:
    """daemon.loop.batch -> loop; daemon.assemble -> assemble (a root module is its own)."""
    return module.split(".")[1]


def imports_between_packages(daemon: Path) -> dict[str, set[tuple[str, str]]]:
    """{package: {(package it imports, where)}} over every .py below `daemon`, at any depth."""
    edges: dict[str, set[tuple[str, str]]] = collections.defaultdict(set)
    for path in sorted(daemon.rglob("*.py")):
        parts = path.relative_to(daemon.parent).with_suffix("").parts
        here = package_of(".".join(parts))
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("daemon"):
                names = [f"daemon.{a.name}" for a in node.names] if node.module == "daemon" else [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("daemon.")]
            for name in names:
                there = package_of(name)
                if there != here:
                    edges[here].add((there, f"{path.relative_to(daemon.parent)}:{node.lineno}"))
    return edges


def not_allowed(edges: dict[str, set[tuple[str, str]]]) -> list[str]:
    return sorted(
        f"{here} -> {there} ({where})"
        for here, found in edges.items()
        for there, where in found
        if here in MAY_IMPORT and there not in MAY_IMPORT[here]
    )


def cycles(edges: dict[str, set[tuple[str, str]]]) -> list[tuple[str, str]]:
    graph = {here: {there for there, _ in found} for here, found in edges.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    return sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})


def test_daemon_is_the_eleven_packages_and_the_root_files() -> None:
    packages = {path.name for path in DAEMON.iterdir() if path.is_dir() and path.name != "__pycache__"}
    root_files = {path.stem for path in DAEMON.glob("*.py")}
    assert packages == set(MAY_IMPORT)
    assert root_files == ROOT_MODULES


def test_each_package_imports_only_what_its_row_allows() -> None:
    assert not_allowed(imports_between_packages(DAEMON)) == []


def test_no_two_packages_import_each_other_even_through_others() -> None:
    assert cycles(imports_between_packages(DAEMON)) == []


@pytest.mark.parametrize("init", sorted(DAEMON.rglob("__init__.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_init_is_a_docstring_and_nothing_else(init: Path) -> None:
    body = ast.parse(init.read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    assert isinstance(body[0].value.value, str) and body[0].value.value.strip()


def test_the_check_finds_an_import_that_runs_back_up_and_the_circle_it_makes(tmp_path: Path) -> None:
    daemon = tmp_path / "daemon"
    for package, source in {
        "plan": "def later():\n    from daemon.loop.batch import Batches\n",
        "loop": "from daemon.plan.decision import decide\n",
    }.items():
        (daemon / package).mkdir(parents=True)
        (daemon / package / "__init__.py").write_text('"""A package."""\n')
        (daemon / package / "module.py").write_text(source)
    edges = imports_between_packages(daemon)
    assert not_allowed(edges) == ["plan -> loop (daemon/plan/module.py:2)"]
    assert cycles(edges) == [("loop", "plan")]
