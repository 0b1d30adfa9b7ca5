"""The pipeline's files: where each stage writes (dvc.yaml names the same paths) and how a later
stage, the flow or the CLI reads them back. Paths are relative to the project root."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunepipe.io import atomic_dir, clean_stale, read_json, write_json

PARAMS = Path("params.yaml")
# `tunepipe ingest` -> new rows (table files) the load stage adds to the source's train rows;
# one DVC-tracked folder (data/raw/incoming.dvc), apart from data/raw/README.md which git tracks.
INCOMING = Path("data/raw/incoming")
PRETRAINED = Path("data/pretrained.json")  # pretrained -> what the base model is, by content
SPLITS = Path("data/splits")  # load -> train/validation/test.parquet + manifest.json
VALIDATION_REPORT = Path("reports/validation.json")  # validate
TOKENIZED = Path("data/tokenized")  # tokenize -> one output per split (save_to_disk) + labels.json
CHECKPOINTS = Path("models/checkpoints")  # train: kept between runs for resume; git-ignored, not a DVC output
MODEL = Path("models/model")  # train -> save_pretrained directory
ADAPTER = Path("models/adapter")  # train -> LoRA adapters alone (peft), or a note when none
TRAIN_REPORT = Path("reports/train.json")
# train -> DVCLive's folder (tunepipe/training.py live_logger): metrics.json, the latest value of
# each curve (a DVC metrics file: `dvc exp show`), and plots/metrics/{train,eval}/<name>.tsv
# (step, value), the curves `dvc plots` draws.
LIVE = Path("reports/live")
LIVE_METRICS = LIVE / "metrics.json"
LIVE_PLOTS = LIVE / "plots"
# train: timings and where a run resumed. Not in dvc.yaml (git-ignored): it differs between runs
# that train the same model, and would change dvc.lock after every retrain.
TRAIN_RUN = Path("reports/train_run.json")
METRICS = Path("reports/metrics.json")  # evaluate
EVALUATION = Path("reports/evaluation.json")  # evaluate: thresholds, confusion matrix
TEST_PREDICTIONS = Path("reports/test_predictions.csv")  # evaluate: one row per example (word)
PLOTS = Path("reports/plots")  # evaluate: `dvc plots` data for the task (tunepipe/report.py)
REPORT = Path("reports/report.html")  # evaluate: the run report (the version's: lineage/<tag>.html)
MODEL_CARD = Path("reports/model_card.md")  # evaluate: the model's card with its test evaluation
LINEAGE = Path("lineage")  # register -> lineage/<name>@<version>.json, committed to git

# `tunepipe search` (not a DVC stage): the study's outcome and its best model.
SEARCH = Path("search")
SEARCH_TRIALS = SEARCH / "trials"
SEARCH_BEST_MODEL = SEARCH / "best-model"
SEARCH_TRIALS_CSV = SEARCH / "trials.csv"
SEARCH_BEST = SEARCH / "best.json"

SPLIT_NAMES = ("train", "validation", "test")
TRAINING_SPLITS = ("train", "validation")  # what train reads (and depends on); test is evaluate's


def write_splits(splits: dict[str, Any], manifest: dict[str, Any], out: Path = SPLITS) -> None:
    with atomic_dir(out, owned=True) as tmp:  # a stage output: no marker, its hash unchanged
        for split, df in splits.items():
            df.to_parquet(tmp / f"{split}.parquet", index=False)
        write_json(tmp / "manifest.json", manifest)


def read_splits(root: Path = SPLITS) -> dict[str, Any]:
    """The canonical splits as DataFrames, keyed train, validation, test."""
    import pandas as pd

    return {s: pd.read_parquet(Path(root) / f"{s}.parquet") for s in SPLIT_NAMES}


def read_manifest(root: Path = SPLITS) -> dict[str, Any]:
    return read_json(Path(root) / "manifest.json")


def tokenized_split(split: str, root: Path = TOKENIZED) -> Path:
    """One DVC output per split: train depends on train and validation, evaluate on test."""
    return Path(root) / split


def tokenized_info(root: Path = TOKENIZED) -> Path:
    return Path(root) / "labels.json"


# Everything a stage writes through tunepipe.io: their temporary siblings are what a kill leaves.
OUTPUTS = (
    PRETRAINED,
    SPLITS,
    VALIDATION_REPORT,
    *(tokenized_split(s) for s in SPLIT_NAMES),
    tokenized_info(),
    MODEL,
    TRAIN_REPORT,
    TRAIN_RUN,
    METRICS,
    EVALUATION,
    TEST_PREDICTIONS,
    PLOTS,
    REPORT,
    MODEL_CARD,
)


def clean_stale_outputs(root: Path = Path(".")) -> list[Path]:
    """Remove what killed writers left beside the pipeline's outputs (run at each stage's start,
    so that a stage that fails before writing does not keep them either)."""
    return [p for out in OUTPUTS for p in clean_stale(Path(root) / out)]


def live_curve(name: str, root: Path = LIVE) -> Path:
    """DVCLive's file for one curve: `name` as logged, e.g. train/loss or eval/accuracy."""
    return Path(root) / "plots" / "metrics" / f"{name}.tsv"


def read_curves(read: Callable[[str], bytes | None], root: Path = LIVE) -> dict[str, dict[str, list[float]]]:
    """The training curves as columns: "train" (step, loss) and "eval" (step, eval_loss, then
    eval_<metric> for each metric train logged, in its order), empty where train logged none.

    `read` gives a file's bytes by its path (None if absent): the work tree, or a registered
    version's files. metrics.json names the curves; each curve is DVCLive's TSV file.
    """
    import io

    import pandas as pd

    raw = read((Path(root) / "metrics.json").as_posix())
    summary = json.loads(raw) if raw else {}
    curves: dict[str, dict[str, list[float]]] = {}
    for group, prefix in (("train", ""), ("eval", "eval_")):
        table = None
        names = summary.get(group)
        for name in names if isinstance(names, dict) else ():
            data = read(live_curve(f"{group}/{name}", root).as_posix())
            if not data:
                continue
            column = pd.read_csv(io.BytesIO(data), sep="\t")[["step", name]].rename(
                columns={name: prefix + name}
            )
            table = column if table is None else table.merge(column, on="step", how="outer")
        curves[group] = (
            {c: [float(v) for v in table.sort_values("step")[c]] for c in table.columns}
            if table is not None and not table.empty
            else {}
        )
    return curves


def write_tokenized(dsd: Any, info: dict[str, Any], out: Path = TOKENIZED) -> None:
    for split, ds in dsd.items():
        with atomic_dir(tokenized_split(split, out), owned=True) as tmp:
            ds.save_to_disk(str(tmp))
    write_json(tokenized_info(out), info)
    shutil.rmtree(Path(out) / "dataset", ignore_errors=True)  # the single-output layout before


def read_tokenized(root: Path = TOKENIZED, splits: tuple[str, ...] = SPLIT_NAMES) -> Any:
    """The splits asked for, loaded into memory: shuffles and selects must not write cache files
    into a DVC output."""
    from datasets import DatasetDict, load_from_disk

    return DatasetDict(
        {s: load_from_disk(str(tokenized_split(s, root)), keep_in_memory=True) for s in splits}
    )


def read_info(root: Path = TOKENIZED) -> dict[str, Any]:
    """labels.json: the task, label names in id order, the tag scheme, the length limit."""
    return read_json(tokenized_info(root))


def has_tokenized(root: Path = TOKENIZED) -> bool:
    return tokenized_info(root).is_file()
