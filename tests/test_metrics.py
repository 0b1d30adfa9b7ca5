import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from tunepipe import metrics

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("num_labels,seed", [(2, 0), (3, 1), (5, 2)])
def test_scores_match_sklearn(num_labels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, num_labels, 300)
    preds = np.where(rng.random(300) < 0.6, refs, rng.integers(0, num_labels, 300))
    ours = metrics.classification_scores(refs, preds, num_labels)
    p, r, f, _ = precision_recall_fscore_support(refs, preds, average="macro", zero_division=0)
    assert ours["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    assert ours["precision_macro"] == pytest.approx(p)
    assert ours["recall_macro"] == pytest.approx(r)
    assert ours["f1_macro"] == pytest.approx(f)
    assert (
        metrics.confusion_matrix(refs, preds, num_labels).tolist()
        == confusion_matrix(refs, preds, labels=range(num_labels)).tolist()
    )


def test_class_never_predicted_scores_zero_precision() -> None:
    refs, preds = [0, 0, 1, 1], [0, 0, 0, 0]
    ours = metrics.classification_scores(refs, preds, 2)
    p, r, f, _ = precision_recall_fscore_support(refs, preds, average="macro", zero_division=0)
    assert (ours["precision_macro"], ours["recall_macro"], ours["f1_macro"]) == pytest.approx((p, r, f))
    per_class = metrics.per_class_scores(refs, preds, ["neg", "pos"])
    assert per_class["pos"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_softmax_rows_sum_to_one() -> None:
    probs = metrics.softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert probs.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert probs[1] == pytest.approx([0.5, 0.5])
