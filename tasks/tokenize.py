"""Stage `tokenize`: fast tokenizer, batched, truncated, unpadded (padding happens per batch in train).

Writes a DatasetDict plus labels.json (the id <-> name mapping every later stage uses).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
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


def effective_max_length(p: Params, tok: Any) -> int:
    """tokenize.max_length, capped by what the tokenizer and the model's position table allow."""
    from transformers import AutoConfig

    name = assets.resolve_model(p.model.name)
    config = AutoConfig.from_pretrained(
        name, revision=p.model.revision, trust_remote_code=p.model.trust_remote_code
    )
    limits = [p.tokenize.max_length, getattr(config, "max_position_embeddings", None)]
    if tok.model_max_length < 1_000_000:  # tokenizers without a limit report 1e30
        limits.append(tok.model_max_length)
    known = [n for n in limits if n]
    if not known:
        raise PipelineError(f"model {p.model.name}: no length limit known; set tokenize.max_length")
    return min(known)


def _label_order(names: set[str]) -> list[str]:
    """Numbers in numeric order (2 before 10); IOB tags as O, then B-/I- pairs by type; else sorted."""
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    if "O" in names and all(n == "O" or n[:2] in ("B-", "I-") for n in names):
        return ["O"] + sorted(names - {"O"}, key=lambda n: (n[2:], n[:2]))
    return sorted(names)


def label_mapping(p: Params, frames: dict[str, pd.DataFrame]) -> list[str]:
    """Label names in id order: as declared in params, else every name seen in any split."""
    declared = [str(x) for x in p.load.labels]
    if declared or p.task == "regression":
        return declared if p.task != "regression" else []
    column = "tags" if p.task == "token_classification" else "label"
    seen: set[str] = set()
    for df in frames.values():
        for value in df[column].dropna():
            seen.update(value if p.task == "token_classification" else [value])
    return _label_order(seen)


def encode(
    tok: Any,
    frames: dict[str, pd.DataFrame],
    labels: list[str],
    max_length: int,
    task: str = "sequence_classification",
    label_all_subtokens: bool = False,
) -> Any:
    from datasets import Dataset, DatasetDict

    from tunepipe.tagging import align_labels, b_to_i_map

    label2id = {name: i for i, name in enumerate(labels)}
    b_to_i = b_to_i_map(labels) if labels else None

    def sequences(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        pair = batch.get("text_pair")
        enc = tok(batch["text"], pair, truncation=True, max_length=max_length)
        if task == "regression":
            enc["labels"] = [float(x) for x in batch["label"]]
        else:
            enc["labels"] = [label2id[x] for x in batch["label"]]
        return enc

    def words(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        enc = tok(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
        enc["labels"], enc["truncated"] = [], []
        if label_all_subtokens:
            enc["word_labels"] = []
        for i, tags in enumerate(batch["tags"]):
            word_ids = enc.word_ids(i)
            ids = [label2id[t] for t in tags]
            enc["labels"].append(align_labels(word_ids, ids, label_all_subtokens, b_to_i))
            if label_all_subtokens:
                enc["word_labels"].append(align_labels(word_ids, ids))
            kept = {w for w in word_ids if w is not None}
            enc["truncated"].append(len(kept) < len(tags))
        return enc

    columns = ("tokens", "tags") if task == "token_classification" else ("text", "text_pair", "label")
    settings = json.dumps(
        [tok.backend_tokenizer.to_str(), max_length, labels, task, label_all_subtokens]
    ).encode()
    out = {}
    for split, df in frames.items():
        keep = [c for c in (*columns, "source_row") if c in df.columns]
        ds = Dataset.from_pandas(df[keep], preserve_index=False)
        dropped = [c for c in keep if c not in ("source_row", "tokens")]  # source_row: errors cite it
        out[split] = ds.map(
            words if task == "token_classification" else sequences,
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
    plain = df.map(lambda v: "\x1f".join(v) if isinstance(v, list | tuple | np.ndarray) else v)
    h.update(pd.util.hash_pandas_object(plain, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def tokenize(p: Params, frames: dict[str, pd.DataFrame]) -> tuple[Any, dict[str, Any]]:
    if p.tokenize.max_length is not None and p.tokenize.max_length < 8:
        raise PipelineError("params.yaml: tokenize.max_length must be at least 8")
    tok = load_tokenizer(p)
    max_length = effective_max_length(p, tok)
    labels = label_mapping(p, frames)
    scheme = None
    if p.task == "token_classification":
        from tasks.validate import resolve_scheme

        scheme = resolve_scheme(p, frames["train"])
    dsd = encode(tok, frames, labels, max_length, p.task, p.tokenize.label_all_subtokens)
    info = {
        "task": p.task,
        "labels": labels,
        "tag_scheme": scheme,
        "max_length": max_length,
        "rows": {s: len(ds) for s, ds in dsd.items()},
    }
    if p.task == "token_classification":
        # Sentences whose last words fell past max_length: those words get no prediction.
        info["sentences_cut"] = {s: int(sum(ds["truncated"])) for s, ds in dsd.items()}
        dsd = dsd.remove_columns("truncated")
    return dsd, info


def write_tokenized(dsd: Any, info: dict[str, Any], out: Path) -> None:
    with atomic_dir(out) as tmp:
        dsd.save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "labels.json", info)


def read_tokenized(root: Path = paths.TOKENIZED) -> Any:
    """Loaded into memory: shuffles and selects must not write cache files into a DVC output."""
    from datasets import load_from_disk

    return load_from_disk(str(root / "dataset"), keep_in_memory=True)


def read_labels(root: Path = paths.TOKENIZED) -> list[str]:
    return read_info(root)["labels"]


def read_info(root: Path = paths.TOKENIZED) -> dict[str, Any]:
    """labels.json: the task, label names in id order, the tag scheme, the length limit."""
    from tunepipe.io import read_json

    return read_json(root / "labels.json")


def main() -> None:
    from tasks.load import read_split_frames

    p = params_mod.read(paths.PARAMS)
    dsd, info = tokenize(p, read_split_frames())
    write_tokenized(dsd, info, paths.TOKENIZED)
    print(f"tokenize: {info['rows']} examples, {len(info['labels'])} labels, max_length {info['max_length']}")


if __name__ == "__main__":
    from tunepipe.stage import run

    run(main)
