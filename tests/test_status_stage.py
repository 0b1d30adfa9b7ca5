"""`tunepipe status` and the flow's log on a real project after `dvc repro`: why a stage re-runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import ALWAYS_RUN, STAGES, copy_project, dvc, ran, set_params, tunepipe
from tunepipe import staleness

pytestmark = pytest.mark.stage


class Logger:
    """Stands in for Prefect's run logger outside a flow run."""

    def __init__(self, logged: list[str]) -> None:
        self.logged = logged

    def info(self, msg: str, *args: object) -> None:
        self.logged.append(msg % args)


def states(root: Path) -> dict[str, dict]:
    return {s["stage"]: s for s in json.loads(tunepipe(root, "status", "--json").stdout)["stages"]}


def test_status_names_the_param_and_the_file_that_changed(
    reproduced: tuple[Path, str], tmp_path: Path
) -> None:
    root = copy_project(reproduced[0], tmp_path / "project")
    expected = dict.fromkeys(STAGES, "up to date") | dict.fromkeys(ALWAYS_RUN, "always runs")
    assert {s: st["state"] for s, st in states(root).items()} == expected
    assert tunepipe(root, "status").stdout.splitlines()[-1] == "everything up to date"

    set_params(root, **{"train.seed": 7})
    got = states(root)
    assert got["train"] == {
        "stage": "train",
        "state": "stale",
        "runs": True,
        "reasons": ["params.yaml: train.seed modified (42 -> 7)"],
    }
    assert got["evaluate"]["state"] == "upstream stale" and got["evaluate"]["reasons"] == ["train stale"]
    assert all(got[s]["state"] == "up to date" for s in ("load", "validate", "tokenize"))
    text = tunepipe(root, "status", "--root", str(root)).stdout
    assert re.search(r"\ntrain +stale\n +params\.yaml: train\.seed modified \(42 -> 7\)\n", text)
    assert re.search(r"\nevaluate +up to date \(upstream stale: may re-run\)\n", text)

    with (root / "tunepipe/training.py").open("a") as f:
        f.write("\n# a comment is a change to DVC\n")
    (train,) = staleness.check(root, "train")
    assert train.reasons == ("tunepipe/training.py modified", "params.yaml: train.seed modified (42 -> 7)")


def test_the_flow_logs_why_it_runs_a_stage(
    reproduced: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import flows.pipeline

    root = copy_project(reproduced[0], tmp_path / "project")
    logged: list[str] = []
    monkeypatch.setattr(flows.pipeline, "get_run_logger", lambda: Logger(logged))
    with (root / "tunepipe/evaluation.py").open("a") as f:
        f.write("\n# a comment is a change to DVC\n")

    cached = flows.pipeline.dvc_stage.fn(root, "train")
    assert cached.name == "Cached"
    assert flows.pipeline.dvc_stage.fn(root, "evaluate") == "evaluate"  # it ran: dvc.lock updated
    assert logged == [
        "dvc: stage train is up to date, not re-run",
        "dvc: running stage evaluate (stale): tunepipe/evaluation.py modified",
    ]
    assert staleness.check(root, "evaluate")[0].state == "up to date"
    assert ran(dvc(root, "repro").stdout) == ALWAYS_RUN  # pretrained checks the model every time
