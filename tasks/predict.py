"""Prediction on unlabelled rows: each row's label and score, written next to the input columns."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from tunepipe.errors import PipelineError
from tunepipe.io import write_text
from tunepipe.metrics import softmax


def predict_frame(
    model: Any,
    tok: Any,
    df: pd.DataFrame,
    text_column: str,
    pair_column: str | None = None,
    batch_size: int = 64,
    origin: str = "input",
) -> pd.DataFrame:
    """Pure function of a model and a table: returns the table with `label` and `score` added."""
    from datasets import Dataset

    from tunepipe.inference import logits_for

    for col in filter(None, (text_column, pair_column)):
        if col not in df.columns:
            raise PipelineError(
                f"{origin}: no column {col!r}; columns are {', '.join(map(str, df.columns))} "
                "(use --text-column)"
            )
    texts = df[text_column]
    bad = texts.isna() | texts.astype(str).str.strip().eq("")
    if bad.any():
        rows = ", ".join(str(i + 1) for i in df.index[bad][:5])
        raise PipelineError(
            f"{origin}: column {text_column!r} is empty in {int(bad.sum())} row(s), e.g. row {rows}"
        )
    max_length = min(tok.model_max_length, getattr(model.config, "max_position_embeddings", 512))
    pairs = df[pair_column].astype(str).tolist() if pair_column else None
    enc = tok(texts.astype(str).tolist(), pairs, truncation=True, max_length=max_length)
    probs = softmax(logits_for(model, tok, Dataset.from_dict(dict(enc)), batch_size))
    id2label = model.config.id2label
    out = df.copy()
    out["label"] = [id2label[int(i)] for i in probs.argmax(axis=-1)]
    out["score"] = probs.max(axis=-1).round(6)
    return out


def resolve_model(model: str, root: Path, name: str, workdir: Path) -> Path:
    """A model directory as given, or a registered version fetched from the registry."""
    path = Path(model)
    if path.is_dir():
        return path
    from tunepipe import registry

    return registry.fetch_model(root, name, model, workdir / "model")


def predict_file(
    model: str,
    input_path: Path,
    output_path: Path,
    text_column: str,
    pair_column: str | None = None,
    root: Path = Path("."),
    name: str = "model",
    batch_size: int = 64,
) -> pd.DataFrame:
    from tasks.load import read_table
    from tunepipe.inference import load_model

    df = read_table(Path(input_path))
    if df.empty:
        raise PipelineError(f"{input_path}: no rows to predict")
    with tempfile.TemporaryDirectory(prefix="tunepipe-predict-") as tmp:
        model_dir = resolve_model(model, root, name, Path(tmp))
        loaded, tok = load_model(model_dir)
        out = predict_frame(loaded, tok, df, text_column, pair_column, batch_size, origin=str(input_path))
    write_text(Path(output_path), out.to_csv(index=False))
    return out
