"""The retraining flow on a worker's clone: pull from the team's remotes, run, push DVC then git.

A bare git repository and a directory DVC remote stand in for the team's remotes; each worker is
a fresh `git clone`, as a Prefect deployment's pull step makes one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import make_team, remote_tags, run, set_params, stored_files, worker_clone
from tunepipe import catalog

pytestmark = pytest.mark.e2e


@pytest.fixture
def team(tmp_path: Path, tiny_bert: Path) -> tuple[Path, Path]:
    """(bare git remote, DVC remote) holding a project whose raw data DVC tracks."""
    return make_team(tmp_path, tiny_bert)


def retrain(clone: Path, **kwargs: object):
    from flows.retrain import retrain as flow

    return flow(root=str(clone), return_state=True, **kwargs)


def test_workers_share_runs_and_versions_through_the_remotes(
    team: tuple[Path, Path], tmp_path: Path, prefect_backend: None
) -> None:
    bare, store = team
    before = stored_files(store)
    first = worker_clone(bare, tmp_path / "worker-1")
    state = retrain(first, registration=False)  # outputs and run-cache pushed; no dvc.lock in git
    assert state.is_completed(), state.message
    assert (first / catalog.TRAIN_RUN).exists()  # it trained
    assert stored_files(store) > before
    assert not remote_tags(bare)

    # Same code and data on another worker: DVC's run-cache restores train instead of training.
    second = worker_clone(bare, tmp_path / "worker-2")
    assert not (second / "dvc.lock").exists()
    state = retrain(second)
    assert state.is_completed(), state.message
    result = state.result()
    # evaluate re-runs (seconds): its metrics.json is git-tracked, so not in the DVC remote.
    assert [result["stages"][s] for s in ("load", "validate", "tokenize", "train")] == ["Cached"] * 4
    assert not (second / catalog.TRAIN_RUN).exists()
    assert (second / catalog.TEST_PREDICTIONS).read_text() == (first / catalog.TEST_PREDICTIONS).read_text()
    assert result["registered"]["tag"] == "model@v0.1.0"
    assert "model@v0.1.0" in remote_tags(bare)
    # The first version takes prod; its GTO stage tags travel in the same atomic push.
    assert result["promotion"]["promote"] and result["message"].endswith(", promoted to prod")
    assert {"model#staging#1", "model#prod#2"} <= remote_tags(bare)
    # The registration commit reached the branch: the next clone starts from its dvc.lock.
    assert "Register model@v0.1.0" in run(["git", "log", "-1", "--format=%s", "main"], bare).stdout

    third = worker_clone(bare, tmp_path / "worker-3")
    state = retrain(third)
    assert state.is_completed(), state.message
    result = state.result()
    assert set(result["stages"].values()) == {"Cached"}, result["stages"]
    assert result["message"] == (
        "nothing changed: every stage Cached, no new version (model@v0.1.0 is current)"
    )
    assert {t for t in remote_tags(bare) if t.startswith("model@")} == {"model@v0.1.0"}

    # A new training seed reaches the branch; a fresh worker trains, registers v0.1.1 and compares
    # it with prod on the same test split: prod's predictions come from the DVC remote (this
    # clone's pull fetched today's outputs only), not from re-scoring prod's model.
    set_params(third, **{"train.seed": 7})
    run(["git", "commit", "-q", "-am", "another training seed"], third)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], third)
    fourth = worker_clone(bare, tmp_path / "worker-4")
    state = retrain(fourth)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["registered"]["tag"] == "model@v0.1.1"
    promotion = result["promotion"]
    assert promotion["champion"]["version"] == "v0.1.0"
    assert promotion["champion"]["scored"] == "reused its test predictions (same test split)"
    assert "model@v0.1.1" in remote_tags(bare)


def test_a_failed_dvc_push_pushes_no_tag(
    team: tuple[Path, Path], tmp_path: Path, prefect_backend: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.retrain
    from tunepipe import remote

    bare, store = team
    clone = worker_clone(bare, tmp_path / "worker")
    real_push = remote.push

    def push_after_the_remote_broke(root: Path) -> str:
        # The remote fails between pull and push (a full disk, lost credentials): DVC stores
        # objects under <remote>/files/md5, and a plain file there makes every write fail.
        shutil.rmtree(store / "files" / "md5")
        (store / "files" / "md5").write_text("not a directory")
        return real_push(root)

    monkeypatch.setattr(flows.retrain.remote, "push", push_after_the_remote_broke)
    state = retrain(clone)
    assert state.is_failed()
    assert "`dvc push` to DVC remote 'shared' failed, so nothing was pushed to git" in state.message
    assert "model@v0.1.0" in run(["git", "tag"], clone).stdout  # registered here, not shared
    assert not remote_tags(bare)
    assert "Register" not in run(["git", "log", "-1", "--format=%s", "main"], bare).stdout

    # The remote works again: the next run in this checkout pushes the version it left behind,
    # though the model is already registered here and nothing re-runs.
    (store / "files" / "md5").unlink()
    monkeypatch.setattr(flows.retrain.remote, "push", real_push)
    state = retrain(clone)
    assert state.is_completed(), state.message
    message = state.result()["message"]
    assert "pushed to origin what an earlier run left unpushed: " in message, message
    assert "model@v0.1.0" in remote_tags(bare)
    assert "Register model@v0.1.0" in run(["git", "log", "-1", "--format=%s", "main"], bare).stdout
