"""Model cards: the train stage's models/model/README.md, evaluate's reports/model_card.md and the
card `tunepipe fetch` writes, read back with huggingface_hub's own parser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard

from tests.helpers import copy_project, dvc
from tunepipe import model_card, params
from tunepipe.errors import PipelineError
from tunepipe.evaluation import score_regression, score_tokens
from tunepipe.io import OUTPUT_MARKER
from tunepipe.model_identity import describe
from tunepipe.params import ModelParams, Threshold


def lock_md5(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.stage
def test_train_and_evaluate_write_cards_the_hub_parser_reads(reproduced: tuple[Path, str]) -> None:
    root = reproduced[0]
    card = ModelCard.load(root / "models/model/README.md")
    data = card.data
    assert data.datasets == ["data/raw/reviews.csv"]
    assert data.metrics == ["accuracy", "precision_macro", "recall_macro", "f1_macro"]
    assert data.base_model is None  # a local directory: named by content in the text, not by path
    assert data.license is None and "License: not set" in card.text
    assert data.tags == ["tunepipe", "sequence-classification", "dvc"]
    assert data.pipeline_tag == "text-classification" and not data.eval_results
    facts = data.to_dict()["tunepipe"]
    splits, outs = facts["data"]["splits"], lock_md5(root)
    assert set(splits) == {"train", "validation"}  # train does not read the test split
    assert {s: d["md5"] for s, d in splits.items()} == {
        s: outs[f"data/tokenized/{s}"] for s in ("train", "validation")
    }
    manifest = read(root / "data/splits/manifest.json")
    assert {s: d["rows"] for s, d in splits.items()} == {s: manifest["rows"][s] for s in splits}
    assert facts["training"] == read(root / "reports/train.json")
    assert facts["labels"] == ["rotten", "fresh"] and facts["max_length"] == 32
    assert facts["data"]["split"]["group_by"] == "movie_name"
    for section in ("## Training data", "## Training procedure", "## Intended use and limitations"):
        assert section in card.text
    assert "Not evaluated yet" in card.text and "Not registered yet" in card.text
    sha = read(root / "data/pretrained.json")["model"]["model.safetensors"]
    assert sha in card.text

    full = ModelCard.load(root / "reports/model_card.md")
    metrics = read(root / "reports/metrics.json")
    results = {r.metric_type: r.metric_value for r in full.data.eval_results}
    assert results == {k: v for k, v in metrics.items() if isinstance(v, float)}
    assert {r.dataset_split for r in full.data.eval_results} == {"test"}
    assert full.data.model_name == "model"
    assert set(full.data.to_dict()["tunepipe"]["data"]["splits"]) == {"train", "validation", "test"}
    assert "| accuracy | >= 0.6 |" in full.text and "Per class:" in full.text
    assert "| rotten |" in full.text and "Confusion matrix" in full.text
    assert "reports/model_card.md" in outs  # an output of evaluate


@pytest.mark.stage
def test_replayed_training_writes_the_same_card_bytes(reproduced: tuple[Path, str], tmp_path: Path) -> None:
    project = copy_project(reproduced[0], tmp_path / "project")
    before, md5 = (project / "models/model/README.md").read_bytes(), lock_md5(project)["models/model"]
    dvc(project, "repro", "--force", "--single-item", "train")
    assert (project / "models/model/README.md").read_bytes() == before
    assert lock_md5(project)["models/model"] == md5
    # The card states the license, so a new one is a change train must answer.
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["register"]["license"] = "apache-2.0"
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert "register.license" in dvc(project, "status", "train").stdout


@pytest.mark.stage
def test_fetch_writes_the_versions_complete_card(reproduced: tuple[Path, str], tmp_path: Path) -> None:
    from tunepipe import registry

    project = copy_project(reproduced[0], tmp_path / "project")
    result = registry.register(project, "model")
    out = registry.fetch_model(project, "model", "v0.1.0", tmp_path / "fetched")
    text = (out / "README.md").read_text()
    assert text == registry.version_card(project, "model", "model@v0.1.0")
    card = ModelCard(text)
    assert card.data.model_name == "model"
    assert "# model v0.1.0" in card.text
    assert f"| registered commit | `{result['commit']}` |" in card.text
    assert lock_md5(project)["models/model"] in card.text
    metrics = read(project / "reports/metrics.json")
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        k: v for k, v in metrics.items() if isinstance(v, float)
    }
    # Every other file is the registered model's, as checked before the card was written, beside
    # the marker that lets a later fetch replace the folder.
    files = sorted(p.name for p in out.iterdir() if p.name != OUTPUT_MARKER)
    assert (out / OUTPUT_MARKER).is_file()
    assert files == sorted(p.name for p in (project / "models/model").iterdir())
    for name in files:
        if name != "README.md":
            assert (out / name).read_bytes() == (project / "models/model" / name).read_bytes()
    # Rendered from the lineage record in git: the same without the DVC cache (another clone).
    shutil.rmtree(project / ".dvc/cache")
    assert registry.version_card(project, "model", "v0.1.0") == text
    with pytest.raises(PipelineError, match="no registered version model@v9.9.9"):
        registry.version_card(project, "model", "v9.9.9")


def facts_for(p: params.Params, labels: list[str], scheme: str | None = None) -> dict:
    splits = {
        s: {"rows": n, "md5": f"{s}md5.dir", "at_length_limit": 0.25}
        for s, n in (("train", 80), ("validation", 10))
    }
    report = {
        "device": {"device": "cpu", "precision": "fp32"},
        "parameters": {"total": 100, "trainable": 100, "frozen": 0},
        "class_weights": None,
        "train_examples": 80,
        "batch": {"per_device": 8, "processes": 1, "gradient_accumulation_steps": 1, "global": 8},
        "epochs_run": 2.0,
        "global_step": 20,
        "max_steps": 30,
        "stopped_early": True,
        "best_metric": {"pearson": 0.9},
        "best_checkpoint": "checkpoint-10",
    }
    info = {"labels": labels, "tag_scheme": scheme, "max_length": 64}
    return model_card.train_facts(p, info, splits, report)


@pytest.mark.unit
def test_regression_card_with_a_hub_base_model_and_a_license(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    hub = {"source": "hub", "hub": {"id": "org/base", "revision": "a" * 40}, "trust_remote_code": False}
    Path("data").mkdir()
    Path("data/pretrained.json").write_text(json.dumps(hub))
    p = params.parse(
        {"task": "regression", "load": {"source": "hub:org/scores"}, "register": {"license": "mit"}}
    )
    facts = facts_for(p, ["score"])
    train_card = ModelCard(model_card.render(facts))
    assert train_card.data.base_model == "org/base" and train_card.data.license == "mit"
    assert train_card.data.datasets == ["org/scores"]
    assert train_card.data.metrics == ["mse", "rmse", "mae", "pearson", "spearmanr"]
    refs, preds = np.array([1.0, 2.0, 3.0]), np.array([1.1, 2.2, 2.7])
    evaluation = score_regression(refs, preds, {"rmse": Threshold(max=1)})
    card = ModelCard(model_card.render(facts, "scores", evaluation))
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {k: v for k, v in evaluation["metrics"].items() if isinstance(v, float)}
    assert "| rmse | <= 1 |" in card.text and "do not apply to regression" in card.text


@pytest.mark.unit
def test_token_classification_card_has_per_entity_scores() -> None:
    p = params.parse({"task": "token_classification", "load": {"source": "data/raw/ner.conll"}})
    facts = facts_for(p, ["O", "B-PER", "I-PER", "B-LOC"], "iob2")
    refs = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-LOC"]]
    preds = [["B-PER", "I-PER", "O", "O"], ["O", "B-LOC"]]
    evaluation = score_tokens(refs, preds, "iob2", {"f1": Threshold(min=0.9)})
    card = ModelCard(model_card.render(facts, "ner", evaluation))
    assert card.data.pipeline_tag == "token-classification"
    assert {r.metric_type for r in card.data.eval_results} == {"precision", "recall", "f1", "accuracy"}
    assert "Per entity type:" in card.text and "| PER |" in card.text and "| LOC |" in card.text
    assert "Thresholds (params.yaml `evaluate.thresholds`): FAILED" in card.text


@pytest.mark.unit
def test_the_base_models_license_is_recorded_from_its_card(tmp_path: Path) -> None:
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    plain = describe(ModelParams(name=str(folder)))
    assert "license" not in plain  # no card: nothing recorded, the file as before
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags: [x]\n---\n# base\n")
    assert describe(ModelParams(name=str(folder))) == plain | {"license": "apache-2.0"}
