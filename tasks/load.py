"""Stage `load`: read the source named in params and write canonical train/validation/test splits.

Canonical columns, with source_row (1-based row, or line of a CoNLL file, in the source split) so
that later errors can point at the user's own data:
- sequence_classification: text, [text_pair], label (a string, so 0/1 match `labels: [0, 1]`);
- regression: text, [text_pair], label (a float);
- token_classification: tokens (list of words), tags (list of tag names, one per word).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tunepipe import assets, paths
from tunepipe import params as params_mod
from tunepipe.errors import PipelineError
from tunepipe.io import atomic_dir, write_json
from tunepipe.params import ConllParams, LoadParams

READERS = {
    "csv": lambda p: pd.read_csv(p),
    "tsv": lambda p: pd.read_csv(p, sep="\t"),
    "json": lambda p: pd.read_json(p),
    "jsonl": lambda p: pd.read_json(p, lines=True),
    "parquet": lambda p: pd.read_parquet(p),
}
COMPRESSION = (".bz2", ".gz", ".xz", ".zip", ".zst")
TOKEN_FORMATS = ("conll", "tagged")
SUFFIXES = {"ndjson": "jsonl", "pq": "parquet", "txt": "conll", "iob": "conll", "bio": "conll"}


def infer_format(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s not in COMPRESSION]
    fmt = suffixes[-1].lstrip(".").lower() if suffixes else ""
    fmt = SUFFIXES.get(fmt, fmt)
    if fmt not in READERS and fmt not in TOKEN_FORMATS:
        raise PipelineError(
            f"{path}: cannot tell the file format from its name; set load.format to one of "
            f"{', '.join([*READERS, *TOKEN_FORMATS])}"
        )
    return fmt


def read_table(path: Path, fmt: str | None = None, conll: ConllParams | None = None) -> pd.DataFrame:
    from tunepipe import conll as conll_io

    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    fmt = fmt or infer_format(path)
    if fmt in TOKEN_FORMATS:
        c = conll or ConllParams()
        if fmt == "conll":
            df = conll_io.read_conll(path, c.token_column, c.tag_column, c.separator)
        else:
            df = conll_io.read_tagged(path)
        df.attrs["format"] = fmt  # to_canonical numbers a CoNLL sentence's words by file line
        return df
    if fmt not in READERS:
        raise PipelineError(
            f"{path}: load.format {fmt!r} is not one of {', '.join([*READERS, *TOKEN_FORMATS])}"
        )
    try:
        return READERS[fmt](path)
    except Exception as exc:  # pandas raises many types for unreadable files
        raise PipelineError(f"{path}: cannot read as {fmt}: {exc}") from None


def _dataset_to_frames(dsd: Any) -> dict[str, pd.DataFrame]:
    """A datasets DatasetDict -> DataFrames, with ClassLabel ids turned into their names (also
    inside sequences, as in conll2003's ner_tags). A hidden label (-1, GLUE's test) becomes None."""
    from datasets import ClassLabel

    frames = {}
    for split, ds in dsd.items():
        df = ds.to_pandas()
        for name, feature in ds.features.items():
            if isinstance(feature, ClassLabel):
                df[name] = [feature.int2str(int(v)) if v >= 0 else None for v in df[name]]
            inner = getattr(feature, "feature", None)  # List(ClassLabel(...))
            if isinstance(inner, ClassLabel):
                df[name] = [[inner.int2str(int(v)) for v in seq] for seq in df[name]]
        frames[split] = df
    return frames


def read_source(ref: str, p: LoadParams) -> dict[str, pd.DataFrame] | pd.DataFrame:
    """One reference -> a single table, or named splits for hub and saved datasets."""
    if ref.startswith(assets.HUB_PREFIX):
        from datasets import load_dataset

        name = ref.removeprefix(assets.HUB_PREFIX)
        try:
            dsd = load_dataset(name, p.hub_config, revision=p.hub_revision)
        except Exception as exc:
            raise PipelineError(f"load.source {ref}: cannot load dataset: {exc}") from None
        return _dataset_to_frames(dsd)
    path = Path(assets.resolve(ref))
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            from datasets import load_from_disk

            return _dataset_to_frames(load_from_disk(str(path)))
        raise PipelineError(f"{path}: a directory, but not a saved dataset (no dataset_dict.json)")
    return read_table(path, p.format, p.conll)


def read_splits(p: LoadParams) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Source splits keyed by canonical name (only those the source has), and where each came from."""
    if not p.source:
        raise PipelineError("params.yaml: load.source is empty; name a file, dataset or package")
    if isinstance(p.source, dict):
        unknown = set(p.source) - set(paths.SPLIT_NAMES)
        if unknown:
            raise PipelineError(
                f"load.source: unknown split(s) {sorted(unknown)}; use train, validation, test"
            )
        if "train" not in p.source:
            raise PipelineError("load.source: a mapping of splits needs at least `train`")
        frames, origin = {}, {}
        for split, ref in p.source.items():
            got = read_source(ref, p)
            if isinstance(got, dict):
                raise PipelineError(f"load.source.{split}: {ref} holds several splits; name one file")
            frames[split], origin[split] = got, ref
        return frames, origin
    got = read_source(p.source, p)
    if isinstance(got, pd.DataFrame):
        return {"train": got}, {"train": p.source}
    unknown = set(p.split.from_source) - set(paths.SPLIT_NAMES)
    if unknown:
        raise PipelineError(
            f"load.split.from_source: unknown split(s) {sorted(unknown)}; use train, validation, test"
        )
    # With a mapping, only the mapped splits are used (GLUE: its validation split is the test
    # split, and a fresh validation split is carved from train); train keeps its name by default.
    if p.split.from_source:
        names = ({"train": "train"} if "train" in got else {}) | p.split.from_source
    else:
        names = {s: s for s in paths.SPLIT_NAMES if s in got}
    frames, origin = {}, {}
    for canonical, source_name in names.items():
        if source_name not in got:
            raise PipelineError(
                f"load.split.from_source.{canonical}: {p.source} has no split {source_name!r}; "
                f"it has {', '.join(got)}"
            )
        frames[canonical], origin[canonical] = got[source_name], f"{p.source}[{source_name}]"
    if "train" not in frames:
        raise PipelineError(f"{p.source}: no train split; map one with load.split.from_source")
    return frames, origin


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
        out["label"] = [None if pd.isna(v) else _label_str(v) for v in out["label"]]
    return out


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


