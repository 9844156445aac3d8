"""The package's layout: no import circle anywhere, and every module imports on its own."""

from __future__ import annotations

import ast
import asyncio
import sys
from pathlib import Path

import pytest

import sluicegate

PACKAGE = Path(sluicegate.__file__).parent


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, anywhere in it (functions and
    ``TYPE_CHECKING`` blocks included: a circle drawn only for the type checker is still
    a circle for the reader)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected parts of more than one
    module, or a module importing itself (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                part.append(member)
                if member == node:
                    break
            if len(part) > 1 or node in graph[node]:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_in_a_circle() -> None:
    """Following imports from any module of the package never leads back to it."""
    known = modules()
    # A package's __init__ importing its own modules is how it re-exports: not a circle.
    graph = {name: {m for m in imports(path, set(known)) if not m.startswith(f"{name}.")}
             for name, path in known.items()}  # fmt: skip
    assert [] == circles(graph)


def test_the_circle_check_finds_circles() -> None:
    """A circle through three modules, and a module importing itself, are found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert [["a", "b", "c"], ["d"]] == circles(graph)


@pytest.mark.slow
async def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """Each module can be the first one imported: no module relies on another having
    been imported before it."""
    limit = asyncio.Semaphore(4)

    async def fresh_import(name: str) -> tuple[str, int, str]:
        async with limit:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", f"import {name}", stderr=asyncio.subprocess.PIPE
            )
            _, err = await process.communicate()
            return name, process.returncode or 0, err.decode()[-300:]

    results = await asyncio.gather(*(fresh_import(name) for name in modules()))
    assert [] == [result for result in results if result[1]]
