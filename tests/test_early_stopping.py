"""Early stopping on a flat metric, and checkpoint pruning that never deletes the best one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from tests.helpers import make_project, set_params

pytestmark = pytest.mark.stage


class CheckpointWatcher(TrainerCallback):
    """Lists the checkpoint folders after every save (rotation has already happened then)."""

    def __init__(self) -> None:
        self.seen: list[tuple[list[str], str | None]] = []

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folders = sorted(p.name for p in Path(args.output_dir).glob("checkpoint-*"))
        best = Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None
        self.seen.append((folders, best))


def test_flat_metric_stops_early_and_keeps_the_best_checkpoint(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks import load, tokenize, validate
    from tunepipe import params, training

    project = make_project(tmp_path / "p", tiny_bert)
    # a learning rate of 1e-12: the weights barely move, so the validation metric never improves.
    set_params(
        project,
        **{
            "train.learning_rate": 1.0e-12,
            "train.epochs": 10,
            "train.early_stopping_patience": 2,
            "train.early_stopping_threshold": 0.001,
        },
    )
    monkeypatch.chdir(project)
    for stage in (load, validate, tokenize):
        stage.main()
    watcher = CheckpointWatcher()
    report = training.train(params.read("params.yaml"), callbacks=(watcher,))

    # one evaluation per epoch: the first sets the best, two more without improvement stop it
    assert report["stopped_early"] is True
    assert report["epochs_run"] == pytest.approx(3.0)
    assert report["global_step"] < report["max_steps"]
    assert report["best_checkpoint"] == watcher.seen[0][0][0]  # the first evaluation stayed the best
    for folders, best in watcher.seen:
        assert len(folders) <= 2  # older checkpoints are pruned ...
        assert best in folders  # ... but never the best one
    assert json.loads(Path("reports/train.json").read_text())["stopped_early"] is True
