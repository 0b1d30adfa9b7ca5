"""Stage `tokenize`: fast tokenizer, batched, truncated, unpadded (padding happens per batch in train).

Writes a DatasetDict plus labels.json (the id <-> name mapping every later stage uses).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from tunepipe import assets, paths
from tunepipe import params as params_mod
from tunepipe.errors import PipelineError
from tunepipe.io import atomic_dir, write_json
from tunepipe.params import Params


def load_tokenizer(p: Params, path: str | None = None) -> Any:
    from transformers import AutoConfig, AutoTokenizer

    name = path or assets.resolve_model(p.model.name)
    kwargs = {"revision": p.model.revision, "trust_remote_code": p.model.trust_remote_code}
    tok = AutoTokenizer.from_pretrained(name, use_fast=True, **kwargs)
    if not tok.is_fast:
        raise PipelineError(f"model {p.model.name}: no fast tokenizer available")
    # A directory without tokenizer files yields an empty tokenizer instead of an error.
    vocab_size = getattr(AutoConfig.from_pretrained(name, **kwargs), "vocab_size", None)
    if len(tok) < 10 or (vocab_size and len(tok) > vocab_size * 2):
        raise PipelineError(
            f"model {p.model.name}: tokenizer has {len(tok)} tokens but the model expects "
            f"{vocab_size}; are the tokenizer files missing?"
        )
    return tok


def label_mapping(p: Params, train: pd.DataFrame) -> list[str]:
    """Label names in id order: as declared in params, else sorted from the training data."""
    declared = [str(x) for x in p.load.labels]
    return declared or sorted(train["label"].dropna().unique())


def encode(tok: Any, frames: dict[str, pd.DataFrame], labels: list[str], max_length: int) -> Any:
    from datasets import Dataset, DatasetDict

    label2id = {name: i for i, name in enumerate(labels)}

    def fn(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        pair = batch.get("text_pair")
        enc = tok(batch["text"], pair, truncation=True, max_length=max_length)
        enc["labels"] = [label2id[x] for x in batch["label"]]
        enc["truncated"] = [len(ids) >= max_length for ids in enc["input_ids"]]
        return enc

    settings = json.dumps([tok.backend_tokenizer.to_str(), max_length, labels]).encode()
    out = {}
    for split, df in frames.items():
        keep = [c for c in ("text", "text_pair", "label", "source_row") if c in df.columns]
        ds = Dataset.from_pandas(df[keep], preserve_index=False)
        dropped = [c for c in keep if c != "source_row"]  # source_row stays: errors and predictions cite it
        out[split] = ds.map(
            fn,
            batched=True,
            batch_size=1000,
            remove_columns=dropped,
            new_fingerprint=content_fingerprint(df[keep], settings),
            desc=f"tokenize {split}",
        )
    return DatasetDict(out)


def content_fingerprint(df: pd.DataFrame, settings: bytes) -> str:
    """datasets stores a random fingerprint for in-memory data; a content hash keeps the saved
    dataset, and so its DVC hash, identical when the same data is tokenized again."""
    h = hashlib.sha256(settings)
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def tokenize(p: Params, frames: dict[str, pd.DataFrame]) -> tuple[Any, dict[str, Any]]:
    if p.task != "sequence_classification":
        raise PipelineError(f"params.yaml: task {p.task!r} is not supported by this version yet")
    if p.tokenize.max_length < 8:
        raise PipelineError("params.yaml: tokenize.max_length must be at least 8")
    tok = load_tokenizer(p)
    max_length = min(p.tokenize.max_length, tok.model_max_length)
    labels = label_mapping(p, frames["train"])
    dsd = encode(tok, frames, labels, max_length)
    info = {
        "labels": labels,
        "max_length": max_length,
        "truncated": {s: int(sum(ds["truncated"])) for s, ds in dsd.items()},
        "rows": {s: len(ds) for s, ds in dsd.items()},
    }
    return dsd.remove_columns("truncated"), info


def write_tokenized(dsd: Any, info: dict[str, Any], out: Path) -> None:
    with atomic_dir(out) as tmp:
        dsd.save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "labels.json", info)


def read_tokenized(root: Path = paths.TOKENIZED) -> Any:
    """Loaded into memory: shuffles and selects must not write cache files into a DVC output."""
    from datasets import load_from_disk

    return load_from_disk(str(root / "dataset"), keep_in_memory=True)


def read_labels(root: Path = paths.TOKENIZED) -> list[str]:
    from tunepipe.io import read_json

    return read_json(root / "labels.json")["labels"]


def main() -> None:
    from tasks.load import read_split_frames

    p = params_mod.read(paths.PARAMS)
    dsd, info = tokenize(p, read_split_frames())
    write_tokenized(dsd, info, paths.TOKENIZED)
    print(f"tokenize: {info['rows']}, truncated at {info['max_length']} tokens: {info['truncated']}")


if __name__ == "__main__":
    from tunepipe.stage import run

    run(main)
