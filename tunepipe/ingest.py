"""`tunepipe ingest FILE...`: new rows into the project, versioned with DVC, shared, announced.

The files are copied into data/raw/incoming/ (catalog.INCOMING), one folder DVC tracks
(data/raw/incoming.dvc) apart from the git-tracked data/raw/README.md; the load stage adds their
rows to the source's train rows. Order matters as in a retrain: the DVC remote gets the bytes
first, then git the commit, then Prefect an event (`tunepipe.data.ingested`) that the retrain
deployment's trigger in prefect.yaml turns into a run of exactly that commit.
"""

from __future__ import annotations

import asyncio
import filecmp
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunepipe import catalog, params, remote
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import git, git_remote, identity_args
from tunepipe.io import check_path_name
from tunepipe.sources import read_table, table_format
from tunepipe.splitting import to_canonical

EVENT = "tunepipe.data.ingested"
RESOURCE_PREFIX = "tunepipe.repo."  # + the git remote's URL: the trigger matches its own project


def tracked(base: Path) -> Path:
    """What `dvc add` versions: data/raw/incoming (its own data/raw/incoming.dvc), or data/raw as a
    whole where a project already tracks it so (data/raw.dvc: DVC refuses an output inside another)."""
    raw = catalog.INCOMING.parent
    return raw if (base / dvc_file(raw)).is_file() else catalog.INCOMING


def dvc_file(target: Path) -> Path:
    return target.with_name(target.name + ".dvc")


@dataclass
class Ingested:
    """What one `tunepipe ingest` did, for the command's output and the event's payload."""

    files: dict[str, int] = field(default_factory=dict)  # path in the project -> rows
    skipped: list[str] = field(default_factory=list)  # already there with the same bytes
    commit: str | None = None
    branch: str | None = None
    pushed: list[str] = field(default_factory=list)
    event: str | None = None  # the event's id once Prefect accepted it


def resource_id(url: str) -> str:
    """The event's resource: the project, named by the git URL workers clone (as deployed)."""
    return RESOURCE_PREFIX + url


def ingest(
    root: Path,
    files: Sequence[Path],
    message: str | None = None,
    push: bool = True,
    say: Callable[[str], None] = print,
) -> Ingested:
    """Check every file, copy them into data/raw/incoming, `dvc add`, commit; then (push) `dvc push`,
    `git push` and the Prefect event. Nothing is copied unless every file passes its checks."""
    base = Path(root).resolve()
    if not (base / ".dvc").is_dir() or not (base / "dvc.yaml").is_file():
        raise PipelineError(f"{base}: not a tunepipe project (no .dvc/ and dvc.yaml); pass --root")
    if not files:
        raise PipelineError("tunepipe ingest: name at least one file of new rows")
    p = params.read(base / catalog.PARAMS)
    if p.task == "token_classification":
        raise PipelineError(
            "tunepipe ingest adds table rows for sequence_classification and regression; for "
            "token_classification add the files to data/raw and name them in load.source"
        )
    branch = remote.current_branch(base)
    url = remote.git_origin(base)
    store = remote.dvc_remote(base)
    if push and not (branch and url and store):
        if not branch:
            missing = "HEAD is detached"
        elif not url:
            missing = "no git remote `origin`"
        else:
            missing = "no DVC remote (`dvc remote add -d <name> <url>`)"
        raise PipelineError(
            f"{base}: {missing}, so workers could not get the new rows; fix that, or pass --no-push "
            "to commit them here only"
        )
    checked = {}
    for given in files:
        path, rows = check_file(base, Path(given), p)
        if path.name in checked:
            raise PipelineError(f"{given}: two files named {path.name!r}; rename one")
        checked[path.name] = (path, rows)

    result = Ingested(branch=branch)
    incoming = base / catalog.INCOMING
    target = tracked(base)
    restore(base, target, store)  # a clone has the folder's .dvc file only: the earlier files first
    incoming.mkdir(parents=True, exist_ok=True)
    for name, (path, rows) in checked.items():
        dest = incoming / name
        rel = (catalog.INCOMING / name).as_posix()
        if dest.exists():
            if dest.is_file() and filecmp.cmp(path, dest, shallow=False):
                result.skipped.append(rel)
                continue
            raise PipelineError(
                f"{rel} exists with other rows; give the new file another name (ingest never "
                "replaces rows it added earlier)"
            )
        copy(path, dest)
        result.files[rel] = rows
    if not result.files:
        say(f"nothing new: {', '.join(result.skipped)} already ingested")
        return result
    dvc(base, "add", "--quiet", target.as_posix())
    summary = ", ".join(f"{Path(f).name} ({n} rows)" for f, n in result.files.items())
    written = (dvc_file(target), target.parent / ".gitignore")  # what `dvc add` writes for git
    paths = [f.as_posix() for f in written if (base / f).exists()]
    git(base, "add", "--", *paths)
    git(base, *identity_args(base), "commit", "--quiet", "-m", message or f"ingest: {summary}", "--", *paths)
    result.commit = git(base, "rev-parse", "HEAD")
    say(f"added {summary} to {catalog.INCOMING}; committed {result.commit[:10]}")
    if not push:
        say("not pushed (--no-push): `dvc push && git push` shares them; no event emitted")
        return result
    assert branch and url and store
    say(f"dvc push to {store!r}: {dvc(base, 'push', '--quiet', dvc_file(target).as_posix()) or 'done'}")
    result.pushed.append(f"dvc:{store}")
    push_git(base, branch)
    result.pushed.append(f"git:origin/{branch}")
    say(f"git: pushed {result.commit[:10]} to origin's {branch}")
    result.event = emit(url, branch, result, say)
    return result


