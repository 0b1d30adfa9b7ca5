"""The house rule, checked: imports point one way (flows -> tunepipe, tasks -> tunepipe) and never
in a circle, counting imports inside functions too (they hide circles, not remove them).

The command line is tunepipe.cli, the top of the library: no other library module imports it, and
it never imports flows/ or tasks/ (project code, run from the project root, never installed); it
starts a flow by loading the project's flows/<name>.py by name at call time (`_flow_main`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.unit

PACKAGES = ("tunepipe", "tasks", "flows")
CLI = "tunepipe.cli"
# What each layer may import from the project (besides itself where allowed).
ALLOWED = {
    "tunepipe": {"tunepipe"},
    "tasks": {"tunepipe"},
    "flows": {"tunepipe", "flows"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """Project modules a file imports, resolved to modules that exist (from x import y: x.y or x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                found.add(name)
    return {n for n in found if module_file(n)} | {
        n.rsplit(".", 1)[0] for n in found if not module_file(n) and module_file(n.rsplit(".", 1)[0])
    }


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def graph() -> dict[str, set[str]]:
    files = [f for pkg in PACKAGES for f in sorted((REPO / pkg).rglob("*.py"))]
    return {module_name(f): project_imports(f) - {module_name(f)} for f in files}


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    return [
        f"{src} imports {dst}"
        for src, targets in sorted(edges.items())
        for dst in sorted(targets)
        if dst.split(".")[0] not in ALLOWED[src.split(".")[0]]
        or (src.startswith("tasks.") and dst.startswith("tasks"))
        or (dst == CLI and src != CLI)
    ]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, found by depth-first search (one report per circle's entry point)."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if nxt.endswith("__init__") or nxt in PACKAGES:
                continue  # a package's __init__ is imported by every submodule: not a circle
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return found


def test_imports_point_one_way() -> None:
    assert layer_violations(graph()) == []


def test_no_import_circles() -> None:
    assert cycles(graph()) == []


def test_the_checks_catch_a_violation_and_a_circle() -> None:
    edges = {"tunepipe.a": {"tasks.load"}, "tasks.load": {"tasks.tokenize"}, "tasks.tokenize": set()}
    assert layer_violations(edges) == ["tasks.load imports tasks.tokenize", "tunepipe.a imports tasks.load"]
    edges = {
        "tunepipe.cli": {"flows.pipeline"},
        "flows.pipeline": {"tunepipe.cli"},
        "tunepipe.b": {"tunepipe.cli"},
    }
    assert layer_violations(edges) == [
        "flows.pipeline imports tunepipe.cli",
        "tunepipe.b imports tunepipe.cli",
        "tunepipe.cli imports flows.pipeline",
    ]
    assert cycles({"tunepipe.a": {"tunepipe.b"}, "tunepipe.b": {"tunepipe.a"}}) == [
        ["tunepipe.a", "tunepipe.b", "tunepipe.a"]
    ]


def test_only_the_library_is_installed() -> None:
    """pyproject installs tunepipe alone: tasks/ and flows/ are generic names that would collide
    with other distributions in site-packages, and they run from the project root anyway."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["tunepipe*"]
    assert project["project"]["scripts"] == {"tunepipe": f"{CLI}:main"}
    assert not (REPO / "cli").exists()
