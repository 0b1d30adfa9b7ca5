"""Property-based tests of the source readers: whatever bytes a user's file holds, reading it
either gives a table or raises PipelineError with the file's name; never another exception.
Files that a CSV writer wrote read back cell for cell, as written."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tunepipe import conll, sources
from tunepipe.errors import PipelineError
from tunepipe.params import ConllParams

pytestmark = pytest.mark.unit

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Characters that make CSV, JSON and CoNLL interesting: separators, quotes, line breaks of every
# kind, brackets, a BOM, bytes that are not UTF-8 once encoded otherwise.
SPECIAL = ",;\t\"'\n\r {}[]:-/\\\ufeffé\x00"
TEXTISH = st.text(alphabet=st.sampled_from(SPECIAL) | st.characters(codec="utf-8"), max_size=200)
ENCODINGS = st.sampled_from(["utf-8", "latin-1", "utf-16"])
SUFFIXES = {
    "csv": ".csv",
    "tsv": ".tsv",
    "json": ".json",
    "jsonl": ".jsonl",
    "conll": ".conll",
    "tagged": ".txt",
}


def read_or_fail(
    data: bytes, fmt: str, encoding: str = "utf-8", **conll_params: object
) -> pd.DataFrame | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{SUFFIXES[fmt]}"
        path.write_bytes(data)
        try:
            return sources.read_table(path, fmt, ConllParams(**conll_params), encoding=encoding)
        except PipelineError as exc:
            assert str(path) in str(exc)  # the message names the file
            return None


@SETTINGS
@given(data=st.binary(max_size=300) | TEXTISH.map(lambda t: t.encode("utf-8", "surrogatepass")))
@example(data=b'text,label\n"open,1\nx,2\n')
@example(data=b"a,b\n1,2,3\n")
@example(data=b"a,b\n\xe9,1\n")
@example(data=b"")
@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_csv_reads_or_fails_cleanly(fmt: str, data: bytes) -> None:
    df = read_or_fail(data, fmt)
    if df is not None:
        assert isinstance(df.index, pd.RangeIndex)  # never a column quietly taken for the index


@SETTINGS
@given(data=TEXTISH, encoding=ENCODINGS)
def test_csv_in_any_encoding_reads_or_fails_cleanly(data: str, encoding: str) -> None:
    read_or_fail(data.encode(encoding, "replace"), "csv", encoding)


@SETTINGS
@given(
    data=st.lists(
        TEXTISH
        | st.dictionaries(st.sampled_from(["text", "label", "tokens"]), st.integers() | TEXTISH).map(
            json.dumps
        )
        | st.lists(st.integers()).map(json.dumps),
        max_size=8,
    ).map("\n".join)
)
@example(data='{"text": "a"}\n{"text": "b", label: 1}')
@example(data="[1, 2]\n")
def test_jsonl_reads_or_fails_cleanly(data: str) -> None:
    df = read_or_fail(data.encode("utf-8", "surrogatepass"), "jsonl")
    if df is not None:
        assert len(df) == sum(1 for line in data.splitlines() if line.strip())


@SETTINGS
@given(
    data=TEXTISH | st.recursive(st.integers() | st.text(max_size=5), st.lists, max_leaves=8).map(json.dumps)
)
@example(data='[{"text": "a"}, {"text": "b",}]')
@example(data="42")
def test_json_reads_or_fails_cleanly(data: str) -> None:
    read_or_fail(data.encode("utf-8", "surrogatepass"), "json")


CONLL_LINE = st.sampled_from(["", " ", "-DOCSTART- -X- O", "EU B-ORG", "rejects\tO", "a b c", "x"]) | TEXTISH


@SETTINGS
@given(
    lines=st.lists(CONLL_LINE, max_size=12),
    token_column=st.integers(-3, 3),
    tag_column=st.none() | st.integers(-3, 3),
    separator=st.none() | st.sampled_from(["\t", " ", ",", "|"]),
)
def test_conll_reads_or_fails_cleanly(
    lines: list[str], token_column: int, tag_column: int | None, separator: str | None
) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    df = read_or_fail(data, "conll", token_column=token_column, tag_column=tag_column, separator=separator)
    if df is not None:
        assert all(len(t) > 0 for t in df["tokens"])
        if tag_column is not None:
            assert [len(t) for t in df["tokens"]] == [len(t) for t in df["tags"]]


@SETTINGS
@given(
    lines=st.lists(st.sampled_from(["The/DT cat/NN", "1/2/CD", "/x", "x/", "a//b", ""]) | TEXTISH, max_size=8)
)
def test_word_tag_reads_or_fails_cleanly(lines: list[str]) -> None:
    df = read_or_fail("\n".join(lines).encode("utf-8", "surrogatepass"), "tagged")
    if df is not None:
        assert [len(t) for t in df["tokens"]] == [len(t) for t in df["tags"]]


CELL = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)


@SETTINGS
@given(rows=st.lists(st.tuples(CELL, CELL), min_size=1, max_size=10), sep=st.sampled_from([",", "\t"]))
@example(rows=[("007", "1.0"), ("NA", "null"), ("1e3", " padded ")], sep=",")
def test_written_csv_reads_back_as_written(rows: list[tuple[str, str]], sep: str) -> None:
    """Any cell a CSV writer quoted correctly comes back as the same text: no number guessed
    from it, no `NA` turned into a missing value, no whitespace trimmed."""
    buffer = io.StringIO()
    # The default \r\n line ending makes the writer quote cells holding either character.
    writer = csv.writer(buffer, delimiter=sep, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("r.csv" if sep == "," else "r.tsv")
        path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        df = sources.read_table(path)
    assert list(zip(df["text"], df["label"], strict=True)) == rows


@SETTINGS
@given(sentences=st.lists(st.lists(st.tuples(CELL, CELL), min_size=1, max_size=5), min_size=1, max_size=5))
def test_conll_written_reads_back(sentences: list[list[tuple[str, str]]]) -> None:
    """write_conll refuses what would not read back; what it writes reads back unchanged."""
    frame = pd.DataFrame(
        {"tokens": [[w for w, _ in s] for s in sentences], "tags": [[t for _, t in s] for s in sentences]}
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.conll"
        try:
            conll.write_conll(frame, path)
        except PipelineError:
            return
        back = conll.read_conll(path, separator="\t")
    assert back["tokens"].tolist() == frame["tokens"].tolist()
    assert back["tags"].tolist() == frame["tags"].tolist()
