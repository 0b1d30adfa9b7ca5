"""DVCLive as the train stage's logger: its files feed `dvc plots`, `dvc exp run` records them as an
experiment's metrics, and nothing it writes carries a timestamp into DVC's hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import copy_project, dvc, run, set_params
from tunepipe import catalog
from tunepipe.report import worktree

pytestmark = pytest.mark.stage

CURVES = "reports/live/plots/metrics"
EVAL = ("loss", "accuracy", "precision_macro", "recall_macro", "f1_macro")


def test_dvc_repro_logs_the_curves_through_dvclive_and_dvc_plots_draws_them(
    reproduced: tuple[Path, str],
) -> None:
    project = reproduced[0]
    live = project / catalog.LIVE
    files = sorted(p.relative_to(live).as_posix() for p in live.rglob("*") if p.is_file())
    assert files == [
        "metrics.json",
        *(f"plots/metrics/eval/{name}.tsv" for name in sorted(EVAL)),
        "plots/metrics/train/loss.tsv",
    ]  # no dvc.yaml, params or report of DVCLive's own
    summary = json.loads((live / "metrics.json").read_text())
    assert set(summary) == {"train", "eval", "step"} and set(summary["eval"]) == set(EVAL)
    loss = (project / CURVES / "train/loss.tsv").read_text().splitlines()
    assert loss[0] == "step\tloss" and len(loss) > 2  # no timestamp column
    assert (project / CURVES / "eval/accuracy.tsv").read_text().splitlines()[0] == "step\taccuracy"
    curves = catalog.read_curves(worktree(project))
    assert curves["eval"]["eval_accuracy"][-1] == pytest.approx(summary["eval"]["accuracy"])
    assert curves["eval"]["step"][-1] == summary["step"]

    # DVC holds the curves as the train stage's outputs (nothing left out of dvc.lock)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    outs = {o["path"] for o in lock["stages"]["train"]["outs"]}
    assert {"reports/live/plots", "reports/live/metrics.json", "models/model"} <= outs
    assert set(json.loads(dvc(project, "status", "--json").stdout)) <= {"pretrained"}  # always changed

    shown = json.loads(dvc(project, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown.get("errors")
    drawn = {name for name, renders in shown["data"].items() if renders}
    assert {f"{CURVES}/train/loss.tsv", *(f"{CURVES}/eval/{name}.tsv" for name in EVAL)} <= drawn


def test_retraining_keeps_the_hashes_and_dvc_exp_show_lists_dvclives_metrics(
    reproduced: tuple[Path, str], tmp_path: Path
) -> None:
    project = copy_project(reproduced[0], tmp_path / "project")
    # fp32: `precision: auto` times bf16 on this CPU, a choice the machine's load can change;
    # no threshold: the experiment's model may score anything
    set_params(project, **{"train.precision": "fp32", "evaluate.thresholds": {}})
    run(["git", "commit", "-qam", "fp32"], project)
    dvc(project, "repro")
    # training again logs the same bytes: the model's and the curves' hashes in dvc.lock stay
    lock = (project / "dvc.lock").read_text()
    dvc(project, "repro", "--force", "--single-item", "train")
    assert (project / "dvc.lock").read_text() == lock

    dvc(project, "exp", "run", "-n", "lower-lr", "-S", "train.learning_rate=0.001")
    rows = json.loads(dvc(project, "exp", "show", "--json").stdout)
    # the workspace, the baseline commit and under it the experiment, each with its metrics files
    experiments = [exp for row in rows for exp in row.get("experiments") or []]
    [exp] = [e for e in experiments if e.get("name") == "lower-lr"]
    [rev] = exp["revs"]
    metrics = rev["data"]["metrics"]
    live = metrics[str(catalog.LIVE_METRICS)]["data"]
    assert set(live["eval"]) == set(EVAL) and live["step"] > 0
    assert "accuracy" in metrics[str(catalog.METRICS)]["data"]
    assert rev["data"]["params"]["params.yaml"]["data"]["train"]["learning_rate"] == 0.001
