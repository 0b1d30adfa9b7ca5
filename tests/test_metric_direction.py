"""One direction per metric (metrics.LOWER_IS_BETTER) at all four places that compare values: the
best checkpoint with early stopping, the search's direction, and the evaluation thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunepipe import metrics, params, search, training
from tunepipe.evaluation import check_thresholds, describe_misses
from tunepipe.params import Threshold

pytestmark = pytest.mark.unit

LOWER = ["mse", "rmse", "mae", "loss"]
HIGHER = ["accuracy", "f1_macro", "pearson", "spearmanr", "matthews_correlation"]
CPU = {"device": "cpu", "precision": "fp32"}


@pytest.mark.parametrize("metric", LOWER + HIGHER)
def test_direction_table(metric: str) -> None:
    assert metrics.greater_is_better(metric) is (metric in HIGHER)
    assert metrics.greater_is_better(f"eval_{metric}") is (metric in HIGHER)  # the Trainer's names


@pytest.mark.parametrize("metric", ["rmse", "mse", "mae", "loss", "accuracy", "pearson"])
def test_best_checkpoint_follows_the_direction(metric: str, tmp_path: Path) -> None:
    args = training.training_arguments(params.Params(), tmp_path, 100, CPU, metric)
    assert args.metric_for_best_model == metric
    assert args.greater_is_better is (metric in HIGHER)


def test_early_stopping_counts_a_lower_rmse_as_an_improvement(tmp_path: Path) -> None:
    from transformers import EarlyStoppingCallback, TrainerControl, TrainerState

    args = training.training_arguments(params.Params(), tmp_path, 100, CPU, "rmse")
    stopper = EarlyStoppingCallback(early_stopping_patience=1)
    state, control = TrainerState(best_metric=0.5), TrainerControl()
    stopper.on_evaluate(args, state, control, metrics={"eval_rmse": 0.4})
    assert not control.should_training_stop
    stopper.on_evaluate(args, state, control, metrics={"eval_rmse": 0.6})
    assert control.should_training_stop


@pytest.mark.parametrize(
    ("metric", "direction"), [("mse", "minimize"), ("mae", "minimize"), ("pearson", "maximize")]
)
def test_search_direction_follows_the_metric(metric: str, direction: str, tmp_path: Path) -> None:
    p = params.parse(
        {
            "task": "regression",
            "search": {
                "metric": metric,
                "space": {"learning_rate": [1.0e-3]},
                "storage": f"sqlite:///{tmp_path / 'study.db'}",
            },
        }
    )
    study = search.make_study(p, tmp_path)
    assert study.direction.name.lower() == direction
    assert study.user_attrs["metric"] == metric


def test_thresholds_check_by_their_bound() -> None:
    thresholds = {"mse": Threshold(max=0.5), "pearson": Threshold(min=0.8)}
    passed = check_thresholds({"mse": 0.3, "pearson": 0.9}, thresholds)
    assert passed == [
        {"metric": "mse", "max": 0.5, "value": 0.3, "passed": True},
        {"metric": "pearson", "min": 0.8, "value": 0.9, "passed": True},
    ]
    failed = check_thresholds({"mse": 0.7, "pearson": 0.7}, thresholds)
    assert [c["passed"] for c in failed] == [False, False]
    evaluation = {"metrics": {"mse": 0.7, "pearson": 0.7}, "thresholds": failed}
    assert describe_misses(evaluation) == (
        "mse = 0.7000 is above the threshold 0.5 (a maximum); pearson = 0.7000 is below the threshold 0.8"
    )
    assert [metrics.format_threshold(c) for c in failed] == ["<= 0.5", ">= 0.8"]


def test_a_threshold_on_an_unreported_metric_fails() -> None:
    (check,) = check_thresholds({"accuracy": 0.9}, {"rmse": Threshold(max=0.5)})
    assert check == {"metric": "rmse", "max": 0.5, "value": None, "passed": False}
    assert "rmse is not reported" in describe_misses({"metrics": {"accuracy": 0.9}, "thresholds": [check]})
