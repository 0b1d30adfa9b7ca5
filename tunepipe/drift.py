"""The drift report: this run's data against the data of the version in production.

Four measures, each a number in a documented range so that `drift:` limits can fail a run:

- label shift: total variation distance between the label shares (tags, word by word, for token
  tasks), with a chi-square test of the two count tables (scipy.stats.chi2_contingency); for
  regression the two-sample KS statistic of the target (scipy.stats.ks_2samp);
- length: the KS statistic of words per row, and the population stability index (PSI, ten bins
  on the production data's deciles) as the usual monitoring figure;
- vocabulary: the share of the new rows' words (lower-cased `\\w+`) never seen in the production
  version's training rows, and the share of sub-word tokens the model's tokenizer maps to its
  unknown token, new rows against production's;
- the production model's score on this run's labelled test rows (its predictions as promotion
  makes them: reused when the test split is unchanged, else re-scored), against the score its
  own registration recorded, and on the test rows it never saw, if any.

scipy's tests are enough for these; Evidently would compute similar figures but brings a large
dependency tree (its own UI, plotly, nltk) into every worker for four numbers.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunepipe import catalog
from tunepipe.errors import PipelineError
from tunepipe.metrics import greater_is_better

WORD = re.compile(r"\w+")
SPLITS = ("train", "validation", "test")
# limit key -> (the report's value, what it measures)
LIMITS = {
    "max_label_shift": ("label_shift", "label shift"),
    "max_length_ks": ("length_ks", "text length KS statistic"),
    "max_oov_rate": ("oov_rate", "out-of-vocabulary word share"),
    "max_unk_rate": ("unk_rate", "unknown-token share"),
    "max_score_drop": ("score_drop", "production model's score drop"),
}


# --- statistics on rows ------------------------------------------------------------------------


def texts(frame: pd.DataFrame, task: str) -> list[str]:
    """Each row's text as one string (both texts of a pair; the words of a token task)."""
    if task == "token_classification":
        return [" ".join(map(str, tokens)) for tokens in frame["tokens"]]
    text = frame["text"].astype(str)
    if "text_pair" in frame.columns:
        text = text + " " + frame["text_pair"].astype(str)
    return text.tolist()


def labels(frame: pd.DataFrame, task: str) -> list[Any]:
    if task == "token_classification":
        return [str(t) for tags in frame["tags"] for t in tags]
    if task == "regression":
        return frame["label"].astype(float).tolist()
    return frame["label"].astype(str).tolist()


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def label_shift(reference: list[Any], new: list[Any], task: str) -> dict[str, Any]:
    """Total variation distance of the label shares and a chi-square test; KS for a target."""
    from scipy import stats

    if task == "regression":
        ks = stats.ks_2samp(reference, new)
        return {"measure": "ks", "value": float(ks.statistic), "p_value": float(ks.pvalue)}
    ref, cur = Counter(reference), Counter(new)
    names = sorted(set(ref) | set(cur))
    ref_share = {k: ref[k] / max(len(reference), 1) for k in names}
    new_share = {k: cur[k] / max(len(new), 1) for k in names}
    tvd = 0.5 * sum(abs(ref_share[k] - new_share[k]) for k in names)
    p_value = 1.0
    if len(names) > 1 and reference and new:
        table = np.array([[ref[k] for k in names], [cur[k] for k in names]])
        p_value = float(stats.chi2_contingency(table).pvalue)
    return {
        "measure": "total variation distance",
        "value": float(tvd),
        "p_value": p_value,
        "shares": {k: {"prod": ref_share[k], "new": new_share[k]} for k in names},
    }


