"""Metric direction and params checks seen from the stages: a regression run selecting on rmse
keeps its lowest-error checkpoint, and a params typo stops `load` before it reads any data."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import FILLER, NEGATIVE, POSITIVE, REPO, make_project, make_reviews, set_params

pytestmark = pytest.mark.stage


def scored_rows(n: int, seed: int) -> list[dict]:
    """A score of 0..4: how many of four cue words are positive ones."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 5
        words = rng.sample(POSITIVE, positive) + rng.sample(NEGATIVE, 4 - positive) + rng.sample(FILLER, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i}", "score": float(positive)})
    return rows


def test_regression_selecting_on_rmse_keeps_the_lowest_error_checkpoint(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import load, tokenize, validate
    from tunepipe import catalog, params, training
    from tunepipe import report as report_mod

    project = make_project(tmp_path / "p", tiny_bert)
    pd.DataFrame(scored_rows(200, 0)).to_csv(project / "data/raw/scores.csv", index=False)
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["task"] = "regression"
    data["load"] = {
        "source": "data/raw/scores.csv",
        "columns": {"text": "text", "label": "score"},
        "split": {"validation": 0.2, "test": 0.2},
    }
    data["evaluate"]["thresholds"] = {"rmse": {"max": 2.0}}
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    epochs = 6
    set_params(
        project,
        **{
            "validate.min_rows_per_class": 0,
            "validate.target_range": [0, 4],
            "train.metric_for_best_model": "rmse",
            "train.epochs": epochs,
            "train.batch_size": 8,
            "train.early_stopping_patience": epochs,  # every evaluation runs: the curve is complete
        },
    )
    monkeypatch.chdir(project)
    for stage in (load, validate, tokenize):
        stage.main()
    report = training.train(params.read("params.yaml"))

    curve = pd.DataFrame(catalog.read_curves(report_mod.worktree(Path(".")))["eval"])
    assert len(curve) == epochs
    assert curve["eval_rmse"].max() > curve["eval_rmse"].min()  # else any choice would look right
    lowest = curve.loc[curve["eval_rmse"].idxmin()]
    assert report["best_checkpoint"] == f"checkpoint-{int(lowest['step'])}"
    assert report["best_metric"] == {"rmse": pytest.approx(lowest["eval_rmse"], rel=1e-6)}


def test_a_params_typo_stops_load_before_any_data_is_read(tmp_path: Path) -> None:
    """`python -m tasks.load` with train.device: gpu fails on reading params.yaml: no splits."""
    (tmp_path / "data/raw").mkdir(parents=True)
    pd.DataFrame(make_reviews(40)).to_csv(tmp_path / "data/raw/reviews.csv", index=False)
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["load"]["source"] = "data/raw/reviews.csv"
    data["train"]["device"] = "gpu"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    env = os.environ | {"PYTHONPATH": str(REPO)}

    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.load"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started

    assert proc.returncode == 1
    assert "params.yaml: train.device: expected one of auto, cpu, cuda, got 'gpu'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data/splits").exists()
    assert elapsed < 10, f"load took {elapsed:.1f} s to refuse a params typo"
