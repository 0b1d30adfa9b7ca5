"""`tunepipe predict` on the test split gives exactly what the evaluate stage wrote: the saved model
carries the length it was trained and evaluated with, and `transformers.pipeline` uses it too."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import FILLER, NEGATIVE, POSITIVE, make_project, run_stages_in_process, set_params

MAX_LENGTH = 32  # tokenize.max_length in make_project


def long_review(rng: random.Random, label: str) -> str:
    """A short review whose cues decide the label, then about 30 words more (one of them a cue of
    either kind): a prediction depends on where the text is cut."""
    head = rng.sample(POSITIVE if label == "fresh" else NEGATIVE, 2) + rng.sample(FILLER, 4)
    rng.shuffle(head)
    tail = rng.choices(FILLER, k=30) + [rng.choice(POSITIVE + NEGATIVE)]
    rng.shuffle(tail)
    return " ".join([*head, *tail, str(rng.randint(0, 10**6))])


@pytest.mark.stage
def test_predict_on_the_test_split_reproduces_test_predictions(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoTokenizer, pipeline

    from tunepipe.inference import load_model
    from tunepipe.prediction import predict_file, predict_frame

    rng = random.Random(4)
    rows = [
        {"category": label, "text": long_review(rng, label), "movie_name": f"movie {i % 40}"}
        for i, label in enumerate(["fresh", "rotten"] * 120)
    ]
    project = make_project(tmp_path / "p", tiny_bert, rows)
    set_params(project, **{"train.epochs": 6})  # make_project's threshold: accuracy 0.6
    run_stages_in_process(project, monkeypatch)
    model_dir = project / "models/model"

    saved = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert saved["model_max_length"] == MAX_LENGTH
    assert str(tmp_path) not in (model_dir / "tokenizer_config.json").read_text()  # hash stays portable
    test = pd.read_parquet(project / "data/splits/test.parquet")
    base = AutoTokenizer.from_pretrained(str(tiny_bert))
    assert min(map(len, base(test["text"].tolist())["input_ids"])) > MAX_LENGTH  # every test text is cut

    out = tmp_path / "predicted.csv"
    predict_file(str(model_dir), project / "data/splits/test.parquet", out, "text")
    predicted = pd.read_csv(out).set_index("source_row")
    expected = pd.read_csv(project / "reports/test_predictions.csv").set_index("source_row")
    assert len(expected) == len(test)
    assert predicted.loc[expected.index, "predicted_label"].tolist() == expected["predicted"].tolist()
    assert predicted.loc[expected.index, "predicted_score"].tolist() == expected["score"].tolist()

    # Cut at the base model's own limit instead, the same texts score differently: the check above
    # holds because the saved length is used, not by chance.
    model, tok = load_model(model_dir)
    tok.model_max_length = 128
    uncut = predict_frame(model, tok, test, "text").set_index("source_row")
    assert (uncut.loc[expected.index, "predicted_score"] != expected["score"]).any()

    clf = pipeline("text-classification", model=str(model_dir))
    assert clf.tokenizer.model_max_length == MAX_LENGTH
    assert len(clf.preprocess(test["text"].iloc[0], truncation=True)["input_ids"][0]) == MAX_LENGTH
    found = clf(test["text"].tolist(), truncation=True)
    # transformers.pipeline runs in fp32; predict's auto may be bf16 on this CPU (devices.choose)
    exact = predict_file(str(model_dir), project / "data/splits/test.parquet", out, "text", precision="fp32")
    assert [f["label"] for f in found] == exact["predicted_label"].tolist()
    assert [f["score"] for f in found] == pytest.approx(exact["predicted_score"].tolist(), abs=1e-5)


def tagged_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """About 40 words with two-word people and one-word places: longer than MAX_LENGTH tokens."""
    units: list[list[tuple[str, str]]] = [[(w, "O")] for w in rng.choices(FILLER, k=28)]
    for _ in range(3):
        first, second = rng.sample(POSITIVE, 2)
        units += [[(first, "B-PER"), (second, "I-PER")], [(rng.choice(NEGATIVE), "B-LOC")]]
    rng.shuffle(units)
    return [w for unit in units for w in unit] + [(str(rng.randint(0, 10**6)), "O")]


@pytest.mark.stage
def test_tags_on_the_test_split_equal_test_predictions(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import pipeline

    from tunepipe.prediction import predict_file

    rng = random.Random(5)
    project = make_project(tmp_path / "ner", tiny_bert)
    conll = project / "data/raw/ner.conll"
    conll.write_text(
        "\n\n".join("\n".join(f"{w} {t}" for w, t in tagged_sentence(rng)) for _ in range(120)) + "\n"
    )
    set_params(
        project,
        **{
            "task": "token_classification",
            "load": {"source": "data/raw/ner.conll", "split": {"validation": 0.15, "test": 0.15}},
            "train.epochs": 6,
            "evaluate.thresholds": {"f1": 0.5},
            "validate.min_rows_per_class": 1,
        },
    )
    run_stages_in_process(project, monkeypatch)
    model_dir = project / "models/model"

    test = pd.read_parquet(project / "data/splits/test.parquet")
    out = tmp_path / "tags.jsonl"
    predict_file(str(model_dir), project / "data/splits/test.parquet", out, "tokens")
    tags = {row["source_row"]: row["predicted_tags"] for row in map(json.loads, out.read_text().splitlines())}
    expected = pd.read_csv(project / "reports/test_predictions.csv", dtype={"token": str})
    assert [tags[r][w - 1] for r, w in zip(expected["source_row"], expected["word"], strict=True)] == (
        expected["predicted"].tolist()
    )
    # Words past MAX_LENGTH tokens were not evaluated: predict gives them no tag either (O), though
    # entities are among them.
    evaluated = set(zip(expected["source_row"], expected["word"], strict=True))
    cut = [
        (tags[r][w], actual)
        for r, words in zip(test["source_row"], test["tags"], strict=True)
        for w, actual in enumerate(words)
        if (r, w + 1) not in evaluated
    ]
    assert {actual for _, actual in cut} > {"O"}
    assert {tag for tag, _ in cut} == {"O"}
    assert pipeline("token-classification", model=str(model_dir)).tokenizer.model_max_length == MAX_LENGTH


@pytest.mark.unit
@pytest.mark.parametrize("info", [{}, {"max_length": None}, {"max_length": "128"}, {"max_length": 0}])
def test_tokenized_data_without_a_length_is_refused(info: dict) -> None:
    from tunepipe.errors import PipelineError
    from tunepipe.training import trained_length

    with pytest.raises(PipelineError, match=r"labels.json: max_length is .*dvc repro tokenize"):
        trained_length(info, Path("data/tokenized"))
    assert trained_length({"max_length": 64}, Path("data/tokenized")) == 64
