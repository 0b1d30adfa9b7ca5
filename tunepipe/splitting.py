"""The load stage as a function of its params: canonical train/validation/test splits.

Canonical columns, with source_row (1-based row, or line of a CoNLL file, in the source split) so
that later errors can point at the user's own data:
- sequence_classification: text, [text_pair], label (a string, so 0/1 match `labels: [0, 1]`);
- regression: text, [text_pair], label (a float);
- token_classification: tokens (list of words), tags (list of tag names, one per word).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tunepipe import catalog
from tunepipe.errors import PipelineError
from tunepipe.params import LoadParams
from tunepipe.sources import read_source_splits


def to_canonical(
    df: pd.DataFrame, p: LoadParams, origin: str, task: str = "sequence_classification"
) -> pd.DataFrame:
    """Rename the configured columns, keep the group column, number the rows."""
    cols = p.columns
    if task == "token_classification":
        # CoNLL and word/TAG files are read into `tokens` and `tags` whatever load.columns says.
        text = cols.text if cols.text in df.columns or "tokens" not in df.columns else "tokens"
        label = cols.label if cols.label in df.columns or "tags" not in df.columns else "tags"
        wanted = {"tokens": text}
        if label in df.columns or "tags" in df.columns:
            wanted["tags"] = label
    else:
        wanted = {"text": cols.text, "label": cols.label}
        if cols.text_pair:
            wanted["text_pair"] = cols.text_pair
    if p.split.group_by:
        wanted["group"] = p.split.group_by
    missing = [f"{role} column {name!r}" for role, name in wanted.items() if name not in df.columns]
    if task == "token_classification" and "tags" not in wanted:
        missing.append(f"tags column {cols.label!r}")
    if missing:
        raise PipelineError(
            f"{origin}: missing {', '.join(missing)}; the file has columns {', '.join(map(str, df.columns))} "
            "(set load.columns in params.yaml)"
        )
    out = pd.DataFrame({role: df[name].to_numpy() for role, name in wanted.items()})
    fmt = df.attrs.get("format")  # set by the CoNLL and word/TAG readers
    out["source_row"] = df["source_row"].to_numpy() if fmt else range(1, len(df) + 1)
    if task == "token_classification":
        for col in ("tokens", "tags"):
            out[col] = [
                _string_list(v, col, origin, row) for v, row in zip(out[col], out["source_row"], strict=True)
            ]
        # The file line of every word, so validation errors can name it (one word per line in CoNLL).
        out["lines"] = [
            None if fmt is None or t is None else [r + i if fmt == "conll" else r for i in range(len(t))]
            for r, t in zip(out["source_row"], out["tokens"], strict=True)
        ]
    elif task == "regression":
        out["label"] = _targets(out["label"], cols.label, origin, out["source_row"])
    else:
        # Labels are compared as strings so that 0/1 in a CSV match `labels: [0, 1]` in params.
        out["label"] = label_strings(out["label"])
    if task != "token_classification":
        for role in ("text", "text_pair"):
            if role in out.columns:
                _check_text(out[role], wanted[role], origin, out["source_row"])
    return out


def _check_text(values: pd.Series, column: str, origin: str, rows: pd.Series) -> None:
    """Texts are strings (or missing, which validation reports): a number or a list in a text
    column would pass unnoticed until the tokenizer fails on it."""
    bad = [not isinstance(v, str) and not _missing(v) for v in values.tolist()]
    if any(bad):
        pairs = [(r, v) for r, v, b in zip(rows.tolist(), values.tolist(), bad, strict=True) if b][:5]
        shown = ", ".join(f"row {r}: {v!r} ({type(v).__name__})" for r, v in pairs)
        raise PipelineError(
            f"{origin}: column {column!r} must hold text; {sum(bad)} value(s) are not strings, "
            f"e.g. {shown} (set load.columns to the text column, or write these values as text)"
        )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _string_list(value: Any, column: str, origin: str, row: int) -> list[str] | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise PipelineError(f"{origin}, row {row}: {column} must be a list of strings, got {value!r}")
    return [str(v) for v in value]


def _targets(values: pd.Series, column: str, origin: str, rows: pd.Series) -> pd.Series:
    """Regression targets as floats; text that is not a number is named with its row."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        shown = ", ".join(f"row {r}: {v!r}" for r, v in zip(rows[bad][:5], values[bad][:5], strict=True))
        raise PipelineError(
            f"{origin}: column {column!r} must hold numbers for a regression task; "
            f"{int(bad.sum())} value(s) are not, e.g. {shown}"
        )
    return numbers.astype(float)


