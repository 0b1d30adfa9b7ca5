"""Reading a data source: a table file (CSV, TSV, JSON, JSON lines, parquet), a CoNLL or
word/TAG file, a saved dataset directory, or a hub dataset; one table or named splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tunepipe import assets, catalog
from tunepipe import conll as conll_io
from tunepipe.errors import PipelineError
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


def read_source_splits(p: LoadParams) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Source splits keyed by canonical name (only those the source has), and where each came from."""
    if not p.source:
        raise PipelineError("params.yaml: load.source is empty; name a file, dataset or package")
    if isinstance(p.source, dict):
        unknown = set(p.source) - set(catalog.SPLIT_NAMES)
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
    unknown = set(p.split.from_source) - set(catalog.SPLIT_NAMES)
    if unknown:
        raise PipelineError(
            f"load.split.from_source: unknown split(s) {sorted(unknown)}; use train, validation, test"
        )
    # With a mapping, only the mapped splits are used (GLUE: its validation split is the test
    # split, and a fresh validation split is carved from train); train keeps its name by default.
    if p.split.from_source:
        names = ({"train": "train"} if "train" in got else {}) | p.split.from_source
    else:
        names = {s: s for s in catalog.SPLIT_NAMES if s in got}
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
