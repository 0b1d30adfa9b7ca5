"""`tunepipe evaluate`: a trained model's metrics on any labelled file, without a pipeline run.

The file is read with the project's load settings (format, columns, CoNLL columns, tag repair,
dropped labels) and encoded and scored by the code the evaluate stage runs (tokenization.encode,
evaluation.score_encoded), so the same model on the same rows gives the same numbers. The labels
are the model's own (its config.json id2label): a label the model does not know is an error.
Nothing is written in the project; the caller writes what it is asked to (--out).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tunepipe import assets, params
from tunepipe.errors import PipelineError
from tunepipe.evaluation import score_encoded
from tunepipe.inference import max_length_of, task_of
from tunepipe.params import LoadParams, Params, Threshold
from tunepipe.prediction import check_text_column, load_predictor
from tunepipe.sources import infer_format, read_source, read_table
from tunepipe.splitting import repair_tags, to_canonical
from tunepipe.tagging import resolve_scheme
from tunepipe.tokenization import encode

DEFAULT_SPLIT = "test"


def parse_thresholds(text: str | None, p: Params) -> dict[str, Threshold]:
    """--thresholds: `params` (the project's evaluate.thresholds) or a YAML mapping written as in
    params.yaml (`{accuracy: 0.8, mse: {max: 0.3}}`), checked by the same rules; None: none."""
    if text is None:
        return {}
    if text.strip() == "params":
        return dict(p.evaluate.thresholds)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineError(f"--thresholds: not valid YAML: {exc}") from None
    if not isinstance(value, dict):
        raise PipelineError(
            f"--thresholds: expected `params` or a mapping such as '{{accuracy: 0.8}}', got {text!r}"
        )
    return dict(params.parse({"evaluate": {"thresholds": value}}, where="--thresholds").evaluate.thresholds)


def model_labels(config: Any) -> list[str]:
    """Label names in id order, as training wrote them into config.json."""
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    return [id2label[i] for i in range(len(id2label))]


def read_labelled(
    source: str, load: LoadParams, task: str, split: str | None = None
) -> tuple[pd.DataFrame, str]:
    """(canonical rows, where they came from) of a file, a saved dataset folder or hub:<id>.

    A dataset with several splits gives `split` (default test). load.split.group_by is not
    needed to score rows and is ignored; a file's format comes from its name, else load.format.
    """
    load = load.model_copy(update={"split": load.split.model_copy(update={"group_by": None})})
    path = Path(source)
    if source.startswith(assets.HUB_PREFIX) or path.is_dir():
        frames = read_source(source, load)
        frames = frames if isinstance(frames, dict) else {DEFAULT_SPLIT: frames}
        name = split or DEFAULT_SPLIT
        if name not in frames:
            raise PipelineError(
                f"{source}: no split {name!r}; it has {', '.join(frames)} (choose one with --split)"
            )
        df, origin = frames[name], f"{source} [{name}]"
    else:
        if split is not None:
            raise PipelineError(
                f"--split {split}: {source} is a single file; --split picks a split of a dataset"
            )
        if not path.is_file():
            raise PipelineError(f"{source}: file not found")
        try:
            fmt = infer_format(path)
        except PipelineError:
            if load.format is None:
                raise
            fmt = load.format
        df, origin = read_table(path, fmt, load.conll, load.encoding), str(path)
    if df.empty:
        raise PipelineError(f"{origin}: no rows to score")
    return to_canonical(df, load, origin, task), origin


def check_labels(df: pd.DataFrame, labels: list[str], task: str, origin: str, column: str) -> None:
    """Every row has a label, and (classification) one the model was trained with."""
    if task == "token_classification":
        values = df["tags"].tolist()
        missing = [r for r, v in zip(df["source_row"], values, strict=True) if v is None]
        seen = [(r, t) for r, v in zip(df["source_row"], values, strict=True) if v is not None for t in v]
    else:
        missing = [r for r, v in zip(df["source_row"], df["label"], strict=True) if v is None or v != v]
        seen = list(zip(df["source_row"], df["label"], strict=True))
    if missing:
        raise PipelineError(
            f"{origin}: {len(missing)} row(s) have no label, e.g. row(s) {', '.join(map(str, missing[:5]))}; "
            f"every row scored needs one in column {column!r} (load.columns.label)"
        )
    if task == "regression":
        return
    known = set(labels)
    unknown: dict[str, list[int]] = {}
    for row, value in seen:
        if value not in known:
            unknown.setdefault(str(value), []).append(int(row))
    if unknown:
        shown = ", ".join(
            f"{name!r} ({f'{len(rows)} rows, first row' if len(rows) > 1 else 'row'} {rows[0]})"
            for name, rows in list(unknown.items())[:5]
        )
        raise PipelineError(
            f"{origin}: {len(unknown)} label(s) the model was not trained with: {shown}; its labels "
            f"(config.json id2label) are {', '.join(labels)}. Fix the file, or drop those rows "
            "(load.drop_labels)"
        )


def evaluate_source(
    model: str,
    source: str,
    p: Params,
    root: Path = Path("."),
    name: str = "model",
    thresholds: Mapping[str, Threshold] | None = None,
    split: str | None = None,
    batch_size: int = 64,
    verify: bool = True,
    warn: Callable[[str], None] | None = None,
    precision: str = "auto",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """(evaluation as the evaluate stage writes it, plus `source` and `model`; predictions per row)."""
    if not (source.startswith(assets.HUB_PREFIX) or Path(source).exists()):
        raise PipelineError(f"{source}: file not found")  # before a model is loaded
    loaded, tok = load_predictor(model, root, name, verify, warn, precision)
    task, labels = task_of(loaded.config), model_labels(loaded.config)
    if task != "regression" and not labels:
        raise PipelineError(f"{model}: the model's config.json has no id2label; cannot name its predictions")
    df, origin = read_labelled(source, p.load, task, split)
    notes: dict[str, Any] = {}
    if df.attrs.get("blank_rows"):  # blank lines: skipped, as load skips them
        notes["blank_rows_skipped"] = df.attrs["blank_rows"]
    scheme = None
    if task == "token_classification":
        scheme = resolve_scheme(p.load.tag_scheme, [labels])
        repaired = repair_tags({"train": df}, p.load, {"train": origin}, scheme)
        if repaired.get("train"):
            notes["tags_repaired"] = repaired["train"]
        check_text_column(df, ["tokens"], origin, tokens=True)
    else:
        drop = {str(v) for v in p.load.drop_labels}
        if drop and task == "sequence_classification":
            dropped = df["label"].isin(drop)
            if dropped.any():
                notes["dropped_labels"] = int(dropped.sum())
                df = df[~dropped].reset_index(drop=True)
        check_text_column(df, [c for c in ("text", "text_pair") if c in df.columns], origin)
    if df.empty:
        raise PipelineError(f"{origin}: no rows left to score (after load.drop_labels)")
    check_labels(df, labels, task, origin, p.load.columns.label)
    encoded = encode(tok, {"file": df}, labels, max_length_of(loaded, tok), task)["file"]
    if "truncated" in encoded.column_names:
        encoded = encoded.remove_columns("truncated")
    extras = p.evaluate.metrics if task == "sequence_classification" else ()
    evaluation, predictions = score_encoded(
        loaded, tok, encoded, labels, task, scheme, thresholds or {}, extras, batch_size
    )
    evaluation = {"source": origin, "model": model} | evaluation | notes
    return evaluation, predictions
