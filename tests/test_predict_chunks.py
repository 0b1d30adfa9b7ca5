"""`tunepipe predict` streams: the input read, predicted and written a chunk at a time gives the
same rows, columns and labels as one pass over the whole input, at every chunk boundary and in
every format, and an error in a later chunk leaves no output (and no temporary file) behind.

Scores may differ in their last rounded digit: a row's padding depends on which rows share its
batch, and other matmul shapes sum in another order (about 1e-7 in float32), which can carry a
score across the sixth decimal's rounding boundary (for 1 of 12 seeds of the untrained head on
these 13 rows, and in a full-suite run where the worker's earlier tests moved the seed)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers import build_classifier, review
from tunepipe import cli
from tunepipe.errors import PipelineError
from tunepipe.prediction import predict_file

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    return build_classifier(tiny_bert, tmp_path_factory.mktemp("clf") / "model", ["rotten", "fresh"])


def rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    labels = ["fresh", "rotten"]
    return pd.DataFrame(
        {"id": [f"r{i:03d}" for i in range(n)], "text": [review(rng, labels[i % 2]) for i in range(n)]}
    )


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False, row_group_size=4)
    else:
        path.write_text("".join(f"{t}\n\n" for t in df["text"]))
    return path


SCORE_ULP = 1.5e-6  # one unit of the sixth decimal that scores are rounded to, and float error


def records(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return pd.read_csv(path, keep_default_na=False).to_dict("records")


def assert_close(a: Any, b: Any, where: str = "") -> None:
    """Equal, but floats within SCORE_ULP; dict keys in the same order (the output's columns)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), where
        assert abs(a - b) <= SCORE_ULP, f"{where}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_predictions(a: Path, b: Path) -> None:
    assert_close(records(a), records(b), f"{a.name} vs {b.name}")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".txt"])
@pytest.mark.parametrize("n", [1, 6, 7, 13])
def test_chunked_output_equals_one_pass(tmp_path: Path, classifier: Path, suffix: str, n: int) -> None:
    source = write(rows(n), tmp_path / f"in{suffix}")
    out = ".jsonl" if suffix == ".jsonl" else ".csv"
    whole = predict_file(str(classifier), source, tmp_path / f"whole{out}", "text", chunk_rows=10**6)
    for size in (1, 3, 6, 7):
        chunked = predict_file(str(classifier), source, tmp_path / f"c{size}{out}", "text", chunk_rows=size)
        assert_same_predictions(tmp_path / f"c{size}{out}", tmp_path / f"whole{out}")
        pd.testing.assert_frame_equal(chunked, whole, check_exact=False, rtol=0, atol=SCORE_ULP)
        assert chunked.attrs["rows"] == n and chunked.attrs["summary"] == whole.attrs["summary"]
    assert len(whole) == n and leftovers(tmp_path) == []


def test_jsonl_records_with_different_keys_keep_one_set_of_columns(tmp_path: Path, classifier: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "good film"}\n{"text": "dull", "note": "x"}\n{"text": "fine"}\n')
    whole = predict_file(str(classifier), source, tmp_path / "whole.csv", "text", chunk_rows=10**6)
    predict_file(str(classifier), source, tmp_path / "chunked.csv", "text", chunk_rows=1)
    assert_same_predictions(tmp_path / "chunked.csv", tmp_path / "whole.csv")
    assert whole.columns.tolist()[:2] == ["text", "note"]


def test_a_bad_row_in_a_later_chunk_leaves_no_output(tmp_path: Path, classifier: Path) -> None:
    df = rows(10)
    df.loc[8, "text"] = "   "
    source = write(df, tmp_path / "in.csv")
    output = tmp_path / "out.csv"
    output.write_text("earlier predictions\n")
    with pytest.raises(
        PipelineError, match=r"column 'text' must hold non-empty text; 1 row\(s\) do not, e\.g\. row 9 "
    ):
        predict_file(str(classifier), source, output, "text", chunk_rows=3)
    assert output.read_text() == "earlier predictions\n"  # not replaced by half a file
    assert leftovers(tmp_path) == []


def test_an_input_without_rows_writes_nothing(tmp_path: Path, classifier: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,text\n")
    with pytest.raises(PipelineError, match=r"in.csv: no rows to predict"):
        predict_file(str(classifier), source, tmp_path / "out.csv", "text", chunk_rows=3)
    assert not (tmp_path / "out.csv").exists() and leftovers(tmp_path) == []


def test_token_tags_are_the_same_chunked(tmp_path: Path, tiny_bert: Path) -> None:
    model = build_classifier(tiny_bert, tmp_path / "ner", ["O", "B-PER", "I-PER"], token=True)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows(9)["text"]))
    predict_file(str(model), source, tmp_path / "whole.jsonl", "text", chunk_rows=10**6)
    predict_file(str(model), source, tmp_path / "chunked.jsonl", "text", chunk_rows=2)
    assert_same_predictions(tmp_path / "chunked.jsonl", tmp_path / "whole.jsonl")


