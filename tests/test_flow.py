"""The Prefect flow and `dvc repro` share one cache: dvc.lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import (
    ALWAYS_RUN,
    artifacts,
    copy_project,
    dvc,
    ran,
    run,
    set_params,
    task_states,
    tunepipe,
)
from tunepipe import dvcrepo

pytestmark = pytest.mark.e2e


def test_flow_and_dvc_repro_agree(
    reproduced: tuple[Path, str], tmp_path: Path, prefect_backend: None
) -> None:
    from flows.pipeline import pipeline

    project = copy_project(reproduced[0], tmp_path / "project")  # after `dvc repro`
    state = pipeline(root=str(project), return_state=True)
    assert state.is_completed()
    assert task_states(state) == {
        "pretrained": "Cached",  # it ran (always_changed), and its output did not change
        "load": "Cached",
        "validate": "Cached",
        "tokenize": "Cached",
        "train": "Cached",
        "evaluate": "Cached",
        "drift": "Cached",  # no version in prod yet: nothing to compare with
        "register": "Completed",
    }
    assert {"validation-summary", "test-metrics", "drift"} <= artifacts(state)
    result = state.result()
    assert result["registered"]["tag"] == "model@v0.1.0"
    lineage = json.loads(run(["git", "show", "model@v0.1.0:lineage/model@v0.1.0.json"], project).stdout)
    assert lineage["prefect_flow_run_id"] == str(state.state_details.flow_run_id)

    # A param change: the flow re-runs exactly train and evaluate, registers a new version,
    # and leaves nothing for `dvc repro` to do.
    set_params(project, **{"train.learning_rate": 5e-3})
    state = pipeline(root=str(project), return_state=True)
    assert task_states(state) == {
        "pretrained": "Cached",
        "load": "Cached",
        "validate": "Cached",
        "tokenize": "Cached",
        "train": "Completed",
        "evaluate": "Completed",
        "drift": "Cached",  # the data is prod's own
        "register": "Completed",
    }
    assert state.result()["registered"]["tag"] == "model@v0.1.1"
    assert dvcrepo.stale(project) == {}
    # `dvc status` always lists pretrained (always_changed); a repro runs it and nothing else.
    assert dvc(project, "status").stdout.split() == ["pretrained:", "always", "changed"]
    assert ran(dvc(project, "repro").stdout) == ALWAYS_RUN

    # Nothing changed: every task is Cached and the same version is reported, not a new one.
    state = pipeline(root=str(project), return_state=True)
    assert set(task_states(state).values()) == {"Cached"}
    assert state.result()["registered"] == {
        "version": "v0.1.1",
        "tag": "model@v0.1.1",
        "commit": run(["git", "rev-parse", "HEAD"], project).stdout.strip(),
        "new": False,
    }
    versions = [t for t in run(["git", "tag", "--list"], project).stdout.split() if "@" in t]
    assert versions == ["model@v0.1.0", "model@v0.1.1"]  # the rest are GTO stage tags (model#prod#2)


def test_flow_stops_at_failed_validation(project: Path, prefect_backend: None) -> None:
    from flows.pipeline import pipeline

    set_params(project, **{"load.labels": ["fresh", "stale"]})
    state = pipeline(root=str(project), return_state=True)
    assert state.is_failed()
    states = task_states(state)
    assert states["pretrained"] == states["load"] == "Completed" and states["validate"] == "Failed"
    assert "tokenize" not in states and "register" not in states
    with pytest.raises(Exception, match="expect_column_values_to_be_in_set failed on column 'label'"):
        state.result()


def test_killed_train_task_is_retried_and_resumes(
    tmp_path: Path, tiny_bert: Path, prefect_backend: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of the training process under the flow: Prefect retries the train task, which
    resumes from the last checkpoint and ends with the uninterrupted run's metrics."""
    import signal
    import threading
    import time

    import psutil

    from flows.pipeline import pipeline
    from tests.helpers import KILL_AFTER_STEP, configure, make_project, run_stages_in_process, saved_steps

    baseline = configure(make_project(tmp_path / "baseline", tiny_bert))
    run_stages_in_process(baseline, monkeypatch)
    expected = json.loads((baseline / "reports/metrics.json").read_text())
    monkeypatch.chdir(tmp_path)

    project = configure(make_project(tmp_path / "flow", tiny_bert))
    killed: list[int] = []

    def kill_training() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if any(step >= KILL_AFTER_STEP for step in saved_steps(project)):
                for proc in psutil.process_iter(["cmdline", "cwd"]):
                    if "tasks.train" in (proc.info["cmdline"] or []) and proc.info["cwd"] == str(project):
                        proc.send_signal(signal.SIGKILL)
                        killed.append(proc.pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_training, daemon=True)
    killer.start()
    state = pipeline(root=str(project), registration=False, return_state=True)
    killer.join()
    assert killed, "training finished before it could be killed"
    assert state.is_completed()

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    train_run = next(r for r in runs if r.name == "train")
    assert train_run.run_count == 2 and train_run.state.name == "Completed"
    report = json.loads((project / "reports/train_run.json").read_text())
    assert int(report["resumed_from"].removeprefix("checkpoint-")) >= KILL_AFTER_STEP
    assert json.loads((project / "reports/metrics.json").read_text()) == expected


def test_the_command_runs_the_projects_flow_with_its_exit_code(project: Path) -> None:
    """`tunepipe run` (the library's CLI) starts the project's flows/pipeline.py from the project
    root: the stages run, and a failed one ends the command with its error line and exit code."""
    set_params(project, **{"load.labels": ["fresh", "stale"]})
    result = tunepipe(project, "run", "--no-register", check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: validate: "), result.stderr[-2000:]
    assert "expectation(s) failed (report: reports/validation.json)" in errors[0]
