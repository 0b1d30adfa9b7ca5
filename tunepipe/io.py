"""Atomic writes: a reader never sees a half-written file or directory, and a writer killed
half-way leaves nothing behind for good.

Temporary siblings are named `.<name>.tmp-<pid>-<random>`: the next write of the same output
removes those whose process is gone (a kill leaves them), and `.gitignore` keeps them out of
git's view meanwhile. Outputs get the permissions the user's umask gives any new file, not the
owner-only ones of mkdtemp/mkstemp (or of the weights transformers writes)."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import lzma
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunepipe.errors import PipelineError

TEMP_MARK = ".tmp-"
# When this process started, near enough: a temporary sibling of the old unnamed form
# (`.model.k3j2x9_a` from before the pid was in the name) that is older is no one's work.
_STARTED = time.time()


def _temp_prefix(target: Path) -> str:
    return f".{target.name}{TEMP_MARK}{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove temporary siblings of `target` left by writers that were killed; returns them."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    ours = re.compile(rf"^\.{re.escape(target.name)}{re.escape(TEMP_MARK)}(\d+)-")
    legacy = re.compile(rf"^\.{re.escape(target.name)}\.([a-z0-9_]{{8}}|old)$")
    removed = []
    for sibling in target.parent.iterdir():
        match = ours.match(sibling.name)
        if match:
            stale = not _alive(int(match.group(1)))
        elif legacy.match(sibling.name):
            try:
                stale = sibling.lstat().st_mtime < _STARTED
            except FileNotFoundError:
                continue
        else:
            continue
        if not stale:
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                sibling.unlink()
        removed.append(sibling)
    return removed


# Written into every folder a command writes for the user (`tunepipe fetch -o`): a later write
# may replace a folder holding it, and only such a folder, an empty one, or one the pipeline
# declares as its own output (dvc.yaml), unless the user says --force.
OUTPUT_MARKER = ".tunepipe-output"
MARKER_TEXT = "Written by tunepipe; a later tunepipe command may replace this folder.\n"
# What makes a folder a project (or a git work tree): never replaced, --force or not.
PROJECT_FILES = ("dvc.yaml", ".dvc", ".git")
# A name that becomes one path component: no separator, no `..`, no leading dot or dash.
PATH_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*")
PATH_NAME_RULE = "letters, digits, '.', '_', '+' or '-', not starting with '.' or '-', no '..'"


def is_path_name(value: object) -> bool:
    return isinstance(value, str) and PATH_NAME.fullmatch(value) is not None and ".." not in value


def check_path_name(value: object, what: str) -> str:
    """`value` as one path component of a file tunepipe writes or reads (an artifact name, a
    version): nothing that climbs out of its folder or reads as an option."""
    if not is_path_name(value):
        raise PipelineError(f"{what} {value!r}: expected {PATH_NAME_RULE}")
    return str(value)


def _project_files(folder: Path) -> list[str]:
    with contextlib.suppress(OSError):
        return sorted(name for name in PROJECT_FILES if os.path.lexists(folder / name))
    return []


def _protected(target: Path, owned: bool = False) -> str | None:
    """Why `target` may never be replaced, --force or not; None when it may be."""
    here, resolved = Path(os.path.abspath(target)), target.resolve()
    if resolved.is_dir() and _project_files(resolved):
        return f"it is a project or git work tree ({', '.join(_project_files(resolved))})"
    places = ((Path.cwd().resolve(), "the current directory"), (Path.home().resolve(), "your home folder"))
    for place, label in places:
        for candidate in (here, resolved):
            if place == candidate or candidate in place.parents:
                return f"it is or holds {label}"
    if here == Path(here.anchor) or resolved == Path(resolved.anchor):
        return "it is the file system root"
    # Not for pipeline outputs: `dvc exp run --temp` runs the stages inside .dvc/tmp/exps.
    inside = [part for part in (*here.parts, *resolved.parts) if part in (".git", ".dvc")]
    if inside and not owned:
        return f"it is inside a {inside[0]} folder (a repository's own data)"
    if resolved.is_dir():
        for folder, dirs, _ in os.walk(resolved):  # symlinked folders are not followed
            for name in dirs:
                found = _project_files(Path(folder) / name)
                if found:
                    return f"it holds a project or git work tree ({Path(folder) / name}: {', '.join(found)})"
    return None


def check_replaceable(target: Path, force: bool = False, owned: bool = False) -> None:
    """Refuse to replace what the writer did not write: `target` may go if it does not exist, is
    an empty folder, carries OUTPUT_MARKER, is a pipeline output (`owned`), or `force` is given;
    never when it is (or holds) a project, a git work tree, the current directory, home or `/`."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return
    why = _protected(target, owned)
    if why:
        raise PipelineError(f"{target}: refusing to replace it: {why}; choose another output folder")
    if owned or force:
        return
    if target.is_dir() and not target.is_symlink():
        if (target / OUTPUT_MARKER).is_file() or not any(target.iterdir()):
            return
        what = "a folder tunepipe did not write (it holds other files)"
    else:
        what = "a symlink" if target.is_symlink() else "a file"
    raise PipelineError(
        f"{target}: refusing to replace {what}; choose a new or empty folder, or pass --force to replace it"
    )