def test_the_command_streams_and_reports_its_rows(
    tmp_path: Path, classifier: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(rows(11), tmp_path / "in.csv")
    output = tmp_path / "out.csv"
    cli.main(["predict", "--model", str(classifier), str(source), "-o", str(output), "--text-column", "text"])
    printed = capsys.readouterr().out
    written = pd.read_csv(tmp_path / "out.csv")
    counts = written["predicted_label"].value_counts()
    assert f"predicted 11 rows -> {tmp_path / 'out.csv'} (" in printed
    assert all(f"{label}: {count}" in printed for label, count in counts.items())


# --- rows without text --------------------------------------------------------------------------


def with_gaps(n: int, empty: dict[int, Any]) -> pd.DataFrame:
    df = rows(n)
    for i, value in empty.items():
        df.loc[i, "text"] = value
    return df


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_rows_without_text_are_skipped_in_place_when_asked(
    tmp_path: Path, classifier: Path, suffix: str
) -> None:
    """Production tables have empty cells: with skip_empty the run goes on, every input row keeps
    its place in the output (predictions join back by position), and the skipped rows are named."""
    df = with_gaps(9, {1: "", 4: None, 8: "   "})
    source = write(df, tmp_path / f"in{suffix}")
    with pytest.raises(PipelineError, match=r"3 row\(s\) do not, e\.g\. row 2 \(empty\).*--skip-empty"):
        predict_file(str(classifier), source, tmp_path / "refused.csv", "text")
    full = write(df.drop(index=[1, 4, 8]), tmp_path / f"full{suffix}")
    alone = predict_file(str(classifier), full, tmp_path / "alone.csv", "text")
    for size in (1, 4, 10**6):
        out = predict_file(
            str(classifier), source, tmp_path / f"out{size}.csv", "text", chunk_rows=size, skip_empty=True
        )
        assert out.attrs["skipped"] == [2, 5, 9] and out.attrs["rows"] == 9
        assert out.attrs["summary"] == alone.attrs["summary"]  # the skipped rows are not counted
        written = pd.read_csv(tmp_path / f"out{size}.csv", dtype=str, keep_default_na=False)
        assert written["id"].tolist() == df["id"].tolist()
        blank = written.iloc[[1, 4, 8]]
        assert (blank["predicted_label"] == "").all() and (blank["predicted_score"] == "").all()
        kept = written.drop(index=[1, 4, 8]).reset_index(drop=True)
        assert kept["predicted_label"].tolist() == alone["predicted_label"].tolist()


def test_skip_empty_still_refuses_a_cell_that_is_not_text(tmp_path: Path, classifier: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "good film"}\n{"text": ""}\n{"text": 42}\n')
    with pytest.raises(PipelineError, match=r"1 row\(s\) do not, e\.g\. row 3 \(int 42\)$"):
        predict_file(str(classifier), source, tmp_path / "out.csv", "text", skip_empty=True)


def test_the_command_counts_and_names_the_skipped_rows(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_classifier(tiny_bert, tmp_path / "ner", ["O", "B-PER", "I-PER"], token=True)
    source = write(with_gaps(5, {0: None, 3: ""}), tmp_path / "in.csv")
    output = tmp_path / "out.csv"
    cli.main(["predict", "--model", str(model), str(source), "-o", str(output), "--skip-empty"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"predicted 3 rows -> {output} (")
    assert printed[1] == "skipped 2 row(s) without text (row 1, 4): their predicted_* cells are empty"
    written = pd.read_csv(output, dtype=str, keep_default_na=False)
    assert written["predicted_entities"].tolist()[0] == "" and written["predicted_entities"].tolist()[3] == ""
    assert all(json.loads(v) is not None for v in written["predicted_entities"].iloc[[1, 2, 4]])


BLANK_LINES = {
    "text alone": "text\ngood film\n\n   \ndull film\n\n\n",
    "id and text": "id,text\na,good film\n\nb,   \nc,dull film\n\n,\n",
}


@pytest.mark.parametrize("table", list(BLANK_LINES))
@pytest.mark.parametrize("size", [1, 2, 10**6])
def test_a_blank_line_of_a_csv_is_a_row(tmp_path: Path, classifier: Path, size: int, table: str) -> None:
    """pandas skips blank lines: each later row would move up one, so predictions no longer line
    up with the input and row numbers in errors point one line short. Blank lines (or lines of
    empty cells) after the last row are the file's end."""
    source = tmp_path / "in.csv"
    source.write_text(BLANK_LINES[table])
    with pytest.raises(PipelineError, match=r"row\(s\) do not, e\.g\. row 2 \(empty\)"):
        predict_file(str(classifier), source, tmp_path / "refused.csv", "text", chunk_rows=size)
    out = predict_file(
        str(classifier), source, tmp_path / "out.csv", "text", chunk_rows=size, skip_empty=True
    )
    assert out.attrs["rows"] == 4 and out.attrs["skipped"] == [2, 3]
    written = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert written["text"].tolist() == ["good film", "", "   ", "dull film"]
    assert [v != "" for v in written["predicted_label"]] == [True, False, False, True]
