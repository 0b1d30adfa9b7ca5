"""Acceptance of `tunepipe init`: a folder of split CSVs, a single CSV and a folder of CoNLL files
each go from `tunepipe init <it> --force` to a passing `dvc repro`, params.yaml never edited."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import NEGATIVE, POSITIVE, cli, dvc, make_project
from tests.test_init import conll_text, split_folder
from tunepipe import params

pytestmark = pytest.mark.stage


# Texts made only of sentiment words: the tiny model learns them in one epoch at this rate
# (measured: the tests' usual snippets, two such words among filler, need several epochs). init
# writes the training values through --set, so params.yaml itself is never edited.
TRAIN = {
    "csv folder": ("train.epochs=1", "train.learning_rate=0.003", "train.batch_size=8"),
    "single csv": ("train.epochs=1", "train.learning_rate=0.003", "train.batch_size=8"),
    "conll folder": ("train.epochs=2", "train.learning_rate=0.003", "train.batch_size=16"),
}


def sentiment(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "fresh" if i % 2 == 0 else "rotten"
        words = rng.sample(POSITIVE if label == "fresh" else NEGATIVE, 5)
        rows.append({"sentence": " ".join(words), "category": label})
    return pd.DataFrame(rows)


def write_source(kind: str, raw: Path) -> tuple[str, str, list[str]]:
    """(source as given to init, expected task, expected labels)."""
    df = sentiment(240, seed=5)
    if kind == "csv folder":
        split_folder(raw / "splits", df, names=("train", "validation", "test"))
        return "data/raw/splits", "sequence_classification", ["fresh", "rotten"]
    if kind == "single csv":
        df.to_csv(raw / "snippets.csv", index=False)
        return "data/raw/snippets.csv", "sequence_classification", ["fresh", "rotten"]
    (raw / "ner").mkdir()
    for name, n, seed in (("train.conll", 160, 0), ("dev.conll", 40, 1), ("test.conll", 40, 2)):
        (raw / "ner" / name).write_text(conll_text(n, seed))
    return "data/raw/ner", "token_classification", ["O", "B-BAD", "I-BAD", "B-GOOD"]


@pytest.mark.parametrize("kind", ["csv folder", "single csv", "conll folder"])
def test_init_then_dvc_repro_with_no_edit(
    kind: str, tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(tmp_path / "project", tiny_bert)
    (root / "data/raw/reviews.csv").unlink()
    source, task, labels = write_source(kind, root / "data/raw")
    sets = [arg for value in TRAIN[kind] for arg in ("--set", value)]
    code, out, err = cli(
        capsys, "init", source, "--force", "--model", str(tiny_bert), "--root", str(root), *sets
    )
    assert code == 0, err
    assert f"task: {task}" in out
    p = params.read(root / "params.yaml")
    assert (p.task, [str(x) for x in p.load.labels]) == (task, labels)
    dvc(root, "repro")  # fails the test on any stage's failure, the threshold gate included
    metrics = json.loads((root / "reports/metrics.json").read_text())
    (metric, threshold), *_ = p.evaluate.thresholds.items()
    assert metrics[metric] >= threshold.limit
