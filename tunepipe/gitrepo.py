"""git, run as a command in the project: the registry's commits and tags live there."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tunepipe.errors import PipelineError

FALLBACK_NAME, FALLBACK_EMAIL = "tunepipe", "tunepipe@localhost"


def git(root: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise PipelineError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def identity_args(root: Path) -> tuple[str, ...]:
    """Commit as the user when git knows them, else as `tunepipe` (fresh CI machines)."""
    known = git(root, "config", "user.email", check=False)
    return () if known else ("-c", f"user.name={FALLBACK_NAME}", "-c", f"user.email={FALLBACK_EMAIL}")
