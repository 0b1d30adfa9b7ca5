"""Prediction on unlabelled rows (`tunepipe predict`): each row's label and score, written into new
`predicted_*` columns next to the input columns, never over one of them (a gold `label` stays)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from tunepipe import dvcrepo, registry
from tunepipe.conll import read_lines, write_conll
from tunepipe.errors import PipelineError
from tunepipe.inference import (
    MODEL_INPUTS,
    load_model,
    logits_for,
    max_length_of,
    task_of,
    token_logits_for,
)
from tunepipe.io import atomic_text, scratch_dir
from tunepipe.metrics import softmax
from tunepipe.params import ConllParams
from tunepipe.sources import infer_format, iter_table, read_table
from tunepipe.tagging import spans

# The columns predict adds; an input that already has one is refused rather than overwritten.
PREDICTED_LABEL = "predicted_label"
PREDICTED_SCORE = "predicted_score"
PREDICTED_ENTITIES = "predicted_entities"
PREDICTED_WORDS = "predicted_words"
PREDICTED_TAGS = "predicted_tags"
LIST_COLUMNS = (PREDICTED_ENTITIES, PREDICTED_WORDS, PREDICTED_TAGS)
# Rows read, predicted and written at a time: memory holds one chunk, whatever the file's size.
CHUNK_ROWS = 8192


def check_text_column(
    df: pd.DataFrame,
    columns: list[str],
    origin: str,
    tokens: bool = False,
    first_row: int = 1,
    skip_empty: bool = False,
) -> pd.Series:
    """Every cell to predict is a non-empty text (or, with `tokens`, a non-empty list of words):
    a number, a missing cell or an empty list is named by its row (counted from `first_row`, the
    file's row number of a chunk's first row) instead of failing the tokenizer. `skip_empty`:
    empty and missing cells pass; returned is which rows have one (predict_frame leaves them
    unpredicted), all False otherwise."""
    for col in columns:
        if col not in df.columns:
            raise PipelineError(
                f"{origin}: no column {col!r}; columns are {', '.join(map(str, df.columns))} "
                "(use --text-column)"
            )
    empty = pd.Series(False, index=df.index)
    for col in columns:
        found = [_cell_problem(v, tokens and col == columns[0]) for v in df[col]]
        if skip_empty:
            empty |= pd.Series([p == EMPTY for p in found], index=df.index)
        problems = [(first_row + i, p) for i, p in enumerate(found) if p and not (skip_empty and p == EMPTY)]
        if problems:
            shown = ", ".join(f"row {row} ({what})" for row, what in problems[:5])
            expected = "text or a list of words" if tokens else "text"
            hint = (
                " (`tunepipe predict --skip-empty` leaves empty rows unpredicted)"
                if all(what == EMPTY for _, what in problems)
                else ""
            )
            raise PipelineError(
                f"{origin}: column {col!r} must hold non-empty {expected}; {len(problems)} row(s) do not, "
                f"e.g. {shown}{hint}"
            )
    return empty


EMPTY = "empty"


def _cell_problem(value: Any, tokens: bool) -> str | None:
    if isinstance(value, str):
        return None if value.strip() else EMPTY
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return EMPTY
    if tokens and hasattr(value, "__len__") and not isinstance(value, dict | bytes):
        if len(value) == 0:
            return EMPTY
        if not all(isinstance(w, str) and w.strip() for w in value):
            return "a word that is not a non-empty text"
        return None
    return f"{type(value).__name__} {value!r}"[:80]


def predict_frame(
    model: Any,
    tok: Any,
    df: pd.DataFrame,
    text_column: str,
    pair_column: str | None = None,
    batch_size: int = 64,
    origin: str = "input",
    first_row: int = 1,
    skip_empty: bool = False,
) -> pd.DataFrame:
    """Pure function of a model and a table: the table with the predictions added.

    Classification adds `predicted_label` and `predicted_score` (its probability), regression
    adds `predicted_score` (the predicted value), token classification adds `predicted_entities`
    (IOB tags: character spans with scores) or `predicted_words` (plain tags: each word's span,
    tag and score) for raw text, and `predicted_tags` (one per token) when the column holds
    token lists. An input column of the same name is an error, never overwritten.

    `skip_empty`: a row whose text is empty or missing is not an error but gets empty predicted_*
    cells; their file row numbers are in `attrs["skipped"]`.
    """
    task = task_of(model.config)
    columns = [c for c in (text_column, pair_column) if c]
    tokens = task == "token_classification"
    empty = check_text_column(df, columns, origin, tokens=tokens, first_row=first_row, skip_empty=skip_empty)
    if empty.any():
        kept = df[~empty].reset_index(drop=True)
        added = predicted_columns(model.config, (kept if len(kept) else df)[text_column])
        check_no_clash(df, added, origin)
        done = None
        if len(kept):
            done = predict_frame(model, tok, kept, text_column, pair_column, batch_size, origin)
        out = df.copy()
        for col in added:  # the predicted rows' values and dtype; NaN on the rows without text
            values = done[col].to_numpy() if done is not None else []
            out[col] = pd.Series(
                values, index=df.index[~empty], dtype=object if done is None else None
            ).reindex(df.index)
        out.attrs["skipped"] = [first_row + i for i, e in enumerate(empty) if e]
        return out
    check_no_clash(df, predicted_columns(model.config, df[text_column]), origin)
    max_length = max_length_of(model, tok)
    out = df.copy()
    if task == "token_classification":
        values = df[text_column].tolist()
        if isinstance(values[0], str):
            words = predict_words(model, tok, [str(v) for v in values], False, max_length, batch_size)
            if any(k.startswith(("B-", "I-")) for k in model.config.label2id):
                out[PREDICTED_ENTITIES] = [
                    spans(text, [w["offsets"] for w in ws], [w["tag"] for w in ws], [w["score"] for w in ws])
                    for text, ws in zip(values, words, strict=True)
                ]
            else:
                out[PREDICTED_WORDS] = [
                    [{"word": text[a:b], "start": a, "end": b, "tag": w["tag"], "score": w["score"]}
                     for w in ws for a, b in [w["offsets"]]]
                    for text, ws in zip(values, words, strict=True)
                ]  # fmt: skip
        else:
            tokens = [[str(t) for t in v] for v in values]
            words = predict_words(model, tok, tokens, True, max_length, batch_size)
            out[PREDICTED_TAGS] = [[w["tag"] for w in ws] for ws in words]
        return out
    texts = df[text_column].astype(str).tolist()
    pairs = df[pair_column].astype(str).tolist() if pair_column else None
    enc = tok(texts, pairs, truncation=True, max_length=max_length)
    logits = logits_for(model, tok, {k: enc[k] for k in MODEL_INPUTS if k in enc}, batch_size)
    if task == "regression":
        out[PREDICTED_SCORE] = logits[:, 0].round(6)
        return out
    probs = softmax(logits)
    id2label = model.config.id2label
    out[PREDICTED_LABEL] = [id2label[int(i)] for i in probs.argmax(axis=-1)]
    out[PREDICTED_SCORE] = probs.max(axis=-1).round(6)
    return out


def predicted_columns(config: Any, texts: pd.Series) -> list[str]:
    """The columns predict_frame adds for this model and this text column."""
    task = task_of(config)
    if task == "token_classification":
        if len(texts) and not isinstance(texts.iloc[0], str):
            return [PREDICTED_TAGS]
        iob = any(str(k).startswith(("B-", "I-")) for k in config.label2id)
        return [PREDICTED_ENTITIES if iob else PREDICTED_WORDS]
    return [PREDICTED_SCORE] if task == "regression" else [PREDICTED_LABEL, PREDICTED_SCORE]


def check_no_clash(df: pd.DataFrame, added: list[str], origin: str) -> None:
    """Predictions go into new columns: an input column of the same name (say, a table that went
    through predict once already) is refused instead of overwritten."""
    clash = [c for c in added if c in df.columns]
    if clash:
        raise PipelineError(
            f"{origin}: already has a column {clash[0]!r}, which predict writes; rename or drop it "
            "(predictions never replace input columns)"
        )


def predict_words(
    model: Any, tok: Any, inputs: list[Any], pretokenized: bool, max_length: int, batch_size: int
) -> list[list[dict[str, Any]]]:
    """Each word's tag and probability, read at its first sub-token, with its character offsets
    (raw text). Words past the model's length limit get `O` (or `_` without an O tag)."""
    enc = tok(
        inputs,
        is_split_into_words=pretokenized,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=not pretokenized,
    )
    logits = token_logits_for(model, tok, {k: enc[k] for k in MODEL_INPUTS if k in enc}, batch_size)
    id2label = model.config.id2label
    fallback = "O" if "O" in model.config.label2id else "_"
    result = []
    for i, row_logits in enumerate(logits):
        probs = softmax(row_logits)
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for position, word in enumerate(enc.word_ids(i)):
            if word is not None:
                first.setdefault(word, position)
                last[word] = position
        n_words = len(inputs[i]) if pretokenized else len(first)
        words = []
        for w in range(n_words):
            if w not in first:
                words.append({"tag": fallback, "score": 0.0, "offsets": (0, 0)})
                continue
            at = first[w]
            word = {"tag": id2label[int(probs[at].argmax())], "score": round(float(probs[at].max()), 6)}
            if not pretokenized:
                word["offsets"] = (
                    int(enc["offset_mapping"][i][at][0]),
                    int(enc["offset_mapping"][i][last[w]][1]),
                )
            words.append(word)
        result.append(words)
    return result


