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
from tunepipe.sources import drop_blank_records, incoming_files, read_source_splits, read_table
from tunepipe.tagging import label_order, repair_iob2, resolve_scheme

# The params key that fixes each missing column.
COLUMN_FIX = {
    "text": "set load.columns.text to the text column",
    "tokens": "set load.columns.text to the column of token lists",
    "text_pair": "set load.columns.text_pair to the second text's column, or null for single texts",
    "label": "set load.columns.label to the label column",
    "tags": "set load.columns.label to the column of tag lists",
    "group": "set load.split.group_by to a column of the file, or null to split rows without groups",
}


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
    missing = [role for role, name in wanted.items() if name not in df.columns]
    if task == "token_classification" and "tags" not in wanted:
        missing.append("tags")
    if missing:
        names = {**wanted, "tags": wanted.get("tags", cols.label)}
        fixes = "; ".join(COLUMN_FIX[r] for r in missing)
        raise PipelineError(
            f"{origin}: missing {', '.join(f'{r} column {names[r]!r}' for r in missing)}; "
            f"the file has columns {', '.join(map(str, df.columns))} ({fixes})"
        )
    fmt = df.attrs.get("format")  # set by the CoNLL and word/TAG readers
    skipped: list[int] = []
    if not fmt:  # blank lines hold no example; the rows after them keep their number
        df, skipped = drop_blank_records(df)
    out = pd.DataFrame({role: df[name].to_numpy() for role, name in wanted.items()})
    out["source_row"] = df["source_row"].to_numpy() if fmt else df.index.to_numpy() + 1
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
                _check_text(out[role], wanted[role], origin, out["source_row"], role)
    out.attrs["blank_rows"] = skipped  # make_splits records them as a change
    return out


