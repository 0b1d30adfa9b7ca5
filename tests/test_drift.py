"""The drift report's statistics on synthetic rows (the same distribution against a shifted one),
and `drift:` limits failing a run with the key that allows more."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tunepipe import drift, params
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit

WORDS = [f"w{i}" for i in range(300)]


def rows(
    n: int, seed: int, pos: float = 0.5, words: tuple[int, int] = (5, 15), vocab: int = 200
) -> pd.DataFrame:
    """Reviews of `words` words drawn from the first `vocab` words; `pos` the share labelled pos."""
    rng = np.random.default_rng(seed)
    text = [" ".join(rng.choice(WORDS[:vocab], size=rng.integers(*words))) for _ in range(n)]
    label = np.where(rng.random(n) < pos, "pos", "neg")
    return pd.DataFrame({"source_row": np.arange(n), "text": text, "label": label})


def test_same_distribution_shows_no_drift() -> None:
    ref, new = rows(2000, 1), rows(2000, 2)
    found = drift.statistics(ref, ref, new, "sequence_classification")
    assert found["labels"]["value"] < 0.03 and found["labels"]["p_value"] > 0.01
    assert found["length"]["ks"] < 0.05 and found["length"]["psi"] < 0.02
    assert found["oov_rate"] == 0.0
    assert found["rows"] == {"prod": 2000, "new": 2000, "unseen": 2000}
    assert drift.over_limits(found, params.DriftParams(max_label_shift=0.05, max_length_ks=0.1)) == []


def test_shifted_distributions_are_measured() -> None:
    ref = rows(2000, 1)
    new = rows(2000, 2, pos=0.9, words=(20, 40), vocab=300)
    found = drift.statistics(ref, ref, new, "sequence_classification")
    # label shares about 0.5/0.5 -> 0.9/0.1: total variation distance about 0.4
    moved = (new["label"] == "pos").mean() - (ref["label"] == "pos").mean()
    assert found["labels"]["value"] == pytest.approx(moved) and 0.3 < moved < 0.5
    assert found["labels"]["p_value"] < 1e-6
    assert found["labels"]["shares"]["pos"]["new"] == pytest.approx(0.9, abs=0.02)
    assert found["length"]["ks"] == 1.0 and found["length"]["psi"] > 1  # every new row is longer
    assert found["oov_rate"] == pytest.approx(1 / 3, abs=0.02)  # a third of the words are new
    # One row seen before is not counted as unseen.
    assert drift.statistics(ref, ref, ref.head(3), "sequence_classification")["rows"]["unseen"] == 0


def test_regression_target_and_token_tags() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"text": ["a b c"] * 500, "label": rng.normal(size=500)})
    new = pd.DataFrame({"text": ["a b c"] * 500, "label": rng.normal(loc=1.0, size=500)})
    found = drift.statistics(ref, ref, new, "regression")
    assert found["labels"]["measure"] == "ks" and found["labels"]["value"] > 0.3
    tokens = pd.DataFrame(
        {"tokens": [["Ann", "ran"], ["Bo", "sat"]], "tags": [["B-PER", "O"], ["B-PER", "O"]]}
    )
    shifted = pd.DataFrame({"tokens": [["Oslo", "rains"]], "tags": [["B-LOC", "O"]]})
    found = drift.statistics(tokens, tokens, shifted, "token_classification")
    assert found["labels"]["value"] == pytest.approx(0.5)  # half the tags moved from B-PER to B-LOC
    assert found["oov_rate"] == 1.0


def test_unk_rate_counts_the_tokenizers_unknown_token(tiny_bert) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    assert drift.unk_rate(tok, ["a good film"]) == 0.0
    assert drift.unk_rate(tok, ["\u4e2d\u6587 \u65e5\u672c"]) > 0  # characters the vocabulary lacks


def test_psi_is_zero_for_the_same_sample_and_grows_with_shift() -> None:
    x = np.random.default_rng(3).normal(size=5000)
    assert drift.psi(x, x) == pytest.approx(0.0, abs=1e-9)
    assert drift.psi(x, x + 0.2) < drift.psi(x, x + 1.0)


def test_limits_fail_the_run_naming_the_drift_key() -> None:
    ref = rows(1000, 1)
    found = drift.statistics(ref, ref, rows(1000, 2, pos=0.9), "sequence_classification")
    found["prod"] = {"version": "v0.1.0", "tag": "model@v0.1.0"}
    found["score"] = {"drop": 0.2}
    limits = params.parse({"drift": {"max_label_shift": 0.1, "max_score_drop": 0.05}}).drift
    with pytest.raises(PipelineError) as info:
        drift.check(found, limits)
    message = str(info.value)
    assert message.startswith("data drift against v0.1.0: label shift 0.")
    assert "is above drift.max_label_shift 0.1" in message
    assert "production model's score drop 0.2000 is above drift.max_score_drop 0.05" in message
    assert "\n" not in message
    drift.check(found, params.DriftParams())  # null limits: report only
    assert "report only" in drift.headline(found | {"limits": {}})


def test_drift_limits_are_checked_when_read() -> None:
    with pytest.raises(PipelineError, match=r"drift\.max_oov_rate: expected between 0 and 1, or null"):
        params.parse({"drift": {"max_oov_rate": 2}})
