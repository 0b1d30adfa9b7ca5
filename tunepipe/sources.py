"""Reading a data source: a table file (CSV, TSV, JSON, JSON lines, parquet), a CoNLL or
word/TAG file, a saved dataset directory, or a hub dataset; one table or named splits."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from tunepipe import assets, catalog
from tunepipe import conll as conll_io
from tunepipe.errors import PipelineError
from tunepipe.io import decode_error, read_bytes
from tunepipe.params import ConllParams, LoadParams


def _read_csv(path: Path, sep: str, encoding: str) -> pd.DataFrame:
    """Cells as written: text, never numbers guessed from it (`1.0` stays `1.0`, `007` stays
    `007`); only an empty cell is missing (`NA` and `null` are text too)."""
    try:
        _check_header(path, sep, encoding)
        df = pd.read_csv(path, **_as_written(sep, encoding))
    except PipelineError:
        raise
    except UnicodeDecodeError:
        raise PipelineError(decode_error(path, encoding)) from None
    except pd.errors.EmptyDataError:
        raise PipelineError(f"{path}: the file is empty; expected a header line naming the columns") from None
    except Exception as exc:  # ParserError and friends: pandas counts records, not file lines
        found = _csv_problem(path, sep, encoding)
        raise PipelineError(found or f"{path}: cannot read as csv: {exc}") from None
    if not isinstance(df.index, pd.RangeIndex):
        # Every row has one field more than the header: pandas would quietly make the first an index.
        found = _csv_problem(path, sep, encoding)
        raise PipelineError(found or f"{path}: the rows have more fields than the header")
    return df.iloc[: len(df) - _trailing_blanks(df)]


def _as_written(sep: str, encoding: str) -> dict[str, Any]:
    """read_csv's arguments for cells as written (see _read_csv). A blank line is a record whose
    cells are all empty: pandas would skip it, every later row moving up one (predictions would
    no longer line up with the input's rows, row numbers in messages would be off, and load would
    drop it without saying so). Blank lines after the last row are the file's end, not rows
    (_trailing_blanks)."""
    return {
        "sep": sep,
        "dtype": str,
        "keep_default_na": False,
        "na_values": [""],
        "encoding": encoding,
        "skip_blank_lines": False,
    }


def _blank_records(df: pd.DataFrame) -> pd.Series:
    """Rows whose every cell is missing or only spaces: a blank line of a CSV or TSV, an empty
    JSON object, an all-null parquet record."""
    blank = pd.Series(True, index=df.index)
    for name in df.columns:
        col = df[name]
        empty = col.isna()
        if col.dtype == object or pd.api.types.is_string_dtype(col):
            empty |= col.map(lambda v: isinstance(v, str) and not v.strip())
        blank &= empty
    return blank


def drop_blank_records(df: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """`df` without its blank records, each other row indexed by its 0-based position in the file
    (not a parquet file's own stored index), and the 1-based rows left out."""
    df = df.reset_index(drop=True)
    blank = _blank_records(df)
    if not blank.any():
        return df, []
    return df[~blank], [int(i) + 1 for i in df.index[blank]]


def _trailing_blanks(df: pd.DataFrame) -> int:
    """How many rows at the end of a table are blank (_blank_records); only the tail is looked at."""
    end = len(df)
    while end and _blank_records(df.iloc[end - 1 : end]).iat[0]:
        end -= 1
    return len(df) - end


def _repeated(names: list[str]) -> list[str]:
    return [name for name, n in Counter(names).items() if n > 1]


def _no_column_twice(path: Path, where: str, names: list[Any]) -> None:
    twice = _repeated(names)
    if twice:
        raise PipelineError(
            f"{path}: {where} names column(s) {', '.join(map(repr, twice))} more than once; "
            "rename or remove the duplicate so each column has one name"
        )


def _check_header(path: Path, sep: str, encoding: str) -> None:
    """A column named twice is an error: pandas renames the second `text` to `text.1`, and the
    columns mapping would quietly read the first. The header as written, read again unrenamed."""
    header = pd.read_csv(
        path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False, encoding=encoding
    )
    names = list(header.iloc[0]) if len(header) else []
    if len(names) == 1 and isinstance(names[0], str):
        _check_separator(path, names[0], sep)
    _no_column_twice(path, "the header", names)


SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def _check_separator(path: Path, header: str, sep: str) -> None:
    """A header that reads as one column but splits into several names at another separator: a
    semicolon CSV (as spreadsheets write it in many locales) would otherwise fail later as "no
    text column", naming the whole header line as one column."""
    for other, name in SEPARATORS.items():
        parts = header.split(other)
        if other != sep and len(parts) > 1 and all(p.strip() for p in parts):
            kind = "csv" if sep == "," else "tsv"
            raise PipelineError(
                f"{path}: the header {header!r} is one column when read {SEPARATORS[sep]}-separated "
                f"({kind}), but {len(parts)} at each {name}: save the file {SEPARATORS[sep]}-separated (e.g. "
                f"pandas.read_csv(path, sep={other!r}).to_csv(new_path, index=False)){_tsv_hint(other)}"
            )


def _tsv_hint(found: str) -> str:
    return ", or read it as tsv (load.format: tsv; `tunepipe init --format tsv`)" if found == "\t" else ""


def _no_repeated_keys(where: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A json object_pairs_hook: an object with a key twice is an error (json keeps the last value
    and pandas' reader the last or first, so which `text` is read would be a guess)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        twice = _repeated([k for k, _ in pairs])
        if twice:
            raise PipelineError(
                f"{where}: an object has the key(s) {', '.join(map(repr, twice))} more than once; "
                "give each field one key"
            )
        return dict(pairs)

    return hook


def _csv_problem(path: Path, sep: str, encoding: str) -> str | None:
    """The file line where a CSV goes wrong, found again with the csv module, which counts lines
    (pandas reports the record number, and a quoted line break makes the two differ)."""
    data = read_bytes(path)
    if data is None:
        return None
    lines = io.StringIO(data.decode(encoding, errors="replace"), newline="").readlines()
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        reader = csv.reader(lines, delimiter=sep)
        width, start, last_start = None, 1, 1
        for record in reader:
            if record and width is None:
                width = len(record)
            elif record and len(record) > width:
                return (
                    f"{path}, line {start}: found {len(record)} fields, expected {width} as in the header "
                    f"(a {'tab' if sep == chr(9) else 'comma'} inside an unquoted text? put the text in "
                    "double quotes)"
                )
            last_start, start = start, reader.line_num + 1
        # A quote that never closes swallows the rest of the file into the last record.
        try:
            list(csv.reader(lines[last_start - 1 :], delimiter=sep, strict=True))
        except csv.Error:
            return (
                f"{path}, line {last_start}: a double quote opens a field that never closes; "
                'quote the whole field, and write a quote inside it as ""'
            )
        return None
    finally:
        csv.field_size_limit(limit)


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    """One JSON object per line (blank lines skipped); a broken line is named by its number."""
    records = list(_jsonl_records(path, encoding))
    if not records:
        raise PipelineError(f"{path}: no records; expected one JSON object per line")
    return pd.DataFrame(records)  # from_records would drop a `{}` line


def _jsonl_records(path: Path, encoding: str) -> Iterator[dict[str, Any]]:
    """One JSON object per line (blank lines skipped); a broken line is named by its number."""
    for n, line in conll_io.read_lines(path, encoding):
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=_no_repeated_keys(f"{path}, line {n}"))
        except json.JSONDecodeError as err:
            where = f"{path}, line {n}"
            raise PipelineError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(value, dict):
            raise PipelineError(
                f'{path}, line {n}: expected a JSON object such as {{"text": ..., "label": ...}}, '
                f"got {type(value).__name__}"
            )
        yield value


def _read_json(path: Path, encoding: str) -> pd.DataFrame:
    """Checked with the json module first: it names the line of an error, and pandas' own parser
    lets some invalid JSON through (a trailing comma)."""
    try:
        text = "\n".join(line for _, line in conll_io.read_lines(path, encoding))
        value = json.loads(text, object_pairs_hook=_no_repeated_keys(str(path)))
    except json.JSONDecodeError as err:
        where = f"{path}, line {err.lineno}"
        raise PipelineError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    if isinstance(value, list):  # pandas would read a list of lists as numbered columns, padding with NaN
        bad = next((i for i, item in enumerate(value, 1) if not isinstance(item, dict)), None)
        if bad is not None:
            raise PipelineError(
                f"{path}: item {bad} of the list is {type(value[bad - 1]).__name__}, not an object; "
                'expected a list of records such as {"text": ..., "label": ...} or a mapping of columns'
            )
    try:
        return pd.read_json(path, encoding=encoding)
    except Exception as exc:
        raise PipelineError(
            f"{path}: cannot read as json ({exc}); expected a list of records or a mapping of columns"
        ) from None


def _read_parquet(path: Path) -> pd.DataFrame:
    _read_parquet_schema(path)
    return pd.read_parquet(path)


def _read_parquet_schema(path: Path) -> None:
    """A parquet file may name a column twice too; say so rather than pyarrow's field dump."""
    import pyarrow.parquet as pq

    _no_column_twice(path, "the file", pq.read_schema(path).names)


READERS: dict[str, Callable[[Path, str], pd.DataFrame]] = {
    "csv": lambda p, enc: _read_csv(p, ",", enc),
    "tsv": lambda p, enc: _read_csv(p, "\t", enc),
    "json": _read_json,
    "jsonl": _read_jsonl,
    "parquet": lambda p, enc: _read_parquet(p),
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


def read_table(
    path: Path, fmt: str | None = None, conll: ConllParams | None = None, encoding: str = "utf-8"
) -> pd.DataFrame:
    if path.is_dir():
        raise PipelineError(f"{path}: expected a file, found a directory")
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    fmt = fmt or infer_format(path)
    if fmt in TOKEN_FORMATS:
        c = conll or ConllParams()
        if fmt == "conll":
            df = conll_io.read_conll(path, c.token_column, c.tag_column, c.separator, encoding=encoding)
        else:
            df = conll_io.read_tagged(path, encoding=encoding)
        df.attrs["format"] = fmt  # to_canonical numbers a CoNLL sentence's words by file line
        return df
    if fmt not in READERS:
        raise PipelineError(
            f"{path}: load.format {fmt!r} is not one of {', '.join([*READERS, *TOKEN_FORMATS])}"
        )
    try:
        return READERS[fmt](path, encoding)
    except PipelineError:
        raise
    except LookupError:
        raise PipelineError(f"{path}: unknown text encoding {encoding!r} (load.encoding)") from None
    except Exception as exc:  # pandas and pyarrow raise many types for unreadable files
        raise PipelineError(f"{path}: cannot read as {fmt}: {exc}") from None


def iter_table(path: Path, fmt: str, rows: int, encoding: str = "utf-8") -> Iterator[pd.DataFrame]:
    """A table file `rows` rows at a time, read as read_table reads it whole (the same cells, the
    same errors), so that a file larger than memory can be predicted: CSV/TSV through pandas'
    chunked reader, JSON lines a block of lines at a time (all keys gathered in a first pass, so
    every block has the same columns), parquet a record batch at a time. Whole JSON documents
    and token files are read whole and handed out in slices."""
    if fmt in ("csv", "tsv") and path.is_file():
        yield from _iter_csv(path, "," if fmt == "csv" else "\t", rows, encoding)
    elif fmt == "jsonl" and path.is_file():
        keys: dict[str, None] = {}
        for record in _jsonl_records(path, encoding):
            keys.update(dict.fromkeys(record))
        block: list[dict[str, Any]] = []
        for record in _jsonl_records(path, encoding):
            block.append(record)
            if len(block) == rows:
                yield pd.DataFrame(block, columns=list(keys))
                block = []
        if block or not keys:
            yield pd.DataFrame(block, columns=list(keys))
    elif fmt == "parquet" and path.is_file():
        import pyarrow.parquet as pq

        try:
            _read_parquet_schema(path)
            with pq.ParquetFile(path) as source:
                empty = True
                for batch in source.iter_batches(batch_size=rows):
                    empty = False
                    yield batch.to_pandas()
                if empty:
                    yield source.schema_arrow.empty_table().to_pandas()
        except PipelineError:
            raise
        except Exception as exc:
            raise PipelineError(f"{path}: cannot read as parquet: {exc}") from None
    else:
        df = read_table(path, fmt, encoding=encoding)
        for start in range(0, max(len(df), 1), rows):
            yield df.iloc[start : start + rows]


def _iter_csv(path: Path, sep: str, rows: int, encoding: str) -> Iterator[pd.DataFrame]:
    try:
        _check_header(path, sep, encoding)
        reader = pd.read_csv(path, chunksize=rows, **_as_written(sep, encoding))
        held: pd.DataFrame | None = None  # blank rows at a chunk's end: rows only if more follow
        with reader:
            for chunk in reader:
                if not isinstance(chunk.index, pd.RangeIndex):
                    found = _csv_problem(path, sep, encoding)
                    raise PipelineError(found or f"{path}: the rows have more fields than the header")
                if held is not None:
                    chunk = pd.concat([held, chunk], ignore_index=True)
                blank = _trailing_blanks(chunk)
                held = chunk.iloc[len(chunk) - blank :] if blank else None
                chunk = chunk.iloc[: len(chunk) - blank]
                yield chunk
    except PipelineError:
        raise
    except UnicodeDecodeError:
        raise PipelineError(decode_error(path, encoding)) from None
    except LookupError:
        raise PipelineError(f"{path}: unknown text encoding {encoding!r} (load.encoding)") from None
    except pd.errors.EmptyDataError:
        raise PipelineError(f"{path}: the file is empty; expected a header line naming the columns") from None
    except Exception as exc:  # ParserError and friends: pandas counts records, not file lines
        found = _csv_problem(path, sep, encoding)
        raise PipelineError(found or f"{path}: cannot read as csv: {exc}") from None


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
            hint = ""
            if assets.hub_offline("HF_DATASETS_OFFLINE"):
                hint = (
                    " (Hugging Face offline mode is on: unset HF_HUB_OFFLINE and HF_DATASETS_OFFLINE to "
                    "download it, or name a local copy saved with DatasetDict.save_to_disk)"
                )
            raise PipelineError(f"load.source {ref}: cannot load dataset: {exc}{hint}") from None
        return _dataset_to_frames(dsd)
    path = Path(assets.resolve(ref))
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            from datasets import load_from_disk

            return _dataset_to_frames(load_from_disk(str(path)))
        raise PipelineError(
            f"{path}: a directory, but not a saved dataset (no dataset_dict.json); set load.source to a "
            "file, or to a mapping {train: <file>, validation: <file>, test: <file>}"
        )
    return read_table(path, p.format, p.conll, p.encoding)


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


def incoming_files() -> list[Path]:
    """The table files `tunepipe ingest` added (catalog.INCOMING, relative to the project root, the
    stage's working directory), in name order; none when the folder does not exist. A file in a
    format no table reader takes is an error naming it."""
    folder = catalog.INCOMING
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for path in files:
        table_format(path)
    return files


def table_format(path: Path) -> str:
    """The table format of an added rows file (csv, tsv, json, jsonl, parquet, compressed too)."""
    suffixes = [s.lstrip(".").lower() for s in path.suffixes if s not in COMPRESSION]
    fmt = SUFFIXES.get(suffixes[-1], suffixes[-1]) if suffixes else ""
    if fmt not in READERS:
        raise PipelineError(
            f"{path}: not a table file tunepipe ingest adds rows from; expected a name ending in "
            f"{', '.join('.' + f for f in READERS)} (optionally compressed: {', '.join(COMPRESSION)})"
        )
    return fmt
