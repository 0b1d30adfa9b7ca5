"""Synthetic stand-ins for the GLUE tasks with exactly the schema of `nyu-mll/glue` on the hub.

Same columns in the same order, the same ClassLabel names in the same order, the same split
names, and hidden test labels (-1), so the presets in tunepipe/presets.py are exercised as they
would be on the real data, offline. The texts reuse the review vocabulary the tiny test BERT's
tokenizer was trained on (tests/conftest.py) and carry per-label cue words, so a tiny BERT
learns them in a few epochs; a number unique across the whole dataset ends every text, so the
pipeline's dedupe and leakage checks remove nothing.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.helpers import FILLER, NEGATIVE, POSITIVE

# The hub's schema, written out here rather than taken from tunepipe/presets.py so that a wrong
# column or label order in a preset fails the tests: config -> (text columns in hub order,
# label names in id order, or None for STS-B's float32 similarity score).
SCHEMAS: dict[str, tuple[tuple[str, ...], list[str] | None]] = {
    "cola": (("sentence",), ["unacceptable", "acceptable"]),
    "sst2": (("sentence",), ["negative", "positive"]),
    "mrpc": (("sentence1", "sentence2"), ["not_equivalent", "equivalent"]),
    "qqp": (("question1", "question2"), ["not_duplicate", "duplicate"]),
    "stsb": (("sentence1", "sentence2"), None),
    "mnli": (("premise", "hypothesis"), ["entailment", "neutral", "contradiction"]),
    "qnli": (("question", "sentence"), ["entailment", "not_entailment"]),
    "rte": (("sentence1", "sentence2"), ["entailment", "not_entailment"]),
    "wnli": (("sentence1", "sentence2"), ["not_entailment", "entailment"]),
}
SPLITS = {"mnli": ("train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched")}
DEFAULT_SPLITS = ("train", "validation", "test")


def cue_words(n_labels: int) -> list[list[str]]:
    """Disjoint cue words per label id: positive vs negative words, or three groups for MNLI."""
    if n_labels == 2:
        return [NEGATIVE, POSITIVE]
    if n_labels == 3:
        return [POSITIVE[:5], NEGATIVE[:5], POSITIVE[5:] + NEGATIVE[5:]]
    raise ValueError(f"no cue words for {n_labels} labels")


def _text(rng: random.Random, cues: list[str], n_filler: int, number: int) -> str:
    words = cues + rng.sample(FILLER, n_filler)
    rng.shuffle(words)
    return " ".join(words) + f" {number}"


def _rows(
    rng: random.Random, columns: tuple[str, ...], labels: list[str] | None, n: int, numbers: list[int]
) -> list[dict[str, Any]]:
    """n examples, classes balanced (label id i % k); every text column carries cue words."""
    rows = []
    for i in range(n):
        texts = {}
        if labels is None:
            # STS-B: k of 3 cue words positive in each sentence, the score about 5k/3 plus noise.
            k = i % 4
            score = min(5.0, max(0.0, k * 5 / 3 + rng.uniform(-0.3, 0.3)))
            label: Any = round(score, 2)
        else:
            label = i % len(labels)
        for column in columns:
            if labels is None:
                cues = rng.sample(POSITIVE, k) + rng.sample(NEGATIVE, 3 - k)
            else:
                cues = rng.sample(cue_words(len(labels))[label], 2)
            texts[column] = _text(rng, cues, 3, numbers.pop())
        rows.append({**texts, "label": label})
    rng.shuffle(rows)
    return rows


def save_glue_like(
    name: str, out: Path, n_train: int = 160, n_eval: int = 40, seed: int = 0, noise: float = 0.2
) -> Path:
    """Write a DatasetDict shaped like `load_dataset("nyu-mll/glue", name)` to `out`; returns `out`.

    A `noise` share of the labelled evaluation splits' class labels is swapped for another class,
    so that a model which learned the cues still makes mistakes there: test metrics below 1.0 are
    worth checking against scikit-learn (every metric of perfect predictions is 1.0).
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    if name not in SCHEMAS:
        raise ValueError(f"unknown GLUE config {name!r}; choose one of {', '.join(sorted(SCHEMAS))}")
    columns, labels = SCHEMAS[name]
    features = Features(
        {
            **{c: Value("string") for c in columns},
            "label": Value("float32") if labels is None else ClassLabel(names=labels),
            "idx": Value("int32"),
        }
    )
    split_names = SPLITS.get(name, DEFAULT_SPLITS)
    sizes = {s: n_train if s == "train" else n_eval for s in split_names}
    rng = random.Random(seed)
    # One number per text, unique over the whole dataset, so no two examples are the same.
    numbers = rng.sample(range(10**5), sum(sizes.values()) * len(columns))
    out_splits = {}
    for split in split_names:
        rows = _rows(rng, columns, labels, sizes[split], numbers)
        if split != "train" and labels is not None:
            for row in rows:
                if rng.random() < noise:
                    row["label"] = rng.choice([i for i in range(len(labels)) if i != row["label"]])
        if split.startswith("test"):
            hidden = -1.0 if labels is None else -1  # the hub hides GLUE's test labels
            rows = [{**r, "label": hidden} for r in rows]
        table = {c: [r[c] for r in rows] for c in columns}
        table["label"] = [r["label"] for r in rows]
        table["idx"] = list(range(len(rows)))
        out_splits[split] = Dataset.from_dict(table, features=features)
    dsd = DatasetDict(out_splits)
    dsd.save_to_disk(str(out))
    return out
