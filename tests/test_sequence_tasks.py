"""Sequence tasks besides binary sentiment, from plain files: multi-class with integer labels,
sentence pairs, regression, and long texts that get truncated."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import classification_report, mean_squared_error

from tests.helpers import FILLER, NEGATIVE, POSITIVE, make_project, run_stages_in_process, set_params

pytestmark = pytest.mark.stage

CUES = POSITIVE + NEGATIVE  # words the tiny BERT's vocabulary knows


def csv_project(tmp_path: Path, tiny_bert: Path, rows: list[dict], load: dict, **params: object) -> Path:
    project = make_project(tmp_path / "p", tiny_bert)
    pd.DataFrame(rows).to_csv(project / "data/raw/data.csv", index=False)
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["load"] = {"source": "data/raw/data.csv", "split": {"validation": 0.2, "test": 0.2}} | load
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    set_params(project, **{"validate.min_rows_per_class": 3, "evaluate.thresholds": {}} | params)
    return project


def test_five_classes_with_integer_labels(tmp_path: Path, tiny_bert: Path, monkeypatch) -> None:
    """Yelp-style stars given as integers: names kept in id order 1..5, macro and per-class scores."""
    rng = random.Random(0)
    rows = []
    for i in range(300):
        stars = i % 5 + 1
        words = rng.sample(CUES[3 * (stars - 1) : 3 * stars], 2) + rng.sample(FILLER, 3)
        rows.append({"review": " ".join(words) + f" {i}", "stars": stars})
    project = csv_project(
        tmp_path, tiny_bert, rows, {"columns": {"text": "review", "label": "stars"}}, **{"train.epochs": 6}
    )
    run_stages_in_process(project, monkeypatch)

    config = json.loads((project / "models/model/config.json").read_text())
    assert list(config["id2label"].values()) == ["1", "2", "3", "4", "5"]
    evaluation = json.loads((project / "reports/evaluation.json").read_text())
    predictions = pd.read_csv(
        project / "reports/test_predictions.csv", dtype={"actual": str, "predicted": str}
    )
    report = classification_report(
        predictions["actual"], predictions["predicted"], output_dict=True, zero_division=0
    )
    metrics = evaluation["metrics"]
    assert metrics["accuracy"] == pytest.approx(report["accuracy"], abs=1e-12)
    assert metrics["f1_macro"] == pytest.approx(report["macro avg"]["f1-score"], abs=1e-12)
    assert metrics["precision_macro"] == pytest.approx(report["macro avg"]["precision"], abs=1e-12)
    for stars in "12345":
        for ours, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert evaluation["per_class"][stars][ours] == pytest.approx(report[stars][theirs], abs=1e-12)
        assert evaluation["per_class"][stars]["support"] == report[stars]["support"]
    assert len(evaluation["confusion_matrix"]["rows_true_cols_predicted"]) == 5


def test_sentence_pairs_from_a_csv_predict_label_names(tmp_path: Path, tiny_bert: Path, monkeypatch) -> None:
    from tunepipe.prediction import predict_file

    rng = random.Random(1)
    rows = []
    for i in range(240):
        first = rng.sample(CUES, 2)
        same = i % 2 == 0
        second = [first[0]] if same else [w for w in rng.sample(CUES, 3) if w not in first][:1]
        rows.append(
            {
                "claim": " ".join(first + rng.sample(FILLER, 2)) + f" {i}",
                "evidence": " ".join(second + rng.sample(FILLER, 3)),
                "verdict": "supports" if same else "refutes",
            }
        )
    columns = {"text": "claim", "text_pair": "evidence", "label": "verdict"}
    project = csv_project(tmp_path, tiny_bert, rows, {"columns": columns}, **{"train.epochs": 4})
    run_stages_in_process(project, monkeypatch)

    tokenized = json.loads((project / "data/tokenized/labels.json").read_text())
    assert tokenized["labels"] == ["refutes", "supports"]
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    first = load_from_disk(str(project / "data/tokenized/train"))[0]
    sep = AutoTokenizer.from_pretrained(str(tiny_bert)).sep_token_id
    assert first["input_ids"].count(sep) == 2  # [CLS] claim [SEP] evidence [SEP]: one input per pair

    pairs = pd.DataFrame(
        {"a": ["wonderful film 1", "dull story 2"], "b": ["wonderful cast", "superb scenes"]}
    )
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    out = predict_file(str(project / "models/model"), tmp_path / "pairs.csv", tmp_path / "out.csv", "a", "b")
    assert set(out["predicted_label"]) <= {"supports", "refutes"}
    assert out["predicted_score"].between(0.5, 1).all()


def stsb_rows(n: int, seed: int) -> list[dict]:
    """Similarity grows with the number of cue words the two sentences share (0..5)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        shared = i % 6
        words = rng.sample(CUES, 5)
        other = words[:shared] + [w for w in CUES if w not in words][: 5 - shared]
        rows.append(
            {
                "s1": " ".join(words) + f" {i}",
                "s2": " ".join(rng.sample(other, len(other))),
                "score": float(shared),
            }
        )
    return rows


