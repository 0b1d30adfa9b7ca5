"""Classification metrics computed locally (the hub's `evaluate` metric scripts need a network).

Plain numpy on label ids so the numbers can be checked against scikit-learn in the tests.
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


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def trainer_metrics(num_labels: int) -> Any:
    """`compute_metrics` for transformers.Trainer."""

    def compute(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        return classification_scores(labels, np.argmax(logits, axis=-1), num_labels)

    return compute
