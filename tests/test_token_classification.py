"""Token classification (NER-style IOB2 tags) through the pipeline stages on CoNLL files the tests write."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import yaml
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from tests.helpers import FILLER, NEGATIVE, POSITIVE, make_project, run_stages_in_process, set_params
from tunepipe.errors import PipelineError

# Cue words the tiny BERT's vocabulary knows: two-word people, one-word places.
PEOPLE, PLACES = POSITIVE, NEGATIVE


def sentence(rng: random.Random) -> list[tuple[str, str]]:
    first, second = rng.sample(PEOPLE, 2)
    units = [[(w, "O")] for w in rng.sample(FILLER, 5)]
    units += [[(first, "B-PER"), (second, "I-PER")], [(rng.choice(PLACES), "B-LOC")]]
    rng.shuffle(units)
    words = [w for unit in units for w in unit]
    words.append((str(rng.randint(0, 10**6)), "O"))  # keeps sentences unique
    return words


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    """CoNLL-2003 layout: word, POS, chunk, NER; -DOCSTART- lines; blank lines between sentences."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for i, words in enumerate(sentences):
        if i and i % 25 == 0:
            lines += ["-DOCSTART- -X- -X- O", ""]
        lines += [f"{w} NN I-NP {tag}" for w, tag in words] + [""]
    path.write_text("\n".join(lines))
    return path


