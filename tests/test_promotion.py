"""Promotion decisions: the paired bootstrap against independent references, and the policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tunepipe import params
from tunepipe.errors import PipelineError
from tunepipe.promotion import decide, paired_bootstrap, per_example, percentile_interval, scorer

pytestmark = pytest.mark.unit

LABELS = ["neg", "pos"]


def classification_pairs(n: int, challenger_acc: float, champion_acc: float, seed: int = 1) -> pd.DataFrame:
    """Test rows where each model is right with the given probability (independently per row)."""
    rng = np.random.default_rng(seed)
    actual = rng.choice(LABELS, size=n)
    flip = {"neg": "pos", "pos": "neg"}
    a_right, b_right = rng.random(n) < challenger_acc, rng.random(n) < champion_acc
    return pd.DataFrame(
        {
            "source_row": np.arange(1, n + 1),
            "actual": actual,
            "predicted": [y if ok else flip[y] for y, ok in zip(actual, a_right, strict=True)],
            "predicted_champion": [y if ok else flip[y] for y, ok in zip(actual, b_right, strict=True)],
        }
    )


def policy(**changes: object) -> params.PromoteParams:
    return params.parse({"promote": changes}).promote


def test_accuracy_bootstrap_matches_an_independent_numpy_loop() -> None:
    pairs = classification_pairs(300, 0.8, 0.7)
    n, score = scorer(pairs, "sequence_classification", "accuracy", LABELS)
    got = paired_bootstrap(n, score, 1.0, 1000, 7, per_example(pairs, "sequence_classification", "accuracy"))
    # Reference: the same seeded index draws, accuracy recomputed from the labels directly.
    rng = np.random.default_rng(7)
    a = (pairs["predicted"] == pairs["actual"]).to_numpy()
    b = (pairs["predicted_champion"] == pairs["actual"]).to_numpy()
    expected = []
    for _ in range(1000):
        idx = rng.integers(0, n, size=n)
        expected.append(a[idx].mean() - b[idx].mean())
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
def test_interval_agrees_with_scipy_paired_bootstrap(metric: str) -> None:
    from scipy.stats import bootstrap
    from sklearn.metrics import accuracy_score, f1_score

    pairs = classification_pairs(400, 0.78, 0.72, seed=3)
    decision = decide(
        pairs, "sequence_classification", metric, policy(), {"version": "v2"}, {"version": "v1"}, LABELS
    )

    def reference(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        if metric == "accuracy":
            return accuracy_score(y, a) - accuracy_score(y, b)
        return f1_score(y, a, average="macro") - f1_score(y, b, average="macro")

    ref = bootstrap(
        (pairs["actual"].to_numpy(), pairs["predicted"].to_numpy(), pairs["predicted_champion"].to_numpy()),
        reference,
        paired=True,
        vectorized=False,
        n_resamples=1000,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    point = reference(*(pairs[c].to_numpy() for c in ("actual", "predicted", "predicted_champion")))
    assert decision.improvement == pytest.approx(point, abs=1e-12)
    # Two bootstraps with different draws: their endpoints agree to Monte Carlo error.
    assert decision.low == pytest.approx(ref.confidence_interval.low, abs=0.012)
    assert decision.high == pytest.approx(ref.confidence_interval.high, abs=0.012)
    assert decision.low < point < decision.high


def test_better_challenger_is_promoted_worse_is_not() -> None:
    better = decide(classification_pairs(500, 0.9, 0.7), "sequence_classification", "accuracy", policy(),
                    {"version": "v2"}, {"version": "v1"}, LABELS)  # fmt: skip
    assert better.promote and better.low > 0 and better.challenger["score"] > better.champion["score"]
    assert "clears min_delta 0.0" in better.reason
    worse = decide(classification_pairs(500, 0.7, 0.9), "sequence_classification", "accuracy", policy(),
                   {"version": "v2"}, {"version": "v1"}, LABELS)  # fmt: skip
    assert not worse.promote and worse.improvement < 0 and "does not clear" in worse.reason


def test_not_significant_is_not_promoted_by_default() -> None:
    pairs = classification_pairs(120, 0.76, 0.74, seed=5)
    strict = decide(
        pairs, "sequence_classification", "accuracy", policy(), {"version": "v2"}, {"version": "v1"}, LABELS
    )
    assert strict.improvement > 0 and strict.low < 0  # better on the point estimate, not significantly
    assert not strict.promote and strict.require_significant
    assert "lower bound" in strict.reason and strict.blocked[0].startswith("interval's lower bound -")
    loose = decide(pairs, "sequence_classification", "accuracy", policy(require_significant=False),
                   {"version": "v2"}, {"version": "v1"}, LABELS)  # fmt: skip
    assert loose.promote and not loose.blocked
    high_bar = decide(pairs, "sequence_classification", "accuracy",
                      policy(min_delta=0.5, require_significant=False),
                      {"version": "v2"}, {"version": "v1"}, LABELS)  # fmt: skip
    assert not high_bar.promote


def one_class_challenger(n: int = 2000, seed: int = 4) -> pd.DataFrame:
    """The issue's case: 90% 'pos' rows; a challenger that says 'pos' for everything (accuracy 0.90,
    macro recall 0.50) against a champion that finds both classes with accuracy 0.85."""
    rng = np.random.default_rng(seed)
    actual = np.where(rng.random(n) < 0.9, "pos", "neg")
    right = rng.random(n) < 0.85
    flip = {"neg": "pos", "pos": "neg"}
    return pd.DataFrame(
        {
            "source_row": np.arange(n),
            "actual": actual,
            "predicted": "pos",
            "predicted_champion": [y if ok else flip[y] for y, ok in zip(actual, right, strict=True)],
        }
    )


def test_one_class_challenger_is_not_promoted_despite_higher_accuracy() -> None:
    pairs = one_class_challenger()
    d = decide(pairs, "sequence_classification", "accuracy", policy(), {"version": "v2"}, {"version": "v1"},
               LABELS, test_split={"path": "data/tokenized/test", "md5": "ab" * 16})  # fmt: skip
    assert d.challenger["score"] > d.champion["score"] and d.low > 0  # significantly more accurate
    assert not d.promote
    assert "predicts 'pos' for every row" in d.blocked
    assert [c["label"] for c in d.collapsed] == ["neg"] and d.collapsed[0]["recall"] == 0
    failed = {g["metric"] for g in d.guards if not g["passed"]}
    assert failed == {"recall_macro", "f1_macro"}
    assert "guard recall_macro" in d.reason and "class 'neg' collapsed" in d.reason
    # the rows it was decided on
    assert d.test_split == {"path": "data/tokenized/test", "md5": "ab" * 16, "rows": len(pairs)}
    assert d.examples == len(pairs)
    # Guards and the collapse check off: accuracy alone promotes it.
    off = decide(pairs, "sequence_classification", "accuracy", policy(guards={}, min_class_recall=None),
                 {"version": "v2"}, {"version": "v1"}, LABELS)  # fmt: skip
    assert off.promote and not off.guards and not off.collapsed


def test_guards_measure_both_models_on_the_same_rows() -> None:
    from sklearn.metrics import f1_score, recall_score

    pairs = classification_pairs(300, 0.8, 0.8, seed=9)
    d = decide(pairs, "sequence_classification", "accuracy", policy(guards={"recall_macro": 0.5}),
               {"version": "v2"}, {"version": "v1"}, LABELS)  # fmt: skip
    (guard,) = d.guards
    a, y, b = pairs["predicted"], pairs["actual"], pairs["predicted_champion"]
    assert guard["challenger"] == pytest.approx(recall_score(y, a, average="macro"))
    assert guard["champion"] == pytest.approx(recall_score(y, b, average="macro"))
    assert guard["passed"] and guard["limit"] == 0.5
    default = decide(pairs, "sequence_classification", "accuracy", policy(),
                     {"version": "v2"}, {"version": "v1"}, LABELS)  # fmt: skip
    f1 = next(g for g in default.guards if g["metric"] == "f1_macro")
    assert f1["worse_by"] == pytest.approx(f1_score(y, b, average="macro") - f1_score(y, a, average="macro"))


def test_regression_has_no_default_guards_but_takes_set_ones() -> None:
    rng = np.random.default_rng(2)
    actual = rng.normal(size=300)
    pairs = pd.DataFrame({"source_row": np.arange(300), "actual": actual,
                          "predicted": actual + rng.normal(scale=0.3, size=300),
                          "predicted_champion": actual + rng.normal(scale=0.6, size=300)})  # fmt: skip
    d = decide(pairs, "regression", "mse", policy(), {"version": "v2"}, {"version": "v1"})
    assert d.promote and d.guards == [] and d.min_class_recall is None and d.collapsed == []
    guarded_policy = params.parse({"task": "regression", "promote": {"guards": {"pearson": 0.0}}}).promote
    guarded = decide(pairs, "regression", "mse", guarded_policy, {"version": "v2"}, {"version": "v1"})
    assert guarded.guards[0]["metric"] == "pearson" and guarded.guards[0]["passed"]
    with pytest.raises(
        PipelineError, match=r"promote\.guards\.recall_macro: task regression does not report"
    ):
        params.parse({"task": "regression", "promote": {"guards": {"recall_macro": 0.01}}})


def test_lower_is_better_metric_promotes_the_smaller_error() -> None:
    rng = np.random.default_rng(2)
    actual = rng.normal(size=300)
    pairs = pd.DataFrame(
        {
            "source_row": np.arange(300),
            "actual": actual,
            "predicted": actual + rng.normal(scale=0.3, size=300),
            "predicted_champion": actual + rng.normal(scale=0.6, size=300),
        }
    )
    for metric in ("mse", "rmse", "mae"):
        d = decide(pairs, "regression", metric, policy(), {"version": "v2"}, {"version": "v1"})
        assert d.challenger["score"] < d.champion["score"]
        assert d.improvement == pytest.approx(d.champion["score"] - d.challenger["score"])
        assert d.promote and d.low > 0, metric
        assert "lower is better" in d.reason
    swapped = pairs.rename(columns={"predicted": "predicted_champion", "predicted_champion": "predicted"})
    assert not decide(swapped, "regression", "rmse", policy(), {"version": "v2"}, {"version": "v1"}).promote


def test_first_version_takes_an_empty_stage() -> None:
    d = decide(
        None, "sequence_classification", "accuracy", policy(), {"version": "v0.1.0", "score": 0.8}, None
    )
    assert d.promote and d.champion is None and d.low is None
    assert "no version is in stage 'prod'" in d.reason


def test_token_tasks_resample_sentences() -> None:
    rows = []
    for sentence in range(1, 41):
        for word, tag in enumerate(["B-PER", "I-PER", "O", "B-LOC"], start=1):
            champion = tag if sentence % 2 else "O"
            rows.append({"source_row": sentence, "word": word, "actual": tag, "predicted": tag,
                         "predicted_champion": champion})  # fmt: skip
    n, score = scorer(pd.DataFrame(rows), "token_classification", "f1", [], "iob2")
    assert n == 40
    # The champion finds the 2 entities of every other sentence: precision 1, recall 1/2.
    assert score(np.arange(n), "predicted") == 1.0
    assert score(np.arange(n), "predicted_champion") == pytest.approx(2 / 3)
    # A resample of sentences the champion got right scores it 1.0: sentences move as wholes.
    assert score(np.array([0, 2, 2, 4]), "predicted_champion") == 1.0


def test_percentile_interval() -> None:
    assert percentile_interval(np.arange(1001, dtype=float), 0.9) == pytest.approx((50.0, 950.0))


def test_run_overrides_are_checked_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("promote:\n  min_delta: 0.01\n")
    assert params.read(path).promote.min_delta == 0.01
    got = params.read(path, {"promote": {"require_significant": False}}).promote
    assert not got.require_significant and got.min_delta == 0.01 and got.resamples == 1000
    with pytest.raises(PipelineError, match="with the run's overrides.*promote.resamples: expected 1000"):
        params.read(path, {"promote": {"resamples": 10}})
