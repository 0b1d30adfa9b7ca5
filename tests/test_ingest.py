"""`tunepipe ingest`: new rows reach both remotes as one commit, a fresh clone's load stage reads
them, a second ingest from another clone keeps the first one's files. Real git (a bare origin)
and a directory DVC remote; no Prefect API configured here (the event is tested with a real server
and worker in tests/test_deployments.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import OFFLINE, dvc, make_project, make_reviews, raw_data_in_dvc, run, stored_files

pytestmark = pytest.mark.stage  # one load stage per case; git and dvc subprocesses


def git(root: Path, *args: str) -> str:
    return run(["git", *args], root).stdout.strip()


def team(tmp_path: Path, raw_in_dvc: bool = False) -> tuple[Path, Path]:
    """(bare origin, DVC remote) of a project laid out as the default one: data/raw/README.md
    tracked by git; or (raw_in_dvc) data/raw as one DVC output, as the older recipe left it."""
    author = make_project(tmp_path / "author", tmp_path / "no-model")
    if raw_in_dvc:
        bare, store = raw_data_in_dvc(author, tmp_path)
    else:
        bare, store = tmp_path / "origin.git", tmp_path / "dvc-remote"
        run(["git", "init", "-q", "--bare", str(bare)], tmp_path)
        dvc(author, "remote", "add", "-d", "shared", str(store))
        git(author, "commit", "-q", "-am", "DVC remote")
        git(author, "remote", "add", "origin", str(bare))
    dvc(author, "push", "-q")
    git(author, "push", "-q", "origin", "HEAD:refs/heads/main")
    run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], bare)
    return bare, store


def clone(bare: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", f"file://{bare}", str(dest)], dest.parent)
    git(dest, "config", "user.email", "producer@example.com")
    git(dest, "config", "user.name", "producer")
    return dest


def ingest(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")} | OFFLINE
    return subprocess.run(
        [sys.executable, "-m", "tunepipe.cli", "ingest", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={**env, "PREFECT_API_URL": ""},
    )


def new_rows(path: Path, n: int, seed: int) -> Path:
    pd.DataFrame(make_reviews(n, seed=seed)).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("raw_in_dvc", [False, True], ids=["default layout", "data/raw in DVC"])
def test_ingested_rows_reach_both_remotes_and_the_next_clones_load(tmp_path: Path, raw_in_dvc: bool) -> None:
    bare, store = team(tmp_path, raw_in_dvc)
    before = stored_files(store)
    first = clone(bare, tmp_path / "producer-1")
    done = ingest(first, str(new_rows(tmp_path / "week-1.csv", 30, seed=7)), "-m", "week 1 reviews")
    assert done.returncode == 0, done.stderr
    assert "added week-1.csv (30 rows) to data/raw/incoming; committed " in done.stdout
    assert "no Prefect API configured (PREFECT_API_URL): no event emitted" in done.stdout
    tracked = "data/raw.dvc" if raw_in_dvc else "data/raw/incoming.dvc"
    assert git(bare, "log", "-1", "--format=%s", "main") == "week 1 reviews"
    assert tracked in git(bare, "show", "--name-only", "--format=", "main").split()
    assert stored_files(store) > before  # the bytes went to the DVC remote

    # Another producer, from a clone that holds only the .dvc file: the first file is kept.
    second = clone(bare, tmp_path / "producer-2")
    done = ingest(second, str(new_rows(second / "week-2.csv", 20, seed=8)))
    assert done.returncode == 0, done.stderr
    assert git(bare, "log", "-1", "--format=%s", "main") == "ingest: week-2.csv (20 rows)"

    # A worker's fresh clone: dvc pull, then the load stage adds both files to the train rows.
    worker = clone(bare, tmp_path / "worker")
    dvc(worker, "pull", "-q", tracked)
    assert sorted(p.name for p in (worker / "data/raw/incoming").iterdir()) == ["week-1.csv", "week-2.csv"]
    load = run(
        [sys.executable, "-m", "tasks.load"], worker, env={**os.environ, **OFFLINE, "PYTHONPATH": str(worker)}
    )
    assert "load: added 30 row(s) of data/raw/incoming/week-1.csv (tunepipe ingest)" in load.stdout
    assert "load: added 20 row(s) of data/raw/incoming/week-2.csv (tunepipe ingest)" in load.stdout
    manifest = pd.read_json(worker / "data/splits/manifest.json", typ="series")
    assert manifest["incoming"]["data/raw/incoming/week-1.csv"] == {"rows": 30, "source_rows": [241, 270]}
    assert sum(manifest["rows"].values()) > 240  # the source's rows and the ingested ones

    # The same file again is nothing new: no commit, nothing pushed.
    head = git(bare, "rev-parse", "main")
    again = ingest(second, str(second / "week-2.csv"))
    assert (
        again.returncode == 0 and "nothing new: data/raw/incoming/week-2.csv already ingested" in again.stdout
    )
    assert git(bare, "rev-parse", "main") == head


def test_no_push_commits_here_only(tmp_path: Path) -> None:
    bare, _ = team(tmp_path)
    producer = clone(bare, tmp_path / "producer")
    head = git(bare, "rev-parse", "main")
    done = ingest(producer, str(new_rows(tmp_path / "new.csv", 10, seed=3)), "--no-push")
    assert done.returncode == 0, done.stderr
    assert "not pushed (--no-push)" in done.stdout
    assert git(bare, "rev-parse", "main") == head
    assert git(producer, "log", "-1", "--format=%s") == "ingest: new.csv (10 rows)"
    assert git(producer, "status", "--porcelain") == ""  # the .dvc file and .gitignore committed
