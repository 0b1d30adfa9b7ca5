"""The team's remotes: DVC moves data, models and run-cache; git carries registration commits and tags.

A worker starts from a bare clone. It pulls what DVC's remote holds, runs the stages, pushes to
DVC first and to git last: a version tag on the git remote always names bytes the DVC remote has.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunepipe.argcheck import check_ref
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import git, git_remote, identity_args
from tunepipe.version import SEPARATOR

ORIGIN = "origin"
COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a full commit id (SHA-1 or SHA-256)
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


def checkout(root: Path, ref: str, branch: str | None = None) -> str:
    """Check out `ref` from origin: a branch is checked out as that branch (registration commits
    go on it). A tag or commit is checked out as local `branch` when given (a deployment pins the
    commit it was deployed from, and its registrations still belong on the deployed branch: the
    push merges origin's branch into them), else detached. Returns what was checked out, for the log.

    `ref` and `branch` may come from whoever starts a run: checked, and given to git after `--`."""
    check_ref(ref, "ref")
    if branch:
        check_ref(branch, "branch")
    heads = git(root, "ls-remote", "--heads", "--", ORIGIN, ref)
    if not heads and COMMIT_ID.fullmatch(ref) and _known(root, ref):
        target = ref  # a commit this clone holds (a deployment's pinned one): nothing to fetch
    else:
        git(root, "fetch", "--quiet", "--", ORIGIN, ref)
        target = git(root, "rev-parse", "FETCH_HEAD")
    name = ref.removeprefix("refs/heads/") if heads else (branch or "").removeprefix("refs/heads/")
    if not name:
        git(root, "checkout", "--quiet", "--detach", target)
        return f"{ref} (detached at {git(root, 'rev-parse', '--short', 'HEAD')})"
    if not heads:  # the branch's remote-tracking ref, for the upstream and the push's merge
        git(root, "fetch", "--quiet", "--", ORIGIN, f"+refs/heads/{name}:refs/remotes/{ORIGIN}/{name}")
    if _unpushed_registrations(root, name, target):
        # The branch here holds a registration origin never got (its push failed): keep it,
        # with origin's branch merged in, so that this run pushes it instead of dropping it.
        git(root, "checkout", "--quiet", name, "--")
        merge(root, target, name)
    else:
        git(root, "checkout", "--quiet", "-B", name, target)
    git(root, "branch", "--quiet", f"--set-upstream-to={ORIGIN}/{name}")
    if heads:
        return f"branch {ref}"
    return f"{ref} at {git(root, 'rev-parse', '--short', 'HEAD')} on branch {name}"


def _unpushed_registrations(root: Path, branch: str, target: str) -> list[str]:
    """Registration commits (commits a registry tag names) on local `branch` that neither `target`
    nor origin's `branch` holds. One origin has is not stranded: a fresh clone's branch is
    origin's, and a run pinned to an older commit must train that commit, not origin's head."""
    local = f"refs/heads/{branch}"
    if not _known(root, local):
        return []
    registered = {commit for _, commit in local_registry_tags(root).values()}
    excluded = [f"^{target}"]
    if _known(root, f"refs/remotes/{ORIGIN}/{branch}"):
        excluded.append(f"^refs/remotes/{ORIGIN}/{branch}")
    ahead = git(root, "rev-list", local, *excluded, "--").splitlines()
    return [c for c in ahead if c in registered]


def current_branch(root: Path) -> str | None:
    return git(root, "symbolic-ref", "--quiet", "--short", "HEAD", check=False) or None


# --- reconciling the registry with origin ---------------------------------------------------------
#
# What origin lacks is read from origin itself (`git ls-remote`), not from what this checkout had
# before a run: a version whose push failed earlier is pushed by the next run, not forgotten.

PUSH_ATTEMPTS = 3  # a teammate pushing between our fetch and our push: merge their branch, retry
STATUS_TIMEOUT = 30  # seconds `tunepipe status` waits for origin before saying it could not check
RETRYABLE = ("non-fast-forward", "fetch first", "already exists", "stale info")


def is_registry_tag(tag: str) -> bool:
    """GTO's tags: versions `<name>@vX.Y.Z` and stage assignments `<name>#<stage>#N` (and their
    deprecation forms); other tags (release tags) are the user's and never pushed by a run."""
    return SEPARATOR in tag or "#" in tag


