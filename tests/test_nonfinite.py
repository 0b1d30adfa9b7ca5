"""Non-finite numbers never become a model or a verdict: a NaN/inf loss stops training with an
error and nothing is saved; evaluate refuses NaN outputs and metrics; a search prunes a diverged
trial. (Non-finite params.yaml values: tests/test_params_checks.py and the bad-input table.)"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers import make_project, set_params
from tunepipe import metrics
from tunepipe.errors import PipelineError
from tunepipe.evaluation import score, score_regression, score_tokens
from tunepipe.params import Threshold


@pytest.mark.unit
@pytest.mark.parametrize(
    ("task", "scheme"),
    [
        ("sequence_classification", "none"),
        ("regression", "none"),
        ("token_classification", "iob2"),
        ("token_classification", "none"),
    ],
)
def test_every_reported_metric_has_a_scale(task: str, scheme: str) -> None:
    for name in [*metrics.metric_names(task, scheme), "loss"]:
        assert name in metrics.SCALES, name
        assert metrics.greater_is_better(name) is metrics.SCALES[name][2]


@pytest.mark.unit
def test_lower_is_better_is_read_from_the_scales() -> None:
    assert sorted(metrics.LOWER_IS_BETTER) == ["loss", "mae", "mse", "rmse"]
    assert metrics.metric_range("eval_pearson") == (-1.0, 1.0)
    assert metrics.metric_range("rmse") == (0.0, None)
    assert metrics.metric_range("auc") is None


def _state(step: int = 7) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, epoch=0.5)


@pytest.mark.unit
@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf])
def test_guard_stops_on_a_non_finite_training_loss(loss: float) -> None:
    from tunepipe.training import Diverged, finite_guard

    guard = finite_guard()
    guard.on_log(None, _state(), None, logs={"loss": 0.7, "grad_norm": 1.0})
    with pytest.raises(Diverged, match=rf"train: the training loss is {loss} at step 7 .*no model was saved"):
        guard.on_log(None, _state(), None, logs={"loss": loss})


@pytest.mark.unit
def test_guard_stops_on_a_non_finite_validation_metric() -> None:
    from tunepipe.training import Diverged, finite_guard

    guard = finite_guard()
    fine = {"eval_loss": 0.5, "eval_accuracy": 0.8, "eval_runtime": 0.1, "eval_samples_per_second": 99.0}
    guard.on_evaluate(None, _state(), None, metrics=fine)
    with pytest.raises(Diverged, match=r"validation at step 7 gave eval_pearson nan"):
        guard.on_evaluate(None, _state(), None, metrics={"eval_loss": 0.5, "eval_pearson": math.nan})
    assert issubclass(Diverged, PipelineError)  # the stage prints one `error:` line


@pytest.mark.unit
def test_trainer_does_not_average_a_nan_loss_away(tmp_path: Path) -> None:
    from tunepipe import params, training

    cpu = {"device": "cpu", "precision": "fp32"}
    args = training.training_arguments(params.Params(), tmp_path, 100, cpu)
    assert args.logging_nan_inf_filter is False


@pytest.mark.unit
def test_nonfinite_weights_are_named() -> None:
    import torch

    from tunepipe.training import nonfinite_weights

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    assert nonfinite_weights(model) == []
    with torch.no_grad():
        model[1].bias[0] = math.nan
    assert nonfinite_weights(model) == ["1.bias"]


# --- evaluate ------------------------------------------------------------------------------


@pytest.mark.unit
def test_evaluate_refuses_nan_logits() -> None:
    """argmax reads a NaN row as class 0: the accuracy would look like a real number."""
    logits = np.array([[0.1, 0.9], [math.nan, math.nan], [0.8, 0.2]])
    with pytest.raises(PipelineError, match=r"evaluate: the model's outputs are NaN or infinite for 1 of 3"):
        score(np.array([1, 0, 0]), logits, ["a", "b"], {"accuracy": Threshold(min=0.5)})


@pytest.mark.unit
def test_evaluate_refuses_nan_regression_predictions() -> None:
    with pytest.raises(PipelineError, match=r"outputs are NaN or infinite for 2 of 3 test examples"):
        score_regression(np.array([1.0, 2.0, 3.0]), np.array([1.0, math.inf, math.nan]), {})


@pytest.mark.unit
def test_evaluate_refuses_a_nan_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the cause, a non-finite metric never reaches evaluation.json (nor register)."""
    from tunepipe import evaluation

    monkeypatch.setattr(
        evaluation, "token_scores", lambda refs, preds, scheme: {"f1": math.nan, "per_type": {}}
    )
    with pytest.raises(PipelineError, match=r"evaluate: f1 is nan on the test split"):
        score_tokens([["O"]], [["O"]], "iob2", {})


