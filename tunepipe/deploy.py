"""Creating or updating the Prefect deployments of prefect.yaml (`tunepipe deploy`).

Workers clone the project from git, so a deployment is only made when they could: prefect.yaml
exists, the branch is on the git remote they clone, and a Prefect server is configured (without
one, `prefect deploy` registers with a temporary server that then vanishes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tunepipe import remote
from tunepipe.argcheck import check_prefect_name, check_ref, check_remote, first_line
from tunepipe.errors import PipelineError

PREFECT_FILE = "prefect.yaml"


def deploy(
    root: Path,
    names: Sequence[str] = (),
    pool: str = "gpu",
    branch: str | None = None,
    remote_url: str | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """`prefect deploy` of `names` (all when empty) for workers of `pool` that clone `remote_url`
    (default: origin's) at `branch` (default: the checked-out one)."""
    from prefect.settings import get_current_settings

    # Options reach git and `prefect deploy` as arguments: checked before any command runs.
    for name in names:
        check_prefect_name(name, "deployment name", flow_prefix=True)
    check_prefect_name(pool, "--pool")
    if branch is not None:
        check_ref(branch, "--branch")
    if remote_url is not None:
        check_remote(remote_url, "--remote")

    base = Path(root).resolve()
    if not (base / PREFECT_FILE).is_file():
        raise PipelineError(f"{base / PREFECT_FILE}: not found; the deployments are defined there")
    url = remote_url or remote.git_origin(base)
    if not url:
        raise PipelineError(
            f"{base}: no git remote `origin`, so workers would have nothing to clone; "
            "`git remote add origin URL && git push origin HEAD`, or --remote URL"
        )
    ref = branch or remote.current_branch(base)
    if not ref:
        raise PipelineError(f"{base}: HEAD is detached; name the branch workers clone with --branch")
    check_pushed(base, url, ref)
    if not get_current_settings().api.url:
        raise PipelineError(
            "no Prefect server configured: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api "
            "after `prefect server start`) or `prefect cloud login`"
        )
    env = {**os.environ, "TUNEPIPE_GIT_REMOTE": url, "TUNEPIPE_GIT_BRANCH": ref, "TUNEPIPE_WORK_POOL": pool}
    selection = [arg for name in names for arg in ("--name", name)] if names else ["--all"]
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", *selection]
    cmd += ["--prefect-file", PREFECT_FILE]
    say(f"deploying {', '.join(names) if names else 'all deployments'}: {url} ({ref}) on pool {pool!r}")
    proc = subprocess.run(cmd, cwd=base, env=env, check=False)
    if proc.returncode != 0:
        raise PipelineError(f"`prefect deploy` failed (exit {proc.returncode}); its message is above")


def check_pushed(root: Path, url: str, ref: str) -> None:
    """Branch `ref` is on git remote `url`, where workers clone it."""
    heads = subprocess.run(
        ["git", "ls-remote", "--heads", "--", url, ref],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if heads.returncode != 0:
        raise PipelineError(f"cannot read git remote {url}: {first_line(heads.stderr)}")
    if not heads.stdout.strip():
        raise PipelineError(
            f"branch {ref!r} is not on {url}, where workers clone it: `git push origin {ref}`"
        )
