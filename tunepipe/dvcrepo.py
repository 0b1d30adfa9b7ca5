"""DVC's Python API, opened from the project root (DVC resolves some paths against the cwd)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tunepipe import catalog
from tunepipe.gitrepo import git
from tunepipe.io import read_json

ALWAYS_CHANGED = "always changed"  # dvc status's entry for an always_changed stage
PRETRAINED_STAGE = "pretrained"


@contextlib.contextmanager
def open_repo(root: Path) -> Iterator[Any]:
    from dvc.repo import Repo

    # DVC 3.67 trips DeprecationWarnings of its own dependencies (dvc-data's trie): harmless, but
    # a Prefect task logs each one as a WARNING line.
    with contextlib.chdir(root), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with Repo(".") as repo:
            yield repo


def stale(root: Path, stage: str | None = None) -> dict[str, Any]:
    """What `dvc status` reports: empty when the stage (or the whole pipeline) is up to date.

    `dvc status` lists the always_changed `pretrained` stage every time. That alone is not stale:
    its output is compared with what it would write now (cheap, no model loaded), so a changed
    model still counts, although DVC sees the stages after it as stale only once it has run.
    """
    with open_repo(root) as repo:
        status = repo.status(targets=[stage] if stage else None)
    found = {}
    for name, entries in status.items():
        rest = [e for e in entries if e != ALWAYS_CHANGED]
        if rest:
            found[name] = rest
        elif name == PRETRAINED_STAGE and not pretrained_current(root):
            found[name] = [{"changed outs": {str(catalog.PRETRAINED): "modified"}}]
        elif name != PRETRAINED_STAGE:
            found[name] = entries  # another always_changed stage: nothing tells it is current
    return found


def pretrained_current(root: Path) -> bool:
    """data/pretrained.json holds what the pretrained stage would write now."""
    from tunepipe import model_identity, params

    path = root / catalog.PRETRAINED
    if not path.is_file():
        return False
    model = params.read(root / catalog.PARAMS).model
    with contextlib.chdir(root):  # a relative model.name is relative to the project
        return read_json(path) == model_identity.describe(model)


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
