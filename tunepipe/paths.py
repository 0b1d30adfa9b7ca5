"""Where each stage reads and writes, relative to the project root. dvc.yaml names the same paths."""

from pathlib import Path

PARAMS = Path("params.yaml")
SPLITS = Path("data/splits")  # load -> train/validation/test.parquet + manifest.json
VALIDATION_REPORT = Path("reports/validation.json")  # validate
TOKENIZED = Path("data/tokenized")  # tokenize -> DatasetDict + labels.json
CHECKPOINTS = Path("models/checkpoints")  # train (persisted between runs, not cached)
MODEL = Path("models/model")  # train -> save_pretrained directory
TRAIN_REPORT = Path("reports/train.json")
TRAIN_LOSS = Path("reports/train_loss.csv")
EVAL_CURVE = Path("reports/eval_curve.csv")
METRICS = Path("reports/metrics.json")  # evaluate
EVALUATION = Path("reports/evaluation.json")  # evaluate: thresholds, confusion matrix
TEST_PREDICTIONS = Path("reports/test_predictions.csv")  # evaluate: for `dvc plots` confusion
LINEAGE = Path("lineage")  # register -> lineage/<name>@<version>.json, committed to git

SPLIT_NAMES = ("train", "validation", "test")