def ner_project(
    tmp_path: Path, tiny_bert: Path, sentences: list[list[tuple[str, str]]] | None = None
) -> Path:
    rng = random.Random(0)
    project = make_project(tmp_path / "ner", tiny_bert)
    data = write_conll(project / "data/raw/ner.conll", sentences or [sentence(rng) for _ in range(200)])
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["task"] = "token_classification"
    params["load"] = {"source": str(data.relative_to(project)), "split": {"validation": 0.15, "test": 0.15}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    set_params(
        project, **{"evaluate.thresholds": {"f1": 0.5}, "train.epochs": 6, "validate.min_rows_per_class": 1}
    )
    return project


def sentences_of(predictions: pd.DataFrame, column: str) -> list[list[str]]:
    return [list(g[column]) for _, g in predictions.sort_values(["source_row", "word"]).groupby("source_row")]


@pytest.mark.stage
def test_ner_from_conll_scores_like_seqeval(tmp_path: Path, tiny_bert: Path, monkeypatch) -> None:
    project = ner_project(tmp_path, tiny_bert)
    run_stages_in_process(project, monkeypatch)

    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert {"precision", "recall", "f1", "accuracy", "examples", "words"} <= set(metrics)
    evaluation = json.loads((project / "reports/evaluation.json").read_text())
    assert evaluation["tag_scheme"] == "iob2"
    predictions = pd.read_csv(project / "reports/test_predictions.csv")
    refs, preds = sentences_of(predictions, "actual"), sentences_of(predictions, "predicted")
    assert metrics["examples"] == len(refs)
    assert metrics["precision"] == pytest.approx(precision_score(refs, preds), abs=1e-12)
    assert metrics["recall"] == pytest.approx(recall_score(refs, preds), abs=1e-12)
    assert metrics["f1"] == pytest.approx(f1_score(refs, preds), abs=1e-12)
    report = classification_report(refs, preds, output_dict=True, zero_division=0)
    for entity in ("PER", "LOC"):
        assert evaluation["per_type"][entity]["f1"] == pytest.approx(report[entity]["f1-score"], abs=1e-12)
        assert evaluation["per_type"][entity]["support"] == report[entity]["support"]
    assert metrics["f1"] > 0.5  # the cue words are learnable: the run really trained

    # Saved model: a token-classification head with the tag names.
    config = json.loads((project / "models/model/config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert set(config["id2label"].values()) == {"O", "B-PER", "I-PER", "B-LOC"}
    assert json.loads((project / "reports/train.json").read_text())["best_metric"].keys() == {"f1"}

    # predict on a CoNLL file: one tag per token; on raw text: entity spans with character offsets,
    # the same entities as the word tags give.
    from tunepipe.prediction import predict_file
    from tunepipe.tagging import entities as chunks

    words = ["the", "film", "wonderful", "brilliant", "story", "dull", "scenes"]
    tokens_file = tmp_path / "tokens.conll"
    tokens_file.write_text("\n".join(words[:4]) + "\n\n" + "\n".join(words[4:]) + "\n")
    predict_file(str(project / "models/model"), tokens_file, tmp_path / "tagged.conll", "tokens")
    tagged = [line.split("\t") for line in (tmp_path / "tagged.conll").read_text().split("\n") if line]
    assert [t for t, _ in tagged] == words
    tags = [tag for _, tag in tagged]
    assert set(tags) <= set(config["id2label"].values())
    assert tags[5] == "B-LOC"  # a place cue seen in every training sentence
    # Token lists in a JSON-lines table get a `predicted_tags` list each: the same tags as the CoNLL file.
    pd.DataFrame({"tokens": [words[:4], words[4:]], "id": [1, 2]}).to_json(
        tmp_path / "tokens.jsonl", orient="records", lines=True
    )
    listed = predict_file(
        str(project / "models/model"), tmp_path / "tokens.jsonl", tmp_path / "t.jsonl", "tokens"
    )
    assert [list(t) for t in listed["predicted_tags"]] == [tags[:4], tags[4:]]

    text = " ".join(words)
    starts = [len(" ".join(words[:i])) + (1 if i else 0) for i in range(len(words))]
    raw = tmp_path / "raw.csv"
    pd.DataFrame({"text": [text]}).to_csv(raw, index=False)
    out = predict_file(str(project / "models/model"), raw, tmp_path / "raw.jsonl", "text")
    found = out["predicted_entities"][0]
    assert [(e["entity"], e["start"], e["end"], e["text"]) for e in found] == [
        (kind, starts[a], starts[b] + len(words[b]), " ".join(words[a : b + 1]))
        for kind, a, b in chunks(tags[:4]) + [(k, a + 4, b + 4) for k, a, b in chunks(tags[4:])]
    ]
    assert all(0 < e["score"] <= 1 for e in found)
    written = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
    assert written[0]["predicted_entities"] == found


@pytest.mark.unit
def test_labels_align_to_first_subtoken_or_all(tmp_path: Path, tiny_bert: Path) -> None:
    from tunepipe import params
    from tunepipe.pretrained import load_tokenizer
    from tunepipe.tokenization import encode

    p = params.parse({"model": {"name": str(tiny_bert)}, "task": "token_classification"})
    tok = load_tokenizer(p)
    # "brilliantly" is not in the tiny vocabulary: it splits into several pieces.
    words, tags = ["wonderful", "brilliantly", "dull"], ["B-PER", "I-PER", "B-LOC"]
    assert len(tok.tokenize("brilliantly")) > 1
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    frame = {"train": pd.DataFrame({"tokens": [words], "tags": [tags], "source_row": [1]})}
    first = encode(tok, frame, labels, 32, "token_classification")["train"][0]
    every = encode(tok, frame, labels, 32, "token_classification", label_all_subtokens=True)["train"][0]
    enc = tok(words, is_split_into_words=True)
    word_ids = enc.word_ids()
    for position, word in enumerate(word_ids):
        starts = word is not None and (position == 0 or word_ids[position - 1] != word)
        if word is None:
            assert first["labels"][position] == every["labels"][position] == -100
        elif starts:
            assert first["labels"][position] == every["labels"][position] == labels.index(tags[word])
        else:  # a later piece: ignored by default, I- of the word's type with label_all_subtokens
            assert first["labels"][position] == -100
            assert every["labels"][position] == labels.index("I-" + tags[word][2:])
    assert every["word_labels"] == first["labels"]


@pytest.mark.stage
def test_malformed_conll_names_the_line(tmp_path: Path, tiny_bert: Path, monkeypatch) -> None:
    rng = random.Random(1)
    project = ner_project(tmp_path, tiny_bert, [sentence(rng) for _ in range(30)])
    data = project / "data/raw/ner.conll"
    lines = data.read_text().split("\n")
    lines[6] = "brilliant"  # one column where four are expected: line 7 of the file
    data.write_text("\n".join(lines))
    monkeypatch.chdir(project)
    from tasks import load

    with pytest.raises(PipelineError, match=r"ner\.conll, line 7"):
        load.main()


@pytest.mark.stage
def test_ill_formed_iob_is_reported_with_its_line(
    tmp_path: Path, tiny_bert: Path, monkeypatch, capsys
) -> None:
    rng = random.Random(2)
    sentences = [sentence(rng) for _ in range(60)]
    bad = sentences[10]
    at = next(i for i, (_, tag) in enumerate(bad) if tag == "O")
    bad[at] = (bad[at][0], "I-LOC")  # I-LOC after O (or at the start): not IOB2
    project = ner_project(tmp_path, tiny_bert, sentences)
    monkeypatch.chdir(project)
    from tasks import load, validate

    # The file line of the offending word: 2 header lines, then 10 lines a sentence (9 words, 1 blank).
    line = 3 + 10 * 10 + at
    with pytest.raises(PipelineError, match=rf"ner.conll, line {line}: tag 'I-LOC' .*tag_repair: fix"):
        load.main()

    # tag_repair fix: load turns the I-LOC into B-LOC, says how many, and validate passes.
    set_params(project, **{"load.conll": {"tag_repair": "fix"}})
    load.main()
    assert "load: repaired 1 IOB2 tag(s)" in capsys.readouterr().out
    validate.main()
    manifest = json.loads((project / "data/splits/manifest.json").read_text())
    assert sum(manifest["tags_repaired"].values()) == 1
    set_params(project, **{"load.conll": {"tag_repair": "none"}})

    # In IOB1 an I- tag opens a chunk (B- only splits two adjacent chunks of one type): the same
    # sentences written that way pass when the scheme is declared.
    iob1 = [[(w, "I-" + t[2:] if t.startswith("B-") else t) for w, t in s] for s in sentences]
    write_conll(project / "data/raw/ner.conll", iob1)
    set_params(project, **{"load.tag_scheme": "iob1"})
    load.main()
    validate.main()
    report = json.loads((project / "reports/validation.json").read_text())
    assert report["success"] and report["tag_scheme"] == "iob1"


@pytest.mark.unit
def test_conll2003_schema_reads_tag_names(tmp_path: Path) -> None:
    """The hub's conll2003 layout: tokens plus tag ids with ClassLabel names, in a saved DatasetDict."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    from tunepipe import params
    from tunepipe.splitting import make_splits

    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    features = Features(
        {
            "id": Value("string"),
            "tokens": List(Value("string")),
            "pos_tags": List(Value("int32")),
            "ner_tags": List(ClassLabel(names=names)),
        }
    )

    def split(n: int, offset: int) -> Dataset:
        rows = {
            "id": [str(i) for i in range(n)],
            "tokens": [["EU", "rejects", "German", "call", str(offset + i)] for i in range(n)],
            "pos_tags": [[22, 42, 16, 21, 22]] * n,
            "ner_tags": [[3, 0, 7, 0, 0]] * n,
        }
        return Dataset.from_dict(rows, features=features)

    DatasetDict({"train": split(20, 0), "validation": split(5, 100), "test": split(5, 200)}).save_to_disk(
        str(tmp_path / "conll2003")
    )
    p = params.parse(
        {
            "task": "token_classification",
            "load": {
                "source": str(tmp_path / "conll2003"),
                "columns": {"text": "tokens", "label": "ner_tags"},
            },
        }
    )
    splits, manifest = make_splits(p.load, p.task)
    assert manifest["rows"] == {"train": 20, "validation": 5, "test": 5}
    assert splits["test"]["tokens"][0] == ["EU", "rejects", "German", "call", "200"]
    assert splits["test"]["tags"][0] == ["B-ORG", "O", "B-MISC", "O", "O"]
