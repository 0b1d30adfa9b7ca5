"""Clones a worker left behind: a process worker runs each flow in a temporary folder
(`tmp...prefect` under the temp dir) that it removes when the run ends; a worker killed with
its run (SIGKILL, a lost host) never gets there, and the clone (data, model, checkpoints) stays.

The next run of the project on that host sweeps them: only folders of that shape, holding a clone
of the same git remote, untouched for `max_age` hours and with no live process working in them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_AGE_ENV = "TUNEPIPE_STALE_CLONE_HOURS"
DEFAULT_MAX_AGE_HOURS = 6.0
RUN_FOLDER = re.compile(r"tmp.+prefect")  # tempfile.TemporaryDirectory(suffix="prefect")


@dataclass(frozen=True)
class Swept:
    folders: tuple[Path, ...]
    size: int  # bytes freed

    def describe(self) -> str:
        return f"removed {len(self.folders)} stale clone(s) of earlier runs ({self.size / 2**20:.0f} MiB)"


def max_age_hours() -> float:
    try:
        return float(os.environ.get(MAX_AGE_ENV, DEFAULT_MAX_AGE_HOURS))
    except ValueError:
        return DEFAULT_MAX_AGE_HOURS


def sweep(clone: Path, origin: str | None, max_age: float | None = None) -> Swept:
    """Remove stale sibling run folders of `clone`'s run folder (see the module's docstring).
    Nothing happens outside a worker's run folder, or without an `origin` to recognise clones by."""
    clone = clone.resolve()
    run_folder = clone.parent
    if not origin or not RUN_FOLDER.fullmatch(run_folder.name):
        return Swept((), 0)
    hours = max_age_hours() if max_age is None else max_age
    now = time.time()
    busy = _working_dirs()
    removed, size = [], 0
    for other in sorted(run_folder.parent.iterdir()):
        if other == run_folder or not RUN_FOLDER.fullmatch(other.name) or other.is_symlink():
            continue
        if not other.is_dir() or not any(_origin(c) == origin for c in _clones(other)):
            continue
        if now - _newest_change(other) < hours * 3600:
            continue
        if any(d == other or other in d.parents for d in busy):
            continue
        bytes_ = _size(other)
        shutil.rmtree(other, ignore_errors=True)
        if not other.exists():
            removed.append(other)
            size += bytes_
    return Swept(tuple(removed), size)


def _clones(run_folder: Path) -> Iterator[Path]:
    for child in run_folder.iterdir():
        if child.is_dir() and not child.is_symlink() and (child / ".git").exists():
            yield child


def _origin(clone: Path) -> str | None:
    proc = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=clone, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _newest_change(folder: Path) -> float:
    """The latest modification time of any folder in the tree: a run writing files changes them."""
    newest = folder.stat().st_mtime
    for dirpath, _, _ in os.walk(folder):
        try:
            newest = max(newest, os.stat(dirpath).st_mtime)
        except OSError:
            continue
    return newest


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _working_dirs() -> list[Path]:
    """Every live process's working directory that can be read (one still in a folder keeps it)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if cwd:
            found.append(Path(cwd))
    return found
