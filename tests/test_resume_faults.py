"""Training faults in-process: a run stopped at any point (even after its last checkpoint, while
the model is saved) resumes to byte-identical outputs, and a checkpoint that cannot be loaded is
set aside instead of failing every later run."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from tests.helpers import copy_project, make_project, set_params
from tunepipe import catalog
from tunepipe.report import worktree

pytestmark = pytest.mark.stage

TRAIN_OUTPUTS = ("reports/train.json",)
STEPS_PER_EPOCH = 9  # 144 training rows, batch 16: a checkpoint every 9 steps, a log every 5


class Stop(Exception):
    """Stands in for a kill: training ends here, leaving its checkpoints."""


class StopAt(TrainerCallback):
    def __init__(self, step: int | None) -> None:
        self.step = step  # None: at the end, after the last checkpoint, before the model is saved

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise Stop

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.step is None:
            raise Stop


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def outputs(project: Path) -> dict[str, bytes]:
    return (
        tree(project / "models/model")
        | {f"live/{name}": data for name, data in tree(project / "reports/live").items()}
        | {name: (project / name).read_bytes() for name in TRAIN_OUTPUTS}
    )


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A project with its data tokenized, and the outputs of one uninterrupted train run."""
    from tasks import load, tokenize, validate
    from tunepipe import params, training

    project = make_project(tmp_path_factory.mktemp("faults") / "p", tiny_bert)
    set_params(project, **{"train.epochs": 4, "train.early_stopping_patience": 4})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        for stage in (load, validate, tokenize):
            stage.main()
        done = copy_project(project, project.parent / "done")
        mp.chdir(done)
        training.train(params.read("params.yaml"))
    return project


def train_in(project: Path, monkeypatch: pytest.MonkeyPatch, stop: int | None = -1) -> dict[str, Any]:
    from tunepipe import params, training

    monkeypatch.chdir(project)
    callbacks = () if stop == -1 else (StopAt(stop),)
    return training.train(params.read("params.yaml"), callbacks=callbacks)


def checkpoints(project: Path) -> list[Path]:
    return sorted(project.glob("models/checkpoints/*/checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


@pytest.mark.parametrize(
    "stop", [None, STEPS_PER_EPOCH + 2, 2 * STEPS_PER_EPOCH + 4], ids=["at-end", "s11", "s22"]
)
def test_a_resumed_run_saves_the_same_bytes(
    tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: int | None
) -> None:
    expected = outputs(tokenized.parent / "done")
    project = copy_project(tokenized, tmp_path / "p")
    with pytest.raises(Stop):
        train_in(project, monkeypatch, stop)
    assert not (project / "models/model").exists()
    run = train_in(project, monkeypatch)
    assert run["resumed_from"] == checkpoints_name(stop)
    assert json.loads((project / "reports/train_run.json").read_text())["resumed_from"] == run["resumed_from"]
    got = outputs(project)
    assert got.keys() == expected.keys()
    assert [name for name in expected if got[name] != expected[name]] == []
    assert b'"problem_type": "single_label_classification"' in got["config.json"]


def checkpoints_name(stop: int | None) -> str:
    last = 4 * STEPS_PER_EPOCH if stop is None else (stop // STEPS_PER_EPOCH) * STEPS_PER_EPOCH
    return f"checkpoint-{last}"


def test_train_json_holds_no_timing_and_curves_keep_their_columns(tokenized: Path) -> None:
    done = tokenized.parent / "done"
    report = json.loads((done / "reports/train.json").read_text())
    assert not {"train_runtime_s", "train_samples_per_second", "resumed_from"} & report.keys()
    run = json.loads((done / "reports/train_run.json").read_text())
    assert run["resumed_from"] is None and run["train_runtime_s"] > 0
    curves = catalog.read_curves(worktree(done))
    assert list(curves["eval"]) == [
        "step",
        "eval_loss",
        "eval_accuracy",
        "eval_precision_macro",
        "eval_recall_macro",
        "eval_f1_macro",
    ]
    evaluations = range(STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH + 1, STEPS_PER_EPOCH)
    assert curves["eval"]["step"] == [float(s) for s in evaluations]
    loss = (done / "reports/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert loss[0] == "step\tloss"  # DVCLive's columns: no timestamp, which would differ between runs
    assert [int(line.split("\t")[0]) for line in loss[1:]] == list(range(5, 4 * STEPS_PER_EPOCH + 1, 5))
    assert curves["train"]["step"] == [float(s) for s in range(5, 4 * STEPS_PER_EPOCH + 1, 5)]


def damage_optimizer(folder: Path) -> None:
    (folder / "optimizer.pt").write_bytes(pickle.dumps({"not": "tensors"}))


def truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


@pytest.mark.parametrize("damage", [damage_optimizer, truncate_weights])
def test_a_checkpoint_that_does_not_load_is_set_aside(
    tokenized: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    damage: Any,
) -> None:
    expected = outputs(tokenized.parent / "done")
    project = copy_project(tokenized, tmp_path / "p")
    with pytest.raises(Stop):
        train_in(project, monkeypatch, 2 * STEPS_PER_EPOCH + 1)
    older, newest = checkpoints(project)
    damage(newest)
    capsys.readouterr()
    run = train_in(project, monkeypatch)
    err = capsys.readouterr().err
    assert f"warning: {newest.relative_to(project)} cannot be resumed from" in err
    assert f"set aside as {newest.with_name('broken-' + newest.name).relative_to(project)}" in err
    assert run["resumed_from"] == older.name
    got = outputs(project)
    assert [name for name in expected if got[name] != expected[name]] == []
    assert not (project / "models/checkpoints" / newest.parent.name).exists()  # gone once finished


def test_every_checkpoint_broken_starts_afresh(
    tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(tokenized, tmp_path / "p")
    with pytest.raises(Stop):
        train_in(project, monkeypatch, STEPS_PER_EPOCH + 1)
    (only,) = checkpoints(project)
    damage_optimizer(only)
    from tunepipe.checkpoints import RUN_INFO, last_complete_checkpoint

    assert last_complete_checkpoint(only.parent) is None
    assert "optimizer.pt" in capsys.readouterr().err
    assert [p.name for p in only.parent.iterdir() if p.name != RUN_INFO] == [f"broken-{only.name}"]
