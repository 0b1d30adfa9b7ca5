"""DVC's Python API, opened from the project root (DVC resolves some paths against the cwd)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tunepipe.gitrepo import git


@contextlib.contextmanager
def open_repo(root: Path) -> Iterator[Any]:
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(".") as repo:
        yield repo


def stale(root: Path, stage: str | None = None) -> dict[str, Any]:
    """What `dvc status` reports: empty when the stage (or the whole pipeline) is up to date."""
    with open_repo(root) as repo:
        return repo.status(targets=[stage] if stage else None)


def lock_outputs(lock: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """path -> {stage, md5, size, nfiles} for every cached output in dvc.lock."""
    out = {}
    for stage, body in (lock.get("stages") or {}).items():
        for o in body.get("outs", []):
            if "md5" in o:
                out[o["path"]] = {"stage": stage, "md5": o["md5"]} | {
                    k: o[k] for k in ("size", "nfiles") if k in o
                }
    return out


def read_lock(root: Path, rev: str | None = None) -> dict[str, Any]:
    text = git(root, "show", f"{rev}:dvc.lock") if rev else (root / "dvc.lock").read_text()
    return yaml.safe_load(text) or {}