def _label_str(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def dedupe_key(df: pd.DataFrame) -> pd.Series:
    """What makes two examples the same: the text (and pair), or the token sequence."""
    if "tokens" in df.columns:
        return df["tokens"].map(lambda t: None if t is None else " ".join(t))
    if "text_pair" in df.columns:
        return df["text"].astype(str) + " [SEP] " + df["text_pair"].astype(str)
    return df["text"]


def carve(df: pd.DataFrame, fraction: float, p: LoadParams, salt: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off `fraction` of the rows; whole groups move together when load.split.group_by is set."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if not 0 < fraction < 1:
        raise PipelineError(f"load.split: fractions must be between 0 and 1, got {fraction}")
    seed = p.split.seed + salt
    if p.split.group_by:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep_idx, cut_idx = next(splitter.split(df, groups=df["group"].astype(str)))
        return df.iloc[keep_idx], df.iloc[cut_idx]
    stratify = None
    if "label" in df.columns and not pd.api.types.is_float_dtype(df["label"]):
        counts = df["label"].value_counts()
        stratify = df["label"] if len(counts) > 1 and counts.min() >= 2 else None
    keep, cut = train_test_split(df, test_size=fraction, random_state=seed, stratify=stratify)
    return keep, cut


def make_splits(
    p: LoadParams, task: str = "sequence_classification"
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The whole stage as a function of its params: canonical splits and a manifest of what was done."""
    frames, origin = read_splits(p)
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
        # An example in an evaluation split that also occurs in train would leak; drop it there.
        seen = set(dedupe_key(canon["train"]).dropna())
        for split in ("validation", "test"):
            if split in canon:
                leak = dedupe_key(canon[split]).isin(seen)
                manifest["duplicates_removed"][split] += int(leak.sum())
                canon[split] = canon[split][~leak]
    if "test" not in canon:
        canon["train"], canon["test"] = carve(canon["train"], p.split.test, p, salt=0)
        manifest["source"]["test"] = f"carved from train ({p.split.test:.0%})"
    if "validation" not in canon:
        share = p.split.validation / (1 - p.split.test) if "test" not in frames else p.split.validation
        canon["train"], canon["validation"] = carve(canon["train"], share, p, salt=1)
        manifest["source"]["validation"] = f"carved from train ({p.split.validation:.0%})"
    for split in paths.SPLIT_NAMES:
        if canon[split].empty:
            raise PipelineError(
                f"split {split!r} is empty after loading {manifest['source'][split]} "
                "(check the source, load.drop_labels and the split fractions)"
            )
        canon[split] = canon[split].sort_values("source_row").reset_index(drop=True)
    manifest["rows"] = {s: len(canon[s]) for s in paths.SPLIT_NAMES}
    if p.split.group_by:
        manifest["groups"] = {s: int(canon[s]["group"].nunique()) for s in paths.SPLIT_NAMES}
    return canon, manifest


def write_splits(splits: dict[str, pd.DataFrame], manifest: dict[str, Any], out: Path) -> None:
    with atomic_dir(out) as tmp:
        for split, df in splits.items():
            df.to_parquet(tmp / f"{split}.parquet", index=False)
        write_json(tmp / "manifest.json", manifest)


def read_split_frames(root: Path = paths.SPLITS) -> dict[str, pd.DataFrame]:
    return {s: pd.read_parquet(root / f"{s}.parquet") for s in paths.SPLIT_NAMES}


def main() -> None:
    p = params_mod.read(paths.PARAMS)
    splits, manifest = make_splits(p.load, p.task)
    write_splits(splits, manifest, paths.SPLITS)
    print("load: " + ", ".join(f"{s} {n} rows" for s, n in manifest["rows"].items()))


if __name__ == "__main__":
    from tunepipe.stage import run

    run(main)
