"""Promotion: does a newly registered version beat the one in the production stage?

The challenger (the model just evaluated) and the champion (the version GTO has in
`promote.stage`) are scored on the same test examples, and a paired bootstrap (the same resampled
example indices for both, numpy's seeded Generator) gives the improvement in the compared metric
with a percentile interval. Paired, because both models err on the same hard examples: the
interval of the difference is much narrower than two separate intervals would suggest.

The champion's per-example predictions come from its own evaluate run (reports/test_predictions.csv
in the DVC cache, pinned by its tag's dvc.lock) when its tokenized test split has the hash of
today's; otherwise (new test rows, another tokenizer) its model is fetched and re-scored on today's
test split, so both numbers always describe the same examples.

The decision is made before the registration commit (tunepipe.registry.register calls back with
the new version number), so the lineage record committed with the version holds it; the GTO
stage tags are assigned right after the version tag.

`improvement`, `low` and `high` are oriented so that positive means the challenger is better,
also for lower-is-better metrics (mse, rmse, mae: the champion's value minus the challenger's).

Noise does not promote: by default the interval's lower bound must clear `min_delta`, guard
metrics (macro recall and F1) may not worsen by more than `promote.guards` allows, and a class the
challenger stops finding (recall under `promote.min_class_recall` where the champion's is not), or
one class predicted for every row, blocks promotion. Every check is made on the same paired rows,
and the decision records which rows: their number and the tokenized test split's DVC hash.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunepipe import catalog
from tunepipe.errors import PipelineError
from tunepipe.metrics import EXTRA_METRICS, greater_is_better, main_metric, regression_scores, sequence_scores
from tunepipe.params import PromoteParams
from tunepipe.report import promotion_rows as rows_line

# Metrics that are a mean over examples: the bootstrap averages per-example values (vectorised).
MEAN_METRICS = ("accuracy", "mse", "mae")


@dataclass
class Decision:
    """What the flow decided, as recorded in lineage, returned by the flow and shown as an artifact."""

    promote: bool
    reason: str
    stage: str
    metric: str
    challenger: dict[str, Any]  # {version, score}
    champion: dict[str, Any] | None  # {version, score, scored: reused | re-scored}; None: stage empty
    improvement: float | None = None  # challenger better by this much (metric's own direction)
    low: float | None = None
    high: float | None = None
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0
    min_delta: float = 0.0
    require_significant: bool = True
    examples: int | None = None
    # The rows both models were scored on: {path, md5 (dvc.lock), rows}.
    test_split: dict[str, Any] | None = None
    # [{metric, challenger, champion, worse_by, limit, passed}] on the same rows.
    guards: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    min_class_recall: float | None = None
    # [{label, recall, champion_recall, rows}]: classes the challenger stopped finding.
    collapsed: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Short reasons promotion was refused (empty when promoted).
    blocked: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def outcome(decision: dict[str, Any]) -> str:
    """`promoted to prod` or `not promoted to prod`: how logs and the command line say it."""
    return f"{'promoted' if decision['promote'] else 'not promoted'} to {decision['stage']}"


def summary(decision: dict[str, Any]) -> str:
    """One line for `tunepipe versions`: the outcome, the change with its interval or why not, and rows."""
    head = outcome(decision)
    champion = decision.get("champion")
    if not champion:
        return f"{head} (no version held it)"
    change = (
        f"{decision['metric']} {decision['improvement']:+.4f} "
        f"[{decision['low']:+.4f}, {decision['high']:+.4f}] vs {champion['version']}"
    )
    blocked = decision.get("blocked") or ([] if decision["promote"] else [decision.get("reason", "")])
    why = f"; {'; '.join(blocked)}" if blocked else ""
    return f"{head}: {change} on {rows_line(decision)}{why}"


def default_guards(task: str, scheme: str = "none") -> dict[str, float]:
    """promote.guards when null: macro recall and F1 for classification labels, entity recall and
    F1 for tagged entities; none for regression (a regression has no classes to drop)."""
    if task == "regression":
        return {}
    if task == "token_classification" and scheme != "none":
        return {"recall": 0.01, "f1": 0.01}
    return {"recall_macro": 0.01, "f1_macro": 0.01}


def check_guards(
    pairs: pd.DataFrame, task: str, guards: dict[str, float], labels: list[str], scheme: str
) -> list[dict[str, Any]]:
    """Each guard metric for both models on the same rows, and whether the challenger's worsening
    (in the metric's own direction) stays within its limit."""
    out = []
    for metric, limit in guards.items():
        n, score = scorer(pairs, task, metric, labels, scheme)
        full = np.arange(n)
        ours, theirs = float(score(full, "predicted")), float(score(full, "predicted_champion"))
        worse = (theirs - ours) if greater_is_better(metric) else (ours - theirs)
        out.append(
            {
                "metric": metric,
                "challenger": ours,
                "champion": theirs,
                "worse_by": worse,
                "limit": limit,
                "passed": bool(worse <= limit + 1e-12),
            }
        )
    return out


def collapsed_classes(pairs: pd.DataFrame, floor: float) -> list[dict[str, Any]]:
    """Classes whose recall the challenger drops below `floor` while the champion's is at or above it."""
    actual = pairs["actual"].astype(str)
    found = []
    for label in sorted(actual.unique()):
        mine = actual == label
        ours = float((pairs.loc[mine, "predicted"].astype(str) == label).mean())
        theirs = float((pairs.loc[mine, "predicted_champion"].astype(str) == label).mean())
        if ours < floor <= theirs:
            found.append({"label": label, "recall": ours, "champion_recall": theirs, "rows": int(mine.sum())})
    return found


def single_class(pairs: pd.DataFrame) -> str | None:
    """The one class a challenger predicts for every row, when the rows hold more than one."""
    predicted = pairs["predicted"].astype(str).unique()
    if len(predicted) == 1 and pairs["actual"].astype(str).nunique() > 1:
        return str(predicted[0])
    return None


# --- per-example scoring -----------------------------------------------------------------------


def read_predictions(path: Path, task: str) -> pd.DataFrame:
    """reports/test_predictions.csv as evaluate wrote it; labels stay text ('1.0' stays '1.0')."""
    if task == "regression":
        return pd.read_csv(path)
    return pd.read_csv(path, dtype={"actual": str, "predicted": str, "token": str}, keep_default_na=False)


def keys(task: str) -> list[str]:
    return ["source_row", "word"] if task == "token_classification" else ["source_row"]


def pair(challenger: pd.DataFrame, champion: pd.DataFrame, task: str) -> pd.DataFrame:
    """The two models' predictions side by side on the challenger's test rows (keys and labels must
    agree: otherwise they were not scored on the same examples)."""
    on = keys(task)
    merged = challenger[[*on, "actual", "predicted"]].merge(
        champion[[*on, "actual", "predicted"]], on=on, how="left", suffixes=("", "_champion")
    )
    missing = merged["predicted_champion"].isna()
    if task == "regression":
        differs = ~np.isclose(merged["actual"], merged["actual_champion"], rtol=0, atol=1e-6)
    else:
        differs = merged["actual"].astype(str) != merged["actual_champion"].astype(str)
    if missing.any() or differs.any():
        bad = merged[missing | differs].head(3)
        raise PipelineError(
            "the champion's test predictions do not cover the challenger's test examples "
            f"({int(missing.sum())} missing, {int((differs & ~missing).sum())} with another label; "
            f"e.g. source_row {', '.join(map(str, bad['source_row']))})"
        )
    return merged


def scorer(
    pairs: pd.DataFrame, task: str, metric: str, labels: list[str], scheme: str = "none"
) -> tuple[int, Callable[[np.ndarray, str], float]]:
    """How many resampling units there are (examples; sentences for token tasks), and the metric
    on a resample of them: `score(indices, "predicted" | "predicted_champion")`."""
    if task == "regression":
        actual = pairs["actual"].to_numpy(float)
        cols = {c: pairs[c].to_numpy(float) for c in ("predicted", "predicted_champion")}
        return len(pairs), lambda idx, col: regression_scores(actual[idx], cols[col][idx])[metric]
    if task == "token_classification":
        from tunepipe.metrics import token_scores

        groups = [g for _, g in pairs.sort_values(keys(task)).groupby("source_row", sort=True)]
        refs = [g["actual"].tolist() for g in groups]
        preds = {c: [g[c].tolist() for g in groups] for c in ("predicted", "predicted_champion")}

        def tokens(idx: np.ndarray, col: str) -> float:
            return float(token_scores([refs[i] for i in idx], [preds[col][i] for i in idx], scheme)[metric])

        return len(groups), tokens
    index = {name: i for i, name in enumerate(labels)}
    for name in pd.unique(pairs[["actual", "predicted", "predicted_champion"]].to_numpy().ravel()):
        index.setdefault(str(name), len(index))
    names = list(index)
    ref = pairs["actual"].map(index).to_numpy(int)
    ids = {c: pairs[c].astype(str).map(index).to_numpy(int) for c in ("predicted", "predicted_champion")}
    extras = [metric] if metric in EXTRA_METRICS else []
    return len(pairs), lambda idx, col: sequence_scores(ref[idx], ids[col][idx], names, extras)[metric]


def per_example(pairs: pd.DataFrame, task: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-example values whose mean is the metric (accuracy, mse, mae), or None."""
    if metric not in MEAN_METRICS or task == "token_classification":
        return None
    if task == "regression":
        actual = pairs["actual"].to_numpy(float)
        err = [pairs[c].to_numpy(float) - actual for c in ("predicted", "predicted_champion")]
        values = [e**2 if metric == "mse" else np.abs(e) for e in err]
        return values[0], values[1]
    if metric != "accuracy":
        return None
    actual = pairs["actual"].astype(str).to_numpy()
    return (
        (pairs["predicted"].astype(str).to_numpy() == actual).astype(float),
        (pairs["predicted_champion"].astype(str).to_numpy() == actual).astype(float),
    )


# --- the paired bootstrap ----------------------------------------------------------------------


def paired_bootstrap(
    n: int,
    score: Callable[[np.ndarray, str], float],
    sign: float,
    resamples: int,
    seed: int,
    means: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """`resamples` improvements of the challenger over the champion, each on one resample of the
    n units (drawn with replacement, the same indices for both models)."""
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    diff = None if means is None else means[0] - means[1]
    for r in range(resamples):
        idx = rng.integers(0, n, size=n)
        if diff is not None:
            out[r] = sign * diff[idx].mean()
        else:
            out[r] = sign * (score(idx, "predicted") - score(idx, "predicted_champion"))
    return out


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def decide(
    pairs: pd.DataFrame | None,
    task: str,
    metric: str,
    policy: PromoteParams,
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    labels: list[str] | None = None,
    scheme: str = "none",
    test_split: dict[str, Any] | None = None,
) -> Decision:
    """The policy applied to paired predictions (None with no champion: the stage is empty).

    Promotes when the interval's lower bound (the estimate, with require_significant false) clears
    min_delta, no guard metric worsens beyond its limit, and no class collapses."""
    classes = task == "sequence_classification" or (task == "token_classification" and scheme == "none")
    common = {
        "stage": policy.stage,
        "metric": metric,
        "confidence": policy.confidence,
        "resamples": policy.resamples,
        "seed": policy.seed,
        "min_delta": policy.min_delta,
        "require_significant": policy.require_significant,
        "min_class_recall": policy.min_class_recall if classes else None,
    }
    if champion is None or pairs is None:
        return Decision(
            promote=True,
            reason=f"no version is in stage {policy.stage!r} yet: the first to pass its thresholds takes it",
            challenger=challenger,
            champion=None,
            test_split=test_split,
            **common,
        )
    test_split = (test_split or {}) | {"rows": len(pairs)}
    n, score = scorer(pairs, task, metric, labels or [], scheme)
    full = np.arange(n)
    challenger = challenger | {"score": score(full, "predicted")}
    champion = champion | {"score": score(full, "predicted_champion")}
    sign = 1.0 if greater_is_better(metric) else -1.0
    improvement = sign * (challenger["score"] - champion["score"])
    diffs = paired_bootstrap(n, score, sign, policy.resamples, policy.seed, per_example(pairs, task, metric))
    low, high = percentile_interval(diffs, policy.confidence)
    criterion, what = (
        (low, "the interval's lower bound")
        if policy.require_significant
        else (improvement, "the improvement")
    )
    cleared = criterion > policy.min_delta
    blocked = [] if cleared else [f"{what[4:]} {criterion:+.4f} not above min_delta {policy.min_delta}"]
    limits = default_guards(task, scheme) if policy.guards is None else policy.guards
    guards = check_guards(pairs, task, limits, labels or [], scheme)
    for g in guards:
        if not g["passed"]:
            blocked.append(
                f"guard {g['metric']}: {g['challenger']:.4f} vs {champion['version']}'s {g['champion']:.4f}, "
                f"worse by {g['worse_by']:.4f} (promote.guards.{g['metric']} allows {g['limit']})"
            )
    collapsed: list[dict[str, Any]] = []
    if classes and policy.min_class_recall is not None:
        only = single_class(pairs)
        if only is not None:
            blocked.append(f"predicts {only!r} for every row")
        collapsed = collapsed_classes(pairs, policy.min_class_recall)
        for c in collapsed:
            blocked.append(
                f"class {c['label']!r} collapsed: recall {c['recall']:.2f} vs {champion['version']}'s "
                f"{c['champion_recall']:.2f} (promote.min_class_recall {policy.min_class_recall})"
            )
    promote = not blocked
    direction = "" if sign > 0 else " (lower is better)"
    reason = (
        f"{what} {criterion:+.4f} in {metric}{direction} "
        f"{'clears' if cleared else 'does not clear'} min_delta {policy.min_delta} "
        f"({policy.confidence:.0%} interval {low:+.4f} to {high:+.4f}, {policy.resamples} paired resamples"
        f" of {n} test examples)"
    )
    guard_text = ", ".join(f"{g['metric']} {-g['worse_by']:+.4f}" for g in guards)
    also = blocked if cleared else blocked[1:]
    if also:
        reason += "; blocked: " + "; ".join(also)
    elif guard_text:
        reason += f"; guards hold ({guard_text})"
    return Decision(
        promote=promote,
        reason=reason,
        challenger=challenger,
        champion=champion,
        improvement=improvement,
        low=low,
        high=high,
        examples=n,
        test_split=test_split,
        guards=guards,
        collapsed=collapsed,
        blocked=blocked,
        **common,
    )


# --- against the registry ----------------------------------------------------------------------


def compared_metric(root: Path, policy: PromoteParams, p: Any) -> str:
    """promote.metric, else train.metric_for_best_model, else the task's main metric."""
    if policy.metric:
        return policy.metric
    if p.train.metric_for_best_model and p.train.metric_for_best_model != "loss":
        return str(p.train.metric_for_best_model)
    info = catalog.read_info(root / catalog.TOKENIZED)
    return main_metric(info.get("task", p.task), info.get("tag_scheme") or "none")


# (checkout, champion tag, today's test split hash) -> its predictions: the drift report and the
# promotion decision of one run score the production model once.
_SCORED: dict[tuple[str, str, str], tuple[pd.DataFrame, str]] = {}


def champion_predictions(root: Path, name: str, version: str, task: str) -> tuple[pd.DataFrame, str]:
    """The champion's test predictions: reused from its evaluate run when its tokenized test split
    is today's, else its model re-scored on today's test split."""
    from tunepipe import dvcrepo, registry

    tag = registry.registered_tag(root, name, version)
    now = dvcrepo.lock_outputs(dvcrepo.read_lock(root))
    test = str(catalog.tokenized_split("test"))
    key = (str(Path(root).resolve()), tag, str((now.get(test) or {}).get("md5")))
    if key not in _SCORED:
        _SCORED[key] = _champion_predictions(root, name, version, task, tag, now)
    frame, how = _SCORED[key]
    return frame.copy(), how


def _champion_predictions(
    root: Path, name: str, version: str, task: str, tag: str, now: dict[str, Any]
) -> tuple[pd.DataFrame, str]:
    from tunepipe import dvcrepo, dvcstore

    then = dvcrepo.lock_outputs(dvcrepo.read_lock(root, tag))
    test = str(catalog.tokenized_split("test"))
    entry = then.get(str(catalog.TEST_PREDICTIONS))
    if entry and then.get(test, {}).get("md5") == now.get(test, {}).get("md5"):
        with dvcrepo.open_repo(root) as repo:
            cached = dvcstore.cache_path(repo, entry["md5"])
            if not cached.is_file() and repo.config["core"].get("remote"):
                # A worker's fresh clone pulled today's outputs only: fetch the champion's file
                # from the DVC remote (a failure leaves re-scoring, which needs only its model).
                with contextlib.suppress(Exception):
                    repo.fetch(targets=[str(catalog.TEST_PREDICTIONS)], revs=[tag], workspace=False)
        if cached.is_file():
            return read_predictions(cached, task), "reused its test predictions (same test split)"
    return rescore(root, name, version, task), "re-scored on this run's test split"


def rescore(root: Path, name: str, version: str, task: str) -> pd.DataFrame:
    """A registered version's predictions on today's data/splits/test.parquet, in evaluate's format."""
    from tunepipe import registry
    from tunepipe.inference import load_model
    from tunepipe.io import scratch_dir
    from tunepipe.prediction import PREDICTED_LABEL, PREDICTED_SCORE, predict_frame

    test = pd.read_parquet(root / catalog.SPLITS / "test.parquet")
    # The model copy lives under .dvc/tmp and goes once loaded; a killed run's is swept next time.
    with scratch_dir(Path(root) / ".dvc" / "tmp" / "tunepipe-champion") as tmp:
        model, tok = load_model(registry.fetch_model(root, name, version, Path(tmp) / "model"))
    if task == "token_classification":
        test = test.assign(tokens=test["tokens"].map(list))
        return _token_frame(test, predict_frame(model, tok, test, "tokens"))
    pair_column = "text_pair" if "text_pair" in test.columns else None
    out = predict_frame(model, tok, test, "text", pair_column)
    if task == "regression":
        return pd.DataFrame(
            {
                "source_row": test["source_row"],
                "actual": test["label"].astype(float),
                "predicted": out[PREDICTED_SCORE],
            }
        )
    return pd.DataFrame(
        {
            "source_row": test["source_row"],
            "actual": test["label"].astype(str),
            "predicted": out[PREDICTED_LABEL],
        }
    )


def _token_frame(test: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    from tunepipe.prediction import PREDICTED_TAGS

    rows = [
        {"source_row": row, "word": i + 1, "actual": str(a), "predicted": str(b)}
        for row, actual, predicted in zip(test["source_row"], test["tags"], out[PREDICTED_TAGS], strict=True)
        for i, (a, b) in enumerate(zip(list(actual), predicted, strict=True))
    ]
    return pd.DataFrame(rows, columns=["source_row", "word", "actual", "predicted"])


def test_split_entry(root: Path) -> dict[str, Any]:
    """The tokenized test split both models are scored on: its path and dvc.lock hash."""
    from tunepipe import dvcrepo

    path = str(catalog.tokenized_split("test"))
    entry = dvcrepo.lock_outputs(dvcrepo.read_lock(root)).get(path) or {}
    return {"path": path, "md5": entry.get("md5")}


def compare(root: Path, name: str, version: str, policy: PromoteParams, p: Any) -> Decision:
    """Decide whether `version` (the model evaluated in this checkout) takes `policy.stage`."""
    from tunepipe import registry

    root = Path(root).resolve()
    info = catalog.read_info(root / catalog.TOKENIZED)
    task = info.get("task", p.task)
    metric = compared_metric(root, policy, p)
    challenger_frame = read_predictions(root / catalog.TEST_PREDICTIONS, task)
    challenger = {"version": version}
    split = test_split_entry(root)
    holder = registry.version_in_stage(root, name, policy.stage)
    if holder is None:
        alone = challenger_frame.assign(predicted_champion=challenger_frame["predicted"])
        n, score = scorer(alone, task, metric, info.get("labels") or [], info.get("tag_scheme") or "none")
        challenger["score"] = score(np.arange(n), "predicted")
        return decide(None, task, metric, policy, challenger, None, test_split=split | {"rows": len(alone)})
    frame, how = champion_predictions(root, name, holder, task)
    pairs = pair(challenger_frame, frame, task)
    return decide(
        pairs,
        task,
        metric,
        policy,
        challenger,
        {"version": holder, "scored": how},
        info.get("labels") or [],
        info.get("tag_scheme") or "none",
        test_split=split,
    )
