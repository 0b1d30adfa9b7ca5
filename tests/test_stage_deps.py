"""dvc.yaml's code deps are checked, not remembered: each stage lists exactly the project files
its command imports (static closure over the AST, function-local imports included), so a stage
re-runs whenever its code changes and never for code it does not run."""

from __future__ import annotations

import ast
import collections
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

pytestmark = pytest.mark.unit

PROJECT_PACKAGES = ("tunepipe", "tasks", "flows")
MODULE_CMD = re.compile(r"^python -m ([\w.]+)(\s|$)")


def module_file(root: Path, name: str) -> Path | None:
    """The file that defines project module `name` (a package's __init__.py), or None."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def with_parents(name: str) -> Iterator[str]:
    """`import a.b.c` runs a/__init__.py and a/b/__init__.py before a/b/c.py."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def imports(root: Path, name: str, path: Path) -> set[str]:
    """Every module an `import` anywhere in the file may load (functions' bodies included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # `from pkg import mod` loads pkg/mod.py; `from mod import name` only mod.
            found.update(f"{base}.{a.name}" for a in node.names if module_file(root, f"{base}.{a.name}"))
    return {parent for module in found for parent in with_parents(module)}


def closure(root: Path, module: str) -> dict[Path, list[str]]:
    """Project files that `python -m module` loads -> the import chain that reaches each."""
    chains: dict[Path, list[str]] = {}
    todo = collections.deque([m] for m in [module, *with_parents(module)])
    while todo:  # breadth first: each file's chain is a shortest one
        chain = todo.popleft()
        path = module_file(root, chain[-1])
        if path is None or path in chains:
            continue
        chains[path] = chain
        todo.extend([*chain, m] for m in sorted(imports(root, chain[-1], path)))
    return {p.relative_to(root): chain for p, chain in chains.items()}


def dep_problems(root: Path) -> list[str]:
    """What dvc.yaml gets wrong: imported files no dep covers, and code deps nothing imports."""
    stages: dict[str, Any] = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    problems = []
    for stage, body in stages.items():
        match = MODULE_CMD.match(body["cmd"])
        if not match:
            problems.append(f"stage {stage}: cmd {body['cmd']!r} is not `python -m <module>`")
            continue
        reached = closure(root, match.group(1))
        deps = [Path(d if isinstance(d, str) else next(iter(d))) for d in body.get("deps", [])]
        for path, chain in sorted(reached.items()):
            if not any(path == d or d in path.parents for d in deps):
                problems.append(f"stage {stage}: {path} is imported ({' -> '.join(chain)}) but not a dep")
        for dep in deps:
            is_code = dep.suffix == ".py" or (dep.parts[0] in PROJECT_PACKAGES and (root / dep).is_dir())
            if is_code and not any(dep == p or dep in p.parents for p in reached):
                problems.append(f"stage {stage}: dep {dep} is never imported by {match.group(1)}")
    return problems


def test_dvc_yaml_lists_exactly_the_code_each_stage_imports() -> None:
    assert dep_problems(REPO) == []


# --- the checker itself, on a small synthetic project ---------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def write_dvc_yaml(root: Path, code: list[str]) -> None:
    stage = {"cmd": "python -m tasks.fit", "deps": [*code, "data/raw"], "outs": ["out"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"fit": stage}}))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(
        tmp_path,
        {
            "tasks/__init__.py": "",
            "tasks/fit.py": "import json\nfrom tunepipe import model\n",
            "tunepipe/__init__.py": "",
            # function-local and relative imports count; `from x import name` of a name, not a module
            "tunepipe/model.py": "def fit():\n    from .shapes import square\n    return square\n",
            "tunepipe/shapes.py": "from tunepipe.errors import Oops\n\ndef square():\n    pass\n",
            "tunepipe/errors.py": "class Oops(Exception):\n    pass\n",
            "tunepipe/unused.py": "",
            "flows/__init__.py": "",
        },
    )
    exact = [
        "tasks/__init__.py",
        "tasks/fit.py",
        "tunepipe/__init__.py",
        "tunepipe/errors.py",
        "tunepipe/model.py",
        "tunepipe/shapes.py",
    ]
    write_dvc_yaml(tmp_path, exact)
    return tmp_path


def test_checker_accepts_exact_deps_and_a_folder_holding_them(tree: Path) -> None:
    assert dep_problems(tree) == []
    write_dvc_yaml(tree, ["tasks", "tunepipe"])
    assert dep_problems(tree) == []


def test_checker_fails_when_an_import_is_added_without_its_dep(tree: Path) -> None:
    (tree / "tunepipe/errors.py").write_text("def late():\n    import tunepipe.unused\n")
    assert dep_problems(tree) == [
        "stage fit: tunepipe/unused.py is imported "
        "(tasks.fit -> tunepipe.model -> tunepipe.shapes -> tunepipe.errors -> tunepipe.unused) "
        "but not a dep"
    ]


def test_checker_fails_on_a_dep_the_stage_never_imports(tree: Path) -> None:
    deps = yaml.safe_load((tree / "dvc.yaml").read_text())["stages"]["fit"]["deps"]
    write_dvc_yaml(tree, [*deps[:-1], "tunepipe/unused.py", "flows"])
    assert dep_problems(tree) == [
        "stage fit: dep tunepipe/unused.py is never imported by tasks.fit",
        "stage fit: dep flows is never imported by tasks.fit",
    ]


def test_checker_fails_on_a_command_it_cannot_follow(tree: Path) -> None:
    data = yaml.safe_load((tree / "dvc.yaml").read_text())
    data["stages"]["fit"]["cmd"] = "python tasks/fit.py"
    (tree / "dvc.yaml").write_text(yaml.safe_dump(data))
    assert dep_problems(tree) == ["stage fit: cmd 'python tasks/fit.py' is not `python -m <module>`"]
