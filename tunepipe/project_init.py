"""`tunepipe init`: read a data source once and write a params.yaml that fits it.

Every decision (format, columns, task, labels, splits, max_length, thresholds) is made from the
data, printed as one line with its reason, and written as an explicit value, so the pipeline's
defaults never decide for the user's data unseen. Everything init does not infer (train, register,
search, promote) is written at the params models' own defaults.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tunepipe import assets, catalog, dvcrepo
from tunepipe import params as params_mod
from tunepipe.errors import PipelineError
from tunepipe.io import write_text
from tunepipe.params import LOAD_FORMATS, TASK_TYPES, ConllParams, LoadParams, Params
from tunepipe.sources import (
    COMPRESSION,
    TOKEN_FORMATS,
    drop_blank_records,
    infer_format,
    read_source,
    read_table,
)

HEADER = "# yaml-language-server: $schema=params.schema.json\n"
EXAMPLES_DIR = "examples"

TEXT_NAMES = ("text", "sentence", "review", "content", "document", "body", "tweet", "comment", "utterance")
LABEL_NAMES = ("label", "labels", "category", "target", "score", "class", "sentiment", "rating", "polarity")
# (text, pair) columns of the usual sentence-pair data sets (GLUE, SNLI, PAWS).
PAIR_NAMES = (
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("text_a", "text_b"),
    ("text", "text_pair"),
)
TOKEN_NAMES = ("tokens", "words")
TAG_NAMES = ("tags", "ner_tags", "pos_tags", "labels", "label")
# File name -> split: train.csv, dev.conll, eng.testa (CoNLL-2003's validation) ...
SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "testa": "validation",
    "test": "test",
    "testb": "test",
}
MAX_CLASSES = 50  # more distinct values than this (and numbers): a regression target, not labels
LENGTH_SAMPLE = 5000  # rows tokenized to measure lengths
COVER = 0.95  # share of examples max_length keeps whole
SPLIT_SHARE = 0.1  # validation and test carved from train when the source has none


@dataclass
class Inferred:
    """What init decided: the params.yaml contents and one line of reason per decision."""

    data: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def note(self, key: str, value: Any, why: str) -> None:
        shown = value if isinstance(value, str) else _flow(value)
        self.lines.append(f"{key}: {shown}  ({why})")


def _flow(value: Any) -> str:
    """A value as one line of YAML: [a, b], {accuracy: 0.64}, 16."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True, sort_keys=False)
    return text.removesuffix("...\n").strip()


# --- reading the source -------------------------------------------------------------------------


def _format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    try:
        return infer_format(path)
    except PipelineError:
        raise PipelineError(
            f"{path}: cannot tell the file format from its name; "
            f"pass --format (one of {', '.join(LOAD_FORMATS)})"
        ) from None


def _split_of(path: Path) -> str | None:
    name = path.name
    for suffix in COMPRESSION:
        name = name.removesuffix(suffix)
    words = [w for w in re.split(r"[^a-z]+", name.lower()) if w]
    found = {SPLIT_WORDS[w] for w in words if w in SPLIT_WORDS}
    return found.pop() if len(found) == 1 else None


def _split_files(folder: Path) -> dict[str, Path]:
    # `dvc add test.csv` leaves test.csv.dvc beside it: DVC's pointer, not another test file.
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix and p.suffix != ".dvc"
    )
    found: dict[str, list[Path]] = {}
    for path in files:
        split = _split_of(path)
        if split:
            found.setdefault(split, []).append(path)
    twice = {s: ps for s, ps in found.items() if len(ps) > 1}
    if twice:
        split, paths = next(iter(twice.items()))
        raise PipelineError(
            f"{folder}: more than one {split} file ({', '.join(p.name for p in paths)}); "
            "keep one file per split in the folder, or pass the one file to use"
        )
    if "train" not in found:
        raise PipelineError(
            f"{folder}: no train file (a file named train.<ext>, optionally validation or dev, and test); "
            "name the training file train.csv (or .tsv, .jsonl, .parquet, .conll), or pass one file"
        )
    return {s: found[s][0] for s in catalog.SPLIT_NAMES if s in found}