@pytest.mark.unit
def test_evaluate_scores_finite_outputs() -> None:
    result = score_regression(
        np.array([1.0, 2.0, 3.0]), np.array([1.1, 2.1, 2.9]), {"pearson": Threshold(min=0.9)}
    )
    assert result["passed"] and all(math.isfinite(v) for v in result["metrics"].values())


# --- training that diverges ----------------------------------------------------------------


@pytest.mark.stage
def test_a_diverging_run_fails_and_saves_nothing(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finite but absurd learning rate (1e30) drives the weights past float32 within a few steps:
    the train stage exits 1 naming the diverged loss, and writes no model, report or checkpoint."""
    from tasks import load, tokenize, validate
    from tasks import train as train_task
    from tunepipe import catalog, stage

    project = make_project(tmp_path / "p", tiny_bert)
    # a checkpoint at every step: those written before the divergence must go too
    set_params(project, **{"train.learning_rate": 1e30, "train.epochs": 2, "train.evaluations_per_epoch": 9})
    monkeypatch.chdir(project)
    for step in (load, validate, tokenize):
        step.main()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        stage.run(train_task.main)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: train: ") and "training diverged and no model was saved" in line, err
    assert "Traceback" not in err
    assert "nan" in line or "inf" in line, line
    assert not catalog.MODEL.exists()
    assert not catalog.TRAIN_REPORT.exists()
    assert (
        not [p for p in catalog.CHECKPOINTS.rglob("*") if p.is_file()]
        if catalog.CHECKPOINTS.exists()
        else True
    )


@pytest.mark.stage
def test_a_search_prunes_a_diverging_trial_and_goes_on(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A learning rate that diverges is a bad point of the space, not a broken study: its trial is
    pruned (with the reason), the other trials run, and the best model is a finite one."""
    import optuna
    from optuna.trial import TrialState

    from tasks import load, tokenize, validate
    from tunepipe import catalog, params, search

    project = make_project(tmp_path / "p", tiny_bert)
    space = {"learning_rate": [1e30, 3e-3]}
    set_params(project, **{"train.epochs": 1, "search.sampler": "grid", "search.space": space})
    monkeypatch.chdir(project)
    for step in (load, validate, tokenize):
        step.main()
    p = params.read("params.yaml")
    result = search.run_search(p, project, trials=2)

    study = optuna.load_study(study_name=p.search.study_name, storage=search.storage_url(p, project))
    states = {t.params["learning_rate"]: t for t in study.get_trials()}
    diverged = states[1e30]
    assert diverged.state == TrialState.PRUNED
    assert "training diverged" in diverged.user_attrs["diverged"]
    assert states[3e-3].state == TrialState.COMPLETE and math.isfinite(states[3e-3].value)
    assert result["best_params"] == {"learning_rate": 3e-3}
    assert result["trials"] == {"COMPLETE": 1, "PRUNED": 1}
    assert not list((project / catalog.SEARCH_TRIALS).glob("trial-*"))
    assert f"trial {diverged.number} PRUNED (diverged: " in capsys.readouterr().out
