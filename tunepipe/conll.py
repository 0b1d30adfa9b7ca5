"""Read and write token-classification data: CoNLL columns and word/TAG lines.

Both readers return one row per sentence (columns tokens, tags, source_row) so that a bad
sentence found later in the pipeline can be traced back to its line in the source file.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from tunepipe.errors import PipelineError
from tunepipe.io import decode_error, read_bytes, write_text

DOCSTART = "-DOCSTART-"
# Only ASCII whitespace separates CoNLL columns: str.split() and str.strip() would also cut at a
# full-width space (U+3000) or a no-break space, which are part of Japanese and other tokens.
ASCII_SPACE = " \t\f\v"
_ASCII_RUN = re.compile(f"[{ASCII_SPACE}]+")
# Names for separators that YAML makes awkward to write ("\t" needs double quotes there).
SEPARATORS = {"tab": "\t", "\\t": "\t", "space": " "}


def separator_of(name: str | None) -> str | None:
    """load.conll.separator as the string to split on: `tab` (or a written backslash-t) is a tab."""
    return None if name is None else SEPARATORS.get(name, name)


def split_fields(line: str, separator: str | None = None) -> list[str]:
    """A line's columns: runs of ASCII whitespace (separator None), else exactly `separator`,
    each field stripped of ASCII whitespace only."""
    if separator is None:
        return [f for f in _ASCII_RUN.split(line.strip(ASCII_SPACE)) if f]
    return [field.strip(ASCII_SPACE) for field in line.split(separator_of(separator))]


def read_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending); CRLF, CR, a UTF-8 BOM and the
    compressions pandas reads (.gz, .bz2, .xz, .zip) are accepted."""
    if path.is_dir():
        raise PipelineError(f"{path}: expected a file, found a directory")
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    data = read_bytes(path)
    if data is None:
        raise PipelineError(f"{path}: cannot read the file (an unsupported compression?)")
    utf8 = encoding.replace("_", "-").lower() in ("utf-8", "utf8")
    try:
        text = data.decode("utf-8-sig" if utf8 else encoding)
    except UnicodeDecodeError:
        raise PipelineError(decode_error(path, encoding)) from None
    except LookupError:
        raise PipelineError(f"{path}: unknown text encoding {encoding!r} (load.encoding)") from None
    for n, line in enumerate(io.StringIO(text, newline=""), start=1):
        yield n, line.rstrip("\r\n")


def _column(path: Path, n: int, fields: list[str], index: int, role: str, line: str) -> str:
    """Field `index` of a line, or an error saying what was missing and where."""
    if not -len(fields) <= index < len(fields):
        raise PipelineError(
            f"{path}, line {n}: found {len(fields)} column(s), expected a {role} in column {index}: {line!r}"
        )
    value = fields[index]
    if not value:
        raise PipelineError(f"{path}, line {n}: {role} column {index} is empty: {line!r}")
    return value


