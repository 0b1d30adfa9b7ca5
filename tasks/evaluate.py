"""Stage `evaluate`: score the trained model on the test split and check the thresholds.

metrics.json holds numbers only (a DVC metric); evaluation.json adds the per-class scores, the
confusion matrix and the threshold verdict. A missed threshold exits non-zero: no registration.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd

from tunepipe import params as params_mod
from tunepipe import paths
from tunepipe.io import write_json, write_text
from tunepipe.metrics import (
    classification_scores,
    confusion_matrix,
    format_metrics,
    per_class_scores,
    softmax,
)
from tunepipe.params import Params


def check_thresholds(metrics: dict[str, float], thresholds: dict[str, float]) -> list[dict[str, Any]]:
    checks = []
    for name, minimum in thresholds.items():
        value = metrics.get(name)
        checks.append(
            {
                "metric": name,
                "minimum": minimum,
                "value": value,
                "passed": value is not None and value >= minimum,
            }
        )
    return checks


def score(
    references: np.ndarray, logits: np.ndarray, labels: list[str], thresholds: dict[str, float]
) -> dict[str, Any]:
    """The whole stage as a pure function of labels and logits."""
    preds = logits.argmax(axis=-1)
    metrics = classification_scores(references, preds, len(labels))
    metrics["examples"] = len(references)
    checks = check_thresholds(metrics, thresholds)
    return {
        "metrics": metrics,
        "per_class": per_class_scores(references, preds, labels),
        "confusion_matrix": {
            "labels": labels,
            "rows_true_cols_predicted": confusion_matrix(references, preds, len(labels)).tolist(),
        },
        "thresholds": checks,
        "passed": all(c["passed"] for c in checks),
    }


def describe_misses(evaluation: dict[str, Any]) -> str:
    misses = [c for c in evaluation["thresholds"] if not c["passed"]]
    return "; ".join(
        f"{c['metric']} = {'missing' if c['value'] is None else format(c['value'], '.4f')} "
        f"is below the threshold {c['minimum']}"
        for c in misses
    )


def evaluate(p: Params) -> dict[str, Any]:
    from tasks.tokenize import read_labels, read_tokenized
    from tunepipe.inference import load_model, logits_for

    labels = read_labels()
    test = read_tokenized()["test"]
    model, tok = load_model(paths.MODEL)
    logits = logits_for(model, tok, test, p.evaluate.batch_size)
    references = np.asarray(test["labels"])
    evaluation = score(references, logits, labels, p.evaluate.thresholds)
    probs = softmax(logits)
    predictions = pd.DataFrame(
        {
            "source_row": test["source_row"],
            "actual": [labels[i] for i in references],
            "predicted": [labels[i] for i in probs.argmax(axis=-1)],
            "score": probs.max(axis=-1).round(6),
        }
    )
    write_text(paths.TEST_PREDICTIONS, predictions.to_csv(index=False))
    write_json(paths.METRICS, evaluation["metrics"])
    write_json(paths.EVALUATION, evaluation)
    return evaluation


def main() -> None:
    p = params_mod.read(paths.PARAMS)
    evaluation = evaluate(p)
    shown = format_metrics(evaluation["metrics"])
    print(f"evaluate: {shown} on {evaluation['metrics']['examples']} test examples")
    if not evaluation["passed"]:
        print(
            f"evaluate: model rejected: {describe_misses(evaluation)} (params.yaml evaluate.thresholds)",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    from tunepipe.stage import run

    run(main)
