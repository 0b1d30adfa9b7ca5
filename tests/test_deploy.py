"""tunepipe.deploy as a library: explicit arguments, checks before any command, what it says."""

from __future__ import annotations

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
    assert said == [f"deploying retrain: {bare} (main) on pool 'cpu'"]