def read_conll(
    path: Path,
    token_column: int = 0,
    tag_column: int | None = -1,
    separator: str | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Sentences from a CoNLL file: one token per line, a blank line between sentences.

    Columns are split on runs of ASCII whitespace (separator None) or on `separator` (`tab` or
    any string; fields then stripped of ASCII whitespace), so a full-width space (U+3000) stays
    inside its token; columns are counted per line and may be indexed from the end (-1 = last).
    tag_column None reads unlabelled text for prediction and leaves out the tags column.
    -DOCSTART- lines are document markers.
    """
    path = Path(path)
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    rows: list[int] = []
    sent_tokens: list[str] = []
    sent_tags: list[str] = []
    start = 0
    width: int | None = None
    width_line = 0

    def close() -> None:
        nonlocal sent_tokens, sent_tags
        if sent_tokens:
            tokens.append(sent_tokens)
            tags.append(sent_tags)
            rows.append(start)
        sent_tokens, sent_tags = [], []

    for n, line in read_lines(path, encoding):
        if not line.strip(ASCII_SPACE) or line.lstrip(ASCII_SPACE).startswith(DOCSTART):
            close()
            continue
        fields = split_fields(line, separator)
        # Every token line of a CoNLL file has the same columns; a short one is a broken line,
        # not a token that happens to be its own tag.
        if width is None:
            width, width_line = len(fields), n
        elif len(fields) != width:
            raise PipelineError(
                f"{path}, line {n}: found {len(fields)} column(s), expected {width} as on line {width_line}: "
                f"{line!r}"
            )
        if not sent_tokens:
            start = n
        sent_tokens.append(_column(path, n, fields, token_column, "token", line))
        if tag_column is not None:
            sent_tags.append(_column(path, n, fields, tag_column, "tag", line))
    close()
    if not tokens:
        raise PipelineError(f"{path}: no sentences found; expected token lines separated by blank lines")
    frame = {"tokens": tokens, "tags": tags, "source_row": rows}
    if tag_column is None:
        del frame["tags"]
    return pd.DataFrame(frame).astype({"source_row": "int64"})


def read_tagged(path: Path, delimiter: str = "/", encoding: str = "utf-8") -> pd.DataFrame:
    """Sentences written one per line as word/TAG tokens (NLTK TaggedCorpusReader style).

    Each token is split at its last delimiter, so words may contain it ("1/2/CD" is word "1/2").
    Tags are kept as written (NLTK would upper-case them).
    """
    if not delimiter:
        raise ValueError("delimiter must be a non-empty string")
    path = Path(path)
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    rows: list[int] = []
    for n, line in read_lines(path, encoding):
        words = split_fields(line)
        if not words:
            continue
        sent_tokens, sent_tags = [], []
        for item in words:
            word, sep, tag = item.rpartition(delimiter)
            if not (sep and word and tag):
                raise PipelineError(
                    f"{path}, line {n}: token {item!r} is not word{delimiter}TAG "
                    f"(expected a non-empty word and tag around the last {delimiter!r})"
                )
            sent_tokens.append(word)
            sent_tags.append(tag)
        tokens.append(sent_tokens)
        tags.append(sent_tags)
        rows.append(n)
    if not tokens:
        raise PipelineError(f"{path}: no sentences found; expected lines of word{delimiter}TAG tokens")
    return pd.DataFrame({"tokens": tokens, "tags": tags, "source_row": rows}).astype({"source_row": "int64"})


def _check_field(path: Path, row: int, what: str, value: object) -> str:
    """A token or tag that read_conll(separator="\\t") would give back unchanged, or an error."""
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise PipelineError(
            f"{path}: row {row}: {what} {value!r} must be a non-empty string without edge spaces"
        )
    if any(ch in value for ch in "\t\n\r") or value.startswith(DOCSTART):
        raise PipelineError(
            f"{path}: row {row}: {what} {value!r} contains a tab or line break or is {DOCSTART}"
        )
    return value


def write_conll(df: pd.DataFrame, path: Path, tag_column: str = "tags") -> None:
    """Write token<TAB>tag lines with a blank line after each sentence, atomically.

    The file is written next to `path` and renamed over it, so a reader never sees half a file.
    Values that would not read back unchanged (empty, tabs, line breaks, -DOCSTART-) are refused.
    """
    path = Path(path)
    for column in ("tokens", tag_column):
        if column not in df.columns:
            raise PipelineError(
                f"{path}: cannot write, DataFrame has no {column!r} column ({list(df.columns)})"
            )
    lines = []
    for row, (toks, labels) in enumerate(zip(df["tokens"], df[tag_column], strict=True)):
        if len(toks) == 0 or len(toks) != len(labels):
            raise PipelineError(
                f"{path}: row {row}: {len(toks)} tokens and {len(labels)} tags; "
                "expected the same non-zero number"
            )
        for token, tag in zip(toks, labels, strict=True):
            token, tag = _check_field(path, row, "token", token), _check_field(path, row, "tag", tag)
            lines.append(f"{token}\t{tag}\n")
        lines.append("\n")
    write_text(path, "".join(lines))
