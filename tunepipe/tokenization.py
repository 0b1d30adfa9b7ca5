"""The tokenize stage as a function: fast tokenizer, batched, truncated, unpadded (padding
happens per batch in train). Gives a DatasetDict (one DVC output per split) plus the info
labels.json holds (the id <-> name mapping every later stage uses)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from tunepipe.params import Params
from tunepipe.pretrained import effective_max_length, load_tokenizer
from tunepipe.tagging import align_labels, b_to_i_map, label_order, resolve_scheme

# Above this share of a split's examples cut at max_length, tokenize prints a warning.
TRUNCATION_WARNING = 0.05


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
    return label_order(seen)


def encode(
    tok: Any,
    frames: dict[str, pd.DataFrame],
    labels: list[str],
    max_length: int,
    task: str = "sequence_classification",
    label_all_subtokens: bool = False,
) -> Any:
    from datasets import Dataset, DatasetDict

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


def tokenize(p: Params, frames: dict[str, pd.DataFrame]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(DatasetDict, labels.json's info, per-split counts to report).

    labels.json is a dependency of train and evaluate alike, so it holds nothing about one split
    (row counts): a change to the test split alone must not re-run train.
    """
    tok = load_tokenizer(p)
    max_length = effective_max_length(p, tok)
    labels = label_mapping(p, frames)
    scheme = None
    if p.task == "token_classification":
        scheme = resolve_scheme(p.load.tag_scheme, frames["train"]["tags"])
    dsd = encode(tok, frames, labels, max_length, p.task, p.tokenize.label_all_subtokens)
    info = {"task": p.task, "labels": labels, "tag_scheme": scheme, "max_length": max_length}
    counts: dict[str, Any] = {"rows": {s: len(ds) for s, ds in dsd.items()}}
    if p.task == "token_classification":
        # Sentences whose last words fell past max_length: those words get no prediction.
        counts["sentences_cut"] = {s: int(sum(ds["truncated"])) for s, ds in dsd.items()}
        dsd = dsd.remove_columns("truncated")
    return dsd, info, counts


def truncation_lines(truncation: dict[str, Any], limit: float | None) -> tuple[str, list[str]]:
    """(tokenize's line: per split, the share of examples and of tokens cut at max_length; a
    warning per split above TRUNCATION_WARNING unless validate.max_truncated_share bounds it).

    The figures are validate's truncation report (validation.truncation_report), measured once."""
    splits = {s: t for s, t in truncation.items() if isinstance(t, dict)}
    max_length = truncation.get("max_length")
    line = f"tokenize: cut at max_length {max_length}: " + "; ".join(
        f"{s} {t['truncated']} of {t['examples']} examples ({t['share']:.1%})"
        + (f", {t['tokens_cut']} of {t['tokens']} tokens ({t['tokens_share']:.1%})" if "tokens" in t else "")
        for s, t in splits.items()
    )
    warnings = [
        f"tokenize: warning: {t['share']:.1%} of {s} examples are longer than {max_length} tokens and lose "
        f"their end; raise tokenize.max_length (null: the model's limit), or set "
        f"validate.max_truncated_share to fail the run above a share"
        for s, t in splits.items()
        if t["share"] > TRUNCATION_WARNING and limit is None
    ]
    return line, warnings
