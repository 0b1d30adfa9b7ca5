"""The team's remotes: DVC moves data, models and run-cache; git carries registration commits and tags.

A worker starts from a bare clone. It pulls what DVC's remote holds, runs the stages, pushes to
DVC first and to git last: a version tag on the git remote always names bytes the DVC remote has.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tunepipe.argcheck import check_ref
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import git

ORIGIN = "origin"
TAIL_LINES = 15


def dvc_remote(root: Path) -> str | None:
    """The project's default DVC remote (`dvc remote add -d`), or None when there is none."""
    proc = _dvc(root, "remote", "default")
    name = proc.stdout.strip()
    return name if proc.returncode == 0 and name else None


def pull(root: Path) -> str:
    """Data, outputs of dvc.lock and the run-cache from the default remote; what is not there yet
    (a first run, a stage nobody pushed) is left for the stages to build."""
    proc = _dvc(root, "pull", "--run-cache", "--allow-missing")
    if proc.returncode != 0:
        raise PipelineError(f"`dvc pull` from DVC remote {dvc_remote(root)!r} failed:\n{_tail(proc)}")
    return _summary(proc)


def push(root: Path) -> str:
    """Outputs and run-cache to the default remote: other workers restore what ran here."""
    proc = _dvc(root, "push", "--run-cache")
    if proc.returncode != 0:
        raise PipelineError(
            f"`dvc push` to DVC remote {dvc_remote(root)!r} failed, so nothing was pushed to git "
            f"(no version tag names data the remote lacks):\n{_tail(proc)}"
        )
    return _summary(proc)


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, check=False
    )


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return "\n".join(lines[-TAIL_LINES:])


def _summary(proc: subprocess.CompletedProcess[str]) -> str:
    """DVC's last line: `3 files fetched`, `Everything is up to date.` and the like."""
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def git_origin(root: Path) -> str | None:
    """The URL of the git remote `origin`, or None in a checkout without one."""
    url = git(root, "remote", "get-url", ORIGIN, check=False)
    return url or None


def fetch_tags(root: Path) -> None:
    """Registered versions and stages are tags: a new version's number depends on all of them.

    Prefect's git_clone step clones one commit deep and without tags: deepen and fetch them.
    """
    shallow = git(root, "rev-parse", "--is-shallow-repository") == "true"
    git(root, "fetch", "--quiet", "--tags", "--force", *(("--unshallow",) if shallow else ()), ORIGIN)


def checkout(root: Path, ref: str) -> str:
    """Check out `ref` from origin: a branch is checked out as that branch (registration commits
    go on it), a tag or commit detached. Returns what was checked out, for the log.

    `ref` may come from whoever starts a run: checked, and given to git after `--`."""
    check_ref(ref, "ref")
    branch = git(root, "ls-remote", "--heads", "--", ORIGIN, ref)
    git(root, "fetch", "--quiet", "--", ORIGIN, ref)
    if branch:
        git(root, "checkout", "--quiet", "-B", ref.removeprefix("refs/heads/"), "FETCH_HEAD")
        git(root, "branch", "--quiet", f"--set-upstream-to={ORIGIN}/{ref.removeprefix('refs/heads/')}")
        return f"branch {ref}"
    git(root, "checkout", "--quiet", "--detach", "FETCH_HEAD")
    return f"{ref} (detached at {git(root, 'rev-parse', '--short', 'HEAD')})"


def current_branch(root: Path) -> str | None:
    return git(root, "symbolic-ref", "--quiet", "--short", "HEAD", check=False) or None


def tags(root: Path) -> set[str]:
    return set(git(root, "tag", "--list").splitlines())


def push_git(root: Path, new_tags: list[str]) -> str:
    """Push the registration commit and the new tags in one atomic push: both land, or neither.

    When the branch moved on the remote meanwhile (someone pushed), the tags are pushed alone:
    the version stays reachable through its tag, and the branch is left to its owner.
    """
    branch = current_branch(root)
    refs = [f"refs/tags/{t}" for t in sorted(new_tags)]
    if branch is None:
        git(root, "push", "--quiet", "--atomic", ORIGIN, *refs)
        return f"pushed tags {', '.join(sorted(new_tags))} (detached checkout: no branch updated)"
    proc = subprocess.run(
        ["git", "push", "--quiet", "--atomic", ORIGIN, f"HEAD:refs/heads/{branch}", *refs],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return f"pushed branch {branch} and tags {', '.join(sorted(new_tags))}"
    if "non-fast-forward" not in proc.stderr and "fetch first" not in proc.stderr:
        raise PipelineError(f"git push to {ORIGIN} failed: {proc.stderr.strip()}")
    git(root, "push", "--quiet", "--atomic", ORIGIN, *refs)
    return (
        f"branch {branch} moved on {ORIGIN} during this run: pushed tags {', '.join(sorted(new_tags))} "
        f"only (the registration commit {git(root, 'rev-parse', '--short', 'HEAD')} is reachable by them)"
    )
