"""`dvc repro` on a tiny BERT: what re-runs, what stops the run, and what gets registered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import (
    ALWAYS_RUN,
    STAGES,
    copy_project,
    dvc,
    make_project,
    make_reviews,
    ran,
    run,
    set_params,
    tags,
    tunepipe,
)
from tunepipe import dvcrepo


@pytest.mark.e2e
def test_repro_reruns_only_what_changed_then_registers_and_predicts(
    reproduced: tuple[Path, str], tmp_path: Path
) -> None:
    template, first_output = reproduced  # a fresh project after its first `dvc repro`
    assert ran(first_output) == list(STAGES)
    project = copy_project(template, tmp_path / "project")
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert set(metrics) >= {"accuracy", "precision_macro", "recall_macro", "f1_macro"}
    evaluation = json.loads((project / "reports/evaluation.json").read_text())
    matrix = evaluation["confusion_matrix"]["rows_true_cols_predicted"]
    assert sum(map(sum, matrix)) == metrics["examples"]

    # The saved model is a plain save_pretrained directory.
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(project / "models/model"))
    assert clf("wonderful brilliant film")[0]["label"] in {"fresh", "rotten"}

    second = dvc(project, "repro")
    assert ran(second.stdout) == ALWAYS_RUN  # pretrained runs every time; its output is unchanged
    assert "Stage 'tokenize' didn't change, skipping" in second.stdout
    assert dvcrepo.stale(project) == {}

    set_params(project, **{"train.learning_rate": 5e-3})
    third = dvc(project, "repro")
    assert ran(third.stdout) == [*ALWAYS_RUN, "train", "evaluate"]

    registered = tunepipe(project, "register")
    assert "registered model@v0.1.0" in registered.stdout
    assert "model@v0.1.0" in tags(project)
    # Registering the same model again is a no-op.
    assert "already registered as model@v0.1.0" in tunepipe(project, "register").stdout
    assert tags(project) == ["model@v0.1.0"]

    # The tagged commit pins the data and model hashes; the lineage record names them.
    lock = yaml.safe_load(run(["git", "show", "model@v0.1.0:dvc.lock"], project).stdout)
    splits_md5 = next(o["md5"] for o in lock["stages"]["load"]["outs"] if o["path"] == "data/splits")
    model_md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/model")
    tokenized = {o["path"]: o["md5"] for o in lock["stages"]["tokenize"]["outs"]}
    record = json.loads(tunepipe(project, "lineage", "v0.1.0", "--json").stdout)
    assert record["data"]["splits"]["md5"] == splits_md5
    assert {k: v["md5"] for k, v in record["data"]["tokenized"].items()} == {
        "train": tokenized["data/tokenized/train"],
        "validation": tokenized["data/tokenized/validation"],
        "test": tokenized["data/tokenized/test"],
        "labels": tokenized["data/tokenized/labels.json"],
    }
    assert record["pretrained"]["source"] == "files" and "tokenizer.json" in record["pretrained"]["tokenizer"]
    assert record["model"]["md5"] == model_md5
    assert record["params"]["train"]["learning_rate"] == pytest.approx(5e-3)
    assert record["metrics"]["accuracy"] == pytest.approx(
        json.loads((project / "reports/metrics.json").read_text())["accuracy"]
    )
    assert record["packages"]["transformers"]
    assert splits_md5 in tunepipe(project, "lineage", "model@v0.1.0").stdout
    missing = tunepipe(project, "lineage", "v9.9.9", check=False)
    assert missing.returncode == 1 and "no registered version model@v9.9.9" in missing.stderr

    # predict on unlabelled rows, by registered version.
    rows = pd.DataFrame({"text": [r["text"] for r in make_reviews(12, seed=7)], "id": range(12)})
    rows.to_csv(tmp_path / "unlabelled.csv", index=False)
    out = tmp_path / "predictions.csv"
    tunepipe(project, "predict", "--model", "v0.1.0", str(tmp_path / "unlabelled.csv"), "-o", str(out))
    predicted = pd.read_csv(out)
    assert list(predicted.columns) == ["text", "id", "predicted_label", "predicted_score"]
    assert set(predicted["predicted_label"]) <= {"fresh", "rotten"}
    assert predicted["predicted_score"].between(0.5, 1.0).all()
    # The fetched version predicts exactly what the workspace model predicts.
    by_path = tmp_path / "by_path.csv"
    tunepipe(
        project,
        "predict",
        "--model",
        str(project / "models/model"),
        str(tmp_path / "unlabelled.csv"),
        "-o",
        str(by_path),
    )
    pd.testing.assert_frame_equal(predicted, pd.read_csv(by_path))


@pytest.mark.stage
def test_validation_failure_stops_the_run(tmp_path: Path, tiny_bert: Path) -> None:
    rows = make_reviews()
    rows[17]["category"] = "meh"
    project = make_project(tmp_path / "p", tiny_bert, rows)
    result = dvc(project, "repro", check=False)
    assert result.returncode != 0
    assert ran(result.stdout) == ["pretrained", "load", "validate"]
    err = result.stdout + result.stderr
    assert "expect_column_values_to_be_in_set failed on column 'label'" in err
    assert "source row 18" in err and "meh" in err
    assert not (project / "data/tokenized").exists()
    assert not (project / "models/model").exists()
    report = json.loads((project / "reports/validation.json").read_text())
    assert report["success"] is False


@pytest.mark.stage
def test_below_threshold_model_is_not_registered(reproduced: tuple[Path, str], tmp_path: Path) -> None:
    project = copy_project(reproduced[0], tmp_path / "project")
    # The tiny model classifies the synthetic reviews perfectly, and no threshold may ask more
    # than 1: one epoch at a negligible learning rate leaves it near chance.
    set_params(project, **{"train.epochs": 1, "train.learning_rate": 1e-7})
    result = dvc(project, "repro", check=False)
    assert result.returncode != 0
    assert ran(result.stdout) == [*ALWAYS_RUN, "train", "evaluate"]
    assert "model rejected: accuracy = " in result.stderr + result.stdout
    set_params(project, **{"evaluate.thresholds": {"accuracy": 0.95}})
    result = dvc(project, "repro", check=False)
    assert result.returncode != 0
    assert ran(result.stdout) == [*ALWAYS_RUN, "evaluate"]  # thresholds are evaluate's params alone
    assert "below the threshold 0.95" in result.stderr + result.stdout
    refused = tunepipe(project, "register", check=False)
    assert refused.returncode == 1
    assert "missed its evaluation thresholds" in refused.stderr
    assert tags(project) == []


@pytest.mark.e2e
def test_two_clones_reproduce_identical_hashes(
    reproduced: tuple[Path, str], tmp_path: Path, tiny_bert: Path
) -> None:
    """Same code, params, data and model in two checkouts at different paths: byte-identical data
    and model outputs, so lineage hashes and DVC's run-cache hold across machines."""

    def hashes(project: Path) -> dict[str, str]:
        lock = yaml.safe_load((project / "dvc.lock").read_text())
        return {
            o["path"]: o["md5"]
            for stage in lock["stages"].values()
            for o in stage.get("outs", [])
            if o["path"].startswith("data/") or o["path"] == "models/model"
        }

    # Each checkout has its own copy of the model, as each machine has its own site-packages.
    other_model = shutil.copytree(tiny_bert, tmp_path / "other-site-packages" / "model")
    one = reproduced[0]  # reproduced with the model at tiny_bert's path
    two = make_project(tmp_path / "elsewhere" / "two", other_model)
    dvc(two, "repro")
    assert sorted(hashes(one)) == [
        "data/pretrained.json",  # holds no path: the model's files by content
        "data/splits",
        "data/tokenized/labels.json",
        "data/tokenized/test",
        "data/tokenized/train",
        "data/tokenized/validation",
        "models/model",
    ]
    assert hashes(one) == hashes(two)


