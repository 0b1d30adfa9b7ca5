"""The evaluate stage as a function: score the trained model on the test split and check the
thresholds.

metrics.json holds numbers only (a DVC metric); evaluation.json adds per-class (or per entity
type) scores, the confusion matrix and the threshold verdict. test_predictions.csv has one row
per example (per word for token tasks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tunepipe import catalog
from tunepipe.errors import PipelineError
from tunepipe.inference import load_model, logits_for, token_logits_for
from tunepipe.io import write_json, write_text
from tunepipe.metrics import (
    confusion_matrix,
    per_class_scores,
    regression_scores,
    sequence_scores,
    softmax,
    token_scores,
)
from tunepipe.params import Params, Threshold
from tunepipe.report import write_stage_outputs


def check_thresholds(metrics: dict[str, Any], thresholds: Mapping[str, Threshold]) -> list[dict[str, Any]]:
    """One check per threshold, in the form written in params.yaml: `min` or `max` (by the metric's
    direction), the value and whether it passed; a metric the task did not report fails."""
    checks = []
    for name, threshold in thresholds.items():
        value = metrics.get(name)
        checks.append(
            {
                "metric": name,
                threshold.bound: threshold.limit,
                "value": value,
                "passed": threshold.passes(value),
            }
        )
    return checks


def check_outputs(outputs: list[np.ndarray] | np.ndarray) -> None:
    """Refuse a model whose outputs (logits or predicted scores, one array per example or one row
    each) hold NaN or inf: a diverged model. argmax reads a NaN row as class 0, so the metrics
    alone would not show it."""
    rows = [np.asarray(o) for o in outputs]
    bad = sum(not bool(np.isfinite(r).all()) for r in rows)
    if bad:
        raise PipelineError(
            f"evaluate: the model's outputs are NaN or infinite for {bad} of {len(rows)} test examples: "
            "a diverged model cannot be scored; retrain it (lower train.learning_rate)"
        )


def check_metrics(metrics: Mapping[str, Any]) -> None:
    """Refuse a NaN or infinite metric: it would pass or fail a threshold by accident of comparison
    and reach the reports and the registry as a number."""
    for name, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise PipelineError(
                f"evaluate: {name} is {value} on the test split: a metric must be a finite number; "
                "nothing was written or registered"
            )


def _verdict(metrics: dict[str, Any], thresholds: Mapping[str, Threshold]) -> dict[str, Any]:
    check_metrics(metrics)
    checks = check_thresholds(metrics, thresholds)
    return {"thresholds": checks, "passed": all(c["passed"] for c in checks)}


def majority_baseline(references: np.ndarray, labels: list[str]) -> dict[str, Any] | None:
    """The test split's accuracy when every example gets its most frequent label: what a model's
    accuracy is read against (the report shows it; a threshold below it passes a useless model)."""
    if not len(references):
        return None
    counts = np.bincount(np.asarray(references, dtype=int), minlength=len(labels))
    top = int(counts.argmax())
    return {"label": labels[top], "accuracy": round(float(counts[top] / counts.sum()), 6)}


def score(
    references: np.ndarray,
    logits: np.ndarray,
    labels: list[str],
    thresholds: Mapping[str, Threshold],
    extras: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Sequence classification as a pure function of label ids and logits."""
    check_outputs(logits)
    preds = logits.argmax(axis=-1)
    metrics = sequence_scores(references, preds, labels, extras)
    metrics["examples"] = len(references)
    return {
        "task": "sequence_classification",
        "metrics": metrics,
        "baseline": majority_baseline(references, labels),
        "per_class": per_class_scores(references, preds, labels),
        "confusion_matrix": {
            "labels": labels,
            "rows_true_cols_predicted": confusion_matrix(references, preds, len(labels)).tolist(),
        },
    } | _verdict(metrics, thresholds)


def score_regression(
    references: np.ndarray, predictions: np.ndarray, thresholds: Mapping[str, Threshold]
) -> dict[str, Any]:
    check_outputs(predictions)
    metrics: dict[str, Any] = regression_scores(references, predictions)
    metrics["examples"] = len(references)
    return {"task": "regression", "metrics": metrics} | _verdict(metrics, thresholds)


