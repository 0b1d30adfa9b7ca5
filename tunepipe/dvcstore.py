"""DVC's content store, in one place: how DVC hashes a file or a folder, where an object lies in a
cache or a directory remote, and how a folder's `.dir` manifest (its file list) is read.

Every reader of DVC's objects (audit, registry, replay, promotion) goes through here, so the
layout (`<cache>/files/md5/ab/cdef...`, DVC 3) and the manifest format are written down once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DIR_SUFFIX = ".dir"  # a folder's hash: the md5 of its manifest, with this suffix
MISSING = "missing"  # read_manifest's reason when no object is there

# A DVC cache file (any cache dir: files/md5/<2 hex>/<30 hex>), as DVC's symlink link type makes.
CACHE_FILE = re.compile(r"/files/md5/[0-9a-f]{2}/[0-9a-f]{30}$")


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_file(path: Path) -> str:
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def tree_md5(folder: Path, skip: tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
    """DVC's hash of a directory (`<md5>.dir`, the md5 of its file list) and each file's md5, as
    dvc.lock records them; `skip`: relative paths left out (a fetched folder's OUTPUT_MARKER)."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.tree import Tree

    folder = Path(folder)
    paths = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    files = {rel: md5_file(p) for rel, p in paths.items() if rel not in skip}
    tree = Tree()
    for rel, md5 in files.items():
        tree.add(tuple(rel.split("/")), None, HashInfo("md5", md5))
    tree.digest()
    return str(tree.hash_info.value), files


def dvc_md5(path: Path) -> str:
    """The hash dvc.lock records for a file (its md5) or a directory (`<md5>.dir`)."""
    return md5_file(path) if Path(path).is_file() else tree_md5(path)[0]


def is_dir_hash(md5: str) -> bool:
    return md5.endswith(DIR_SUFFIX)


def object_key(md5: str) -> str:
    """Where DVC 3 keeps an object below a cache or a remote's root."""
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def object_path(base: str | Path, md5: str) -> Path:
    """An object's file in a cache or a directory remote `base`."""
    return Path(base) / object_key(md5)


def object_url(remote: str, md5: str) -> str:
    """An object's place in a remote named by URL (s3://...) or folder, as a user reads it."""
    return f"{remote.rstrip('/')}/{object_key(md5)}"


def cache_path(repo: Any, md5: str) -> Path:
    """An object's file in the local cache of DVC's Repo `repo` (wherever cache.dir puts it)."""
    return object_path(repo.cache.local_cache_dir, md5)


def shown(repo: Any, md5: str) -> str:
    """An object's cache file as a user reads it: relative to the project when inside it."""
    path = cache_path(repo, md5)
    with contextlib.suppress(ValueError):
        return path.relative_to(Path(repo.root_dir)).as_posix()
    return path.as_posix()


def read_manifest(path: Path, dir_md5: str) -> tuple[dict[str, str] | None, str | None]:
    """(relpath -> md5, None) from the `.dir` object at `path` whose bytes still hash to its name
    `dir_md5`; (None, why) when it is missing (MISSING), edited (`md5 <other>.dir`) or unreadable:
    a manifest that no longer hashes to its name would name the wrong files."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None, MISSING
    got = md5_bytes(raw) + DIR_SUFFIX
    if got != dir_md5:
        return None, f"md5 {got}"
    try:
        return {e["relpath"]: e["md5"] for e in json.loads(raw)}, None
    except (ValueError, KeyError, TypeError):
        return None, "unreadable"


def find_manifest(places: Iterable[str | Path], dir_md5: str) -> dict[str, str]:
    """A folder's manifest from the first cache or directory remote that holds it intact; {} when none."""
    for place in places:
        files, _ = read_manifest(object_path(place, dir_md5), dir_md5)
        if files is not None:
            return files
    return {}


def cached_manifest(repo: Any, dir_md5: str) -> dict[str, str]:
    """A folder's manifest from the local cache of DVC's Repo `repo`; {} when missing or damaged."""
    return find_manifest([repo.cache.local_cache_dir], dir_md5)