@contextlib.contextmanager
def atomic_dir(target: Path, *, force: bool = False, owned: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `target` only if the block succeeds.

    `target` must pass check_replaceable (before and again when the block is done). `owned`: a
    pipeline output dvc.yaml declares, written without OUTPUT_MARKER (it would change the output's
    hash); any other folder gets the marker, so that the next write may replace it."""
    target = Path(target)
    check_replaceable(target, force, owned)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    try:
        yield tmp
        if not owned:
            (tmp / OUTPUT_MARKER).write_text(MARKER_TEXT)
        apply_umask(tmp)
        check_replaceable(target, force, owned)
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
            target.rename(old / target.name)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(target: Path) -> Iterator[Path]:
    """A temporary folder named as a sibling of `target` would be, removed when the block ends: one
    a killed process left (a model copy can be large) goes at the next call, as clean_stale's."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def apply_umask(root: Path) -> None:
    """Give a tree written through mkdtemp/mkstemp the modes a plain mkdir/open would have."""
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o777 & ~mask)
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            executable = os.stat(path).st_mode & 0o111
            os.chmod(path, (0o777 if executable else 0o666) & ~mask)


def write_text(path: Path, text: str) -> None:
    with atomic_text(path) as fh:
        fh.write(text)


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[Any]:
    """A text file written piece by piece (a stream of predictions) that appears under `path` only
    once complete: written to a temporary sibling, renamed over `path` at the end, removed on
    any error, so a reader never sees half a file and a failed run leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_bytes(path: Path) -> bytes | None:
    """A file's bytes, decompressed as pandas would by suffix; None when that is not possible here."""
    path = Path(path)
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower())
    try:
        if opener:
            with opener(path, "rb") as fh:
                return fh.read()
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                return archive.read(names[0]) if len(names) == 1 else None
        if path.suffix.lower() == ".zst":
            return None
        return path.read_bytes()
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile):
        return None


NEWLINE = b"\n"


def decode_error(path: Path, encoding: str, setting: str = "load.encoding") -> str:
    """Where a file stops being `encoding`: the line and the byte, not a position in a buffer."""
    data = read_bytes(path)
    where, what = "", f"not valid {encoding}"
    if data is not None:
        try:
            data.decode(encoding)
        except UnicodeDecodeError as err:
            line_start = data.rfind(NEWLINE, 0, err.start) + 1
            where = f", line {data.count(NEWLINE, 0, err.start) + 1}"
            what += f" (byte {data[err.start]:#04x} at byte {err.start - line_start + 1} of the line)"
    return (
        f"{path}{where}: {what}; re-save the file as UTF-8, or set {setting} to the file's encoding "
        "(e.g. latin-1, cp1252)"
    )
