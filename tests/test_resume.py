"""A train stage killed with SIGKILL resumes from its last checkpoint and ends where an
uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import (
    EPOCHS,
    KILL_AFTER_STEP,
    configure,
    dvc,
    make_project,
    run_stages_in_process,
    saved_steps,
)

pytestmark = pytest.mark.e2e


def test_sigkill_in_train_then_dvc_repro_resumes_to_the_same_metrics(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline = configure(make_project(tmp_path / "baseline", tiny_bert))
    run_stages_in_process(baseline, monkeypatch)
    expected = json.loads((baseline / "reports/metrics.json").read_text())
    assert json.loads((baseline / "reports/train_run.json").read_text())["resumed_from"] is None

    project = configure(make_project(tmp_path / "killed", tiny_bert))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches the stage command too
    )
    deadline = time.monotonic() + 300
    while not any(step >= KILL_AFTER_STEP for step in saved_steps(project)):
        assert proc.poll() is None, "dvc repro finished before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (project / "models/model").exists()  # train never finished
    kept = saved_steps(project)
    assert kept and max(kept) < 9 * EPOCHS

    second = dvc(project, "repro")
    assert "train: resuming from" in second.stdout
    assert "Running stage 'load'" not in second.stdout  # finished stages stay done
    run = json.loads((project / "reports/train_run.json").read_text())
    assert int(run["resumed_from"].removeprefix("checkpoint-")) >= KILL_AFTER_STEP
    report = json.loads((project / "reports/train.json").read_text())
    assert report["global_step"] == 9 * EPOCHS
    assert report == json.loads((baseline / "reports/train.json").read_text())  # no timing, no drift
    assert json.loads((project / "reports/metrics.json").read_text()) == expected
    assert not list(project.glob("models/checkpoints/*/checkpoint-*"))  # cleaned up once finished
