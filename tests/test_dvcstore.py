"""DVC's store as tunepipe.dvcstore reads it: the hashes `dvc add` records, the `.dir` manifest
and where the cache keeps each object, checked against DVC itself in a scratch project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunepipe import dvcrepo, dvcstore

pytestmark = pytest.mark.unit

FILES = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)), "sub/deeper/c.txt": b""}


@pytest.fixture(scope="module")
def added(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A git + DVC project where `dvc add` tracked a small tree; (root, the md5 DVC recorded)."""
    root = tmp_path_factory.mktemp("store")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    for rel, data in FILES.items():
        (root / "tree" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "tree" / rel).write_bytes(data)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "tree"], cwd=root, check=True)
    recorded = yaml.safe_load((root / "tree.dvc").read_text())["outs"][0]["md5"]
    return root, recorded


def test_tree_hash_is_what_dvc_add_records(added: tuple[Path, str]) -> None:
    root, recorded = added
    got, files = dvcstore.tree_md5(root / "tree")
    assert got == recorded and dvcstore.is_dir_hash(got)
    assert dvcstore.dvc_md5(root / "tree") == recorded
    assert files == {rel: dvcstore.md5_bytes(data) for rel, data in FILES.items()}


def test_cache_path_is_where_dvc_keeps_objects(added: tuple[Path, str]) -> None:
    root, recorded = added
    with dvcrepo.open_repo(root) as repo:
        for md5 in [recorded, *(dvcstore.md5_bytes(d) for d in FILES.values())]:
            path = dvcstore.cache_path(repo, md5)
            assert path == Path(repo.cache.local.oid_to_path(md5))
            assert path.is_file()
            assert dvcstore.shown(repo, md5) == f".dvc/cache/{dvcstore.object_key(md5)}"
        assert dvcstore.object_path(root / ".dvc" / "cache", recorded) == dvcstore.cache_path(repo, recorded)
    assert dvcstore.CACHE_FILE.search(dvcstore.object_path("/c", "ab" + "c" * 30).as_posix())
    assert dvcstore.object_url("s3://bucket/store/", "abcd") == "s3://bucket/store/files/md5/ab/cd"


def test_manifest_reads_dvcs_file_list(added: tuple[Path, str]) -> None:
    root, recorded = added
    cache = root / ".dvc" / "cache"
    files, why = dvcstore.read_manifest(dvcstore.object_path(cache, recorded), recorded)
    assert why is None
    assert files == dvcstore.tree_md5(root / "tree")[1]
    with dvcrepo.open_repo(root) as repo:
        assert dvcstore.cached_manifest(repo, recorded) == files
    assert dvcstore.find_manifest([root / "elsewhere", cache], recorded) == files


def test_missing_edited_and_unreadable_manifests(tmp_path: Path) -> None:
    missing = "0" * 32 + ".dir"
    absent = dvcstore.object_path(tmp_path, missing)
    assert dvcstore.read_manifest(absent, missing) == (None, dvcstore.MISSING)
    assert dvcstore.find_manifest([tmp_path], missing) == {}

    good = json.dumps([{"md5": "1" * 32, "relpath": "x"}]).encode()
    name = dvcstore.md5_bytes(good) + ".dir"
    place = dvcstore.object_path(tmp_path, name)
    place.parent.mkdir(parents=True)
    place.write_bytes(good.replace(b"x", b"y"))  # edited: no longer hashes to its name
    files, why = dvcstore.read_manifest(place, name)
    assert files is None and why == f"md5 {dvcstore.md5_bytes(place.read_bytes())}.dir"
    assert dvcstore.find_manifest([tmp_path], name) == {}

    broken = b"not json"
    name = dvcstore.md5_bytes(broken) + ".dir"
    place = dvcstore.object_path(tmp_path, name)
    place.parent.mkdir(parents=True, exist_ok=True)
    place.write_bytes(broken)
    assert dvcstore.read_manifest(place, name) == (None, "unreadable")
