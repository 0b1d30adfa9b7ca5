"""DVC's Python API, opened from the project root (DVC resolves some paths against the cwd)."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tunepipe import catalog
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import git
from tunepipe.io import read_json

ALWAYS_CHANGED = "always changed"  # dvc status's entry for an always_changed stage
PRETRAINED_STAGE = "pretrained"


# What `dvc` prints when another DVC process holds the repository lock or the stage's files.
LOCK_ERROR_TEXT = ("Unable to acquire lock", "is busy, it is being blocked by")
HOLDER_LINE = re.compile(r"\(PID (\d+)\): (.+)")
DVC_MAIN = re.compile(r"\S*dvc/__main__\.py\b")  # how `dvc` shows as a command in DVC's records


class ProjectBusy(PipelineError):
    """Another DVC process holds the workspace lock: running again at once would meet it again."""


@contextlib.contextmanager
def open_repo(root: Path) -> Iterator[Any]:
    """DVC's Repo at `root`; DVC's lock error becomes ProjectBusy, naming who holds the lock."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    # DVC 3.67 trips DeprecationWarnings of its own dependencies (dvc-data's trie): harmless, but
    # a Prefect task logs each one as a WARNING line.
    try:
        with contextlib.chdir(root), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with Repo(".") as repo:
                yield repo
    except LockError as exc:
        raise busy(root, str(exc)) from None


def lock_holders(root: Path, text: str = "") -> list[tuple[str, int, str]]:
    """(lock file, PID, command) of the live processes holding DVC's locks in `root`.

    Read from the holders DVC names in its error `text`, from .dvc/tmp/rwlock (per-path read
    and write locks, with PID and command), and from .dvc/tmp/lock (the repository lock, PID only).
    """
    import psutil

    tmp = Path(root) / ".dvc" / "tmp"
    found: dict[int, tuple[str, int, str]] = {}
    for pid, cmd in HOLDER_LINE.findall(text):
        found.setdefault(int(pid), (".dvc/tmp/rwlock", int(pid), cmd.strip()))
    with contextlib.suppress(OSError, ValueError):
        rw = json.loads((tmp / "rwlock").read_text())
        for mode in ("write", "read"):
            for infos in (rw.get(mode) or {}).values():
                for info in infos if isinstance(infos, list) else [infos]:
                    pid = int(info["pid"])
                    if pid not in found and psutil.pid_exists(pid):
                        found[pid] = (".dvc/tmp/rwlock", pid, str(info["cmd"]))
    pid = repo_lock_holder(tmp / "lock")
    if pid is not None and pid not in found:
        found[pid] = (".dvc/tmp/lock", pid, _command_of(pid))
    found.pop(os.getpid(), None)
    return list(found.values())


def repo_lock_holder(path: Path) -> int | None:
    """The PID in DVC's repository lock file while another process holds it (the file outlives
    the lock with its last holder's PID in it, so the lock itself is tried)."""
    import zc.lockfile

    if not path.is_file():
        return None
    try:
        zc.lockfile.LockFile(str(path)).close()
        return None  # free
    except zc.lockfile.LockError:
        pass
    with contextlib.suppress(OSError):
        match = re.search(r"\d+", path.read_text())
        if match:
            return int(match.group())
    return None


def _command_of(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline()) or "unknown command"
    except psutil.Error:
        return "unknown command"


def busy(root: Path, text: str = "") -> ProjectBusy:
    """The error for a workspace another DVC process holds: who holds it and what to do."""
    holders = lock_holders(root, text)
    if holders:
        held = "; ".join(
            f"lock ({lock}) is held by PID {pid} ({DVC_MAIN.sub('dvc', cmd)})" for lock, pid, cmd in holders
        )
    else:
        held = "lock (.dvc/tmp/rwlock or .dvc/tmp/lock) is held by another DVC process"
    return ProjectBusy(
        f"the project is busy: DVC's {held}; wait until it ends and run this again (if no such "
        "process runs, remove .dvc/tmp/lock and .dvc/tmp/rwlock)"
    )


def is_lock_error(text: str) -> bool:
    return any(marker in text for marker in LOCK_ERROR_TEXT)


def stale(root: Path, stage: str | None = None) -> dict[str, Any]:
    """What `dvc status` reports: empty when the stage (or the whole pipeline) is up to date.

    An always_changed stage's bare "always changed" is not stale (see settle_pretrained).
    """
    with open_repo(root) as repo:
        status = settle_pretrained(root, repo.status(targets=[stage] if stage else None))
    found = {}
    for name, entries in status.items():
        rest = [e for e in entries if e != ALWAYS_CHANGED]
        if rest:
            found[name] = rest
        elif name != PRETRAINED_STAGE:
            found[name] = entries  # another always_changed stage: nothing tells it is current
    return found


def settle_pretrained(root: Path, status: dict[str, Any]) -> dict[str, Any]:
    """DVC's status with the always_changed `pretrained` stage's real state.

    `dvc status` lists that stage every time, and sees the stages after it as stale only once it
    has run. Its output is compared with what it would write now (cheap, no model loaded): a
    changed model shows as a changed output of `pretrained`, a current one stays "always changed".
    """
    if status.get(PRETRAINED_STAGE) != [ALWAYS_CHANGED] or pretrained_current(root):
        return status
    return status | {PRETRAINED_STAGE: [{"changed outs": {str(catalog.PRETRAINED): "modified"}}]}


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