def label_strings(values: pd.Series) -> list[str | None]:
    """Label names as written: text stays text (`1.0` is not `1`; CSV cells are read as text).

    Numbers from typed formats (JSON, parquet, datasets) become their text, except that a float
    column holding only whole numbers becomes integers: that is how pandas stores an integer
    column with a missing value (1 -> 1.0), and `labels: [0, 1]` must still match it.
    """
    whole = pd.api.types.is_float_dtype(values) and all(float(v).is_integer() for v in values.dropna())
    return [None if _missing(v) else str(int(v)) if whole else str(v) for v in values]


def dedupe_key(df: pd.DataFrame) -> pd.Series:
    """What makes two examples the same: the text (and pair), or the token sequence."""
    if "tokens" in df.columns:
        return df["tokens"].map(lambda t: None if t is None else " ".join(t))
    if "text_pair" in df.columns:
        return df["text"].astype(str) + " [SEP] " + df["text_pair"].astype(str)
    return df["text"]


def carve(
    df: pd.DataFrame, fraction: float, p: LoadParams, salt: int, what: str = "a split from train"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off `fraction` of the rows; whole groups move together when load.split.group_by is set.

    Stratified by label where every class has 2 rows or more and both sides can hold each class;
    otherwise (a tiny or very skewed source) a plain random split."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if not 0 < fraction < 1:
        raise PipelineError(f"load.split: fractions must be between 0 and 1, got {fraction}")
    seed = p.split.seed + salt
    units = df["group"].astype(str).nunique() if p.split.group_by else len(df)
    n_cut = math.ceil(fraction * units)
    if units - n_cut < 1 or n_cut < 1:
        kind = f"groups ({p.split.group_by})" if p.split.group_by else "rows"
        raise PipelineError(
            f"carving {what} ({fraction:.0%}) from {units} {kind} leaves one side empty; "
            "add rows, change load.split fractions, or supply the split in load.source"
        )
    try:
        if p.split.group_by:
            splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
            keep_idx, cut_idx = next(splitter.split(df, groups=df["group"].astype(str)))
            return df.iloc[keep_idx], df.iloc[cut_idx]
        stratify = None
        if "label" in df.columns and not pd.api.types.is_float_dtype(df["label"]):
            counts = df["label"].value_counts()
            fits = len(counts) <= min(n_cut, units - n_cut)
            stratify = df["label"] if len(counts) > 1 and counts.min() >= 2 and fits else None
        keep, cut = train_test_split(df, test_size=fraction, random_state=seed, stratify=stratify)
        return keep, cut
    except ValueError as exc:  # a case the checks above do not foresee: still one clear line
        raise PipelineError(f"carving {what} ({fraction:.0%}) from {units} rows failed: {exc}") from None


# Which split loses a shared row (load.overlap: drop): the evaluation split, and of validation
# and test the validation split, so the test split stays as the user wrote it where it can.
OVERLAP_PAIRS = (("train", "validation"), ("train", "test"), ("test", "validation"))


def resolve_overlap(
    canon: dict[str, pd.DataFrame], origin: dict[str, str], policy: str
) -> dict[str, dict[str, int]]:
    """Rows of one supplied split that repeat another's texts: an error naming them (fail), or
    removed from the evaluation split (drop); returns {split: {other split: rows dropped}}."""
    dropped: dict[str, dict[str, int]] = {}
    for keeper, loser in OVERLAP_PAIRS:
        if keeper not in canon or loser not in canon:
            continue
        seen = set(dedupe_key(canon[keeper]).dropna())
        shared = dedupe_key(canon[loser]).isin(seen)
        count = int(shared.sum())
        if not count:
            continue
        if policy != "drop":
            rows = canon[loser][shared].head(3)
            pairs = zip(rows["source_row"], dedupe_key(rows), strict=True)
            shown = "; ".join(f"row {r}: {_short(k)}" for r, k in pairs)
            raise PipelineError(
                f"{origin[loser]}: {count} row(s) of the {loser} split repeat texts of the {keeper} split "
                f"({origin[keeper]}), e.g. {shown}; a text in both makes the {loser} score unreliable. "
                f"Remove them, or set load.overlap: drop to drop them from {loser} with a warning"
            )
        dropped.setdefault(loser, {})[keeper] = count
        canon[loser] = canon[loser][~shared]
    return dropped


def _short(text: Any, limit: int = 60) -> str:
    text = str(text)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def make_splits(
    p: LoadParams, task: str = "sequence_classification"
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The whole stage as a function of its params: canonical splits and a manifest of what was done."""
    frames, origin = read_source_splits(p)
    drop = {str(v) for v in p.drop_labels}
    if drop and task != "sequence_classification":
        raise PipelineError(f"load.drop_labels applies to sequence_classification only, not {task}")
    canon, manifest = {}, {"source": {}, "rows_read": {}, "dropped_labels": {}, "duplicates_removed": {}}
    for split, df in frames.items():
        out = to_canonical(df, p, origin[split], task)
        manifest["source"][split] = origin[split]
        manifest["rows_read"][split] = len(out)
        if drop:
            dropped = out["label"].isin(drop)
            manifest["dropped_labels"][split] = int(dropped.sum())
            out = out[~dropped]
        if p.dedupe:
            key = dedupe_key(out)
            dupes = key.duplicated(keep="first") & key.notna()
            manifest["duplicates_removed"][split] = int(dupes.sum())
            out = out[~dupes]
        canon[split] = out
    if p.dedupe:
        # A text in two supplied splits would leak into the evaluation: never changed silently.
        manifest["overlap_dropped"] = resolve_overlap(canon, origin, p.overlap)
    to_carve = [s for s in ("test", "validation") if s not in canon]
    if to_carve and len(canon["train"]) < 1 + len(to_carve):
        raise PipelineError(
            f"{origin['train']}: {len(canon['train'])} usable row(s) (after load.drop_labels and dedupe); "
            f"at least {1 + len(to_carve)} are needed, one for train and one for each split carved from it "
            f"({', '.join(to_carve)}). Add rows, or supply the split(s) in load.source"
        )
    if "test" not in canon:
        where = f"a test split from {origin['train']}"
        canon["train"], canon["test"] = carve(canon["train"], p.split.test, p, salt=0, what=where)
        manifest["source"]["test"] = f"carved from train ({p.split.test:.0%})"
    if "validation" not in canon:
        share = p.split.validation / (1 - p.split.test) if "test" not in frames else p.split.validation
        where = f"a validation split from {origin['train']}"
        canon["train"], canon["validation"] = carve(canon["train"], share, p, salt=1, what=where)
        manifest["source"]["validation"] = f"carved from train ({p.split.validation:.0%})"
    for split in catalog.SPLIT_NAMES:
        if canon[split].empty:
            raise PipelineError(
                f"split {split!r} is empty after loading {manifest['source'][split]} "
                "(check the source, load.drop_labels and the split fractions)"
            )
        canon[split] = canon[split].sort_values("source_row").reset_index(drop=True)
    manifest["rows"] = {s: len(canon[s]) for s in catalog.SPLIT_NAMES}
    if p.split.group_by:
        manifest["groups"] = {s: int(canon[s]["group"].nunique()) for s in catalog.SPLIT_NAMES}
    return canon, manifest