def check_file(base: Path, given: Path, p: params.Params) -> tuple[Path, int]:
    """A readable table file with the columns load.columns names and at least one row; returns
    (its resolved path, its rows)."""
    path = given if given.is_absolute() else Path.cwd() / given
    if path.is_dir():
        raise PipelineError(f"{given}: a directory; name the files of new rows")
    if not path.is_file():
        raise PipelineError(f"{given}: file not found")
    path = path.resolve()
    check_path_name(path.name, f"{given}: file name")
    table_format(path)
    if project_file(base, path):
        raise PipelineError(
            f"{given}: a file of the project itself ({path.relative_to(base)}: tracked by git, or an "
            "ignored output), not new data; ingest copies new files into data/raw/incoming"
        )
    frame = read_table(path, None, None, p.load.encoding)
    rows = len(to_canonical(frame, p.load, str(given), p.task))  # the load stage's column checks
    if rows == 0:
        raise PipelineError(f"{given}: no rows")
    return path, rows


def project_file(base: Path, path: Path) -> bool:
    """A file git tracks, or one it ignores (the pipeline's outputs, DVC's data), outside data/raw:
    copying it would version the project's own files as rows. A new file put anywhere is fine."""
    if not path.is_relative_to(base) or path.is_relative_to(base / catalog.INCOMING.parent):
        return False
    rel = path.relative_to(base).as_posix()
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "--", rel], cwd=base, capture_output=True)
    ignored = subprocess.run(["git", "check-ignore", "--quiet", "--", rel], cwd=base, capture_output=True)
    return tracked.returncode == 0 or ignored.returncode == 0


def copy(src: Path, dest: Path) -> None:
    """Copy through a temporary sibling and a rename: a killed copy leaves no half file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def restore(base: Path, target: Path, store: str | None) -> None:
    """The files earlier ingests added, so that `dvc add` keeps them: pulled from the DVC remote
    (or checked out of the local cache without one) when only their .dvc file is here."""
    if not (base / dvc_file(target)).is_file():
        return
    dvc(base, "pull" if store else "checkout", "--quiet", dvc_file(target).as_posix())


def dvc(base: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=base, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).split())[-400:]
        raise PipelineError(f"`dvc {' '.join(args)}` failed in {base}: {tail}")
    return proc.stdout.strip()


def push_git(base: Path, branch: str) -> None:
    """The ingest commit to origin's branch; a rejected push names the commands that finish it."""
    proc = git_remote(base, "push", "--quiet", "--", remote.ORIGIN, f"HEAD:refs/heads/{branch}")
    if proc.returncode != 0:
        quoted = shlex.quote(branch)
        raise PipelineError(
            f"git push to origin's {branch} failed ({' '.join(proc.stderr.split())}); the rows are "
            f"committed here and on the DVC remote: `git pull --no-rebase origin {quoted} && "
            f"git push origin HEAD:refs/heads/{quoted}`, then `tunepipe ingest` is not needed again "
            f"(the weekly run, or `prefect deployment run retrain/retrain --param ref={quoted}`, trains them)"
        )


def emit(url: str, branch: str, result: Ingested, say: Callable[[str], None]) -> str | None:
    """`tunepipe.data.ingested` to the configured Prefect API, sent and confirmed before the command
    ends (not left to a background queue a short-lived process would drop). None without an API."""
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        say("no Prefect API configured (PREFECT_API_URL): no event emitted; the next scheduled run trains it")
        return None
    from prefect.events import Event
    from prefect.events.clients import get_events_client

    assert result.commit
    event = Event(
        event=EVENT,
        resource={
            "prefect.resource.id": resource_id(url),
            "prefect.resource.name": Path(url.rstrip("/")).name.removesuffix(".git"),
            "tunepipe.branch": branch,
            "tunepipe.commit": result.commit,
        },
        payload={"commit": result.commit, "branch": branch, "files": result.files},
    )

    async def send() -> None:
        async with get_events_client(checkpoint_every=1) as client:
            await client.emit(event)

    try:
        asyncio.run(send())
    except Exception as exc:  # the data is pushed: say how to start the run by hand
        say(
            f"warning: the Prefect event was not sent ({' '.join(str(exc).split())[:200]}); start the "
            f"run by hand: prefect deployment run retrain/retrain --param ref={result.commit}"
        )
        return None
    say(f"event {EVENT} sent for {result.commit[:10]}: the retrain deployment's trigger starts a run")
    return str(event.id)


def to_json(result: Ingested) -> dict[str, Any]:
    return {
        "files": result.files,
        "skipped": result.skipped,
        "commit": result.commit,
        "branch": result.branch,
        "pushed": result.pushed,
        "event": result.event,
    }
