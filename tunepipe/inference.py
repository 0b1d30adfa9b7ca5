"""Batched inference with a saved model: shared by the evaluate stage and `tunepipe predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tunepipe.errors import PipelineError


def load_model(model_dir: Path, trust_remote_code: bool = False) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not (Path(model_dir) / "config.json").is_file():
        raise PipelineError(f"{model_dir}: not a saved model (no config.json)")
    tok = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), use_safetensors=True, trust_remote_code=trust_remote_code
    )
    model.eval()
    return model, tok


def logits_for(model: Any, tok: Any, encoded: Any, batch_size: int = 64) -> np.ndarray:
    """Logits for tokenized examples (dicts with input_ids etc.), padded per batch, in input order."""
    import torch
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tok)
    device = next(model.parameters()).device
    keep = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in encoded.column_names]
    encoded = encoded.select_columns(keep)
    # Sorting by length cuts padding; results are put back in input order.
    lengths = np.array([len(x) for x in encoded["input_ids"]])
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(encoded), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate([encoded[int(i)] for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            out[idx] = model(**batch).logits.float().cpu().numpy()
    return out
