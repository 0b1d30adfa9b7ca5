"""DVC's Python API, opened from the project root (DVC resolves some paths against the cwd)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def open_repo(root: Path) -> Iterator[Any]:
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(".") as repo:
        yield repo


def stale(root: Path, stage: str | None = None) -> dict[str, Any]:
    """What `dvc status` reports: empty when the stage (or the whole pipeline) is up to date."""
    with open_repo(root) as repo:
        return repo.status(targets=[stage] if stage else None)
