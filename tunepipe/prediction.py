"""Prediction on unlabelled rows (`tunepipe predict`): each row's label and score, written next to
the input columns."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from tunepipe import audit, registry
from tunepipe.conll import read_lines, write_conll
from tunepipe.errors import PipelineError
from tunepipe.inference import load_model, logits_for, max_length_of, task_of, token_logits_for
from tunepipe.io import write_text
from tunepipe.metrics import softmax
from tunepipe.params import ConllParams
from tunepipe.sources import infer_format, read_table
from tunepipe.tagging import spans


def check_text_column(df: pd.DataFrame, columns: list[str], origin: str, tokens: bool = False) -> None:
    """Every cell to predict is a non-empty text (or, with `tokens`, a non-empty list of words):
    a number, a missing cell or an empty list is named by its row instead of failing the tokenizer."""
    for col in columns:
        if col not in df.columns:
            raise PipelineError(
                f"{origin}: no column {col!r}; columns are {', '.join(map(str, df.columns))} "
                "(use --text-column)"
            )
    for col in columns:
        problems = [
            (i + 1, p) for i, v in enumerate(df[col]) if (p := _cell_problem(v, tokens and col == columns[0]))
        ]
        if problems:
            shown = ", ".join(f"row {row} ({what})" for row, what in problems[:5])
            expected = "text or a list of words" if tokens else "text"
            raise PipelineError(
                f"{origin}: column {col!r} must hold non-empty {expected}; {len(problems)} row(s) do not, "
                f"e.g. {shown}"
            )


def _cell_problem(value: Any, tokens: bool) -> str | None:
    if isinstance(value, str):
        return None if value.strip() else "empty"
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "empty"
    if tokens and hasattr(value, "__len__") and not isinstance(value, dict | bytes):
        if len(value) == 0:
            return "empty"
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
) -> pd.DataFrame:
    """Pure function of a model and a table: the table with the predictions added.

    Classification adds `label` and `score` (its probability), regression adds `score` (the
    predicted value), token classification adds `entities` (IOB tags: character spans with
    scores) or `words` (plain tags: each word's span, tag and score) for raw text, and `tags`
    (one per token) when the column holds token lists.
    """
    from datasets import Dataset

    task = task_of(model.config)
    columns = [c for c in (text_column, pair_column) if c]
    check_text_column(df, columns, origin, tokens=task == "token_classification")
    max_length = max_length_of(model, tok)
    out = df.copy()
    if task == "token_classification":
        values = df[text_column].tolist()
        if isinstance(values[0], str):
            words = predict_words(model, tok, [str(v) for v in values], False, max_length, batch_size)
            if any(k.startswith(("B-", "I-")) for k in model.config.label2id):
                out["entities"] = [
                    spans(text, [w["offsets"] for w in ws], [w["tag"] for w in ws], [w["score"] for w in ws])
                    for text, ws in zip(values, words, strict=True)
                ]
            else:
                out["words"] = [
                    [{"word": text[a:b], "start": a, "end": b, "tag": w["tag"], "score": w["score"]}
                     for w in ws for a, b in [w["offsets"]]]
                    for text, ws in zip(values, words, strict=True)
                ]  # fmt: skip
        else:
            tokens = [[str(t) for t in v] for v in values]
            words = predict_words(model, tok, tokens, True, max_length, batch_size)
            out["tags"] = [[w["tag"] for w in ws] for ws in words]
        return out
    texts = df[text_column].astype(str).tolist()
    pairs = df[pair_column].astype(str).tolist() if pair_column else None
    enc = tok(texts, pairs, truncation=True, max_length=max_length)
    logits = logits_for(model, tok, Dataset.from_dict(dict(enc)), batch_size)
    if task == "regression":
        out["score"] = logits[:, 0].round(6)
        return out
    probs = softmax(logits)
    id2label = model.config.id2label
    out["label"] = [id2label[int(i)] for i in probs.argmax(axis=-1)]
    out["score"] = probs.max(axis=-1).round(6)
    return out


def predict_words(
    model: Any, tok: Any, inputs: list[Any], pretokenized: bool, max_length: int, batch_size: int
) -> list[list[dict[str, Any]]]:
    """Each word's tag and probability, read at its first sub-token, with its character offsets
    (raw text). Words past the model's length limit get `O` (or `_` without an O tag)."""
    from datasets import Dataset

    enc = tok(
        inputs,
        is_split_into_words=pretokenized,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=not pretokenized,
    )
    model_inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    logits = token_logits_for(model, tok, Dataset.from_dict(model_inputs), batch_size)
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
            audit.check_workspace_output(root, path)
        return path
    return registry.fetch_model(root, name, model, workdir / "model", verify=verify, warn=warn)


CONLL_SUFFIXES = (".conll", ".iob", ".bio")


def read_input(path: Path, task: str, text_column: str) -> tuple[pd.DataFrame, bool]:
    """The rows to predict, and whether they are CoNLL sentences (tokens per line).

    A `.txt` file depends on the model: CoNLL tokens for a token classification model, one text
    per line (blank lines skipped, `line` kept) for any other."""
    path = Path(path)
    fmt = infer_format(path)
    tokens = task == "token_classification"
    if fmt != "conll":
        return read_table(path, fmt), False
    if path.suffix.lower() in CONLL_SUFFIXES and not tokens:
        raise PipelineError(
            f"{path}: a CoNLL file of tokens needs a token classification model; this model does "
            f"{task} (give a CSV/JSONL/parquet file, or a .txt file with one text per line)"
        )
    if tokens:
        return read_table(path, "conll", conll=ConllParams(tag_column=None)), True
    lines = [(n, line) for n, line in read_lines(path) if line.strip()]
    if not lines:
        raise PipelineError(f"{path}: no rows to predict (expected one text per line)")
    return pd.DataFrame({"line": [n for n, _ in lines], text_column: [t for _, t in lines]}), False


def default_output(input_path: Path, conll: bool) -> Path:
    return Path(input_path).with_suffix(".predictions" + (".conll" if conll else ".csv"))


def predict_file(
    model: str,
    input_path: Path,
    output_path: Path | None,
    text_column: str,
    pair_column: str | None = None,
    root: Path = Path("."),
    name: str = "model",
    batch_size: int = 64,
    verify: bool = True,
    warn: Callable[[str], None] | None = None,
    precision: str = "auto",
) -> pd.DataFrame:
    """Predict a CSV/JSONL/parquet table, a CoNLL file (tokens only, one per line) or a text file.

    A CoNLL input is written back as CoNLL with one predicted tag per token; a table goes to
    CSV, or JSON lines when the output name ends in .jsonl (list columns stay lists there).
    Without output_path: <input>.predictions.csv (or .conll); the path written is in
    `result.attrs["output"]`. The model is checked against dvc.lock first (resolve_model);
    `verify=False` takes it as it is, a registered version's mismatch going to `warn`.
    `precision`: as train.precision (auto: devices.choose).
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
    with tempfile.TemporaryDirectory(prefix="tunepipe-predict-") as tmp:
        model_dir = resolve_model(model, root, name, Path(tmp), verify, warn)
        loaded, tok = load_model(model_dir, precision=precision)
        df, conll = read_input(input_path, task_of(loaded.config), text_column)
        if df.empty:
            raise PipelineError(f"{input_path}: no rows to predict")
        column = "tokens" if conll else text_column
        out = predict_frame(loaded, tok, df, column, pair_column, batch_size, origin=str(input_path))
    output_path = Path(output_path) if output_path is not None else default_output(input_path, conll)
    if output_path.suffix.lower() in CONLL_SUFFIXES and not conll:
        raise PipelineError(f"{output_path}: CoNLL output needs CoNLL input; name a .csv or .jsonl file")
    if conll:
        write_conll(out, output_path, "tags")
    elif output_path.suffix in (".jsonl", ".ndjson"):
        write_text(output_path, out.to_json(orient="records", lines=True, force_ascii=False))
    else:
        listed = [c for c in ("entities", "words", "tags") if c in out.columns]
        shown = out.assign(**{c: out[c].map(lambda v: json.dumps(v, ensure_ascii=False)) for c in listed})
        write_text(output_path, shown.to_csv(index=False))
    out.attrs["output"] = str(output_path)
    return out


def summarise(out: pd.DataFrame) -> str:
    """One line for the command line: what came out of a prediction run."""
    if "label" in out.columns:
        return ", ".join(f"{k}: {v}" for k, v in out["label"].value_counts().items())
    if "entities" in out.columns:
        found = [e["entity"] for ents in out["entities"] for e in ents]
        return f"{len(found)} entities" + (
            " (" + ", ".join(f"{k}: {v}" for k, v in pd.Series(found).value_counts().items()) + ")"
            if found
            else ""
        )
    if "words" in out.columns or "tags" in out.columns:
        col = "words" if "words" in out.columns else "tags"
        return f"{sum(map(len, out[col]))} words tagged"
    return f"score mean {out['score'].mean():.4f}, min {out['score'].min():.4f}, max {out['score'].max():.4f}"
