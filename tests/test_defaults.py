"""Defaults that fit any data (no group column, no demo labels, labels read from train, class
minimums for train only, no fixed thresholds), and every change load makes to the user's rows
printed with counts and first rows, recorded in the manifest and shown in the run report."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tunepipe import catalog, evaluation, params, report, splitting, validation

pytestmark = pytest.mark.unit


def write_csv(path: Path, rows: list[dict[str, object]]) -> str:
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def rows(n: int, labels: tuple[str, ...] = ("neg", "pos")) -> list[dict[str, object]]:
    return [
        {"text": f"review number {i} says {labels[i % len(labels)]}", "label": labels[i % len(labels)]}
        for i in range(n)
    ]


def run_load(root: Path, load: dict[str, object], monkeypatch: pytest.MonkeyPatch, **top: object) -> dict:
    (root / "params.yaml").write_text(yaml.safe_dump({"load": load, **top}))
    monkeypatch.chdir(root)
    importlib.import_module("tasks.load").main()
    return json.loads((root / "data/splits/manifest.json").read_text())


# --- defaults ----------------------------------------------------------------------------------


def test_a_text_label_csv_loads_with_only_its_source_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "data.csv", rows(100, ("b", "a", "c")))
    manifest = run_load(tmp_path, {"source": "data.csv"}, monkeypatch)
    out = capsys.readouterr().out
    assert manifest["rows"] == {"train": 80, "validation": 10, "test": 10}
    assert "groups" not in manifest and manifest["dropped_labels"] == {} and manifest["changes"] == []
    # labels read from train, sorted, printed and recorded
    assert manifest["labels"] == {"names": ["a", "b", "c"], "from": "train"}
    assert "load: labels read from the train split (3, in id order): a, b, c" in out
    p = params.parse({})
    assert p.load.split.group_by is None and p.load.drop_labels == [] and p.load.labels == []
    assert p.evaluate.thresholds == {} and p.load.dedupe == "all"


def test_labels_null_is_accepted_and_read_from_the_train_split(tmp_path: Path) -> None:
    p = params.parse(
        {"load": {"source": write_csv(tmp_path / "r.csv", rows(60, ("10", "2", "1"))), "labels": None}}
    )
    assert p.load.labels == []
    _, manifest = splitting.make_splits(p.load)
    assert manifest["labels"] == {"names": ["1", "2", "10"], "from": "train"}  # numbers in numeric order
    declared = params.parse({"load": {"source": str(tmp_path / "r.csv"), "labels": [10, 2, 1]}})
    assert splitting.make_splits(declared.load)[1]["labels"] == {
        "names": ["10", "2", "1"],
        "from": "load.labels",
    }
    assert params.parse({"load": {"dedupe": True}}).load.dedupe == "all"
    assert params.parse({"load": {"dedupe": False}}).load.dedupe == "none"


def test_small_evaluation_splits_warn_with_the_interval_width_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("great_expectations")
    write_csv(tmp_path / "data.csv", rows(1200, ("neg", "neu", "pos")))
    load = {"source": "data.csv", "split": {"validation": 0.1, "test": 0.1}}
    run_load(tmp_path, load, monkeypatch, validate={"min_rows_per_class": 50})
    capsys.readouterr()
    importlib.import_module("tasks.validate").main()  # exits non-zero on a failure
    captured = capsys.readouterr()
    result = json.loads((tmp_path / "reports/validation.json").read_text())
    assert result["success"] and result["splits"]["test"]["class_counts"] == {"neg": 40, "neu": 40, "pos": 40}
    # 40 rows: recall within ±15.5%; 120 rows: accuracy within ±8.9% (1.96 * sqrt(0.25 / n))
    assert "validate: warning: test: 3 class(es) below validate.min_rows_per_class (50" in captured.err
    assert "'neg' 40 (recall ±15.5%)" in captured.err
    assert "accuracy on its 120 rows is known to ±8.9%" in captured.err
    assert len(result["warnings"]) == 2  # validation and test; train is held to its minimum
    page = report.render(report.gather(report.worktree(tmp_path)))
    assert "accuracy on its 120 rows is known to ±8.9%" in page
    assert validation.half_width(100) == pytest.approx(0.098)


def test_the_train_minimum_still_fails_train(gx_ready: None) -> None:
    frames = {
        split: pd.DataFrame(
            {
                "text": [f"{split} {i}" for i in range(n)],
                "label": ["a", "b"] * (n // 2),
                "source_row": range(1, n + 1),
            }
        )
        for split, n in (("train", 8), ("validation", 4), ("test", 4))
    }
    p = params.parse({"validate": {"min_rows_per_class": 5, "min_eval_rows_per_class": 2}})
    result = validation.validate(p, frames, ["a", "b"])
    assert [(f["split"], f["table"]) for f in result["failures"]] == [("train", "class_counts")]
    assert "validate.min_rows_per_class (5) is the train minimum" in validation.describe_failure(
        result["failures"][0]
    )


@pytest.fixture(scope="module")
def gx_ready() -> None:
    pytest.importorskip("great_expectations")


# --- changes to the user's rows ----------------------------------------------------------------


def test_duplicates_within_a_file_are_printed_and_shown_in_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = rows(60)
    data += [dict(data[0]), dict(data[1]), dict(data[0]), dict(data[5])]  # rows 61 to 64 repeat
    write_csv(tmp_path / "tweets.csv", data)
    manifest = run_load(tmp_path, {"source": "tweets.csv"}, monkeypatch)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "repeat a text" in x)
    assert line.startswith("load: removed 4 of 64 row(s) of train (tweets.csv) that repeat a text earlier")
    assert "(load.dedupe: all; none keeps them), e.g. row 61: 'review number 0 says neg' (as row 1)" in line
    assert line.count("row ") == 6 and "row 64" not in line  # the first 3 examples and the rows they repeat
    [change] = manifest["changes"]
    assert change["change"] == "duplicates_removed" and change["rows"] == 4 and len(change["examples"]) == 3
    assert manifest["duplicates_removed"] == {"train": 4}
    page = report.render(report.gather(report.worktree(tmp_path)))
    assert "What load changed in your rows" in page and "duplicates removed" in page
    assert "row 61: &#x27;review number 0 says neg&#x27;" in page or "row 61: &#39;review number 0" in page


def test_dropped_labels_and_empty_texts_are_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = rows(60, ("neg", "pos", "plot"))
    data[4]["text"] = "   "
    data[7]["text"] = "   "  # blanks are kept (validate names them), not removed as duplicates
    write_csv(tmp_path / "r.csv", data)
    manifest = run_load(tmp_path, {"source": "r.csv", "drop_labels": ["plot"]}, monkeypatch)
    captured = capsys.readouterr()
    assert "load: dropped 20 of 60 row(s) of train (r.csv) labelled plot (load.drop_labels), e.g. row 3:" in (
        captured.out
    )
    assert "load: warning: kept 2 row(s) of train (r.csv) with an empty or missing text" in captured.err
    assert [c["change"] for c in manifest["changes"]] == ["labels_dropped", "empty_texts_kept"]
    assert manifest["labels"]["names"] == ["neg", "pos"]


def test_dedupe_train_keeps_supplied_evaluation_splits_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = rows(90)
    test_rows = data[60:90] + [data[60], data[61]] + data[:3]  # 2 repeats within, 3 shared with train
    source = {
        "train": write_csv(tmp_path / "train.csv", data[:50] + [data[0]]),
        "validation": write_csv(tmp_path / "validation.csv", data[50:60] + [data[50]]),
        "test": write_csv(tmp_path / "test.csv", test_rows),
    }
    for dedupe in ("train", "none"):
        p = params.parse({"load": {"source": source, "dedupe": dedupe}}).load
        splits, manifest = splitting.make_splits(p)
        assert splits["test"]["text"].tolist() == [r["text"] for r in test_rows]  # untouched, in order
        assert len(splits["validation"]) == 11
    assert manifest["changes"] == []  # none: nothing changed
    p = params.parse({"load": {"source": source, "dedupe": "train"}}).load
    splits, manifest = splitting.make_splits(p)
    kinds = [(c["split"], c["change"], c["rows"]) for c in manifest["changes"]]
    assert kinds == [("train", "duplicates_removed", 1), ("train", "overlap_removed_from_train", 3)]
    assert not set(splits["train"]["text"]) & set(splits["test"]["text"])
    assert (
        "test (" in manifest["changes"][1]["text"]
        and "test is kept as written" in manifest["changes"][1]["text"]
    )
    # all: the test file's own repeats go (and the shared rows fail, as before, unless overlap: drop)
    p = params.parse({"load": {"source": source, "dedupe": "all", "overlap": "drop"}}).load
    splits, manifest = splitting.make_splits(p)
    assert len(splits["test"]) == 30
    assert {(c["split"], c["change"]) for c in manifest["changes"]} >= {
        ("test", "duplicates_removed"),
        ("test", "overlap_dropped"),
    }


# --- the default gate ---------------------------------------------------------------------------


def test_the_default_gate_fits_a_token_task_and_the_report_states_the_baseline() -> None:
    p = params.parse({"task": "token_classification"})
    assert p.evaluate.thresholds == {}
    refs = [["B-PER", "O"], ["O", "O"]]
    verdict = evaluation.score_tokens(refs, refs, "iob2", p.evaluate.thresholds)
    assert verdict["passed"] and verdict["thresholds"] == []
    with pytest.raises(
        Exception, match=r"evaluate.thresholds.f1_macro: .*remove f1_macro from evaluate.thresholds"
    ):
        params.parse(
            {
                "task": "token_classification",
                "load": {"tag_scheme": "iob2"},
                "evaluate": {"thresholds": {"f1_macro": 0.78}},
            }
        )
    # sequence classification: the test split's majority class is the baseline the report states
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    scored = evaluation.score(np.array([0, 1, 1, 1]), logits, ["neg", "pos"], {})
    assert scored["baseline"] == {"label": "pos", "accuracy": 0.75} and scored["passed"]
    facts = {"metrics": scored["metrics"], "thresholds": [], "passed": True, "baseline": scored["baseline"]}
    section = report._metrics_section(facts)
    assert "no thresholds set: every model passes" in section
    assert "Majority-class baseline on the test split: accuracy <b>0.7500</b>" in section


def test_manifest_records_labels_for_token_tasks(tmp_path: Path) -> None:
    conll = tmp_path / "ner.conll"
    conll.write_text("\n".join(f"Word{i} B-PER\nsaid O\nin O\nParis{i} B-LOC\n" for i in range(30)))
    p = params.parse({"task": "token_classification", "load": {"source": str(conll)}})
    _, manifest = splitting.make_splits(p.load, p.task)
    assert manifest["labels"] == {"names": ["O", "B-LOC", "B-PER"], "from": "train"}
    assert catalog.SPLITS.name == "splits"
