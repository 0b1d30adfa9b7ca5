"""Batched inference with a saved model: shared by the evaluate stage and `tunepipe predict`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tunepipe import progress
from tunepipe.assets import check_model_dir, quiet_load_report
from tunepipe.devices import choose
from tunepipe.errors import PipelineError

AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def load_model(
    model_dir: Path, trust_remote_code: bool = False, device: str = "auto", precision: str = "auto"
) -> tuple[Any, Any]:
    """The saved model with the head it was trained with (sequence or token classification), on
    the GPU when one is present (device auto) and set to run in `precision` (autocast; auto:
    devices.choose, bf16 also on a CPU with fast bf16 matmuls): the weights stay float32, so
    predictions match fp32's within bf16 rounding (a near tie may flip)."""
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    if not (Path(model_dir) / "config.json").is_file():
        raise PipelineError(f"{model_dir}: not a saved model (no config.json)")
    check_model_dir(Path(model_dir), str(model_dir), trust_remote_code)
    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    tok = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    cls = AutoModelForTokenClassification if task_of(config) == "token_classification" else None
    with quiet_load_report():  # check_trained reports missing weights in one line
        model, info = (cls or AutoModelForSequenceClassification).from_pretrained(
            str(model_dir),
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
        )
    check_trained(model_dir, info)
    model.eval()
    where = choose(device, precision, task_of(config))
    model.to(where["device"])
    model.inference_precision = where["precision"]  # read by _batches: autocast dtype
    return model, tok


def check_trained(model_dir: Path, info: dict[str, Any]) -> None:
    """Every weight came from the folder: transformers fills weights a folder lacks (the classifier
    of a bare pre-trained encoder) with random values, and predictions from those mean nothing."""
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise PipelineError(
            f"{model_dir}: not a trained classifier; its weights lack {shown}, which would be random "
            "(a pre-trained encoder without a trained head?); give a model folder that `tunepipe` "
            "training saved (models/model) or a registered version"
        )


def max_length_of(model: Any, tok: Any) -> int:
    """Where to cut inputs: the saved tokenizer's model_max_length, which train sets to the length
    the model was trained and evaluated with; the position table caps it for models saved elsewhere."""
    return min(tok.model_max_length, getattr(model.config, "max_position_embeddings", 512))


def task_of(config: Any) -> str:
    """sequence_classification, regression or token_classification, from a saved model's config."""
    if any(a.endswith("ForTokenClassification") for a in config.architectures or []):
        return "token_classification"
    return "regression" if config.problem_type == "regression" else "sequence_classification"


def _columns(encoded: Any) -> dict[str, list[Any]]:
    """The model's inputs as plain lists, from a tokenizer's output (a mapping) or a datasets.Dataset:
    reading a Dataset row by row costs more than the forward pass of a small model."""
    names = encoded.column_names if hasattr(encoded, "column_names") else list(encoded)
    return {c: list(encoded[c]) for c in MODEL_INPUTS if c in names}


def _batches(
    model: Any, tok: Any, encoded: Any, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(example indices, their lengths, logits) per batch; sorting by length cuts padding."""
    import torch

    device = next(model.parameters()).device
    dtype = AUTOCAST.get(getattr(model, "inference_precision", "fp32"))

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=getattr(torch, dtype)) if dtype else contextlib.nullcontext()

    columns = _columns(encoded)
    lengths = np.array([len(x) for x in columns["input_ids"]], dtype=int)
    order = np.argsort(lengths, kind="stable")
    with torch.inference_mode(), progress.bar(len(order), "inference") as advance:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            # as DataCollatorWithPadding pads: to the longest in the batch, on the tokenizer's side
            batch = tok.pad({c: [v[int(i)] for i in idx] for c, v in columns.items()}, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast():
                logits = model(**batch).logits
            yield idx, lengths[idx], logits.float().cpu().numpy()
            advance(len(idx))


def logits_for(model: Any, tok: Any, encoded: Any, batch_size: int = 64) -> np.ndarray:
    """(examples, labels) logits for tokenized examples (a Dataset or a mapping of input_ids etc.),
    in input order."""
    out = np.zeros((_count(encoded), model.config.num_labels), dtype=np.float32)
    for idx, _, logits in _batches(model, tok, encoded, batch_size):
        out[idx] = logits
    return out


def token_logits_for(model: Any, tok: Any, encoded: Any, batch_size: int = 64) -> list[np.ndarray]:
    """Per-example (sequence length, labels) logits for token classification, in input order."""
    out: list[np.ndarray] = [np.zeros(0)] * _count(encoded)
    for idx, lengths, logits in _batches(model, tok, encoded, batch_size):
        for row, (i, n) in enumerate(zip(idx, lengths, strict=True)):
            out[int(i)] = logits[row, :n]
    return out


def _count(encoded: Any) -> int:
    return len(encoded) if hasattr(encoded, "column_names") else len(encoded["input_ids"])