@dataclass(frozen=True)
class Plan:
    """How this checkout's registry stands against origin's, and what a push would send."""

    tags: tuple[str, ...]  # registry tags here that origin lacks
    taken: dict[str, str]  # registry tag here -> the other object origin holds under that name
    branch: str | None  # the branch the registration commits go on; None: HEAD detached
    commits: tuple[str, ...]  # registration commits on HEAD that origin's branch lacks
    origin_tip: str | None  # origin's branch tip; None when origin lacks the branch

    @property
    def needed(self) -> bool:
        return bool(self.tags or self.commits)

    def describe(self) -> str:
        """What a push of this plan sends, for the run's log."""
        tags = ", ".join(self.tags) or "no tags"
        if self.branch and self.commits:
            return f"pushed branch {self.branch} (registration commits {self.short()}) and {tags}"
        if self.branch:
            return f"pushed {tags} (no registration commit on {self.branch} that origin's lacks)"
        return f"pushed {tags} (detached checkout: no branch updated; the tags reach the commits)"

    def short(self) -> str:
        return ", ".join(c[:10] for c in self.commits)

    def refspecs(self) -> list[str]:
        heads = [f"HEAD:refs/heads/{self.branch}"] if self.branch and self.commits else []
        return heads + [f"refs/tags/{t}" for t in self.tags]

    def command(self, root: Path) -> str:
        """The exact commands that push what is missing, DVC first (a tag never names bytes the DVC
        remote lacks), merging origin's branch first when it moved on."""
        steps, refspecs = [], self.refspecs()
        if not self.branch and self.commits:  # detached: onto origin's default branch first
            branch = shlex.quote(default_branch(root))
            steps += [f"git checkout -B {branch}", f"git pull --no-rebase {ORIGIN} {branch}"]
            refspecs = [f"HEAD:refs/heads/{branch}", *refspecs]
        if self.branch and self.commits and self.origin_tip and not _has_ancestor(root, self.origin_tip):
            steps.append(f"git pull --no-rebase {ORIGIN} {shlex.quote(self.branch)}")
        if dvc_remote(root):
            steps.append("dvc push --run-cache")
        steps.append(" ".join(["git", "push", "--atomic", ORIGIN, *map(shlex.quote, refspecs)]))
        return " && ".join(steps)

    def to_json(self, root: Path) -> dict[str, Any]:
        return {
            "tags": list(self.tags),
            "taken": sorted(self.taken),
            "branch": self.branch,
            "commits": list(self.commits),
            "command": self.command(root) if self.needed else None,
        }


def origin_refs(root: Path, timeout: float = 120) -> dict[str, str]:
    """ref -> object id on origin, read from origin now (tags unpeeled: annotated tags compare by
    their tag object, so a tag re-made under the same name differs). Never prompts for a password:
    a worker has no one to answer, and `status` would hang."""
    proc = git_remote(root, "ls-remote", "--refs", "--", ORIGIN, timeout=timeout)
    if proc.returncode != 0:
        raise PipelineError(f"cannot read git remote {ORIGIN} (git ls-remote): {proc.stderr.strip()}")
    refs = {}
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref] = sha
    return refs


def local_registry_tags(root: Path) -> dict[str, tuple[str, str]]:
    """Registry tag -> (its object id, the commit it names)."""
    out = git(
        root, "for-each-ref", "--format=%(objectname)%09%(*objectname)%09%(refname:strip=2)", "refs/tags"
    )
    found = {}
    for line in out.splitlines():
        obj, peeled, tag = line.split("\t", 2)
        if is_registry_tag(tag):
            found[tag] = (obj, peeled or obj)
    return found


