"""tunepipe.deploy as a library: explicit arguments, checks before any command, what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import deploy_project
from tunepipe import deploy
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit


def test_deploy_is_a_library_call(tmp_path: Path, prefect_calls: list) -> None:
    root = deploy_project(tmp_path)
    bare = tmp_path / "origin.git"
    with pytest.raises(PipelineError, match="--pool"):
        deploy.deploy(root, pool="-x")  # refused before any command runs
    assert prefect_calls == []
    said: list[str] = []
    deploy.deploy(root, ["retrain"], pool="cpu", remote_url=str(bare), say=said.append)
    prefect = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", "retrain"]
    assert [cmd for cmd, _ in prefect_calls] == [[*prefect, "--prefect-file", "prefect.yaml"]]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    assert said == [f"deploying retrain: {bare} (main at {head[:10]}) on pool 'cpu'"]
    # The deployments pin the commit deployed (the pull step's commit_sha, retrain's ref).
    assert prefect_calls[0][1]["env"]["TUNEPIPE_GIT_COMMIT"] == head


def test_a_commit_not_on_origins_branch_is_not_deployed(tmp_path: Path, prefect_calls: list) -> None:
    root = deploy_project(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "local only"], cwd=root, check=True)
    with pytest.raises(PipelineError, match=r"HEAD \w{10} is not on .*'s main .*git push origin HEAD:main"):
        deploy.deploy(root, pool="cpu")
    assert prefect_calls == []
