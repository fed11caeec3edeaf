"""Every import of the daemon names a module that exists and a name that module defines itself.

Imports inside functions and under `TYPE_CHECKING` run only on their own code path (the `logs`
command, the first page request, the Scrapyd engine): a name that moved would fail in production
on first use. Reading the source instead of importing it checks every one of them, here, in CI.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    path
    for folder in ("daemon", "tests", "bench")
    for path in (ROOT / folder).rglob("*.py")
    if ".venv" not in path.parts and path != Path(__file__).resolve()  # its own probes name stale imports
)


def module_file(dotted: str) -> Path | None:
    """The file of a daemon module (a package's __init__.py), or None when there is none."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level(statements: list[ast.stmt]):
    """The statements that run when the module is imported, through `if` and `try` blocks."""
    for statement in statements:
        yield statement
        if isinstance(statement, ast.If):
            yield from _top_level(statement.body)
            yield from _top_level(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody):
                yield from _top_level(block)
            for handler in statement.handlers:
                yield from _top_level(handler.body)


def _targets(target: ast.expr):
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _targets(element)


def defined_names(path: Path) -> set[str]:
    """The names a module defines itself: functions, classes and assignments (not what it imports)."""
    names: set[str] = set()
    for statement in _top_level(ast.parse(path.read_text()).body):
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                names.update(_targets(target))
        elif isinstance(statement, ast.AnnAssign):
            names.update(_targets(statement.target))
    return names


SNIPPET_FROM = re.compile(r"\bfrom (daemon(?:\.\w+)*) import (\w+(?:, *\w+)*)")
SNIPPET_IMPORT = re.compile(r"\bimport ((?:[\w.]+, *)*daemon\.[\w.]+(?:, *[\w.]+)*)")


def snippet_imports(text: str):
    """(module, name or None) for the imports written in a string: code run with `python -c`."""
    for module, names in SNIPPET_FROM.findall(text):
        for name in names.split(","):
            yield module, name.strip()
    for modules in SNIPPET_IMPORT.findall(text):
        for module in modules.split(","):
            if module.strip().startswith("daemon."):
                yield module.strip(), None


def daemon_imports(path: Path):
    """(line, module, name or None) for every import of a daemon module in one file, at any depth,
    and in the code snippets its strings hold (run by a subprocess, they fail only when it runs)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "daemon" in node.value:
            for module, name in snippet_imports(node.value):
                yield node.lineno, module, name
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "daemon" or alias.name.startswith("daemon."):
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            if module == "daemon" or module.startswith("daemon."):
                for alias in node.names:
                    yield node.lineno, module, alias.name


def unresolved(path: Path) -> list[str]:
    problems = []
    for line, module, name in daemon_imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        if module_file(module) is None:
            problems.append(f"{where}: no module {module}")
        elif name is not None and name != "*" and module_file(f"{module}.{name}") is None:
            if name not in defined_names(module_file(module)):
                problems.append(f"{where}: {module} does not define {name}")
    return problems


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_daemon_import_names_a_module_and_a_name_it_defines(path: Path) -> None:
    assert unresolved(path) == []


def test_the_check_finds_a_moved_name(tmp_path: Path) -> None:
    stale = ROOT / "tests" / "unit" / "_stale_import_probe.py"
    stale.write_text("def later():\n    from daemon.settings.config import NoSuchName\n    import daemon.no_such_module\n"
                     "CODE = 'import sys, daemon.gone; from daemon import db'\n")
    try:
        problems = unresolved(stale)
    finally:
        stale.unlink()
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "daemon.settings.config does not define NoSuchName",
        "no module daemon.no_such_module",
        "daemon does not define db",
        "no module daemon.gone",
    ]