@pytest.mark.stage
def test_preset_only_load_section_through_dvc_and_registry(tmp_path: Path, tiny_bert: Path) -> None:
    """`load: {preset: glue/stsb, source: ...}` is all a user writes: DVC tracks it, the preset
    makes it a regression run, and the registered version predicts scores."""
    from tests.glue_data import save_glue_like

    project = make_project(tmp_path / "p", tiny_bert)
    source = save_glue_like("stsb", project / "data/raw/stsb")
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["task"] = "regression"
    data["load"] = {"preset": "glue/stsb", "source": "data/raw/stsb"}
    data["evaluate"]["thresholds"] = {"pearson": 0.5}
    data["train"].update(epochs=6, learning_rate=3e-3, batch_size=8)
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert ran(dvc(project, "repro").stdout) == list(STAGES)
    assert "registered model@v0.1.0" in tunepipe(project, "register").stdout
    record = json.loads(tunepipe(project, "lineage", "v0.1.0", "--json").stdout)
    assert record["resolved_params"]["task"] == "regression"
    assert record["resolved_params"]["load"]["columns"]["text_pair"] == "sentence2"
    assert record["validation"]["splits"]["test"]["target"]["max"] <= 5
    assert record["metrics"]["pearson"] >= 0.5

    from datasets import load_from_disk

    rows = load_from_disk(str(source))["test"].to_pandas()[["sentence1", "sentence2"]].head(5)
    rows.to_csv(tmp_path / "pairs.csv", index=False)
    out = tmp_path / "scores.csv"
    tunepipe(
        project,
        "predict",
        "--model",
        "v0.1.0",
        str(tmp_path / "pairs.csv"),  # both columns come from the preset
        "-o",
        str(out),
    )
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["sentence1", "sentence2", "predicted_score"]
    assert scores["predicted_score"].between(-1, 6).all()
