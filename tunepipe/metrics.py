"""Metrics computed locally (the hub's `evaluate` metric scripts need a network).

Plain numpy on label ids and scores, so the tests can check every number against scikit-learn,
scipy and seqeval. Which metrics a task reports, and which one picks the best checkpoint, is
decided here too.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(references: Any, predictions: Any, num_labels: int) -> np.ndarray:
    """Rows are true labels, columns predicted labels."""
    refs, preds = np.asarray(references, dtype=int), np.asarray(predictions, dtype=int)
    matrix = np.zeros((num_labels, num_labels), dtype=int)
    np.add.at(matrix, (refs, preds), 1)
    return matrix


def classification_scores(references: Any, predictions: Any, num_labels: int) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1; a class never predicted scores 0 precision."""
    matrix = confusion_matrix(references, predictions, num_labels)
    tp = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # Macro averages over the classes that occur in either references or predictions, as sklearn does.
    present = (predicted + actual) > 0
    total = matrix.sum()
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "precision_macro": float(precision[present].mean()) if present.any() else 0.0,
        "recall_macro": float(recall[present].mean()) if present.any() else 0.0,
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
    }


def per_class_scores(references: Any, predictions: Any, labels: list[str]) -> dict[str, dict[str, float]]:
    matrix = confusion_matrix(references, predictions, len(labels))
    out = {}
    for i, name in enumerate(labels):
        tp, pred, act = matrix[i, i], matrix[:, i].sum(), matrix[i, :].sum()
        p = tp / pred if pred else 0.0
        r = tp / act if act else 0.0
        out[name] = {
            "precision": float(p),
            "recall": float(r),
            "f1": float(2 * p * r / (p + r)) if p + r else 0.0,
            "support": int(act),
        }
    return out