def psi(reference: np.ndarray, new: np.ndarray, bins: int = 10) -> float:
    """Population stability index on the reference's quantile bins (0.1: some shift, 0.25: large)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.all(new == reference[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    eps = 1e-4
    ref = np.histogram(reference, edges)[0] / len(reference) + eps
    cur = np.histogram(new, edges)[0] / len(new) + eps
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def length_shift(reference: list[str], new: list[str]) -> dict[str, Any]:
    from scipy import stats

    ref = np.array([len(words(t)) for t in reference], dtype=float)
    cur = np.array([len(words(t)) for t in new], dtype=float)
    ks = stats.ks_2samp(ref, cur)
    return {
        "ks": float(ks.statistic),
        "p_value": float(ks.pvalue),
        "psi": psi(ref, cur),
        "median_words": {"prod": float(np.median(ref)), "new": float(np.median(cur))},
    }


def oov_rate(vocabulary: set[str], new: Iterable[str]) -> float:
    """Share of the new texts' words (every occurrence) that the vocabulary lacks."""
    total = unseen = 0
    for text in new:
        for word in words(text):
            total += 1
            unseen += word not in vocabulary
    return unseen / total if total else 0.0


def unk_rate(tokenizer: Any, rows: list[str]) -> float:
    """Share of sub-word tokens that are the tokenizer's unknown token (0 for byte-level ones)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not rows:
        return 0.0
    ids = tokenizer(rows, add_special_tokens=False, truncation=False)["input_ids"]
    total = sum(len(i) for i in ids)
    return sum(i.count(unk) for i in ids) / total if total else 0.0


def statistics(
    reference: pd.DataFrame,
    reference_train: pd.DataFrame,
    new: pd.DataFrame,
    task: str,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """The data measures: `reference` the production version's rows, `reference_train` the rows
    it trained on (its vocabulary), `new` this run's rows."""
    ref_text, new_text = texts(reference, task), texts(new, task)
    vocabulary = {w for t in texts(reference_train, task) for w in words(t)}
    known = set(ref_text)
    out: dict[str, Any] = {
        "rows": {"prod": len(reference), "new": len(new), "unseen": sum(t not in known for t in new_text)},
        "labels": label_shift(labels(reference, task), labels(new, task), task),
        "length": length_shift(ref_text, new_text),
        "oov_rate": oov_rate(vocabulary, new_text),
    }
    if tokenizer is not None:
        out["unk"] = {"prod": unk_rate(tokenizer, ref_text), "new": unk_rate(tokenizer, new_text)}
    return out


def values(report: dict[str, Any]) -> dict[str, float | None]:
    """The figures `drift:` limits apply to (None where not measured)."""
    score = report.get("score") or {}
    return {
        "label_shift": (report.get("labels") or {}).get("value"),
        "length_ks": (report.get("length") or {}).get("ks"),
        "oov_rate": report.get("oov_rate"),
        "unk_rate": (report.get("unk") or {}).get("new"),
        "score_drop": score.get("drop"),
    }


def over_limits(report: dict[str, Any], limits: Any) -> list[str]:
    """One phrase per exceeded limit, naming the drift key that allows more."""
    found = values(report)
    out = []
    for key, (name, what) in LIMITS.items():
        limit, value = getattr(limits, key), found[name]
        if limit is not None and value is not None and value > limit:
            out.append(f"{what} {value:.4f} is above drift.{key} {limit}")
    return out


def check(report: dict[str, Any], limits: Any) -> None:
    """Fail the run when a measure is above its `drift:` limit (null limits only report)."""
    over = over_limits(report, limits)
    if over:
        prod = report.get("prod") or {}
        raise PipelineError(
            f"data drift against {prod.get('version', 'the production version')}: {'; '.join(over)} "
            "(raise the limit in params.yaml's drift: section, or null to report only)"
        )


# --- against the registry ----------------------------------------------------------------------


def read_splits(read: Any, splits: Iterable[str] = SPLITS) -> pd.DataFrame | None:
    """Parquet splits through a reader (report.Reader), concatenated; None when one is missing."""
    frames = []
    for split in splits:
        raw = read((catalog.SPLITS / f"{split}.parquet").as_posix())
        if raw is None:
            return None
        frames.append(pd.read_parquet(io.BytesIO(raw)))
    return pd.concat(frames, ignore_index=True)


