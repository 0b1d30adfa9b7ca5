"""git, run as a command in the project: the registry's commits and tags live there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tunepipe.errors import PipelineError

FALLBACK_NAME, FALLBACK_EMAIL = "tunepipe", "tunepipe@localhost"


def git(root: Path, *args: str, check: bool = True) -> str:
    """stdout without its trailing line break; leading spaces are kept, as porcelain formats
    give them meaning (` M dvc.lock` is an unstaged change)."""
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise PipelineError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}")
    return proc.stdout.rstrip("\r\n")


def git_remote(root: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """A git command that talks to a remote (push, ls-remote), never prompting for a password: a
    worker has no one to answer, and a command would hang. The caller reads returncode/stderr."""
    return subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )


def blob(root: Path, rev: str, path: str) -> bytes | None:
    """A file's bytes as of `rev`, or None when that commit does not hold it."""
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, check=False)
    return proc.stdout if proc.returncode == 0 else None


def changed_paths(root: Path) -> list[str]:
    """Tracked files with uncommitted changes (staged or not), relative to the repository root.

    Read from `git status --porcelain -z`: entries are `XY path`, NUL-separated, names unquoted
    (spaces and non-ASCII names arrive as written), and a rename is followed by its old name.
    """
    out = subprocess.run(
        ["git", "status", "--porcelain", "-z", "--untracked-files=no"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise PipelineError(f"git status failed in {root}: {out.stderr.strip()}")
    entries = out.stdout.split("\0")
    paths, i = [], 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        paths.append(path)
        if "R" in status or "C" in status:
            i += 1  # the old name of a rename or copy
    return paths


def identity_args(root: Path) -> tuple[str, ...]:
    """Commit as the user when git knows them, else as `tunepipe` (fresh CI machines)."""
    known = git(root, "config", "user.email", check=False)
    return () if known else ("-c", f"user.name={FALLBACK_NAME}", "-c", f"user.email={FALLBACK_EMAIL}")