def plan(root: Path, refs: dict[str, str] | None = None) -> Plan:
    """Compare this checkout's registry tags and branch with origin's `refs` (read now when None).

    Registration commits count as missing from origin's branch when HEAD holds them and origin's
    tip does not (a tip this checkout has never fetched holds none of the never-pushed ones).
    """
    refs = origin_refs(root) if refs is None else refs
    local = local_registry_tags(root)
    missing = tuple(sorted(t for t in local if f"refs/tags/{t}" not in refs))
    taken = {
        t: refs[f"refs/tags/{t}"] for t, (obj, _) in local.items() if refs.get(f"refs/tags/{t}", obj) != obj
    }
    branch = current_branch(root)
    tip = refs.get(f"refs/heads/{branch}") if branch else None
    registered = {commit for _, commit in local.values()}
    commits: tuple[str, ...] = ()
    if registered:
        tracking = f"refs/remotes/{ORIGIN}/{branch}" if branch else ""
        if tip and _known(root, tip):
            exclude = [tip]
        elif tip and branch and _known(root, tracking):  # origin moved past anything fetched here
            exclude = [tracking]
        else:  # origin lacks this branch (or its tip is unknown here): what any of its branches has
            exclude = [
                sha for ref, sha in refs.items() if ref.startswith("refs/heads/") and _known(root, sha)
            ]
        ahead = git(root, "rev-list", "HEAD", *(f"^{rev}" for rev in exclude), "--").splitlines()
        commits = tuple(c for c in ahead if c in registered)
    return Plan(missing, taken, branch, commits, tip)


def _known(root: Path, rev: str) -> bool:
    """Whether this checkout has commit `rev`."""
    return bool(
        git(root, "rev-parse", "--quiet", "--verify", "--end-of-options", f"{rev}^{{commit}}", check=False)
    )


def _has_ancestor(root: Path, rev: str) -> bool:
    """Whether `rev` is here and an ancestor of HEAD (or HEAD itself)."""
    if not _known(root, rev):
        return False
    proc = subprocess.run(
        ["git", "merge-base", "--is-ancestor", rev, "HEAD"], cwd=root, capture_output=True, check=False
    )
    return proc.returncode == 0


def check_taken(root: Path, current: Plan | None = None) -> Plan:
    """The plan, or an error when origin holds one of this checkout's registry tags as another
    object: two runs registered the same number, and only a person can say which one keeps it."""
    current = plan(root) if current is None else current
    if not current.taken:
        return current
    shown = ", ".join(
        f"{t} (origin: {current.taken[t][:10]}, here: {git(root, 'rev-parse', f'refs/tags/{t}')[:10]})"
        for t in sorted(current.taken)
    )
    drop = " ".join(shlex.quote(t) for t in sorted(current.taken))
    pull = (
        f"git pull --no-rebase {ORIGIN} {shlex.quote(current.branch)}"
        if current.branch
        else f"git fetch {ORIGIN}"
    )
    raise PipelineError(
        f"git remote {ORIGIN} already has {shown} as another registration (two runs took the same "
        f"number); nothing was pushed to git: keep origin's with `git tag -d {drop} && git fetch --tags "
        f"{ORIGIN} && {pull}` (resolve any conflicts, keeping this checkout's dvc.lock), then "
        "`tunepipe register` registers this model under the next free number"
    )


def publish(root: Path, log: Callable[[str], None] | None = None) -> Plan | None:
    """Push what origin lacks: registry tags and the branch holding their registration commits,
    in one atomic push (both land, or neither). Call after DVC's push.

    When origin's branch moved on meanwhile (a teammate pushed first), their branch is fetched and
    merged (a merge, not a rebase: the tags name the registration commits) and the push retried,
    up to PUSH_ATTEMPTS times; a merge conflict or a version number taken on origin is an error
    giving the commands to finish by hand. Returns what was pushed (None: origin had it all).
    """
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        current = check_taken(root)
        if not current.needed:
            return None
        if not current.branch and current.commits:
            raise PipelineError(off_branch(root, current))
        if current.branch and current.commits and current.origin_tip:
            _merge_origin(root, current)
            current = check_taken(root)
        proc = git_remote(root, "push", "--quiet", "--atomic", "--", ORIGIN, *current.refspecs())
        if proc.returncode == 0:
            return current
        if not any(reason in proc.stderr for reason in RETRYABLE):
            raise PipelineError(
                f"git push to {ORIGIN} failed: {proc.stderr.strip()}; "
                f"to push by hand: {current.command(root)}"
            )
        if log is not None:
            log(
                f"git push to {ORIGIN} rejected (attempt {attempt} of {PUSH_ATTEMPTS}): "
                "origin moved on; retrying"
            )
    current = check_taken(root)
    raise PipelineError(
        f"git push to {ORIGIN} was rejected {PUSH_ATTEMPTS} times (others keep pushing to "
        f"{current.branch or 'it'}); the registration stays in this checkout: {current.command(root)}"
    )