def prod_reader(root: Path, tag: str) -> Any:
    """Files of the production version; its data/splits fetched from the DVC remote when this
    checkout's cache lacks them (a worker's fresh clone pulls today's outputs only)."""
    from tunepipe import dvcrepo, registry

    read = registry.tag_reader(root, tag)
    if read((catalog.SPLITS / "train.parquet").as_posix()) is None:
        with dvcrepo.open_repo(root) as repo, contextlib.suppress(Exception):
            if repo.config["core"].get("remote"):
                repo.fetch(targets=[str(catalog.SPLITS)], revs=[tag], workspace=False)
        read = registry.tag_reader(root, tag)
    return read


def prod_score(root: Path, name: str, prod: str, record: dict[str, Any], task: str, metric: str,
               unseen: set[int]) -> dict[str, Any]:  # fmt: skip
    """The production model on this run's test rows (promotion's predictions), against the score
    its registration recorded on its own test rows; and on the test rows it never saw."""
    from tunepipe import promotion

    frame, how = promotion.champion_predictions(root, name, prod, task)
    pairs = frame.assign(predicted_champion=frame["predicted"])
    info = catalog.read_info(root / catalog.TOKENIZED)
    args = (task, metric, info.get("labels") or [], info.get("tag_scheme") or "none")
    n, score = promotion.scorer(pairs, *args)
    now = float(score(np.arange(n), "predicted"))
    recorded = (record.get("metrics") or {}).get(metric)
    sign = 1.0 if greater_is_better(metric) else -1.0
    out: dict[str, Any] = {
        "metric": metric,
        "recorded": recorded,
        "on_new_rows": now,
        "rows": len(frame),
        "scored": how,
        "drop": None if recorded is None else sign * (float(recorded) - now),
    }
    new_only = pairs[pairs["source_row"].isin(unseen)]
    if len(new_only) and len(new_only) < len(pairs):
        m, part = promotion.scorer(new_only, *args)
        out["on_unseen_rows"] = {"value": float(part(np.arange(m), "predicted")), "rows": len(new_only)}
    return out


def report(root: Path, p: Any, score: bool = True) -> dict[str, Any]:
    """The drift report of this checkout's data against the version in `promote.stage`, with its
    headline and table as shown (the run report renders them as recorded)."""
    found = measure(root, p, score)
    return found | {"headline": headline(found), "table": [list(row) for row in lines(found)]}


def measure(root: Path, p: Any, score: bool = True) -> dict[str, Any]:
    from tunepipe import dvcrepo, promotion, registry
    from tunepipe.dvcrepo import lock_outputs

    root = Path(root).resolve()
    name, stage = p.register.name, p.promote.stage
    prod = registry.version_in_stage(root, name, stage)
    if prod is None:
        return {"prod": None, "note": f"no version is in stage {stage!r}: nothing to compare with"}
    tag = registry.registered_tag(root, name, prod)
    splits = str(catalog.SPLITS)
    then = (lock_outputs(dvcrepo.read_lock(root, tag)).get(splits) or {}).get("md5")
    now = (lock_outputs(dvcrepo.read_lock(root)).get(splits) or {}).get("md5")
    base: dict[str, Any] = {"prod": {"version": prod, "tag": tag, "stage": stage, "splits_md5": then}}
    if then is not None and then == now:
        return base | {"note": f"this run's data is the data of {tag} (data/splits {now[:12]}): no drift"}
    read = prod_reader(root, tag)
    reference = read_splits(read)
    reference_train = read_splits(read, ["train"])
    if reference is None or reference_train is None:
        return base | {
            "note": f"the data of {tag} is neither in the DVC cache nor in the remote: not compared"
        }
    new = pd.concat(
        [pd.read_parquet(root / catalog.SPLITS / f"{s}.parquet") for s in SPLITS], ignore_index=True
    )
    task = catalog.read_info(root / catalog.TOKENIZED).get("task", p.task)
    out = base | statistics(reference, reference_train, new, task, _tokenizer(root))
    if score:
        test = pd.read_parquet(root / catalog.SPLITS / "test.parquet")
        known = set(texts(reference, task))
        unseen = {
            int(r) for r, t in zip(test["source_row"], texts(test, task), strict=True) if t not in known
        }
        record = registry.read_lineage(root, name, prod)
        metric = promotion.compared_metric(root, p.promote, p)
        try:
            out["score"] = prod_score(root, name, prod, record, task, metric, unseen)
        except PipelineError as exc:  # reported, not fatal: promotion meets the same error and says it
            out["score_note"] = f"the production model was not scored: {exc}"
    out["limits"] = {key: getattr(p.drift, key) for key in LIMITS}
    out["over"] = over_limits(out, p.drift)
    return out


