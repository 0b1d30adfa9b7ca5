"""The flow against real processes: a `dvc repro` holding DVC's lock, and a model that misses its
thresholds. Either ends with one clear error, no traceback, nothing retried or registered."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import copy_project, set_params, tags
from tunepipe import dvcrepo

pytestmark = pytest.mark.e2e


def wait_for_read_lock(project: Path, pid: int, path: str, timeout: float = 60) -> None:
    """Until DVC's rwlock shows `pid` reading `path` (its stage command is running then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lock = json.loads((project / ".dvc/tmp/rwlock").read_text())
        except (OSError, ValueError):
            lock = {}
        readers = (lock.get("read") or {}).get(str(project / path), [])
        if any(r["pid"] == pid for r in readers):
            return
        time.sleep(0.2)
    raise AssertionError(f"dvc repro (PID {pid}) did not lock {path} within {timeout} s")


def task_runs(state) -> dict[str, tuple[str, int]]:
    """task name -> (state name, how many times it ran)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: (r.state.name, r.run_count) for r in runs}


def test_flow_meets_a_running_dvc_repro(
    reproduced: tuple[Path, str], tmp_path: Path, prefect_backend: None
) -> None:
    from flows.pipeline import pipeline

    project = copy_project(reproduced[0], tmp_path / "project")
    # A stage that reads the model for a minute, as a long evaluation would: while it runs, its
    # `dvc repro` holds a read lock on models/model, which the train stage writes.
    spec = yaml.safe_load((project / "dvc.yaml").read_text())
    spec["stages"]["hold"] = {"cmd": 'python -c "import time; time.sleep(120)"', "deps": ["models/model"]}
    (project / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    set_params(project, **{"train.seed": 7})  # train is stale: the flow runs it
    lock = (project / "dvc.lock").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "--single-item", "hold"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the sleeping stage command ends with it
    )
    try:
        wait_for_read_lock(project, holder.pid, "models/model")
        state = pipeline(root=str(project), registration=False, return_state=True)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert state.is_failed()
    busy = (
        rf"^the project is busy: DVC's lock \(\.dvc/tmp/rwlock\) is held by PID {holder.pid} "
        r"\(dvc repro --single-item hold\); wait until it ends"
    )
    with pytest.raises(dvcrepo.ProjectBusy, match=busy):
        state.result()
    runs = task_runs(state)
    assert runs["train"] == ("Failed", 1)  # train has a retry, and it was not spent on the lock
    assert "evaluate" not in runs
    assert {runs[s][0] for s in ("pretrained", "load", "validate", "tokenize")} == {"Cached"}
    assert (project / "dvc.lock").read_bytes() == lock


def test_a_missed_threshold_ends_the_flow_with_the_gate_message(
    reproduced: tuple[Path, str], tmp_path: Path
) -> None:
    project = copy_project(reproduced[0], tmp_path / "project")
    # The tiny model classifies the synthetic reviews perfectly, and no threshold may ask more
    # than 1: one epoch at a negligible learning rate leaves it near chance.
    near_chance = {"train.epochs": 1, "train.learning_rate": 1e-7}
    set_params(project, **near_chance, **{"evaluate.thresholds": {"accuracy": 0.95}})
    evaluated = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["evaluate"]
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL", None)  # a temporary server of its own, as a user's first run
    proc = subprocess.run(
        [sys.executable, "-m", "flows.pipeline"], cwd=project, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr  # evaluate's own exit code
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert re.fullmatch(
        r"error: evaluate: model rejected: accuracy = [\d.]+ is below the threshold 0.95 "
        r"\(params.yaml evaluate.thresholds\)",
        errors[0],
    ), proc.stderr
    # The error is the last thing the flow says (Prefect may still log its server stopping).
    after = proc.stderr.split(errors[0], 1)[1]
    assert "error" not in after.lower() and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert "NoneType: None" not in proc.stderr
    assert tags(project) == []
    assert yaml.safe_load((project / "dvc.lock").read_text())["stages"]["evaluate"] == evaluated