def _check_text(values: pd.Series, column: str, origin: str, rows: pd.Series, role: str = "text") -> None:
    """Texts are strings (or missing, which validation reports): a number or a list in a text
    column would pass unnoticed until the tokenizer fails on it."""
    bad = [not isinstance(v, str) and not _missing(v) for v in values.tolist()]
    if any(bad):
        pairs = [(r, v) for r, v, b in zip(rows.tolist(), values.tolist(), bad, strict=True) if b][:5]
        shown = ", ".join(f"row {r}: {v!r} ({type(v).__name__})" for r, v in pairs)
        raise PipelineError(
            f"{origin}: column {column!r} must hold text; {sum(bad)} value(s) are not strings, "
            f"e.g. {shown} (set load.columns.{role} to the text column, "
            "or write these values as text)"
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


def repair_tags(
    frames: dict[str, pd.DataFrame], p: LoadParams, origin: dict[str, str], scheme: str | None = None
) -> dict[str, int]:
    """IOB2 tags that open a chunk with I-X: with load.conll.tag_repair fix they become B-X (count
    per split returned, frames changed in place); with none the first one is an error naming its
    line. Only for tags settled as IOB2 (load.tag_scheme, auto from train); the rule is
    tagging.iob_violations, which validate applies again to what load wrote. `scheme`: already
    settled (a trained model's), else from the train frame."""
    if (scheme or resolve_scheme(p.tag_scheme, frames["train"]["tags"])) != "iob2":
        return {}
    counts: dict[str, int] = {}
    first: str | None = None
    for split, df in frames.items():
        fixed_tags: list[list[str] | None] = []
        counts[split] = 0
        for tags, lines, row in zip(df["tags"], df["lines"], df["source_row"], strict=True):
            if tags is None:
                fixed_tags.append(tags)
                continue
            fixed, changed = repair_iob2(tags)
            if changed and first is None:
                i = changed[0]
                where = f"line {lines[i]}" if lines is not None else f"row {row}, word {i + 1}"
                after = f"after {tags[i - 1]!r}" if i else "at the start of a sentence"
                first = f"{origin[split]}, {where}: tag {tags[i]!r} {after}"
            counts[split] += len(changed)
            fixed_tags.append(fixed)
        df["tags"] = fixed_tags
    total = sum(counts.values())
    if total and p.conll.tag_repair == "none":
        raise PipelineError(
            f"{first} is not IOB2 (an I- tag continues a chunk of its own type; a chunk opens with B-); "
            f"{total} such tag(s) in all. Set load.conll.tag_repair: fix to turn each into B-, or "
            "load.tag_scheme: iob1 if the data is IOB1"
        )
    return counts


def dedupe_key(df: pd.DataFrame) -> pd.Series:
    """What makes two examples the same: the text (and pair), or the token sequence."""
    if "tokens" in df.columns:
        return df["tokens"].map(lambda t: None if t is None else " ".join(t))
    if "text_pair" in df.columns:
        return df["text"].astype(str) + " [SEP] " + df["text_pair"].astype(str)
    return df["text"]


MISSING_LABEL = "\x00missing"  # the stratum of rows without a label (sklearn sorts strata: a string)


def carve(
    df: pd.DataFrame, fraction: float, p: LoadParams, salt: int, what: str = "a split from train"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off `fraction` of the rows; whole groups move together when load.split.group_by is set.

    Stratified by label where every class has 2 rows or more and both sides can hold each class;
    otherwise (a tiny or very skewed source) a plain random split."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if not 0 < fraction < 1:
        raise PipelineError(
            f"load.split.validation and load.split.test must be between 0 and 1, got {fraction} for {what}"
        )
    seed = p.split.seed + salt
    if p.split.group_by and (no_group := df["group"].isna()).any():
        rows = df.loc[no_group, "source_row"].tolist()
        raise PipelineError(
            f"carving {what}: {len(rows)} row(s) have no {p.split.group_by!r} (load.split.group_by), "
            f"e.g. row {', '.join(map(str, rows[:3]))}; fill the column, or set load.split.group_by: null "
            "to split rows instead of groups"
        )
    units = df["group"].astype(str).nunique() if p.split.group_by else len(df)
    n_cut = math.ceil(fraction * units)
    if units - n_cut < 1 or n_cut < 1:
        kind = f"groups ({p.split.group_by})" if p.split.group_by else "rows"
        fix = "set load.split.group_by: null to split rows instead of groups, " if p.split.group_by else ""
        raise PipelineError(
            f"carving {what} ({fraction:.0%}) from {units} {kind} leaves one side empty; {fix}"
            "add rows, change load.split.validation / load.split.test, or supply the split in load.source"
        )
    try:
        if p.split.group_by:
            splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
            keep_idx, cut_idx = next(splitter.split(df, groups=df["group"].astype(str)))
            return df.iloc[keep_idx], df.iloc[cut_idx]
        stratify = None
        if "label" in df.columns and not pd.api.types.is_float_dtype(df["label"]):
            # A missing label is a stratum of its own: the rows reach validate, which names them.
            strata = df["label"].fillna(MISSING_LABEL)
            counts = strata.value_counts()
            fits = len(counts) <= min(n_cut, units - n_cut)
            stratify = strata if len(counts) > 1 and counts.min() >= 2 and fits else None
        keep, cut = train_test_split(df, test_size=fraction, random_state=seed, stratify=stratify)
        return keep, cut
    except ValueError as exc:  # a case the checks above do not foresee: still one clear line
        raise PipelineError(f"carving {what} ({fraction:.0%}) from {units} rows failed: {exc}") from None


# Which split loses a shared row (load.overlap: drop): the evaluation split, and of validation
# and test the validation split, so the test split stays as the user wrote it where it can.
OVERLAP_PAIRS = (("train", "validation"), ("train", "test"), ("test", "validation"))


def resolve_overlap(
    canon: dict[str, pd.DataFrame],
    origin: dict[str, str],
    policy: str,
    removed: dict[tuple[str, str], pd.DataFrame] | None = None,
) -> dict[str, dict[str, int]]:
    """Rows of one supplied split that repeat another's texts: an error naming them (fail), or
    removed from the evaluation split (drop); returns {split: {other split: rows dropped}}, and
    the dropped rows in `removed` by (split, other split)."""
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
            shown = "; ".join(f"{row_unit(rows)} {r}: {_short(k)}" for r, k in pairs)
            raise PipelineError(
                f"{origin[loser]}: {count} row(s) of the {loser} split repeat texts of the {keeper} split "
                f"({origin[keeper]}), e.g. {shown}; a text in both makes the {loser} score unreliable. "
                f"Remove them, or set load.overlap: drop to drop them from {loser} with a warning"
            )
        dropped.setdefault(loser, {})[keeper] = count
        if removed is not None:
            removed[(loser, keeper)] = canon[loser][shared]
        canon[loser] = canon[loser][~shared]
    return dropped


def _short(text: Any, limit: int = 60) -> str:
    if _missing(text):
        return "(missing)"  # not 'nan', which could be a text
    text = str(text)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


EXAMPLES = 3  # rows shown with each change load makes


def _blank(key: pd.Series) -> pd.Series:
    """Missing or whitespace-only texts: never removed as duplicates of each other, so validate
    reports every one of them with its row."""
    return key.isna() | key.astype(str).str.strip().eq("")


def _shown(rows: pd.DataFrame, same_as: dict[Any, int] | None = None) -> list[dict[str, Any]]:
    """The first EXAMPLES rows of a change: source row, shortened text (and the row it repeats)."""
    head = rows.head(EXAMPLES)
    out = []
    for row, key in zip(head["source_row"].tolist(), dedupe_key(head).tolist(), strict=True):
        example: dict[str, Any] = {"source_row": int(row), "text": _short(key)}
        if same_as is not None:
            example["same_as_row"] = int(same_as[key])
        out.append(example)
    return out


def row_unit(rows: pd.DataFrame) -> str:
    """What source_row counts: the file line a sentence starts on for CoNLL and word/TAG files
    (their readers fill `lines`), else the row."""
    return "line" if "lines" in rows.columns and rows["lines"].notna().any() else "row"


def _change(
    split: str, origin: str, kind: str, rows: pd.DataFrame, text: str, same_as: dict[Any, int] | None = None
) -> dict[str, Any]:
    return {
        "split": split,
        "source": origin,
        "change": kind,
        "rows": len(rows),
        "text": text,
        "examples": _shown(rows, same_as),
        "unit": row_unit(rows),
    }


def _blank_rows_skipped(split: str, origin: str, rows: list[int]) -> dict[str, Any]:
    text = (
        f"skipped {len(rows)} blank row(s) of {split} ({origin}) (every cell empty; later rows keep "
        "their numbers)"
    )
    return {
        "split": split,
        "source": origin,
        "change": "blank_rows_skipped",
        "rows": len(rows),
        "text": text,
        "examples": [{"source_row": r, "text": None} for r in rows[:EXAMPLES]],
    }


def _dedupe_within(out: pd.DataFrame, split: str, origin: str, mode: str) -> tuple[pd.DataFrame, dict | None]:
    """Repeated texts of one split after their first row: removed, with the change recorded."""
    key = dedupe_key(out)
    dupes = key.duplicated(keep="first") & ~_blank(key)
    if not dupes.any():
        return out, None
    first: dict[Any, int] = {}
    for k, row in zip(key.tolist(), out["source_row"].tolist(), strict=True):
        first.setdefault(k, int(row))
    count = int(dupes.sum())
    text = (
        f"removed {count} of {len(out)} row(s) of {split} ({origin}) that repeat a text earlier in the same "
        f"split (load.dedupe: {mode}; none keeps them)"
    )
    return out[~dupes], _change(split, origin, "duplicates_removed", out[dupes], text, first)


def _drop_train_overlap(
    canon: dict[str, pd.DataFrame], origin: dict[str, str]
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """load.dedupe: train: train rows repeating a supplied evaluation split's text leave train, so
    validation and test stay as written and still share no text with train."""
    dropped, changes = {}, []
    for other in ("validation", "test"):
        if other not in canon:
            continue
        shared = dedupe_key(canon["train"]).isin(set(dedupe_key(canon[other]).dropna())) & ~_blank(
            dedupe_key(canon["train"])
        )
        count = int(shared.sum())
        if count:
            text = (
                f"removed {count} row(s) of train ({origin['train']}) that repeat texts of {other} "
                f"({origin[other]}); {other} is kept as written (load.dedupe: train)"
            )
            kind = "overlap_removed_from_train"
            changes.append(_change("train", origin["train"], kind, canon["train"][shared], text))
            dropped[other] = count
            canon["train"] = canon["train"][~shared]
    return dropped, changes


def _kept(
    out: pd.DataFrame, split: str, origin: str, rows: pd.Series, kind: str, what: str, fix: str
) -> dict[str, Any] | None:
    """Rows load keeps although validate refuses them (naming each): said here, with a few of them."""
    if not rows.any():
        return None
    text = f"kept {int(rows.sum())} row(s) of {split} ({origin}) with {what}; validate fails on them: {fix}"
    return _change(split, origin, kind, out[rows], text)


def _empty_texts(out: pd.DataFrame, split: str, origin: str) -> dict[str, Any] | None:
    if "tokens" in out.columns:
        empty = out["tokens"].map(lambda t: t is None or len(t) == 0)
    else:
        empty = _blank(out["text"])
        if "text_pair" in out.columns:
            empty |= _blank(out["text_pair"])
    fix = "fill or remove them in the source"
    return _kept(out, split, origin, empty, "empty_texts_kept", "an empty or missing text", fix)


def _missing_labels(out: pd.DataFrame, split: str, origin: str) -> dict[str, Any] | None:
    missing = out["label"].isna() if "label" in out.columns else pd.Series(False, index=out.index)
    fix = "label or remove them in the source (predict takes unlabelled rows)"
    return _kept(out, split, origin, missing, "missing_labels_kept", "a missing label", fix)


def add_incoming(train: pd.DataFrame, p: LoadParams, task: str, manifest: dict[str, Any]) -> pd.DataFrame:
    """The source's train rows plus the rows `tunepipe ingest` added (data/raw/incoming), each
    file with the source's columns. Their rows are numbered after the source's, in file name
    order (manifest `incoming`: file -> rows and the source_row range they took)."""
    files = incoming_files()
    if not files:
        return train
    if task == "token_classification":
        raise PipelineError(
            f"{catalog.INCOMING}: tunepipe ingest adds table rows for sequence_classification and "
            "regression; for token_classification name the files in load.source instead"
        )
    parts, start, added = [train], int(train["source_row"].max()) if len(train) else 0, {}
    for path in files:
        out = to_canonical(read_table(path, None, None, p.encoding), p, str(path), task)
        blank = out.attrs.get("blank_rows", [])
        read = len(out) + len(blank)  # rows as numbered in the file, its blank lines included
        out["source_row"] = out["source_row"] + start
        added[path.as_posix()] = {"rows": len(out), "source_rows": [start + 1, start + read]}
        if blank:
            added[path.as_posix()]["blank_rows"] = blank
        start += read
        parts.append(out)
    manifest["incoming"] = added
    return pd.concat(parts, ignore_index=True)


def make_splits(
    p: LoadParams, task: str = "sequence_classification"
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The whole stage as a function of its params: canonical splits and a manifest of what was
    done. manifest["changes"] lists every change to the user's rows (and empty texts kept), each
    with its count and first rows, for the stage to print and the run report to show."""
    frames, origin = read_source_splits(p)
    drop = {str(v) for v in p.drop_labels}
    if drop and task != "sequence_classification":
        raise PipelineError(
            f"load.drop_labels applies to sequence_classification only, not {task}; set load.drop_labels: []"
        )
    canon: dict[str, pd.DataFrame] = {}
    manifest: dict[str, Any] = {
        "source": {},
        "rows_read": {},
        "dropped_labels": {},
        "duplicates_removed": {},
        "dedupe": p.dedupe,
    }
    changes: list[dict[str, Any]] = []
    read = {split: to_canonical(df, p, origin[split], task) for split, df in frames.items()}
    blank = {(split, origin[split]): out.attrs.get("blank_rows", []) for split, out in read.items()}
    if "train" in read:
        read["train"] = add_incoming(read["train"], p, task, manifest)
        for path, added in manifest.get("incoming", {}).items():
            blank[("train", path)] = added.get("blank_rows", [])
    changes += [_blank_rows_skipped(split, where, rows) for (split, where), rows in blank.items() if rows]
    if task == "token_classification":
        manifest["tags_repaired"] = repair_tags(read, p, origin)
    for split, out in read.items():
        manifest["source"][split] = origin[split]
        manifest["rows_read"][split] = len(out)
        if drop:
            dropped = out["label"].isin(drop)
            manifest["dropped_labels"][split] = int(dropped.sum())
            if dropped.any():
                names = ", ".join(sorted(set(out["label"][dropped])))
                text = (
                    f"dropped {int(dropped.sum())} of {len(out)} row(s) of {split} ({origin[split]}) "
                    f"labelled {names} (load.drop_labels)"
                )
                changes.append(_change(split, origin[split], "labels_dropped", out[dropped], text))
            out = out[~dropped]
        if p.dedupe == "all" or (p.dedupe == "train" and split == "train"):
            out, change = _dedupe_within(out, split, origin[split], p.dedupe)
            manifest["duplicates_removed"][split] = change["rows"] if change else 0
            if change:
                changes.append(change)
        for kept in (_empty_texts(out, split, origin[split]), _missing_labels(out, split, origin[split])):
            changes += [kept] if kept else []
        canon[split] = out
    if p.dedupe == "all":
        # A text in two supplied splits would leak into the evaluation: never changed silently.
        removed: dict[tuple[str, str], pd.DataFrame] = {}
        manifest["overlap_dropped"] = resolve_overlap(canon, origin, p.overlap, removed)
        for (split, other), rows in removed.items():
            text = (
                f"dropped {len(rows)} row(s) of {split} ({origin[split]}) that repeat texts of {other} "
                "(load.overlap: drop; load.dedupe: train keeps supplied evaluation splits as written)"
            )
            changes.append(_change(split, origin[split], "overlap_dropped", rows, text))
    elif p.dedupe == "train":
        manifest["overlap_removed_from_train"], more = _drop_train_overlap(canon, origin)
        changes += more
    to_carve = [s for s in ("test", "validation") if s not in canon]
    if to_carve and len(canon["train"]) < 1 + len(to_carve):
        raise PipelineError(
            f"{origin['train']}: {len(canon['train'])} usable row(s) "
            "(after load.drop_labels and load.dedupe); "
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
                "(check the source, load.drop_labels, load.dedupe and load.split.validation/test)"
            )
        canon[split] = canon[split].sort_values("source_row").reset_index(drop=True)
    manifest["rows"] = {s: len(canon[s]) for s in catalog.SPLIT_NAMES}
    if p.split.group_by:
        manifest["groups"] = {s: int(canon[s]["group"].nunique()) for s in catalog.SPLIT_NAMES}
    if task != "regression":
        manifest["labels"] = label_set(p, canon["train"], task)
    manifest["changes"] = changes
    return canon, manifest


def label_set(p: LoadParams, train: pd.DataFrame, task: str) -> dict[str, Any]:
    """The label names in id order and where they came from: load.labels, else the train split's
    own labels, sorted (numbers numerically, IOB tags by type), which validate then holds the
    evaluation splits to."""
    declared = [str(x) for x in p.labels]
    if declared:
        return {"names": declared, "from": "load.labels"}
    column = "tags" if task == "token_classification" else "label"
    seen: set[str] = set()
    for value in train[column].dropna():
        seen.update(value if task == "token_classification" else [value])
    return {"names": label_order(seen), "from": "train"}