def test_regression_scores_and_predicts_values(tmp_path: Path, tiny_bert: Path, monkeypatch) -> None:
    from tunepipe.prediction import predict_file

    load = {"columns": {"text": "s1", "text_pair": "s2", "label": "score"}}
    project = csv_project(
        tmp_path,
        tiny_bert,
        stsb_rows(240, 0),
        load,
        # precision auto: fp32 for regression even on a CPU with bf16 units, which would round away
        # the tiny model's scores (they differ in the third digit) and leave pearsonr nothing
        **{"task": "regression", "validate.target_range": [0, 5], "train.epochs": 6, "train.batch_size": 8},
    )
    run_stages_in_process(project, monkeypatch)

    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert set(metrics) == {"mse", "rmse", "mae", "pearson", "spearmanr", "examples"}
    predictions = pd.read_csv(project / "reports/test_predictions.csv")
    actual, predicted = predictions["actual"].to_numpy(), predictions["predicted"].to_numpy()
    assert metrics["mse"] == pytest.approx(mean_squared_error(actual, predicted), abs=1e-9)
    assert metrics["pearson"] == pytest.approx(pearsonr(actual, predicted)[0], abs=1e-9)
    assert metrics["spearmanr"] == pytest.approx(spearmanr(actual, predicted)[0], abs=1e-9)
    assert json.loads((project / "reports/train.json").read_text())["best_metric"].keys() == {"pearson"}
    config = json.loads((project / "models/model/config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    assert config["text_columns"] == ["s1", "s2"]  # predict's default columns, without params.yaml

    unlabelled = pd.DataFrame([{k: r[k] for k in ("s1", "s2")} for r in stsb_rows(6, 9)])
    unlabelled.to_csv(tmp_path / "u.csv", index=False)
    out = predict_file(str(project / "models/model"), tmp_path / "u.csv", tmp_path / "o.csv")
    assert list(out.columns) == ["s1", "s2", "predicted_score"]
    assert np.issubdtype(out["predicted_score"].dtype, np.floating)


def test_regression_target_outside_range_is_named(
    tmp_path: Path, tiny_bert: Path, monkeypatch, capsys
) -> None:
    from tasks import load, validate

    rows = stsb_rows(60, 1)
    rows[7]["score"] = 7.5
    project = csv_project(
        tmp_path,
        tiny_bert,
        rows,
        {
            "columns": {"text": "s1", "text_pair": "s2", "label": "score"},
            "split": {"validation": 0.1, "test": 0.1},
        },
        **{"task": "regression", "validate.target_range": [0, 5]},
    )
    monkeypatch.chdir(project)
    load.main()
    with pytest.raises(SystemExit):
        validate.main()
    err = capsys.readouterr().err
    assert "expect_column_values_to_be_between failed on column 'label'" in err
    assert "source row 8" in err and "7.5" in err

    rows[7]["score"] = "high"
    pd.DataFrame(rows).to_csv(project / "data/raw/data.csv", index=False)
    from tunepipe.errors import PipelineError

    with pytest.raises(PipelineError, match=r"column 'score' must hold numbers.*row 8: 'high'"):
        load.main()


def test_long_texts_report_the_truncated_share(tmp_path: Path, tiny_bert: Path, monkeypatch, capsys) -> None:
    """IMDB-style reviews: the validation report says how many examples max_length cuts."""
    from tasks import load, tokenize, validate
    from tunepipe import params
    from tunepipe.pretrained import load_tokenizer

    rng = random.Random(3)
    rows = []
    for i in range(120):
        label = "fresh" if i % 2 else "rotten"
        length = 60 if i % 4 == 0 else 6  # a quarter of the reviews run past 32 tokens
        words = [rng.choice(POSITIVE if label == "fresh" else NEGATIVE)] + rng.choices(FILLER, k=length)
        rows.append({"category": label, "text": " ".join(words) + f" {i}", "movie_name": f"m{i % 30}"})
    project = make_project(tmp_path / "p", tiny_bert, rows)  # tokenize.max_length: 32
    monkeypatch.chdir(project)
    load.main()
    validate.main()
    report = json.loads((project / "reports/validation.json").read_text())
    assert report["truncation"]["max_length"] == 32
    tok = load_tokenizer(params.read(project / "params.yaml"))
    for split in ("train", "validation", "test"):
        texts = pd.read_parquet(project / f"data/splits/{split}.parquet")["text"].tolist()
        lengths = [len(ids) for ids in tok(texts)["input_ids"]]
        expected = sum(n > 32 for n in lengths)
        cut = report["truncation"][split]
        assert cut["truncated"] == expected > 0
        assert cut["share"] == pytest.approx(expected / len(texts), abs=1e-4)
        assert (cut["tokens"], cut["tokens_cut"]) == (sum(lengths), sum(max(n - 32, 0) for n in lengths))
        assert cut["tokens_share"] == pytest.approx(cut["tokens_cut"] / cut["tokens"], abs=1e-4)
    assert "longer than 32 tokens (truncated): train" in capsys.readouterr().out

    # tokenize prints the shares of examples and tokens cut, per split, and warns above 5%.
    tokenize.main()
    out, err = capsys.readouterr()
    train = report["truncation"]["train"]
    assert (
        f"tokenize: cut at max_length 32: train {train['truncated']} of {train['examples']} examples "
        f"({train['share']:.1%}), {train['tokens_cut']} of {train['tokens']} tokens" in out
    )
    assert f"tokenize: warning: {train['share']:.1%} of train examples are longer than 32 tokens" in err
    assert "tokenize.max_length" in err and "validate.max_truncated_share" in err

    set_params(project, **{"validate.max_truncated_share": 0.1})
    with pytest.raises(SystemExit):
        validate.main()
    err = capsys.readouterr().err
    assert "truncated_share_at_most failed on column 'text' in split 'train'" in err
    limit = "more than validate.max_truncated_share (10.0%)"
    assert f"({train['share']:.1%}) are longer than 32 tokens, {limit}" in err
    assert "raise tokenize.max_length or validate.max_truncated_share" in err
