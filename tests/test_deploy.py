"""tunepipe.deploy as a library: explicit arguments, checks before any command, what it says."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from tunepipe import deploy
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit


def test_deploy_is_a_library_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.settings

    root, bare = tmp_path / "project", tmp_path / "origin.git"
    root.mkdir()
    (root / deploy.PREFECT_FILE).write_text("deployments: []\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "project"]):
        subprocess.run([*git, *cmd], cwd=root, check=True)
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=root, check=True)

    with pytest.raises(PipelineError, match="--pool"):
        deploy.deploy(root, pool="-x")  # refused before any command runs
    calls, said = [], []
    real = subprocess.run

    def fake(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        if cmd[:3] == [sys.executable, "-m", "prefect"]:
            calls.append(cmd)
            return subprocess.CompletedProcess(cmd, 0)
        return real(cmd, **kwargs)

    monkeypatch.setattr(subprocess, "run", fake)
    settings = types.SimpleNamespace(api=types.SimpleNamespace(url="http://127.0.0.1:4200/api"))
    monkeypatch.setattr(prefect.settings, "get_current_settings", lambda: settings)
    deploy.deploy(root, ["retrain"], pool="cpu", remote_url=str(bare), say=said.append)
    prefect = [sys.executable, "-m", "prefect", "--no-prompt", "deploy"]
    assert calls == [[*prefect, "--name", "retrain", "--prefect-file", "prefect.yaml"]]
    assert said == [f"deploying retrain: {bare} (main) on pool 'cpu'"]
