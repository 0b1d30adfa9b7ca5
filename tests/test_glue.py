"""Every GLUE preset end to end on a synthetic dataset with the hub's exact schema.

`load.preset: glue/<task>` alone has to pick the columns, labels, splits, task type, best-model
metric and extra metrics; every reported number is checked against scikit-learn and scipy on
the written test predictions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.glue_data import SCHEMAS, save_glue_like
from tests.helpers import cli, make_project, run_stages_in_process
from tunepipe import params, presets
from tunepipe.errors import PipelineError

CLASSIFICATION = ["accuracy", "precision_macro", "recall_macro", "f1_macro"]
REGRESSION = ["mse", "rmse", "mae", "pearson", "spearmanr"]
# preset -> (hub config, split that serves as test, extra metrics, metric of the best checkpoint)
CASES = {
    "glue/cola": ("cola", "validation", ["matthews_correlation"], "matthews_correlation"),
    "glue/sst2": ("sst2", "validation", [], "accuracy"),
    "glue/mrpc": ("mrpc", "validation", ["f1"], "f1"),
    "glue/qqp": ("qqp", "validation", ["f1"], "f1"),
    "glue/stsb": ("stsb", "validation", [], "pearson"),
    "glue/mnli": ("mnli", "validation_matched", [], "accuracy"),
    "glue/qnli": ("qnli", "validation", [], "accuracy"),
    "glue/rte": ("rte", "validation", [], "accuracy"),
    "glue/wnli": ("wnli", "validation", [], "accuracy"),
}
N_TRAIN, N_EVAL = 160, 40


@pytest.mark.unit
def test_cases_cover_every_preset() -> None:
    assert sorted(CASES) == presets.names()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """One make_project per module, copied per case: git and DVC set-up cost over a second each
    time, and run_stages_in_process uses neither."""
    return make_project(tmp_path_factory.mktemp("glue-template") / "p", tiny_bert)


def configure(project: Path, preset: str, source: Path) -> None:
    """The whole load section is the preset plus a source: the shipped columns and labels would win."""
    path = project / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data["task"] = None
    data["load"] = {"preset": preset, "source": str(source)}
    data["validate"]["min_rows_per_class"] = 2
    data["evaluate"]["thresholds"] = {}
    # ~100 steps: STS-B's randomly initialised regressor first spends many steps on the mean
    # (2.5) and only then learns the cues; the classification tasks need fewer.
    data["train"].update(epochs=6, learning_rate=3e-3, batch_size=8, evaluations_per_epoch=1)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def expected_classification(df: pd.DataFrame, labels: list[str], extras: list[str]) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        matthews_corrcoef,
        precision_score,
        recall_score,
    )

    y, p = df["actual"], df["predicted"]
    out = {
        "accuracy": accuracy_score(y, p),
        "precision_macro": precision_score(y, p, average="macro", zero_division=0),
        "recall_macro": recall_score(y, p, average="macro", zero_division=0),
        "f1_macro": f1_score(y, p, average="macro", zero_division=0),
    }
    if "matthews_correlation" in extras:
        out["matthews_correlation"] = matthews_corrcoef(y, p)
    if "f1" in extras:
        out["f1"] = f1_score(y, p, pos_label=labels[1], labels=labels, zero_division=0)
    return out


def expected_regression(df: pd.DataFrame) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    y, p = df["actual"].to_numpy(float), df["predicted"].to_numpy(float)
    mse = mean_squared_error(y, p)
    return {
        "mse": mse,
        "rmse": mse**0.5,
        "mae": mean_absolute_error(y, p),
        "pearson": pearsonr(y, p).statistic,
        "spearmanr": spearmanr(y, p).statistic,
    }


@pytest.mark.stage
@pytest.mark.parametrize("preset", list(CASES))
def test_glue_preset_end_to_end(
    preset: str, tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from datasets import load_from_disk

    config, test_split, extras, best = CASES[preset]
    labels = SCHEMAS[config][1]
    source = save_glue_like(config, tmp_path / "glue", N_TRAIN, N_EVAL)
    test_rows = load_from_disk(str(source))[test_split].num_rows
    project = Path(shutil.copytree(template, tmp_path / "p"))
    configure(project, preset, source)

    run_stages_in_process(project, monkeypatch)

    metrics = json.loads((project / "reports/metrics.json").read_text())
    reported = {k for k, v in metrics.items() if isinstance(v, float)}
    if labels is None:
        assert reported == set(REGRESSION)
        assert "accuracy" not in metrics
        predictions = pd.read_csv(project / "reports/test_predictions.csv")
        assert list(predictions.columns) == ["source_row", "actual", "predicted"]
        expected = expected_regression(predictions)
        tolerance = 1e-9  # test_predictions.csv holds the exact values the metrics were computed on
    else:
        assert reported == set(CLASSIFICATION + extras)
        predictions = pd.read_csv(
            project / "reports/test_predictions.csv", dtype={"actual": str, "predicted": str}
        )
        assert list(predictions.columns) == ["source_row", "actual", "predicted", "score"]
        assert set(predictions["actual"]) == set(labels)
        expected = expected_classification(predictions, labels, extras)
        tolerance = 1e-9
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=tolerance), name

    # GLUE's test labels are hidden: the labelled validation split is the test split, whole
    # (the synthetic texts are unique, so dedupe drops nothing), and validation comes from train.
    assert metrics["examples"] == len(predictions) == test_rows == N_EVAL
    manifest = json.loads((project / "data/splits/manifest.json").read_text())
    assert manifest["source"]["test"].endswith(f"[{test_split}]"), manifest["source"]
    assert manifest["source"]["train"].endswith("[train]"), manifest["source"]
    assert manifest["source"]["validation"].startswith("carved from train"), manifest["source"]
    assert manifest["rows"]["test"] == test_rows
    assert manifest["rows"]["train"] + manifest["rows"]["validation"] == N_TRAIN

    report = json.loads((project / "reports/train.json").read_text())
    assert list(report["best_metric"]) == [best]
    # The run really trained (past chance on the clean validation split; how far depends on the
    # tiny BERT's vocabulary, which differs per build), and the predictions are mixed, so the
    # comparison with sklearn above was not a trivial all-one-class case.
    assert report["best_metric"][best] > 0.4, report
    if labels is not None:
        assert predictions["predicted"].nunique() > 1 and metrics["accuracy"] < 1.0, metrics

    model_config = json.loads((project / "models/model/config.json").read_text())
    if labels is None:
        assert model_config["problem_type"] == "regression"
        assert len(model_config["id2label"]) == 1  # one output: the score
    else:
        assert model_config["id2label"] == {str(i): name for i, name in enumerate(labels)}
        assert model_config.get("problem_type") != "regression"

    if preset == "glue/mnli":
        # MNLI's mismatched validation set is scored with the trained model, not trained again:
        # `tunepipe evaluate` on the dataset's other split, read with the preset's load settings.
        scored = {}
        for split in ("validation_matched", "validation_mismatched"):
            args = ("--model", "models/model", "--no-verify", str(source), "--split", split, "--json")
            code, out, err = cli(capsys, "evaluate", *args)
            assert code == 0, err
            scored[split] = json.loads(out)
        assert scored["validation_matched"]["metrics"] == metrics  # the evaluate stage's own split
        mismatched = scored["validation_mismatched"]
        rows = load_from_disk(str(source))["validation_mismatched"].num_rows
        assert mismatched["metrics"]["examples"] == rows
        assert mismatched["source"] == f"{source} [validation_mismatched]"


@pytest.mark.unit
def test_preset_task_conflict_is_refused() -> None:
    with pytest.raises(PipelineError, match="regression"):
        params.parse({"load": {"preset": "glue/stsb"}, "task": "sequence_classification"})


@pytest.mark.unit
def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(PipelineError, match="glue/nope") as info:
        params.parse({"load": {"preset": "glue/nope"}})
    for name in presets.names():
        assert name in str(info.value)


@pytest.mark.unit
def test_mnli_mismatched_points_to_evaluate() -> None:
    """glue/mnli-mm is no preset of its own: the glue/mnli model is scored on that split."""
    with pytest.raises(PipelineError, match=r"glue/mnli-mm.*tunepipe evaluate .*validation_mismatched"):
        params.parse({"load": {"preset": "glue/mnli-mm"}})
