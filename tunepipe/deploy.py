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
from dataclasses import dataclass
from pathlib import Path

from tunepipe import automations, remote
from tunepipe.argcheck import check_prefect_name, check_ref, check_remote, first_line
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import git_remote

PREFECT_FILE = "prefect.yaml"


def deploy(
    root: Path,
    names: Sequence[str] = (),
    pool: str = "gpu",
    branch: str | None = None,
    remote_url: str | None = None,
    say: Callable[[str], None] = print,
    guard: Guard | None = None,
) -> None:
    """`prefect deploy` of `names` (all when empty) for workers of `pool` that clone `remote_url`
    (default: origin's) at `branch` (default: the checked-out one); then the automations of
    `guard` (heartbeats, crashed runs, notifications; tunepipe/automations.py)."""
    from prefect.settings import get_current_settings

    # Options reach git and `prefect deploy` as arguments: checked before any command runs.
    for name in names:
        check_prefect_name(name, "deployment name", flow_prefix=True)
    check_prefect_name(pool, "--pool")
    if branch is not None:
        check_ref(branch, "--branch")
    if remote_url is not None:
        check_remote(remote_url, "--remote")
    guard = guard or Guard()
    crash_seconds = automations.crash_after(guard.heartbeat, guard.crash_after)
    if guard.notify is not None:
        automations.check_url(guard.notify)

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
    env["TUNEPIPE_GIT_COMMIT"] = deployed_commit(base, url, ref)  # what the deployments run
    selection = [arg for name in names for arg in ("--name", name)] if names else ["--all"]
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", *selection]
    cmd += ["--prefect-file", PREFECT_FILE]
    say(
        f"deploying {', '.join(names) if names else 'all deployments'}: {url} ({ref} at "
        f"{env['TUNEPIPE_GIT_COMMIT'][:10]}) on pool {pool!r}"
    )
    proc = subprocess.run(cmd, cwd=base, env=env, check=False)
    if proc.returncode != 0:
        raise PipelineError(f"`prefect deploy` failed (exit {proc.returncode}); its message is above")
    guard_deployments(base, names, guard, crash_seconds, say)


# --- lost hosts, crashed runs, notifications (tunepipe/automations.py) ---------------------------


@dataclass(frozen=True)
class Guard:
    """`tunepipe deploy`'s fault options: heartbeat period and silence before a run counts as
    Crashed (seconds), the URL failures are POSTed to, and a worker folder for checkpoints."""

    heartbeat: int = automations.DEFAULT_HEARTBEAT
    crash_after: int | None = None
    notify: str | None = None
    checkpoints: str | None = None


def project_deployments(base: Path, names: Sequence[str]) -> tuple[str, list[tuple[str, str]]]:
    """prefect.yaml's project name and its deployments (name, entrypoint), those of `names` only
    when given (`flow/deployment` or `deployment`)."""
    import yaml

    spec = yaml.safe_load((base / PREFECT_FILE).read_text()) or {}
    wanted = {n.rsplit("/", 1)[-1] for n in names}
    found = [
        (str(d["name"]), str(d.get("entrypoint", "")))
        for d in spec.get("deployments") or []
        if isinstance(d, dict) and d.get("name") and (not wanted or d["name"] in wanted)
    ]
    return str(spec.get("name") or base.name), found


def guard_deployments(
    base: Path, names: Sequence[str], guard: Guard, crash_seconds: int, say: Callable[[str], None]
) -> None:
    """Heartbeats (and the checkpoint folder) into the deployments' job variables, then the
    project's automations, all through the Prefect API: a re-deploy updates them in place."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    project, declared = project_deployments(base, names)
    env = {automations.HEARTBEAT_ENV: str(guard.heartbeat)}
    if guard.checkpoints:
        env[automations.CHECKPOINTS_ENV] = guard.checkpoints
    with get_client(sync_client=True) as client:
        listed = client.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[n for n, _ in declared]))
        )
        entry = dict(declared)
        ours = [d for d in listed if entry.get(d.name) == d.entrypoint]
        for d in ours:
            automations.set_job_env(client, d, env)
        if names:  # the automations cover every deployment: only a full deploy makes them
            say("automations left as they are (`tunepipe deploy` without names updates them)")
            return
        automations.ensure(client, project, ours, guard.heartbeat, crash_seconds, guard.notify, say)
        say(
            f"heartbeats every {guard.heartbeat} s; a run silent for {crash_seconds} s is marked Crashed"
            + (f"; failures are POSTed to {guard.notify}" if guard.notify else "")
        )


def check_pushed(root: Path, url: str, ref: str) -> None:
    """Branch `ref` is on git remote `url`, where workers clone it."""
    heads = git_remote(root, "ls-remote", "--heads", "--", url, ref)
    if heads.returncode != 0:
        raise PipelineError(f"cannot read git remote {url}: {first_line(heads.stderr)}")
    if not heads.stdout.strip():
        raise PipelineError(
            f"branch {ref!r} is not on {url}, where workers clone it: `git push origin {ref}`"
        )


def deployed_commit(root: Path, url: str, branch: str) -> str:
    """The commit the deployments pin: HEAD, which must be on `branch` of git remote `url` (workers
    fetch it from there), so that runs train what was deployed, not what the branch holds later."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    commit = head.stdout.strip()
    tip = git_remote(root, "ls-remote", "--heads", "--", url, branch).stdout.split()
    if not commit or not tip:
        raise PipelineError(f"cannot read HEAD or {url}'s {branch}: `git push origin {branch}` first")
    if tip[0] == commit:
        return commit
    on_branch = subprocess.run(
        ["git", "merge-base", "--is-ancestor", commit, tip[0]], cwd=root, capture_output=True, check=False
    )
    if on_branch.returncode != 0:
        raise PipelineError(
            f"HEAD {commit[:10]} is not on {url}'s {branch} (its tip {tip[0][:10]} does not hold it, or this "
            f"clone lacks the tip): `git pull --no-rebase origin {branch} && git push origin HEAD:{branch}`, "
            "then deploy again"
        )
    return commit