def off_branch(root: Path, current: Plan) -> str:
    """The error for registration commits made on a detached HEAD that no branch of origin holds:
    pushing only their tags would leave dvc.lock and the lineage record off every branch."""
    return (
        f"HEAD is detached and registration commit(s) {current.short()} are on no branch of "
        f"{ORIGIN}; nothing was pushed to git (a tag would name a commit no branch holds): "
        f"{current.command(root)} (a deployment's run: set its `branch` parameter)"
    )


def default_branch(root: Path) -> str:
    """origin's default branch as this checkout knows it (origin/HEAD), else main."""
    head = git(root, "symbolic-ref", "--quiet", "--short", f"refs/remotes/{ORIGIN}/HEAD", check=False)
    return head.removeprefix(f"{ORIGIN}/") or "main"


def _merge_origin(root: Path, current: Plan) -> None:
    """Bring origin's branch tip into HEAD when HEAD lacks it, so that the push fast-forwards."""
    assert current.branch and current.origin_tip
    if _has_ancestor(root, current.origin_tip):
        return
    tracking = f"refs/remotes/{ORIGIN}/{current.branch}"
    git(root, "fetch", "--quiet", "--", ORIGIN, f"+refs/heads/{current.branch}:{tracking}")
    merge(root, tracking, current.branch, current.tags)


def merge(root: Path, rev: str, branch: str, tags: tuple[str, ...] = ()) -> None:
    """Merge `rev` (origin's branch) into HEAD, unless HEAD holds it already. A merge, not a
    rebase: the registry's tags name the registration commits, which must stay as they are. On a
    conflict the merge is undone and the error gives the commands that finish it by hand."""
    if _has_ancestor(root, rev):
        return
    proc = subprocess.run(
        [
            "git",
            *identity_args(root),
            "merge",
            "--quiet",
            "--no-edit",
            "-m",
            f"Merge {ORIGIN}/{branch} into the registration",
            "--end-of-options",
            rev,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return
    conflicted = git(root, "diff", "--name-only", "--diff-filter=U", check=False).split()
    if git(root, "rev-parse", "--quiet", "--verify", "MERGE_HEAD", check=False):
        git(root, "merge", "--abort", check=False)
    why = (
        f"conflicts in {', '.join(conflicted)}"
        if conflicted
        else (proc.stderr.strip() or proc.stdout.strip())
    )
    refs = " ".join(shlex.quote(f"refs/tags/{t}") for t in tags)
    raise PipelineError(
        f"{ORIGIN}'s {branch} moved on and merging it into this checkout's registration commits "
        f"failed ({why}); nothing was pushed to git and the registration stays in this checkout: "
        f"`git pull --no-rebase {ORIGIN} {shlex.quote(branch)}`, resolve and commit, then "
        f"`git push --atomic {ORIGIN} HEAD:refs/heads/{shlex.quote(branch)}{' ' + refs if refs else ''}`"
    )


def unpushed(root: Path) -> dict[str, Any] | None:
    """For `tunepipe status`: what origin lacks ({tags, taken, branch, commits, command}), {error}
    when origin cannot be read, None in a checkout without a git remote `origin`."""
    if not root.is_dir() or not git_origin(root):
        return None
    try:
        return plan(root, origin_refs(root, timeout=STATUS_TIMEOUT)).to_json(root)
    except subprocess.TimeoutExpired:
        return {"error": f"git remote {ORIGIN} did not answer within {STATUS_TIMEOUT} s"}
    except PipelineError as exc:
        return {"error": str(exc)}