def score_tokens(
    references: list[list[str]],
    predictions: list[list[str]],
    scheme: str,
    thresholds: Mapping[str, Threshold],
) -> dict[str, Any]:
    """Entity-level scores for IOB tags, token accuracy for plain tags; per type in both cases."""
    scores = token_scores(references, predictions, scheme)
    per_type = scores.pop("per_type")
    metrics = {k: v for k, v in scores.items() if isinstance(v, float)}
    metrics["examples"] = len(references)
    metrics["words"] = sum(map(len, references))
    return {
        "task": "token_classification",
        "tag_scheme": scheme,
        "metrics": metrics,
        "per_type": per_type,
    } | (_verdict(metrics, thresholds))


def _miss(check: dict[str, Any], reported: str) -> str:
    if check["value"] is None:
        return (
            f"{check['metric']} is not reported (this task reports {reported}; "
            f"remove {check['metric']} from evaluate.thresholds or bound one of those)"
        )
    if "min" in check:
        return f"{check['metric']} = {check['value']:.4f} is below the threshold {check['min']}"
    return f"{check['metric']} = {check['value']:.4f} is above the threshold {check['max']} (a maximum)"


def describe_misses(evaluation: dict[str, Any]) -> str:
    reported = ", ".join(k for k, v in evaluation["metrics"].items() if isinstance(v, float))
    return "; ".join(_miss(c, reported) for c in evaluation["thresholds"] if not c["passed"])


def score_encoded(
    model: Any,
    tok: Any,
    test: Any,
    labels: list[str],
    task: str,
    scheme: str | None,
    thresholds: Mapping[str, Threshold],
    extras: list[str] | tuple[str, ...] = (),
    batch_size: int = 64,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """(evaluation, one row per prediction) of a model on tokenized, labelled examples: the
    evaluate stage on the test split and `tunepipe evaluate` on any labelled file alike."""
    if task == "token_classification":
        refs, preds = [], []
        column = "word_labels" if "word_labels" in test.column_names else "labels"
        sentences = token_logits_for(model, tok, test, batch_size)
        check_outputs(sentences)
        for ids, logits in zip(test[column], sentences, strict=True):
            ids = np.asarray(ids)
            keep = ids != -100
            refs.append([labels[i] for i in ids[keep]])
            preds.append([labels[i] for i in logits.argmax(axis=-1)[keep]])
        evaluation = score_tokens(refs, preds, scheme or "none", thresholds)
        predictions = pd.DataFrame(
            [
                {"source_row": row, "word": i + 1, "token": tokens[i], "actual": a, "predicted": b}
                for row, tokens, r, q in zip(test["source_row"], test["tokens"], refs, preds, strict=True)
                for i, (a, b) in enumerate(zip(r, q, strict=True))
            ],
            columns=["source_row", "word", "token", "actual", "predicted"],
        )
    elif task == "regression":
        references = np.asarray(test["labels"], dtype=float)
        values = logits_for(model, tok, test, batch_size)[:, 0]
        evaluation = score_regression(references, values, thresholds)
        predictions = pd.DataFrame(
            # float64: the CSV then holds the exact values the metrics were computed on
            {"source_row": test["source_row"], "actual": references, "predicted": values.astype(float)}
        )
    else:
        references = np.asarray(test["labels"])
        logits = logits_for(model, tok, test, batch_size)
        evaluation = score(references, logits, labels, thresholds, extras)
        probs = softmax(logits)
        predictions = pd.DataFrame(
            {
                "source_row": test["source_row"],
                "actual": [labels[i] for i in references],
                "predicted": [labels[i] for i in probs.argmax(axis=-1)],
                "score": probs.max(axis=-1).round(6),
            }
        )
    return evaluation, predictions


def evaluate(p: Params) -> dict[str, Any]:
    info = catalog.read_info()
    test = catalog.read_tokenized(splits=("test",))["test"]
    # On the GPU when present, in the precision the model was trained in (train.precision)
    model, tok = load_model(catalog.MODEL, device=p.train.device, precision=p.train.precision)
    evaluation, predictions = score_encoded(
        model,
        tok,
        test,
        info["labels"],
        info.get("task", "sequence_classification"),
        info.get("tag_scheme"),
        p.evaluate.thresholds,
        p.evaluate.metrics,
        p.evaluate.batch_size,
    )
    write_text(catalog.TEST_PREDICTIONS, predictions.to_csv(index=False))
    write_json(catalog.METRICS, evaluation["metrics"])
    write_json(catalog.EVALUATION, evaluation)
    write_stage_outputs(evaluation, predictions)  # dvc plots data and reports/report.html
    return evaluation