def format_metrics(metrics: dict[str, Any]) -> str:
    """`accuracy 0.8298, f1_macro 0.8294`: the one-line form used in logs, commits and tags."""
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def is_number(value: Any) -> bool:
    """A metric's value (an int or a float), not a bool, a text or a missing value."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_value(value: Any, missing: str = "-") -> str:
    """A recorded value as reports show it: floats to six significant digits, the rest as written."""
    if value is None:
        return missing
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (metrics.json, params.yaml) as `a.b.c -> value`, the keys DVC shows."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def format_threshold(check: dict[str, Any]) -> str:
    """`>= 0.8` or `<= 0.5`: a threshold check of reports/evaluation.json as reports show it."""
    return f">= {check['min']}" if "min" in check else f"<= {check['max']}"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def matthews_correlation(references: Any, predictions: Any, num_labels: int) -> float:
    """Multi-class MCC (Gorodkin's R_K, as sklearn); 0 when either side has a single class."""
    matrix = confusion_matrix(references, predictions, num_labels).astype(float)
    true, pred, n = matrix.sum(axis=1), matrix.sum(axis=0), matrix.sum()
    cov_tp = np.trace(matrix) * n - true @ pred
    cov_pp, cov_tt = n * n - pred @ pred, n * n - true @ true
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


def binary_f1(references: Any, predictions: Any, positive: int = 1) -> float:
    """F1 of the positive class (label id 1: `equivalent` in MRPC, `duplicate` in QQP)."""
    refs, preds = np.asarray(references) == positive, np.asarray(predictions) == positive
    tp = float(np.sum(refs & preds))
    denominator = float(refs.sum() + preds.sum())
    return 2 * tp / denominator if denominator else 0.0


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (what Spearman's rho needs)."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(x)] - 1
    ranks = np.empty(len(x))
    ranks[order] = (first[group] + last[group]) / 2 + 1
    return ranks


def pearson(a: Any, b: Any) -> float:
    """Pearson's r; 0 when either side is constant (undefined correlation counts as none)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator > 0 else 0.0


def regression_scores(references: Any, predictions: Any) -> dict[str, float]:
    refs, preds = np.asarray(references, dtype=float), np.asarray(predictions, dtype=float)
    err = preds - refs
    mse = float(np.mean(err**2)) if len(err) else 0.0
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(err))) if len(err) else 0.0,
        "pearson": pearson(refs, preds),
        "spearmanr": pearson(_ranks(refs), _ranks(preds)) if len(err) else 0.0,
    }


EXTRA_METRICS = ("matthews_correlation", "f1")


def sequence_scores(
    references: Any, predictions: Any, labels: list[str], extras: list[str] | tuple[str, ...] = ()
) -> dict[str, float]:
    """Accuracy and macro P/R/F1 always; MCC and binary F1 where asked for (GLUE's CoLA, MRPC, QQP)."""
    metrics = classification_scores(references, predictions, len(labels))
    if "matthews_correlation" in extras:
        metrics["matthews_correlation"] = matthews_correlation(references, predictions, len(labels))
    if "f1" in extras:
        if len(labels) != 2:
            from tunepipe.errors import PipelineError

            raise PipelineError(f"metric f1 (binary) needs two labels, got {len(labels)}: {labels}")
        metrics["f1"] = binary_f1(references, predictions)
    return metrics


# Every metric a task reports (and the Trainer's loss): the values it can take, low to high (None:
# unbounded), and whether higher is better. The one place that says either: the best checkpoint,
# early stopping, the search's direction and evaluate.thresholds (a maximum where lower is better,
# a minimum otherwise) read the direction through greater_is_better; params.yaml's thresholds are
# checked against the range when params are read (metric_range), before any stage runs.
SCORE, CORRELATION, ERROR = (0.0, 1.0, True), (-1.0, 1.0, True), (0.0, None, False)
SCALES: dict[str, tuple[float, float | None, bool]] = {
    "accuracy": SCORE,
    "precision_macro": SCORE,
    "recall_macro": SCORE,
    "f1_macro": SCORE,
    "precision": SCORE,
    "recall": SCORE,
    "f1": SCORE,
    "matthews_correlation": CORRELATION,
    "pearson": CORRELATION,
    "spearmanr": CORRELATION,
    "mse": ERROR,
    "rmse": ERROR,
    "mae": ERROR,
    "loss": ERROR,
}
LOWER_IS_BETTER = frozenset(name for name, (_, _, higher) in SCALES.items() if not higher)


def greater_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` (named with or without the Trainer's eval_ prefix) is better."""
    return metric.removeprefix("eval_") not in LOWER_IS_BETTER


def metric_range(metric: str) -> tuple[float, float | None] | None:
    """The values `metric` can take, (low, high) with high None for no upper bound; None for a
    name this module does not report (params name it as unknown)."""
    scale = SCALES.get(metric.removeprefix("eval_"))
    return None if scale is None else scale[:2]


def describe_range(low: float, high: float | None) -> str:
    """`between 0 and 1`, `between -1 and 1`, `0 or more`: as error messages state a range."""
    return f"{low:g} or more" if high is None else f"between {low:g} and {high:g}"


def main_metric(task: str, scheme: str = "none") -> str:
    """The metric that picks the best checkpoint when train.metric_for_best_model is null."""
    if task == "regression":
        return "pearson"
    if task == "token_classification" and scheme != "none":
        return "f1"
    return "accuracy"


def metric_names(task: str, scheme: str = "none") -> list[str]:
    """What a task reports (plus `loss` during training): the names thresholds and
    train.metric_for_best_model may use."""
    if task == "regression":
        return ["mse", "rmse", "mae", "pearson", "spearmanr"]
    if task == "token_classification" and scheme != "none":
        return ["precision", "recall", "f1", "accuracy"]
    standard = ["accuracy", "precision_macro", "recall_macro", "f1_macro"]
    return standard + (list(EXTRA_METRICS) if task == "sequence_classification" else [])


def reportable(task: str, tag_scheme: str = "auto") -> list[str]:
    """What a task can report before its data is read: load.tag_scheme `auto` is decided by the
    tags, so a token task then admits the names of both kinds (params are checked up front)."""
    if task == "token_classification" and tag_scheme == "auto":
        return list(dict.fromkeys([*metric_names(task, "iob2"), *metric_names(task, "none")]))
    return metric_names(task, tag_scheme)


def word_level(logits: np.ndarray, label_ids: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
    """Per-sentence reference and predicted ids at the labelled positions (-100 marks the rest)."""
    preds = logits.argmax(axis=-1)
    refs_out, preds_out = [], []
    for ref_row, pred_row in zip(label_ids, preds, strict=True):
        keep = ref_row != -100
        refs_out.append(ref_row[keep].tolist())
        preds_out.append(pred_row[keep].tolist())
    return refs_out, preds_out


def token_scores(references: list[list[str]], predictions: list[list[str]], scheme: str) -> dict[str, Any]:
    """Entity-level P/R/F1 (overall and per type) for IOB tags; token accuracy for plain tags."""
    from tunepipe import tagging

    if scheme == "none":
        flat_refs = [t for s in references for t in s]
        flat_preds = [t for s in predictions for t in s]
        names = sorted(set(flat_refs) | set(flat_preds))
        index = {n: i for i, n in enumerate(names)}
        out: dict[str, Any] = classification_scores(
            [index[t] for t in flat_refs], [index[t] for t in flat_preds], len(names)
        )
        out["per_type"] = per_class_scores(
            [index[t] for t in flat_refs], [index[t] for t in flat_preds], names
        )
        return out
    return tagging.entity_scores(references, predictions)


def trainer_metrics(
    task: str, labels: list[str], extras: list[str] | tuple[str, ...] = (), scheme: str = "none"
) -> Any:
    """`compute_metrics` for transformers.Trainer: the same numbers the evaluate stage reports."""

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, label_ids = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        if task == "regression":
            return regression_scores(label_ids, np.asarray(logits).reshape(-1))
        if task == "token_classification":
            refs, preds = word_level(np.asarray(logits), np.asarray(label_ids))
            scores = token_scores(
                [[labels[i] for i in s] for s in refs], [[labels[i] for i in s] for s in preds], scheme
            )
            return {k: v for k, v in scores.items() if isinstance(v, float)}
        return sequence_scores(label_ids, np.argmax(logits, axis=-1), labels, extras)

    return compute