def pinned_inputs(lock: dict[str, Any]) -> dict[str, str]:
    """path -> md5 of every dep in dvc.lock that no stage writes: what a rebuild starts from."""
    outs = set(lock_outputs(lock))
    found: dict[str, str] = {}
    for body in (lock.get("stages") or {}).values():
        for dep in body.get("deps", []):
            if dep["path"] not in outs and "md5" in dep:
                found.setdefault(dep["path"], dep["md5"])
    return found


def unversioned_files(root: Path, paths: list[str]) -> list[str]:
    """Files at or under `paths` (relative to the project root) that HEAD's commit holds neither in
    git nor through a committed `.dvc` file: no remote can give them back."""
    root = Path(root).resolve()
    committed = {
        n for n in git(root, "ls-tree", "-r", "-z", "--name-only", "HEAD", check=False).split("\0") if n
    }
    by_dvc = []
    for name in sorted(n for n in committed if n.endswith(".dvc")):
        body = yaml.safe_load(git(root, "show", f"HEAD:{name}", check=False) or "null") or {}
        folder = posixpath.dirname(name)
        by_dvc += [
            posixpath.normpath(posixpath.join(folder, o["path"])) for o in body.get("outs", []) if "path" in o
        ]
    found: list[str] = []
    for path in paths:
        target = root / path
        files = [target] if target.is_file() else sorted(f for f in target.rglob("*") if f.is_file())
        for file in files:
            rel = file.relative_to(root).as_posix()
            if file.name == ".gitignore" or file.suffix == ".dvc" or rel in committed:
                continue
            if not any(rel == d or rel.startswith(d + "/") for d in by_dvc):
                found.append(rel)
    return found


def unversioned_inputs(root: Path, lock: dict[str, Any], sources: list[str] | None = None) -> list[str]:
    """The data a registration would name by hash only: files under dvc.lock's pinned data inputs
    (data/raw) in neither git nor DVC, and local `sources` (load.source paths) that no pinned input
    covers, which dvc.lock does not pin at all. `tunepipe replay` cannot get either back."""
    return _unversioned(
        Path(root).resolve(), [p for p in pinned_inputs(lock) if not p.endswith(".py")], sources
    )


def declared_inputs(root: Path) -> list[str]:
    """The data dvc.yaml's stages read and none writes (data/raw): what dvc.lock pins once they run."""
    stages = (yaml.safe_load((Path(root) / "dvc.yaml").read_text()) or {}).get("stages") or {}
    outs = {o if isinstance(o, str) else next(iter(o)) for b in stages.values() for o in b.get("outs") or []}
    deps = {d for b in stages.values() for d in b.get("deps") or [] if isinstance(d, str)}

    def written(dep: str) -> bool:
        return any(dep == o or dep.startswith(o + "/") for o in outs)

    return sorted(d for d in deps if d.startswith("data/") and not written(d))


def unversioned_before_run(root: Path, sources: list[str] | None = None) -> list[str]:
    """unversioned_inputs before a run, when dvc.lock may not pin the inputs yet (dvc.yaml does)."""
    return _unversioned(Path(root).resolve(), declared_inputs(root), sources)


def _unversioned(root: Path, pinned: list[str], sources: list[str] | None) -> list[str]:
    found = unversioned_files(root, pinned)
    for source in sources or []:
        target = (root / source).resolve()
        rel = target.relative_to(root).as_posix() if target.is_relative_to(root) else None
        if rel is None or not any(rel == p or rel.startswith(p + "/") for p in pinned):
            found.append(source)
    return found


def read_lock(root: Path, rev: str | None = None) -> dict[str, Any]:
    text = git(root, "show", f"{rev}:dvc.lock") if rev else (root / "dvc.lock").read_text()
    return yaml.safe_load(text) or {}


def check_workspace_output(root: Path, folder: Path) -> None:
    """A folder that is a DVC output of this project (models/model) must hold what dvc.lock pins:
    DVC's own status (cheap: unchanged files are not re-hashed) names what changed."""
    root, folder = Path(root).resolve(), Path(folder).resolve()
    try:
        rel = folder.relative_to(root).as_posix()
    except ValueError:
        return
    if not (root / ".dvc").is_dir() or not (root / "dvc.lock").is_file():
        return
    if rel not in lock_outputs(read_lock(root)):
        return
    with open_repo(root) as repo:
        status = repo.data_status(targets=[rel], granular=True)
    changed = [
        f"{path} {what}"
        for what, paths in sorted((status.get("uncommitted") or {}).items())
        for path in sorted(paths)
        if not path.endswith("/")
    ]
    if not changed:
        changed = [f"{p} {w}" for w, ps in (status.get("uncommitted") or {}).items() for p in ps]
    if changed:
        raise PipelineError(
            f"{rel}: its files differ from what dvc.lock pins ({', '.join(changed)}): restore them with "
            f"`dvc checkout {rel}` (or `dvc repro` to retrain), or pass --no-verify to use them as they are"
        )
