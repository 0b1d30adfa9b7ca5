"""DVCLive as the train stage's logger: its files feed `dvc plots`, `dvc exp run` records them as an
experiment's metrics, and nothing it writes carries a timestamp into DVC's hashes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.helpers import copy_project, dvc, run, set_params
from tunepipe import catalog, stage, training
from tunepipe.report import worktree

CURVES = "reports/live/plots/metrics"
EVAL = ("loss", "accuracy", "precision_macro", "recall_macro", "f1_macro")


def history(steps: int = 12, every_eval: int = 6) -> list[dict[str, Any]]:
    """A trainer's log history: a loss at every step, an evaluation every `every_eval` steps."""
    entries: list[dict[str, Any]] = []
    for step in range(1, steps + 1):
        entries.append({"loss": 1.0 / step, "epoch": step / 6, "step": step})
        if step % every_eval == 0:
            entries.append(
                {"eval_loss": 0.5 / step, "eval_accuracy": step / 20, "epoch": step / 6, "step": step}
            )
    entries.append({"train_runtime": 1.5, "train_loss": 0.3, "epoch": 2.0, "step": steps})
    return entries


def log_through(out: Path, entries: list[dict[str, Any]], restored: int = 0, main: bool = True) -> None:
    """Trainer's calls to the callback: the first `restored` entries come from a checkpoint."""
    callback = training.live_logger(5, ["accuracy"], out)
    state = SimpleNamespace(is_world_process_zero=main, log_history=entries[:restored], global_step=0)
    callback.on_train_begin(None, state, None)
    for entry in entries[restored:]:
        state.log_history.append(entry)
        state.global_step = entry["step"]
        callback.on_log(None, state, None, logs=entry)
    callback.on_train_end(None, state, None)


@pytest.mark.unit
def test_the_curves_are_the_same_logged_live_or_after_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no DVC project: DVCLive logs without one
    # A Studio token in the user's environment: stages still send nothing (offline by default).
    monkeypatch.setenv("DVC_STUDIO_TOKEN", "isat_not_a_token")
    monkeypatch.setenv("DVC_STUDIO_REPO_URL", "https://example.invalid/project.git")
    monkeypatch.delenv("DVC_STUDIO_OFFLINE", raising=False)
    for key, value in stage.QUIET_DEFAULTS.items():  # stage.set_env_defaults, undone after the test
        monkeypatch.setenv(key, os.environ.get(key, value))

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("DVCLive posted to Studio")

    monkeypatch.setattr("dvclive.studio.post_live_metrics", no_network)
    entries = history()
    log_through(tmp_path / "live", entries)
    files = {
        p.relative_to(tmp_path / "live").as_posix(): p.read_text() for p in (tmp_path / "live").rglob("*.*")
    }
    assert sorted(files) == [
        "metrics.json",
        "plots/metrics/eval/accuracy.tsv",
        "plots/metrics/eval/loss.tsv",
        "plots/metrics/train/loss.tsv",
    ]
    # the mean loss of each 5 steps, the evaluations as logged
    assert files["plots/metrics/train/loss.tsv"].split("\n")[:3] == [
        "step\tloss",
        f"5\t{sum(1 / s for s in range(1, 6)) / 5}",
        f"10\t{sum(1 / s for s in range(6, 11)) / 5}",
    ]
    assert files["plots/metrics/eval/accuracy.tsv"].split() == ["step", "accuracy", "6", "0.3", "12", "0.6"]
    assert json.loads(files["metrics.json"]) == {
        "train": {"loss": sum(1 / s for s in range(6, 11)) / 5},
        "eval": {"loss": 0.5 / 12, "accuracy": 0.6},
        "step": 12,
    }
    for restored in (1, 8, 14, len(entries) - 1):  # a run resumed from a checkpoint at each point
        log_through(tmp_path / f"resumed-{restored}", entries, restored)
        again = tmp_path / f"resumed-{restored}"
        assert {p.relative_to(again).as_posix(): p.read_text() for p in again.rglob("*.*")} == files

    log_through(tmp_path / "rank1", entries, main=False)  # under DDP only rank 0 logs
    assert not (tmp_path / "rank1").exists()


@pytest.mark.stage
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


@pytest.mark.stage
def test_dvc_exp_run_then_exp_show_lists_dvclives_metrics(
    reproduced: tuple[Path, str], tmp_path: Path
) -> None:
    """Same bytes after a resume: test_the_curves_are_the_same_logged_live_or_after_a_resume and
    tests/test_resume_faults.py; identical hashes across clones: tests/test_pipeline.py."""
    project = copy_project(reproduced[0], tmp_path / "project")
    set_params(project, **{"evaluate.thresholds": {}})  # the experiment's model may score anything
    run(["git", "commit", "-qam", "no thresholds"], project)
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