@dataclass
class Source:
    """The data as read, and how params.yaml names it."""

    frames: dict[str, pd.DataFrame]
    ref: str | dict[str, str]  # load.source
    fmt: str | None  # load.format (None for datasets)
    from_source: dict[str, str]  # load.split.from_source (datasets)
    where: str  # the file or folder, for messages
    kind: str  # file, folder, dataset


def _as_ref(path: Path, root: Path) -> str:
    """A path as params.yaml names it: relative to the project root when inside it."""
    full = path.resolve()
    try:
        return str(full.relative_to(root.resolve()))
    except ValueError:
        return str(full)


def _read_file(path: Path, fmt: str, encoding: str) -> pd.DataFrame:
    """A source file's rows as load reads them: blank ones left out (attrs `blank_rows`, for a
    note), the others keeping their position in the file as their index (0-based; a parquet
    file's own stored index is not a row number)."""
    df = read_table(path, fmt, ConllParams(), encoding)
    if fmt not in TOKEN_FORMATS:
        df, rows = drop_blank_records(df)
        df.attrs["blank_rows"] = rows
    if len(df) == 0:
        raise PipelineError(f"{path}: no rows (only a header, or nothing but blank lines); add the examples")
    return df


def _dataset_splits(
    got: dict[str, pd.DataFrame], where: str
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Canonical splits of a saved or hub dataset, by their usual names."""
    names: dict[str, str] = {}
    for name in got:
        split = SPLIT_WORDS.get(name.lower()) or _split_of(Path(name))
        if split and split not in names:
            names[split] = name
    if "train" not in names:
        raise PipelineError(
            f"{where}: no train split (it has {', '.join(got)}); a dataset needs a `train` split"
        )
    return {s: got[n] for s, n in names.items()}, names


def read(source: str, root: Path, fmt: str | None, encoding: str) -> Source:
    if source.startswith(assets.HUB_PREFIX):
        got = read_source(source, LoadParams(source=source))
        assert isinstance(got, dict)
        frames, names = _dataset_splits(got, source)
        return Source(frames, source, None, names, source, "dataset")
    path = root / assets.resolve(source)  # relative to the project root, as load.source is read
    if not path.exists():
        raise PipelineError(
            f"{source}: not found; pass a file, a folder of split files, a saved dataset or hub:<id>"
        )
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        got = read_source(str(path), LoadParams(source=str(path)))
        assert isinstance(got, dict)
        frames, names = _dataset_splits(got, str(path))
        return Source(frames, _as_ref(path, root), None, names, str(path), "dataset")
    if path.is_dir():
        files = _split_files(path)
        formats = {s: _format(p, fmt) for s, p in files.items()}
        if len(set(formats.values())) > 1:
            raise PipelineError(
                f"{path}: split files of different formats "
                f"({', '.join(f'{p.name}: {formats[s]}' for s, p in files.items())}); use one format"
            )
        one = next(iter(formats.values()))
        frames = {s: _read_file(p, one, encoding) for s, p in files.items()}
        return Source(frames, {s: _as_ref(p, root) for s, p in files.items()}, one, {}, str(path), "folder")
    one = _format(path, fmt)
    return Source({"train": _read_file(path, one, encoding)}, _as_ref(path, root), one, {}, str(path), "file")


# --- columns, task, labels ----------------------------------------------------------------------


def _is_list(series: pd.Series) -> bool:
    values = series.dropna()
    return len(values) > 0 and all(isinstance(v, list | tuple) or hasattr(v, "tolist") for v in values[:20])


def _named(columns: list[str], names: tuple[str, ...]) -> list[str]:
    lower = {c.lower(): c for c in map(str, columns)}
    return [lower[n] for n in names if n in lower]


def _words(series: pd.Series) -> float:
    values = series.dropna()
    values = values[values.map(lambda v: isinstance(v, str))]
    return float(values.map(lambda v: len(v.split())).mean()) if len(values) else 0.0


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _label_text(value: Any) -> str:
    """A label as params and the stages see it: 1.0 from a float column is `1`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Options:
    task: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    text_pair_column: str | None = None
    model: str | None = None
    group_by: str | None = None
    fmt: str | None = None
    encoding: str = "utf-8"
    sets: list[str] = field(default_factory=list)  # --set section.key=value, after inference


def _check_column(name: str | None, df: pd.DataFrame, where: str, option: str) -> None:
    if name is not None and name not in df.columns:
        raise PipelineError(
            f"{where}: no column {name!r} ({option}); the file has columns {', '.join(map(str, df.columns))}"
        )


def _text_column(df: pd.DataFrame, where: str, opts: Options, out: Inferred) -> tuple[str, str | None]:
    cols = [str(c) for c in df.columns]
    _check_column(opts.text_column, df, where, "--text-column")
    _check_column(opts.text_pair_column, df, where, "--text-pair-column")
    if opts.text_column:
        out.note("load.columns.text", opts.text_column, "--text-column")
        pair = opts.text_pair_column
        if pair:
            out.note("load.columns.text_pair", pair, "--text-pair-column")
        return opts.text_column, pair
    for first, second in PAIR_NAMES:
        got = _named(cols, (first,)), _named(cols, (second,))
        if got[0] and got[1] and not opts.text_pair_column:
            out.note("load.columns.text", got[0][0], "the first column of a usual sentence-pair layout")
            out.note("load.columns.text_pair", got[1][0], f"pairs with {got[0][0]}")
            return got[0][0], got[1][0]
    named = _named(cols, TEXT_NAMES)
    if named:
        out.note("load.columns.text", named[0], "a usual name for the text column")
        text = named[0]
    else:
        candidates = [c for c in cols if c != opts.label_column and _words(df[c]) >= 3]
        if not candidates:
            raise PipelineError(
                f"{where}: no text column found (none named {', '.join(TEXT_NAMES[:4])} ..., and no column "
                f"of sentences among {', '.join(cols)}); pass --text-column"
            )
        text = max(candidates, key=lambda c: _words(df[c]))
        out.note(
            "load.columns.text",
            text,
            f"the column with the longest texts ({_words(df[text]):.0f} words on average)",
        )
    pair = opts.text_pair_column
    if pair:
        out.note("load.columns.text_pair", pair, "--text-pair-column")
    return text, pair


def _label_column(df: pd.DataFrame, where: str, opts: Options, taken: set[str], out: Inferred) -> str:
    cols = [str(c) for c in df.columns if str(c) not in taken]
    _check_column(opts.label_column, df, where, "--label-column")
    if opts.label_column:
        out.note("load.columns.label", opts.label_column, "--label-column")
        return opts.label_column
    named = _named(cols, LABEL_NAMES)
    if len(named) > 1:
        raise PipelineError(
            f"{where}: ambiguous label column: {', '.join(named)} could each be the label; "
            "pass --label-column to name it"
        )
    if named:
        out.note("load.columns.label", named[0], "a usual name for the label column")
        return named[0]
    few = [
        c
        for c in cols
        if c != opts.group_by and 1 < df[c].nunique() <= min(MAX_CLASSES, max(2, len(df) // 2))
    ]
    if len(few) == 1:
        out.note(
            "load.columns.label",
            few[0],
            f"the only other column with few distinct values ({df[few[0]].nunique()})",
        )
        return few[0]
    if few:
        raise PipelineError(
            f"{where}: ambiguous label column: {', '.join(few)} could each be the label; "
            "pass --label-column to name it"
        )
    raise PipelineError(
        f"{where}: no label column found (none named {', '.join(LABEL_NAMES[:4])} ..., and no column with "
        f"few distinct values among {', '.join(cols) or 'the other columns'}); pass --label-column"
    )


def _table_task(values: pd.Series, label: str, where: str, opts: Options, out: Inferred) -> str:
    distinct = values.dropna().map(_label_text).unique()
    numbers = all(_is_number(v) for v in distinct)
    fractional = numbers and any(not float(v).is_integer() for v in distinct)
    if opts.task:
        if opts.task == "token_classification":
            raise PipelineError(
                f"{where}: --task token_classification needs CoNLL or word/TAG files (or token lists); "
                "this is a table of texts"
            )
        if opts.task == "regression" and not numbers:
            raise PipelineError(
                f"{where}: --task regression needs numbers in {label!r}, found values such as {distinct[0]!r}"
            )
        out.note("task", opts.task, "--task")
        return opts.task
    if numbers and (fractional or len(distinct) > MAX_CLASSES) and len(distinct) > 2:
        why = "fractional numbers" if fractional else "numbers"
        out.note("task", "regression", f"{label!r} holds {why} with {len(distinct)} distinct values")
        return "regression"
    if len(distinct) > MAX_CLASSES:
        raise PipelineError(
            f"{where}: ambiguous label column {label!r}: {len(distinct)} values, too many for classes; "
            "pass --label-column to name the label, or --task regression for a numeric target"
        )
    if len(distinct) < 2:
        raise PipelineError(
            f"{where}: label column {label!r} holds one value ({distinct[0] if len(distinct) else 'none'}); "
            "a classifier needs two or more; pass --label-column to name the label"
        )
    out.note("task", "sequence_classification", f"{label!r} holds {len(distinct)} distinct values")
    return "sequence_classification"


def _order(names: set[str]) -> list[str]:
    """Labels in the order the tokenize stage gives them ids when none are declared."""
    from tunepipe.tagging import label_order

    return label_order(names)


# --- thresholds ---------------------------------------------------------------------------------


def _round_up(value: float) -> float:
    return math.ceil(value * 100 - 1e-9) / 100


def _margin(n: int, spread: float) -> float:
    """Half the width of a 95% interval on n test examples: a score within it of the baseline is
    noise. At least 0.02, at most 0.2."""
    return min(0.2, max(0.02, 1.96 * spread / math.sqrt(max(n, 1))))


def _evaluation_size(src: Source, rows: int, p_test: float) -> tuple[int, str]:
    if "test" in src.frames:
        return len(src.frames["test"]), "test rows"
    return max(1, round(rows * p_test)), "test rows expected"


# --- max_length ---------------------------------------------------------------------------------


def _max_length(texts: Any, model: str, task: str, out: Inferred, pairs: Any = None) -> int:
    import numpy as np

    from tunepipe.pretrained import effective_max_length, load_tokenizer

    p = Params.model_validate({"model": {"name": model}, "tokenize": {"max_length": None}})
    with assets.quiet_load_report():
        tok = load_tokenizer(p)
        limit = effective_max_length(p, tok)
    if task == "token_classification":
        enc = tok(list(texts), is_split_into_words=True)
    elif pairs is not None:
        enc = tok(list(texts), list(pairs))
    else:
        enc = tok(list(texts))
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    cover = int(np.percentile(lengths, COVER * 100, method="higher"))
    step = 8 if cover <= 128 else 16
    length = min(limit, max(8, math.ceil(cover / step) * step))
    cut = float((lengths > length).mean())
    capped = " (the model's limit)" if length == limit and cover > limit else ""
    out.note(
        "tokenize.max_length",
        length,
        f"{COVER:.0%} of {len(lengths)} examples fit in {cover} tokens, "
        f"rounded up to a multiple of {step}{capped}; {cut:.1%} are cut",
    )
    return length


# --- the whole inference ------------------------------------------------------------------------


def _sample(df: pd.DataFrame) -> pd.DataFrame:
    return df.sample(LENGTH_SAMPLE, random_state=0) if len(df) > LENGTH_SAMPLE else df


def _token_columns(df: pd.DataFrame, where: str, opts: Options) -> tuple[str, str]:
    cols = [str(c) for c in df.columns]
    text = opts.text_column or next((c for c in _named(cols, TOKEN_NAMES) if _is_list(df[c])), None)
    label = opts.label_column or next((c for c in _named(cols, TAG_NAMES) if _is_list(df[c])), None)
    if text is None:
        raise PipelineError(
            f"{where}: no column of token lists found among {', '.join(cols)}; pass --text-column"
        )
    if label is None:
        raise PipelineError(
            f"{where}: no column of tag lists found among {', '.join(cols)}; pass --label-column"
        )
    _check_column(text, df, where, "--text-column")
    _check_column(label, df, where, "--label-column")
    return text, label


def _tag_scheme(train_tags: list[list[str]], out: Inferred) -> str:
    from tunepipe.tagging import detect_scheme, iob_violations

    flat = [t for seq in train_tags for t in seq]
    if detect_scheme(flat) != "iob":
        out.note(
            "load.tag_scheme", "none", "the tags are not O/B-x/I-x chunk tags (POS-style: token accuracy)"
        )
        return "none"
    bad = {s: sum(len(iob_violations(list(seq), s)) for seq in train_tags) for s in ("iob2", "iob1")}
    if bad["iob2"] and not bad["iob1"]:
        out.note(
            "load.tag_scheme",
            "iob1",
            f"{bad['iob2']} I- tags open an entity, which IOB1 allows and IOB2 does not",
        )
        return "iob1"
    why = "O, B-x and I-x tags, every entity opened by B-"
    if bad["iob2"]:
        why = f"O, B-x and I-x tags; {bad['iob2']} ill-formed in train (the validate stage reports them)"
    out.note("load.tag_scheme", "iob2", why)
    return "iob2"


def infer(source: str, root: Path, opts: Options) -> Inferred:
    """Read `source` and decide params.yaml's load, validate, tokenize and evaluate values."""
    if opts.task is not None and opts.task not in TASK_TYPES:
        raise PipelineError(f"--task: expected one of {', '.join(TASK_TYPES)}, got {opts.task!r}")
    if opts.fmt is not None and opts.fmt not in LOAD_FORMATS:
        raise PipelineError(f"--format: expected one of {', '.join(LOAD_FORMATS)}, got {opts.fmt!r}")
    src = read(source, root, opts.fmt, opts.encoding)
    defaults = Params().model_dump(mode="json")
    out = Inferred(defaults)
    model = opts.model or defaults["model"]["name"]
    data = out.data
    data["model"]["name"] = model
    load = data["load"]
    load.update(source=src.ref, format=src.fmt, encoding=opts.encoding, drop_labels=[], preset=None)
    what = {"file": "one file", "folder": "split files by name", "dataset": "a saved or hub dataset"}[
        src.kind
    ]
    out.note("load.source", src.ref, what)
    refs = list(src.ref.values()) if isinstance(src.ref, dict) else [src.ref]
    if not source.startswith(assets.HUB_PREFIX):
        raw = (root / "data" / "raw").resolve()
        if any(not (root / ref).resolve().is_relative_to(raw) for ref in refs):
            out.lines.append(
                "note: the source is outside data/raw/, which the load stage depends on: "
                "dvc repro will not notice when it changes (move it into data/raw/)"
            )
        elif (root / ".git").exists() and (loose := dvcrepo.unversioned_files(root, [str(r) for r in refs])):
            out.lines.append(
                f"note: {' '.join(loose)}: in neither git nor DVC; a registered model trained on "
                f"{'it' if len(loose) == 1 else 'them'} cannot be replayed from the remotes: "
                f"`dvc add {' '.join(loose)}`, then commit the .dvc file{'s' if len(loose) > 1 else ''}"
            )
    if src.fmt:
        out.note("load.format", src.fmt, "--format" if opts.fmt else "from the file suffix")
    train, where = src.frames["train"], src.where
    if src.kind == "folder":
        where = str(Path(src.ref["train"]) if isinstance(src.ref, dict) else src.where)
    tokens = src.fmt in TOKEN_FORMATS or (
        opts.task in (None, "token_classification")
        and any(_is_list(train[c]) for c in _named(list(map(str, train.columns)), TOKEN_NAMES))
    )
    if tokens:
        if opts.task not in (None, "token_classification"):
            raise PipelineError(
                f"{where}: --task {opts.task} does not fit token data (one tag per word); leave --task out"
            )
        task = "token_classification"
        why = f"{src.fmt} files hold one tag per word" if src.fmt else "lists of tokens and tags"
        out.note("task", task, why)
        if src.fmt in TOKEN_FORMATS:
            text_col, label_col = "tokens", "tags"
        else:
            text_col, label_col = _token_columns(train, where, opts)
            load["columns"].update(text=text_col, label=label_col)
            out.note("load.columns", f"text={text_col}, label={label_col}", "the token and tag list columns")
        frames = {s: df[df[label_col].notna()] for s, df in src.frames.items()}
        train_tags = [list(t) for t in frames["train"][label_col]]
        scheme = _tag_scheme(train_tags, out)
        counts = Counter(str(t) for df in frames.values() for seq in df[label_col] for t in seq)
        labels = _order(set(counts))
        load["tag_scheme"] = scheme
        load["labels"] = labels
        shown = ", ".join(f"{name} {counts[name]}" for name in labels[:12]) + (
            " ..." if len(labels) > 12 else ""
        )
        out.note("load.labels", f"{len(labels)} tags", f"every tag seen: {shown}")
        texts = _sample(frames["train"])[text_col].map(list)
        pair_texts = None
    else:
        text_col, pair_col = _text_column(train, where, opts, out)
        label_col = _label_column(train, where, opts, {text_col} | ({pair_col} if pair_col else set()), out)
        load["columns"].update(text=text_col, text_pair=pair_col, label=label_col)
        frames = {}
        for s, df in src.frames.items():
            _check_column(label_col, df, f"{where} [{s}]", "--label-column")
            if df[label_col].isna().all():
                if s == "train":
                    raise PipelineError(
                        f"{where}: label column {label_col!r} is empty in train; pass --label-column"
                    )
                out.lines.append(f"split {s}: left out (its {label_col!r} column is empty: hidden labels)")
                continue
            frames[s] = df
            if blank := df.attrs.get("blank_rows"):
                out.lines.append(
                    f"note: {len(blank)} blank row(s) of {s} (row "
                    + ", ".join(map(str, blank[:3]))
                    + (", ..." if len(blank) > 3 else "")
                    + "): load skips them, and says so"
                )
            if unlabelled := [int(i) + 1 for i, v in zip(df.index, df[label_col].isna(), strict=True) if v]:
                out.lines.append(
                    f"note: {len(unlabelled)} row(s) of {s} have no {label_col!r} (row "
                    + ", ".join(map(str, unlabelled[:3]))
                    + (", ..." if len(unlabelled) > 3 else "")
                    + "): load keeps them and validate fails on them; label or remove them"
                )
        task = _table_task(train[label_col], label_col, where, opts, out)
        if task == "regression":
            load["labels"] = []
            values = pd.to_numeric(pd.concat([df[label_col] for df in frames.values()]), errors="coerce")
            out.note("load.labels", [], f"a numeric target from {values.min():g} to {values.max():g}")
        else:
            counts = Counter(_label_text(v) for df in frames.values() for v in df[label_col].dropna())
            labels = _order(set(counts))
            load["labels"] = labels
            out.note("load.labels", labels, "counts: " + ", ".join(f"{n} {counts[n]}" for n in labels))
        sample = _sample(frames["train"].dropna(subset=[text_col]))
        texts = sample[text_col].astype(str)
        pair_texts = sample[pair_col].astype(str) if pair_col else None
    data["task"] = task
    _splits(src, frames, load, out)
    if opts.group_by:
        _check_column(opts.group_by, train, where, "--group-by")
        out.note("load.split.group_by", opts.group_by, "--group-by: rows sharing it land in one split")
    load["split"]["group_by"] = opts.group_by
    data["tokenize"]["max_length"] = _max_length(texts, model, task, out, pair_texts)
    _validate(src, frames, task, label_col, data, out)
    _thresholds(src, frames, task, label_col, data, out)
    for item in opts.sets:
        _set(data, item, out)
    return out


def _set(data: dict[str, Any], item: str, out: Inferred) -> None:
    """--set train.epochs=3: a value the data does not decide, written with the rest (YAML syntax)."""
    key, eq, text = item.partition("=")
    node: Any = data
    *parents, leaf = key.strip().split(".")
    for name in parents:
        node = node.get(name) if isinstance(node, dict) else None
    if not eq or not leaf or not isinstance(node, dict) or leaf not in node:
        raise PipelineError(
            f"--set {item!r}: expected section.key=value naming a params.yaml key (e.g. train.epochs=3)"
        )
    try:
        node[leaf] = yaml.safe_load(text)
    except yaml.YAMLError:
        raise PipelineError(f"--set {item!r}: the value is not valid YAML") from None
    out.note(key.strip(), node[leaf], "--set")


def _splits(src: Source, frames: dict[str, pd.DataFrame], load: dict[str, Any], out: Inferred) -> None:
    present = [s for s in catalog.SPLIT_NAMES if s in frames]
    if src.kind == "dataset":
        load["split"]["from_source"] = {s: src.from_source[s] for s in present}
        out.note(
            "load.split.from_source", load["split"]["from_source"], "the dataset's splits by their names"
        )
    elif src.kind == "folder":
        load["source"] = {s: src.ref[s] for s in present} if isinstance(src.ref, dict) else src.ref
    missing = [s for s in ("validation", "test") if s not in frames]
    for s in missing:
        load["split"][s] = SPLIT_SHARE
    rows = ", ".join(f"{s} {len(frames[s])}" for s in present)
    if missing:
        share = f"{SPLIT_SHARE:.0%}" + (" each" if len(missing) > 1 else "")
        out.lines.append(f"splits: {rows} rows supplied; {' and '.join(missing)} carved from train ({share})")
    else:
        out.lines.append(f"splits: {rows} rows, all supplied (none carved)")


def _validate(
    src: Source, frames: dict[str, pd.DataFrame], task: str, label: str, data: dict[str, Any], out: Inferred
) -> None:
    """validate.min_rows_per_class: it applies to every split, so it must fit the smallest."""
    if task != "sequence_classification":
        return
    labels = sorted({_label_text(v) for df in frames.values() for v in df[label].dropna()})
    train_counts = Counter(_label_text(v) for v in frames["train"][label].dropna())
    fewest: list[tuple[int, str, str]] = []  # (rows, label, split)
    for s in catalog.SPLIT_NAMES:
        if s in frames:
            counts = Counter(_label_text(v) for v in frames[s][label].dropna())
            fewest += [(counts.get(n, 0), n, s) for n in labels]
        else:  # carved, stratified by label: about its share of train's rows
            fewest += [(int(train_counts.get(n, 0) * SPLIT_SHARE), n, s) for n in labels]
    rows, name, split = min(fewest, key=lambda t: t[0])  # the first split in order on a tie
    default = data["validate"]["min_rows_per_class"]
    value = min(default, rows // 2) if rows >= 2 else rows
    data["validate"]["min_rows_per_class"] = value
    if rows == 0:
        why = f"label {name} has no rows in {split}; add some, or its scores there say nothing of it"
    else:
        why = f"{name} has about {rows} rows in {split}, the fewest of any label and split; half, at most "
        why += str(default)
    out.note("validate.min_rows_per_class", value, why)


def _thresholds(
    src: Source, frames: dict[str, pd.DataFrame], task: str, label: str, data: dict[str, Any], out: Inferred
) -> None:
    evaluation = frames.get("test", frames["train"])
    train_rows = len(frames["train"])
    if task == "regression":
        n, what = _evaluation_size(src, train_rows, SPLIT_SHARE)
        limit = _round_up(_margin(n, 1.0))
        why = f"a model that learnt nothing scores about 0; {limit} is beyond chance on {n} {what}"
        _threshold(data, out, "pearson", limit, why)
        return
    if task == "token_classification":
        scheme = data["load"]["tag_scheme"]
        tags = [t for seq in evaluation[label] for t in seq]
        if scheme == "none":
            common, count = Counter(tags).most_common(1)[0]
            base = count / len(tags)
            n = len(tags) if "test" in frames else max(1, round(len(tags) * SPLIT_SHARE))
            limit = min(0.99, _round_up(base + _margin(n, math.sqrt(base * (1 - base)))))
            data["train"]["metric_for_best_model"] = "accuracy"
            why = f"tagging every word {common} scores {base:.3f}; "
            why += f"the margin is the 95% interval on {n} words"
            _threshold(data, out, "accuracy", limit, why)
            return
        from tunepipe.tagging import entities

        n = sum(len(entities(list(seq))) for seq in evaluation[label])
        if "test" not in frames:
            n = max(1, round(n * SPLIT_SHARE))
        limit = _round_up(_margin(n, 0.5))
        why = f"tagging every word O finds no entity (f1 0); {limit} is beyond chance on {n} test entities"
        _threshold(data, out, "f1", limit, why)
        return
    counts = Counter(_label_text(v) for v in evaluation[label].dropna())
    common, count = counts.most_common(1)[0]
    base = count / sum(counts.values())
    n, what = _evaluation_size(src, train_rows, SPLIT_SHARE)
    limit = min(0.99, _round_up(base + _margin(n, math.sqrt(base * (1 - base)))))
    split = "test" if "test" in frames else "train"
    why = f"always answering {common} scores {base:.3f} on {split}; "
    why += f"plus the 95% interval's half-width on {n} {what}"
    _threshold(data, out, "accuracy", limit, why)


def _threshold(data: dict[str, Any], out: Inferred, metric: str, limit: float, why: str) -> None:
    """The one threshold init sets: the task's headline metric, a margin above a model that
    learnt nothing (printed with that baseline)."""
    data["evaluate"]["thresholds"] = {metric: limit}
    out.note("evaluate.thresholds", {metric: limit}, why)


# --- writing ------------------------------------------------------------------------------------


def render(out: Inferred, command: str) -> str:
    """params.yaml's text: the schema line, what was inferred and why, then every section."""
    lines = [HEADER.rstrip("\n"), f"# Written by `{command}`; what it inferred from the data and why:"]
    lines += [f"#   {line}" for line in out.lines]
    lines.append("# Every other value is the default of its section (docs/reference/params.md).")
    body = yaml.safe_dump(out.data, sort_keys=False, allow_unicode=True, width=110)
    return "\n".join(lines) + "\n\n" + body


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise PipelineError(f"{target}: exists; pass --force to overwrite it")
    if target.is_dir():
        raise PipelineError(f"{target}: a directory, not a params file")


def write(root: Path, text: str, force: bool) -> Path:
    """Check the text against the params models, then replace params.yaml in one rename."""
    target = root / catalog.PARAMS
    _check_target(target, force)
    params_mod.parse(yaml.safe_load(text), "the params init wrote")
    write_text(target, text)
    return target


def init(
    source: str, root: Path, opts: Options, force: bool = False, say: Callable[[str], None] = print
) -> Path:
    """`tunepipe init SOURCE`: infer, print each decision, write params.yaml."""
    _check_target(root / catalog.PARAMS, force)  # before reading a large source for nothing
    out = infer(source, root, opts)
    for line in out.lines:
        say(line)
    words = ["tunepipe init", source]
    for flag, value in (
        ("--task", opts.task),
        ("--text-column", opts.text_column),
        ("--text-pair-column", opts.text_pair_column),
        ("--label-column", opts.label_column),
        ("--group-by", opts.group_by),
        ("--format", opts.fmt),
        ("--model", opts.model),
    ):
        if value:
            words += [flag, value]
    for item in opts.sets:
        words += ["--set", item]
    target = write(root, render(out, " ".join(words)), force)
    say(f"wrote {target}")
    return target


# --- examples -----------------------------------------------------------------------------------


def examples(root: Path) -> dict[str, Path]:
    folder = root / EXAMPLES_DIR
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def copy_example(name: str, root: Path, force: bool = False, say: Callable[[str], None] = print) -> Path:
    """`tunepipe init --example NAME`: examples/NAME.yaml, checked, as params.yaml."""
    found = examples(root)
    if name not in found:
        raise PipelineError(
            f"--example {name!r}: no {EXAMPLES_DIR}/{name}.yaml; "
            f"choose one of {', '.join(found) or 'none found'}"
        )
    target = root / catalog.PARAMS
    _check_target(target, force)
    text = found[name].read_text(encoding="utf-8")
    params_mod.parse(yaml.safe_load(text) or {}, str(found[name]))
    # The example's schema line points up from examples/; params.yaml's points beside it.
    first, _, rest = text.partition("\n")
    write_text(target, HEADER + (rest if first.startswith("# yaml-language-server:") else text))
    say(f"wrote {target} from {found[name]}")
    return target