def _tokenizer(root: Path) -> Any:
    """This run's tokenizer (saved with its model): the one that would read the new rows."""
    from transformers import AutoTokenizer

    path = root / catalog.MODEL
    if not path.is_dir():
        return None
    with contextlib.suppress(Exception):
        return AutoTokenizer.from_pretrained(str(path))
    return None


# --- how it is shown ---------------------------------------------------------------------------


def lines(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, production, new, limit) rows, shared by the run report and the Prefect artifact."""
    if report.get("prod") is None or "labels" not in report:
        return []
    limits = report.get("limits") or {}

    def limit(key: str) -> str:
        value = limits.get(key)
        return "-" if value is None else f"{value}"

    labels_, length, rows_ = report["labels"], report["length"], report["rows"]
    medians = length["median_words"]
    rows = [
        ("rows", str(rows_["prod"]), f"{rows_['new']} ({rows_['unseen']} unseen)", ""),
        (f"label shift ({labels_['measure']}, p {labels_['p_value']:.3g})", "", f"{labels_['value']:.4f}",
         limit("max_label_shift")),
        (f"words per row: KS (p {length['p_value']:.3g}), PSI {length['psi']:.4f}",
         f"median {medians['prod']:g}", f"{length['ks']:.4f} (median {medians['new']:g})",
         limit("max_length_ks")),
        ("out-of-vocabulary words", "0", f"{report['oov_rate']:.4f}", limit("max_oov_rate")),
    ]  # fmt: skip
    if report.get("unk"):
        rows.append(("unknown tokens", f"{report['unk']['prod']:.4f}", f"{report['unk']['new']:.4f}",
                     limit("max_unk_rate")))  # fmt: skip
    if report.get("score_note"):
        rows.append(("production model's score", "", report["score_note"], limit("max_score_drop")))
    score = report.get("score")
    if score:
        recorded = "-" if score["recorded"] is None else f"{score['recorded']:.4f}"
        drop = "" if score["drop"] is None else f", drop {score['drop']:+.4f}"
        rows.append(
            (f"production model's {score['metric']} ({score['scored']})", recorded,
             f"{score['on_new_rows']:.4f} on {score['rows']} test rows{drop}", limit("max_score_drop"))
        )  # fmt: skip
        unseen = score.get("on_unseen_rows")
        if unseen:
            rows.append(
                ("... on the test rows it never saw", "", f"{unseen['value']:.4f} on {unseen['rows']}", "")
            )
    return rows


def headline(report: dict[str, Any]) -> str:
    """One line for the log and the report's heading."""
    prod = report.get("prod")
    if prod is None or "labels" not in report:
        return f"drift: {report.get('note', 'not measured')}"
    over = report.get("over") or []
    limited = any(v is not None for v in (report.get("limits") or {}).values())
    state = "; ".join(over) if over else "within limits" if limited else "report only (no drift limits set)"
    return (
        f"drift against {prod['tag']}: label shift {report['labels']['value']:.4f}, length KS "
        f"{report['length']['ks']:.4f}, OOV {report['oov_rate']:.4f}: {state}"
    )
