"""The Dockerfile against the project it packages: no docker daemon runs here, so what can go
stale without a build is checked as text: the Python base satisfies requires-python and is pinned,
torch is pyproject's pin with a CPU/CUDA build argument, the project and its bundled packages are
installed as `make install` does, the image runs as a user of its own, its command exists, and
.dockerignore lets in what the Dockerfile copies."""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def args() -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest)


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pin(name: str) -> str:
    (req,) = [Requirement(r) for r in project()["dependencies"] if Requirement(r).name == name]
    (spec,) = req.specifier
    assert spec.operator == "==", f"{name} is not pinned exactly in pyproject.toml"
    return spec.version


def test_the_base_is_a_slim_pinned_python_that_pyproject_accepts() -> None:
    (base,) = [rest for word, rest in instructions() if word == "FROM"]
    version = args()["PYTHON_VERSION"]
    assert base == "python:${PYTHON_VERSION}-slim-bookworm"
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "the base image's Python is pinned to a patch release"
    assert version in SpecifierSet(project()["requires-python"])


def test_torch_is_pyprojects_pin_with_a_cpu_or_cuda_build_argument() -> None:
    assert args()["TORCH_VERSION"] == pin("torch")
    assert args()["TORCH_VARIANT"] == "cpu"
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert '--index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "torch==${TORCH_VERSION}"' in runs


def test_the_project_is_installed_with_its_pins_as_make_install_does() -> None:
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert "pip install . " in runs and "pip install --no-deps -r requirements-assets.txt" in runs
    assert "pip check" in runs
    makefile = (REPO / "Makefile").read_text()
    assert "--no-deps -r requirements-assets.txt" in makefile  # the same two steps as `make install`


def test_it_runs_as_a_user_of_its_own() -> None:
    steps = instructions()
    users = [i for i, (word, _) in enumerate(steps) if word == "USER"]
    assert users, "no USER: the image would run as root"
    last = users[-1]
    assert steps[last][1] not in ("root", "0")
    assert all(word != "RUN" for word, _ in steps[last:]), "a RUN after USER would need root again"


def test_its_command_is_the_projects_entry_point() -> None:
    (cmd,) = [rest for word, rest in instructions() if word == "CMD"]
    program = shlex.split(cmd.strip("[]").replace(",", " "))[0]
    scripts = project()["scripts"]
    assert program in scripts
    module, _, func = scripts[program].partition(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"  # everything else stays out of the build context
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = []
    for word, rest in instructions():
        if word == "COPY":
            *sources, _ = rest.split()
            copied += [s.removeprefix("./").rstrip("/") for s in sources]
    assert copied and set(copied) <= allowed, set(copied) - allowed
    for name in copied:
        assert (REPO / name).exists(), name


def test_the_docs_say_how_it_is_used_and_that_it_was_not_built_here() -> None:
    text = (REPO / "docs/production.md").read_text()
    assert "--build-arg TORCH_VARIANT=cu128" in text
    assert "not built" in text
