"""Good inputs stay as the user wrote them: label and cell text, supplied splits (changed only when
load.overlap says drop, and then loudly), package files found without running package code,
other encodings when load.encoding names them, and .txt prediction input read per model task."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import build_classifier, make_reviews
from tunepipe import assets, params, sources, splitting
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit


def load_params(source: object, **load: object) -> params.LoadParams:
    body = {
        "source": source,
        "columns": {"text": "text", "label": "category"},
        "labels": ["rotten", "fresh"],
        "split": {"validation": 0.2, "test": 0.2, "seed": 3},
    } | load
    return params.parse({"load": body}).load


def write_csv(path: Path, rows: list[dict[str, object]]) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


# --- label and cell text -------------------------------------------------------------------


def test_csv_labels_and_texts_are_kept_as_written(tmp_path: Path) -> None:
    rows = [{"category": f"{i % 2}.0", "text": t} for i, t in enumerate(["007", "NA", "null", "1e3"] * 5)]
    rows = [dict(r, text=f"{r['text']}") for r in rows]
    source = tmp_path / "r.csv"
    source.write_text("category,text\n" + "".join(f"{r['category']},{r['text']}\n" for r in rows))
    p = load_params(str(source), labels=["0.0", "1.0"], dedupe=False)
    splits, _ = splitting.make_splits(p)
    every = pd.concat(splits.values())
    assert set(every["label"]) == {"0.0", "1.0"}  # not rewritten to 0 and 1
    assert set(every["text"]) == {"007", "NA", "null", "1e3"}  # not 7, missing, missing, 1000.0


def test_typed_labels_whole_floats_become_ints_only_for_a_whole_column(tmp_path: Path) -> None:
    # An int column with a missing value arrives as floats: 1.0 must still match `labels: [0, 1]`.
    ints = pd.Series([1.0, 0.0, None, 1.0])
    assert splitting.label_strings(ints) == ["1", "0", None, "1"]
    # A column of real fractions keeps each value's text, 1.0 included.
    assert splitting.label_strings(pd.Series([0.5, 1.0])) == ["0.5", "1.0"]
    # Strings are never touched.
    assert splitting.label_strings(pd.Series(["1.0", "01", "x"], dtype=object)) == ["1.0", "01", "x"]
    # The same through a JSON-lines source with a missing label.
    records = [{"text": f"text {i}", "label": i % 2} for i in range(20)] + [{"text": "no label"}]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    frame = splitting.to_canonical(sources.read_table(path), load_params(str(path), columns={}), "r.jsonl")
    assert frame["label"].tolist()[:3] == ["0", "1", "0"] and pd.isna(frame["label"].iloc[-1])


# --- splits the user supplied --------------------------------------------------------------


def test_overlap_drop_removes_shared_rows_from_the_evaluation_split(tmp_path: Path) -> None:
    rows = make_reviews(90)
    source = {
        "train": write_csv(tmp_path / "train.csv", rows[:50]),
        "validation": write_csv(tmp_path / "validation.csv", rows[45:65]),  # 5 from train, 3 from test
        "test": write_csv(tmp_path / "test.csv", rows[62:90] + rows[:4]),  # 4 from train
    }
    splits, manifest = splitting.make_splits(load_params(source, overlap="drop"))
    assert manifest["overlap_dropped"] == {"validation": {"train": 5, "test": 3}, "test": {"train": 4}}
    assert (len(splits["validation"]), len(splits["test"])) == (12, 28)
    texts = {s: set(df["text"]) for s, df in splits.items()}
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    assert texts["test"] == {r["text"] for r in rows[62:90]}  # the test split keeps its own rows


def test_overlap_drop_is_announced_by_the_load_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = make_reviews(60)
    write_csv(tmp_path / "train.csv", rows[:40])
    write_csv(tmp_path / "test.csv", rows[35:60])
    load = {
        "source": {"train": "train.csv", "test": "test.csv"},
        "columns": {"text": "text", "label": "category"},
        "overlap": "drop",
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"load": load}))
    monkeypatch.chdir(tmp_path)
    importlib.import_module("tasks.load").main()
    err = capsys.readouterr().err
    assert "load: warning: dropped 5 row(s) of test (test.csv) that repeat texts of train" in err
    manifest = json.loads((tmp_path / "data/splits/manifest.json").read_text())
    assert manifest["overlap_dropped"] == {"test": {"train": 5}} and manifest["rows"]["test"] == 20


def test_carved_splits_never_share_texts(tmp_path: Path) -> None:
    rows = make_reviews(80)
    rows += [dict(r, movie_name="another movie") for r in rows[:20]]  # the same texts again
    splits, manifest = splitting.make_splits(load_params(write_csv(tmp_path / "r.csv", rows)))
    assert manifest["duplicates_removed"]["train"] == 20 and manifest["overlap_dropped"] == {}
    texts = [set(df["text"]) for df in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_tiny_sources_split_without_stratifying_when_a_class_cannot_fit(tmp_path: Path) -> None:
    rows = [{"category": c, "text": f"text {i}"} for i, c in enumerate(["a", "a", "b", "b", "c", "c"])]
    p = load_params(write_csv(tmp_path / "r.csv", rows), labels=[])
    splits, _ = splitting.make_splits(p)  # 3 classes cannot all go into a test split of 2 rows
    assert sum(len(df) for df in splits.values()) == 6 and all(len(df) for df in splits.values())


# --- package files without running package code -------------------------------------------


def test_package_reference_runs_no_package_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "noisy_pkg"
    (pkg / "sub").mkdir(parents=True)
    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('package code ran')\n"
    (pkg / "__init__.py").write_text(code)
    (pkg / "sub" / "__init__.py").write_text(code)
    (pkg / "sub" / "data.csv").write_text("text,label\n")
    (pkg / "plain").mkdir()
    (pkg / "plain" / "x.txt").write_text("x")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert assets.package_path("package:noisy_pkg.sub/data.csv") == pkg / "sub" / "data.csv"
    assert assets.package_path("package:noisy_pkg/plain/x.txt") == pkg / "plain" / "x.txt"
    assert not marker.exists() and "noisy_pkg" not in sys.modules and "noisy_pkg.sub" not in sys.modules
    with pytest.raises(PipelineError, match=r"package 'noisy_pkg.nothing' is not installed"):
        assets.package_path("package:noisy_pkg.nothing/x")


# --- encodings -----------------------------------------------------------------------------


def test_load_encoding_reads_other_encodings(tmp_path: Path) -> None:
    rows = [{"category": "fresh" if i % 2 else "rotten", "text": f"café n°{i}"} for i in range(20)]
    path = tmp_path / "r.csv"
    path.write_bytes(pd.DataFrame(rows).to_csv(index=False).encode("latin-1"))
    with pytest.raises(PipelineError, match=r"r.csv, line 2: not valid utf-8"):
        splitting.make_splits(load_params(str(path)))
    splits, _ = splitting.make_splits(load_params(str(path), encoding="latin-1"))
    assert "café n°1" in set(pd.concat(splits.values())["text"])
    conll = tmp_path / "t.conll"
    conll.write_bytes("Zürich B-LOC\nliegt O\n".encode("cp1252"))
    assert sources.read_table(conll, encoding="cp1252")["tokens"][0] == ["Zürich", "liegt"]


def test_hub_model_ids_pass_through_when_online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert assets.resolve_model("someorg/somemodel") == "someorg/somemodel"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PipelineError, match="offline mode is on"):
        assets.resolve_model("someorg/somemodel")


# --- .txt prediction input -----------------------------------------------------------------


def test_txt_input_is_one_text_per_line_for_a_sequence_model(tmp_path: Path, tiny_bert: Path) -> None:
    from tunepipe.prediction import predict_file

    model = build_classifier(tiny_bert, tmp_path / "seq", ["rotten", "fresh"])
    (tmp_path / "new.txt").write_text("a gripping film\n\nB-PER looks like a tag O\n")
    out = predict_file(str(model), tmp_path / "new.txt", None, "text")
    assert out["text"].tolist() == ["a gripping film", "B-PER looks like a tag O"]
    assert out["line"].tolist() == [1, 3] and set(out["predicted_label"]) <= {"rotten", "fresh"}
    assert out.attrs["output"] == str(tmp_path / "new.predictions.csv")
    written = pd.read_csv(tmp_path / "new.predictions.csv")
    assert written.columns.tolist() == ["line", "text", "predicted_label", "predicted_score"]


def test_txt_input_is_conll_for_a_token_model(tmp_path: Path, tiny_bert: Path) -> None:
    from tunepipe.prediction import predict_file

    model = build_classifier(tiny_bert, tmp_path / "tok", ["O", "B-PER", "I-PER"], token=True)
    (tmp_path / "new.txt").write_text("Peter\nsaid\n\nhello\n")
    out = predict_file(str(model), tmp_path / "new.txt", None, "text")
    assert [len(t) for t in out["predicted_tags"]] == [2, 1]
    assert out.attrs["output"] == str(tmp_path / "new.predictions.conll")
    lines = (tmp_path / "new.predictions.conll").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["Peter", "said", "", "hello", ""]