def resolve_model(
    model: str,
    root: Path,
    name: str,
    workdir: Path,
    verify: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """A model directory as given, or a registered version fetched from the registry.

    Either is checked unless `verify` is off: a version against its tag's dvc.lock (fetch_model),
    a folder this project's DVC tracks (models/model) against the workspace's dvc.lock.
    """
    path = Path(model)
    if path.is_dir():
        if verify:
            dvcrepo.check_workspace_output(root, path)
        return path
    return registry.fetch_model(root, name, model, workdir / "model", verify=verify, warn=warn)


CONLL_SUFFIXES = (".conll", ".iob", ".bio")


def iter_input(path: Path, task: str, text_column: str, rows: int) -> tuple[Iterator[pd.DataFrame], bool]:
    """The rows to predict, `rows` at a time, and whether they are CoNLL sentences (tokens per line).

    A `.txt` file depends on the model: CoNLL tokens for a token classification model, one text
    per line (blank lines skipped, `line` kept) for any other."""
    path = Path(path)
    fmt = infer_format(path)
    tokens = task == "token_classification"
    if fmt != "conll":
        return iter_table(path, fmt, rows), False
    if path.suffix.lower() in CONLL_SUFFIXES and not tokens:
        raise PipelineError(
            f"{path}: a CoNLL file of tokens needs a token classification model; this model does "
            f"{task} (give a CSV/JSONL/parquet file, or a .txt file with one text per line)"
        )
    if tokens:
        df = read_table(path, "conll", conll=ConllParams(tag_column=None))
        return iter([df]), True
    return _text_lines(path, text_column, rows), False


def _text_lines(path: Path, text_column: str, rows: int) -> Iterator[pd.DataFrame]:
    block: list[tuple[int, str]] = []
    seen = False
    for n, line in read_lines(path):
        if line.strip():
            block.append((n, line))
            seen = True
        if len(block) == rows:
            yield pd.DataFrame({"line": [n for n, _ in block], text_column: [t for _, t in block]})
            block = []
    if not seen:
        raise PipelineError(f"{path}: no rows to predict (expected one text per line)")
    if block:
        yield pd.DataFrame({"line": [n for n, _ in block], text_column: [t for _, t in block]})


def default_output(input_path: Path, conll: bool) -> Path:
    return Path(input_path).with_suffix(".predictions" + (".conll" if conll else ".csv"))


def predict_file(
    model: str,
    input_path: Path,
    output_path: Path | None,
    text_column: str | None = None,
    pair_column: str | None = None,
    root: Path = Path("."),
    name: str = "model",
    batch_size: int = 64,
    verify: bool = True,
    warn: Callable[[str], None] | None = None,
    precision: str = "auto",
    default_columns: tuple[str, str | None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
    keep: bool = True,
    skip_empty: bool = False,
) -> pd.DataFrame:
    """Predict a CSV/JSONL/parquet table, a CoNLL file (tokens only, one per line) or a text file.

    A CoNLL input is written back as CoNLL with one predicted tag per token; a table goes to
    CSV, or JSON lines when the output name ends in .jsonl (list columns stay lists there).
    Without output_path: <input>.predictions.csv (or .conll); the path written is in
    `result.attrs["output"]`, the row count in `attrs["rows"]`, the summary line in
    `attrs["summary"]`; the input file itself is never the output. The rows are read, predicted
    and written `chunk_rows` at a time (a CoNLL file is read whole); `keep=False` returns no rows
    (the command line), so memory does not grow with the file. The model is checked
    against dvc.lock first (resolve_model); `verify=False` takes it as it is, a registered
    version's mismatch going to `warn`. `precision`: as train.precision (auto: devices.choose).
    Without `text_column`: the columns the model was trained on (config.json `text_columns`),
    else `default_columns` (the project's load.columns), else `text`. `skip_empty`: rows without
    text get empty predicted_* cells instead of failing the run; their row numbers are in
    `attrs["skipped"]`.
    """
    input_path = Path(input_path)
    if output_path is not None and Path(output_path).is_dir():
        raise PipelineError(
            f"{output_path}: is a directory; give the predictions a file name, "
            f"e.g. -o {Path(output_path) / 'predictions.csv'}"
        )
    infer_format(input_path)  # an unknown suffix fails before any model is loaded
    if not input_path.is_file():
        raise PipelineError(f"{input_path}: file not found")
    if output_path is not None and same_file(input_path, Path(output_path)):
        raise PipelineError(
            f"{output_path}: is the input file; predictions never overwrite their input, give another -o"
        )
    loaded, tok = load_predictor(model, root, name, verify, warn, precision)
    if text_column is None:
        text_column, pair = trained_columns(loaded.config) or default_columns or ("text", None)
        pair_column = pair_column or pair
    chunks, conll = iter_input(input_path, task_of(loaded.config), text_column, chunk_rows)
    output_path = Path(output_path) if output_path is not None else default_output(input_path, conll)
    if output_path.suffix.lower() in CONLL_SUFFIXES and not conll:
        raise PipelineError(f"{output_path}: CoNLL output needs CoNLL input; name a .csv or .jsonl file")
    if same_file(input_path, output_path):  # the default name can be the input's own
        raise PipelineError(f"{output_path}: is the input file; give the predictions another name with -o")
    column = "tokens" if conll else text_column
    summary, kept, rows, skipped = Summary(), [], 0, []
    jsonl = output_path.suffix in (".jsonl", ".ndjson")
    # Chunk by chunk into a temporary file, renamed at the end: memory stays that of one chunk,
    # and an error part way (a bad row in a later chunk) leaves no half-written output.
    with contextlib.nullcontext(None) if conll else atomic_text(output_path) as fh:
        for chunk in chunks:
            if chunk.empty:
                continue
            out = predict_frame(
                loaded,
                tok,
                chunk,
                column,
                pair_column,
                batch_size,
                origin=str(input_path),
                first_row=rows + 1,
                skip_empty=skip_empty,
            )
            skipped += out.attrs.get("skipped", [])
            rows += len(out)
            summary.add(out)
            if fh is not None:
                write_chunk(fh, out, jsonl, header=rows == len(out))
            if keep or conll:
                kept.append(out)
        if not rows:
            raise PipelineError(f"{input_path}: no rows to predict")
    result = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    if conll:
        write_conll(result, output_path, PREDICTED_TAGS)
    result.attrs.update(output=str(output_path), rows=rows, summary=summary.text(), skipped=skipped)
    return result


def write_chunk(fh: TextIO, out: pd.DataFrame, jsonl: bool, header: bool) -> None:
    """One chunk's rows in the output's format: JSON lines (list columns stay lists), else CSV with
    list columns as JSON text; the header with the first chunk only."""
    if jsonl:
        fh.write(out.to_json(orient="records", lines=True, force_ascii=False))
        return
    listed = [c for c in LIST_COLUMNS if c in out.columns]
    shown = out.assign(
        **{
            c: out[c].map(lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else "")
            for c in listed
        }
    )
    shown.to_csv(fh, index=False, header=header)


def same_file(a: Path, b: Path) -> bool:
    """Whether writing `b` would replace `a`: the same path, or a link (symbolic or hard) to it."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def load_predictor(
    model: str,
    root: Path,
    name: str,
    verify: bool,
    warn: Callable[[str], None] | None,
    precision: str,
) -> tuple[Any, Any]:
    """The model and tokenizer, loaded into memory. A registered version is fetched into a
    scratch folder under the project's .dvc/tmp (the system temp folder outside a project),
    deleted once loaded; a copy a killed run left is swept by the next run (io.scratch_dir)."""
    if Path(model).is_dir():
        return load_model(resolve_model(model, root, name, Path(root), verify, warn), precision=precision)
    dvc_dir = Path(root) / ".dvc"
    place = dvc_dir / "tmp" if dvc_dir.is_dir() else Path(tempfile.gettempdir())
    with scratch_dir(place / SCRATCH) as tmp:
        return load_model(resolve_model(model, root, name, tmp, verify, warn), precision=precision)


SCRATCH = "tunepipe-predict"


def trained_columns(config: Any) -> tuple[str, str | None] | None:
    """(text, text pair) the model was trained on, as train records them in config.json."""
    names = getattr(config, "text_columns", None)
    if not isinstance(names, list | tuple) or not names or not all(isinstance(n, str) and n for n in names):
        return None
    return names[0], (names[1] if len(names) > 1 else None)


class Summary:
    """The command line's one line about a prediction run, added up chunk by chunk."""

    def __init__(self) -> None:
        self.kind = ""
        self.counts: Counter[str] = Counter()  # labels, or entity types
        self.words = 0
        self.total, self.n, self.low, self.high = 0.0, 0, float("inf"), float("-inf")

    def add(self, out: pd.DataFrame) -> Summary:
        if out.attrs.get("skipped"):  # rows without text have no prediction to count
            added = [c for c in (PREDICTED_LABEL, PREDICTED_SCORE, *LIST_COLUMNS) if c in out.columns]
            out = out[out[added[0]].notna()]
        if PREDICTED_LABEL in out.columns:
            self.kind = "labels"
            self.counts.update(out[PREDICTED_LABEL])
        elif PREDICTED_ENTITIES in out.columns:
            self.kind = "entities"
            self.counts.update(e["entity"] for ents in out[PREDICTED_ENTITIES] for e in ents)
        elif PREDICTED_WORDS in out.columns or PREDICTED_TAGS in out.columns:
            self.kind = "words"
            self.words += sum(
                map(len, out[PREDICTED_WORDS if PREDICTED_WORDS in out.columns else PREDICTED_TAGS])
            )
        elif PREDICTED_SCORE in out.columns and len(out):
            self.kind = "scores"
            score = out[PREDICTED_SCORE]
            self.total, self.n = self.total + float(score.sum()), self.n + len(score)
            self.low, self.high = min(self.low, float(score.min())), max(self.high, float(score.max()))
        return self

    def text(self) -> str:
        shown = ", ".join(f"{k}: {v}" for k, v in self.counts.most_common())
        if self.kind == "labels":
            return shown
        if self.kind == "entities":
            found = sum(self.counts.values())
            return f"{found} entities" + (f" ({shown})" if found else "")
        if self.kind == "words":
            return f"{self.words} words tagged"
        mean = self.total / self.n if self.n else float("nan")
        return f"score mean {mean:.4f}, min {self.low:.4f}, max {self.high:.4f}"


def summarise(out: pd.DataFrame) -> str:
    """One line for the command line: what came out of a prediction run."""
    return Summary().add(out).text()
