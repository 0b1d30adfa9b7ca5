"""One row per bad input: what is changed in a throwaway project, which stage or function runs,
the exit code or exception, and a fragment of the message. Every row also checks that nothing
half-written or temporary is left behind, that the failing stage wrote no output, and that the
audit record is untouched: dvc.lock, git tags and lineage/ are as they were before the row ran.

Stages run in this process (their `main()` under `tunepipe.stage.run`, as `python -m tasks.x`
would), in a copy of one project built per module: the whole table takes seconds, not minutes.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers import build_classifier, make_project, make_reviews, run, set_params
from tunepipe import stage
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit


@dataclass
class Models:
    """Model folders a row may point at, built once per module."""

    base: Path  # the tiny BERT encoder
    sequence: Path  # a saved sequence classifier (predict)
    token: Path  # a saved token classifier (predict)


Setup = Callable[[Path, Models], None]


@dataclass
class Case:
    id: str
    message: str  # a regular expression the error must contain
    files: dict[str, str | bytes | Callable[[], str | bytes]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    setup: Setup | None = None
    stages: tuple[str, ...] = ("load",)  # all but the last must pass; the last must fail
    predict: dict[str, Any] | None = None  # instead of stages: predict_file's arguments
    cli: tuple[str, ...] | None = None  # instead of stages: `tunepipe <args>`, in this process
    flow: tuple[str, ...] | None = None  # instead of stages: `python -m flows.pipeline <args>`
    exit_code: int = 1


# --- input files ---------------------------------------------------------------------------


def reviews(n: int = 60, seed: int = 0) -> list[dict[str, str]]:
    return make_reviews(n, seed=seed, movies=12)


def csv_of(rows: list[dict[str, Any]], sep: str = ",") -> str:
    return pd.DataFrame(rows).to_csv(index=False, sep=sep)


def jsonl_of(rows: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


GOOD = reviews()
HEADER = "category,text,movie_name\n"


def with_lines(*extra: str, at: int = 5) -> str:
    """The good CSV with raw lines put in after line `at` (1-based, header is line 1)."""
    lines = csv_of(GOOD).splitlines(keepends=True)
    return "".join(lines[:at] + [line + "\n" for line in extra] + lines[at:])


def text_twice(sep: str) -> str:
    """The good rows with a column of other words before `text`, also headed `text`."""
    rows = [{"category": r["category"], "decoy": "other words", **r} for r in GOOD]
    return csv_of(rows, sep=sep).replace("decoy", "text", 1)


def parquet_text_twice(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [[r[k] for r in GOOD] for k in ("category", "text", "text", "movie_name")]
    names = ["category", "text", "text", "movie_name"]
    columns[1] = ["other words"] * len(GOOD)
    pq.write_table(pa.table([pa.array(c) for c in columns], names=names), path)


def conll(text: str) -> str:
    return text.strip("\n") + "\n"


NER = conll("""
EU B-ORG
rejects O
German B-MISC

Peter B-PER
Blackburn I-PER
""")
TOKEN_PARAMS = {
    "task": "token_classification",
    "load.source": "data/raw/ner.conll",
    "load.columns": {"text": "tokens", "label": "tags"},
    "load.labels": [],
    "load.drop_labels": [],
    "load.split.group_by": None,
}


def ner_file(sentences: int = 30, bad: str | None = None) -> str:
    """A CoNLL file of `sentences` sentences; `bad` replaces the second sentence's first line."""
    blocks = [f"Word{i} B-PER\nsaid O\nhello O\n" for i in range(sentences)]
    if bad is not None:
        blocks[1] = bad + "\nsaid O\n"
    return "\n".join(blocks)


def split_files(train: list[dict[str, str]], test: list[dict[str, str]], validation=None) -> dict[str, str]:
    files = {"data/raw/train.csv": csv_of(train), "data/raw/test.csv": csv_of(test)}
    if validation is not None:
        files["data/raw/validation.csv"] = csv_of(validation)
    return files


def split_source(validation: bool = False) -> dict[str, Any]:
    source = {"train": "data/raw/train.csv", "test": "data/raw/test.csv"}
    if validation:
        source["validation"] = "data/raw/validation.csv"
    return {"load.source": source}


def saved_dataset(root: Path, models: Models) -> None:
    from datasets import Dataset, DatasetDict

    rows = reviews(40)
    data = {k: [r[k] for r in rows] for k in rows[0]}
    DatasetDict({"train": Dataset.from_dict(data)}).save_to_disk(str(root / "data/raw/saved"))


# --- model folders -------------------------------------------------------------------------


def model_copy(change: Callable[[Path], None]) -> Setup:
    def setup(root: Path, models: Models) -> None:
        target = root / "badmodel"
        shutil.copytree(models.base, target)
        change(target)

    return setup


def only_pickled_weights(d: Path) -> None:
    (d / "model.safetensors").rename(d / "pytorch_model.bin")


def custom_code(d: Path) -> None:
    config = json.loads((d / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (d / "config.json").write_text(json.dumps(config))


def broken_config(d: Path) -> None:
    (d / "config.json").write_text('{"model_type": "bert",\n "hidden_size": 32,,\n}')


def no_config(d: Path) -> None:
    (d / "config.json").unlink()


def no_weights(d: Path) -> None:
    (d / "model.safetensors").unlink()


def linked_out(name: str) -> Callable[[Path], None]:
    """`name` in the model folder becomes a link to a copy in a folder beside it (foreign/)."""

    def change(d: Path) -> None:
        foreign = d.parent / "foreign" / name
        foreign.parent.mkdir(exist_ok=True)
        (d / name).rename(foreign)
        (d / name).symlink_to(foreign)

    return change


config_linked_out = linked_out("config.json")
weights_linked_out = linked_out("model.safetensors")


def classifier_linked_out(root: Path, models: Models) -> None:
    target = root / "badmodel"
    shutil.copytree(models.sequence, target)
    config_linked_out(target)


BAD_MODEL = {"model.name": "badmodel"}
VALIDATE = ("load", "validate")


# --- registered versions -------------------------------------------------------------------


def register_fake(root: Path, model_dir: Path | None = None) -> str:
    """Tag `model@v0.1.0` on a commit whose dvc.lock pins a model, as `tunepipe register` would.

    With `model_dir`, DVC hashes that folder into the project's cache (its own build and
    transfer); without, dvc.lock pins a model that no cache holds, as in a fresh clone.
    Returns the cache's `.dir` hash of the model."""
    import yaml
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.transfer import transfer

    from tunepipe import dvcrepo

    if model_dir is None:
        digest, size, nfiles = "0123456789abcdef0123456789abcdef.dir", 1000, 4
    else:
        target = root / "models/model"
        shutil.copytree(model_dir, target)
        with dvcrepo.open_repo(root) as repo:
            odb = repo.cache.local
            staging, meta, obj = build(odb, str(target), odb.fs, "md5")
            transfer(staging, odb, {obj.hash_info}, shallow=False, hardlink=False)
        shutil.rmtree(target)
        digest, size, nfiles = obj.hash_info.value, meta.size, meta.nfiles
    out = {"path": "models/model", "hash": "md5", "md5": digest, "size": size, "nfiles": nfiles}
    lock = {"schema": "2.0", "stages": {"train": {"cmd": "python -m tasks.train", "outs": [out]}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    run(["git", "add", "dvc.lock"], root)
    run(["git", "commit", "-q", "-m", "Register model@v0.1.0"], root)
    run(["git", "tag", "-a", "model@v0.1.0", "-m", "Registration of model@v0.1.0"], root)
    return digest


def cached_file(root: Path, dir_digest: str, name: str) -> Path:
    """The cache file that holds `name` of a cached model folder (DVC's content-addressed layout)."""
    cache = root / ".dvc/cache/files/md5"
    entries = json.loads((cache / dir_digest[:2] / dir_digest[2:]).read_text())
    md5 = next(e["md5"] for e in entries if e["relpath"] == name)
    return cache / md5[:2] / md5[2:]


def uncached_version(root: Path, models: Models) -> None:
    register_fake(root)


def cached_version(root: Path, models: Models) -> None:
    register_fake(root, models.sequence)


def corrupted_cache(root: Path, models: Models) -> None:
    path = cached_file(root, register_fake(root, models.sequence), "model.safetensors")
    path.chmod(0o644)  # DVC makes cache files read-only
    with path.open("ab") as f:
        f.write(b"bit rot")


def lost_cache_file(root: Path, models: Models) -> None:
    cached_file(root, register_fake(root, models.sequence), "model.safetensors").unlink()


def evaluation_report(passed: bool) -> str:
    return json.dumps(
        {
            "task": "sequence_classification",
            "metrics": {"accuracy": 0.4},
            "thresholds": [{"metric": "accuracy", "min": 0.6, "value": 0.4, "passed": passed}],
            "passed": passed,
        }
    )


NO_CACHE = (
    r"model@v0.1.0: the model \(models/model, 0123456789abcdef0123456789abcdef.dir\) is not in the DVC cache"
)
WHAT_TO_DO = r".*dvc remote add -d <name> <url>.*dvc pull.*git checkout model@v0.1.0.*dvc repro"
CORRUPTED = (
    r"model@v0.1.0: the DVC cache is corrupted: \.dvc/cache/files/md5/\w\w/\w+ "
    r"\(models/model/model.safetensors\) no longer holds what was registered: delete it and run `dvc pull`"
)
LOST = (
    r"model@v0.1.0: models/model/model.safetensors \(its cache file \.dvc/cache/files/md5/\w\w/\w+\) "
    r"is not in the DVC cache"
)
FLOW = ("--root", ".", "--no-register")


# --- prediction inputs ---------------------------------------------------------------------


def predict_with(model: str = "sequence", input: str = "new.csv", output: str = "out.csv", **kw: Any):
    return {"model": model, "input": input, "output": output, "text_column": "text"} | kw


CASES = [
    # ---- reading the source ----
    Case(
        "missing file",
        r"data/raw/nowhere.csv: file not found",
        params={"load.source": "data/raw/nowhere.csv"},
    ),
    Case(
        "unknown suffix",
        r"data.xyz: cannot tell the file format.*load.format",
        files={"data/raw/data.xyz": csv_of(GOOD)},
        params={"load.source": "data/raw/data.xyz"},
    ),
    Case(
        "unknown format",
        r"load.format: expected one of csv, tsv, json, jsonl, parquet, conll, tagged, got 'xls'",
        params={"load.format": "xls"},
    ),
    Case("empty source", r"load.source is empty", params={"load.source": ""}),
    Case(
        "empty file",
        r"empty\.csv: the file is empty",
        files={"data/raw/empty.csv": ""},
        params={"load.source": "data/raw/empty.csv"},
    ),
    Case(
        "directory that is no dataset",
        r"data/raw/folder: a directory, but not a saved dataset",
        setup=lambda root, m: (root / "data/raw/folder").mkdir(),
        params={"load.source": "data/raw/folder"},
    ),
    Case(
        "package not installed",
        r"package 'no_such_pkg' is not installed",
        params={"load.source": "package:no_such_pkg/x.csv"},
    ),
    Case(
        "file missing in package",
        r"does not exist in the installed package 'tunepipe'",
        params={"load.source": "package:tunepipe/no_such.csv"},
    ),
    Case(
        "hub dataset offline",
        r"hub:someorg/somedata: cannot load dataset.*offline mode is on",
        params={"load.source": "hub:someorg/somedata"},
    ),
    Case(
        "parquet that is not",
        r"broken.parquet: cannot read as parquet",
        files={"data/raw/broken.parquet": b"not parquet at all"},
        params={"load.source": "data/raw/broken.parquet"},
    ),
    # ---- CSV, JSON lines, JSON: the file line, not a record number or byte offset ----
    Case(
        "csv quote never closed",
        r"reviews.csv, line 7: a double quote opens a field that never closes",
        files={
            "data/raw/reviews.csv": with_lines('fresh,"a line break\ninside quotes",m', 'fresh,"open,m', at=4)
        },
    ),
    Case(
        "csv extra field",
        r"reviews.csv, line 8: found 4 fields, expected 3 as in the header.*comma",
        files={"data/raw/reviews.csv": with_lines("fresh,one,two,m", at=7)},
    ),
    Case(
        "csv every row one field more",
        r"r.csv, line 2: found 4 fields, expected 3",
        files={
            "data/raw/r.csv": HEADER
            + "".join(f"x,{r['category']},{r['text']},{r['movie_name']}\n" for r in GOOD)
        },
        params={"load.source": "data/raw/r.csv"},
    ),
    Case(
        "tsv extra field",
        r"r.tsv, line 4: found 4 fields.*tab inside",
        files={
            "data/raw/r.tsv": csv_of(GOOD[:2], sep="\t")
            + "fresh\tone\ttwo\tm\n"
            + csv_of(GOOD[2:], sep="\t").split("\n", 1)[1]
        },
        params={"load.source": "data/raw/r.tsv"},
    ),
    Case(
        "csv not utf-8",
        r"reviews.csv, line 6: not valid utf-8 \(byte 0xe9.*re-save the file as UTF-8.*load.encoding",
        files={"data/raw/reviews.csv": with_lines("fresh,caf\xe9 gripping,m").encode("latin-1")},
    ),
    Case(
        "csv not utf-8, compressed",
        r"r.csv.gz, line 6: not valid utf-8",
        files={
            "data/raw/r.csv.gz": lambda: __import__("gzip").compress(
                with_lines("fresh,caf\xe9,m").encode("latin-1")
            )
        },
        params={"load.source": "data/raw/r.csv.gz"},
    ),
    Case(
        "jsonl broken line",
        r"r.jsonl, line 3: not valid JSON \(Expecting property name",
        files={
            "data/raw/r.jsonl": jsonl_of(GOOD[:2]) + '{"category": "fresh", text: "x"}\n' + jsonl_of(GOOD[2:])
        },
        params={"load.source": "data/raw/r.jsonl"},
    ),
    Case(
        "jsonl line that is no object",
        r"r.jsonl, line 2: expected a JSON object",
        files={"data/raw/r.jsonl": jsonl_of([GOOD[0], ["fresh", "a list"]] + GOOD[1:])},
        params={"load.source": "data/raw/r.jsonl"},
    ),
    Case(
        "jsonl without records",
        r"r.jsonl: no records",
        files={"data/raw/r.jsonl": "\n\n"},
        params={"load.source": "data/raw/r.jsonl"},
    ),
    Case(
        "json broken",
        r"r.json, line 3: not valid JSON",
        files={"data/raw/r.json": '[\n{"text": "a"},\n{"text": "b",}\n]'},
        params={"load.source": "data/raw/r.json"},
    ),
    Case(
        "json list of lists",
        r"r.json: item 2 of the list is list, not an object; expected a list of records",
        files={"data/raw/r.json": '[\n{"category": "fresh", "text": "good"},\n["rotten", "bad"]\n]'},
        params={"load.source": "data/raw/r.json"},
    ),
    Case(
        "json scalar",
        r"r.json: cannot read as json",
        files={"data/raw/r.json": "42"},
        params={"load.source": "data/raw/r.json"},
    ),
    # ---- columns and values ----
    Case(
        "missing text column",
        r"missing text column 'review'; the file has columns category, text, movie_name",
        params={"load.columns.text": "review"},
    ),
    Case(
        "missing label column",
        r"missing label column 'sentiment'",
        params={"load.columns.label": "sentiment"},
    ),
    Case("missing group column", r"missing group column 'film'", params={"load.split.group_by": "film"}),
    Case(
        "integer text column",
        r"r.jsonl: column 'text' must hold text; 60 value\(s\) are not strings, e.g. row 1: 0 \(int\)",
        files={"data/raw/r.jsonl": jsonl_of([dict(r, text=i) for i, r in enumerate(GOOD)])},
        params={"load.source": "data/raw/r.jsonl"},
    ),
    Case(
        "list-valued text column",
        r"column 'text' must hold text; 1 value\(s\).*row 3: \['two', 'words'\] \(list\)",
        files={"data/raw/r.jsonl": jsonl_of(GOOD[:2] + [dict(GOOD[2], text=["two", "words"])] + GOOD[3:])},
        params={"load.source": "data/raw/r.jsonl"},
    ),
    Case(
        "regression target not a number",
        r"column 'score' must hold numbers for a regression task.*row 2: 'high'",
        files={"data/raw/s.csv": "text,score\na,1.5\nb,high\nc,2\n"},
        params={
            "task": "regression",
            "load.source": "data/raw/s.csv",
            "load.columns.label": "score",
            "load.labels": [],
            "load.drop_labels": [],
            "load.split.group_by": None,
            "evaluate.thresholds": {},
        },
    ),
    Case(
        "drop_labels on tokens",
        r"load.drop_labels applies to sequence_classification only",
        files={"data/raw/ner.conll": ner_file()},
        params=TOKEN_PARAMS | {"load.drop_labels": ["O"]},
    ),
    # ---- too few rows ----
    Case(
        "header only",
        r"h.csv: 0 usable row\(s\).*at least 3 are needed.*\(test, validation\)",
        files={"data/raw/h.csv": HEADER},
        params={"load.source": "data/raw/h.csv"},
    ),
    Case(
        "one row",
        r"one.csv: 1 usable row\(s\).*at least 3 are needed",
        files={"data/raw/one.csv": csv_of(GOOD[:1])},
        params={"load.source": "data/raw/one.csv"},
    ),
    Case(
        "one train row beside a test file",
        r"train.csv: 1 usable row\(s\).*at least 2 are needed.*\(validation\)",
        files=split_files(GOOD[:1], GOOD[1:20]),
        params=split_source(),
    ),
    Case(
        "every row dropped",
        r"0 usable row\(s\) \(after load.drop_labels",
        params={"load.drop_labels": ["fresh", "rotten"]},
    ),
    Case(
        "two movies for three splits",
        r"carving a validation split .* from 1 groups \(movie_name\) leaves one side empty",
        files={"data/raw/two.csv": csv_of([dict(r, movie_name=f"m{i % 2}") for i, r in enumerate(GOOD)])},
        params={"load.source": "data/raw/two.csv"},
    ),
    Case(
        "split fraction out of range",
        r"load.split.test: expected above 0 and below 1, got 1.5",
        params={"load.split.test": 1.5},
    ),
    Case(
        "empty test file",
        r"split 'test' is empty after loading data/raw/test.csv",
        files=split_files(GOOD[:40], []) | {"data/raw/test.csv": HEADER},
        params=split_source(),
    ),
    # ---- splits supplied by the user that share texts ----
    Case(
        "test repeats train",
        r"test.csv: 5 row\(s\) of the test split repeat texts of the train split .*load.overlap: drop",
        files=split_files(GOOD[:40], GOOD[35:55]),
        params=split_source(),
    ),
    Case(
        "validation repeats train",
        r"validation.csv: 2 row\(s\) of the validation split repeat texts of the train split",
        files=split_files(GOOD[:30], GOOD[40:], GOOD[28:40]),
        params=split_source(validation=True),
    ),
    Case(
        "validation repeats test",
        r"validation.csv: 3 row\(s\) of the validation split repeat texts of the test split",
        files=split_files(GOOD[:30], GOOD[40:], GOOD[30:43]),
        params=split_source(validation=True),
    ),
    Case(
        "unknown split name",
        r"load.source: unknown split\(s\) \['dev'\]; use train, validation, test",
        params={"load.source": {"train": "data/raw/reviews.csv", "dev": "data/raw/reviews.csv"}},
    ),
    Case(
        "splits without train",
        r"a mapping of splits needs at least `train`",
        params={"load.source": {"test": "data/raw/reviews.csv"}},
    ),
    Case(
        "from_source names a missing split",
        r"has no split 'validation_matched'; it has train",
        setup=saved_dataset,
        params={"load.source": "data/raw/saved", "load.split.from_source": {"test": "validation_matched"}},
    ),
    Case(
        "from_source unknown canonical split",
        r"load.split.from_source: unknown split\(s\) \['dev'\]",
        setup=saved_dataset,
        params={"load.source": "data/raw/saved", "load.split.from_source": {"dev": "train"}},
    ),
    # ---- CoNLL and word/TAG files ----
    Case(
        "conll short line",
        r"ner.conll, line 5: found 1 column\(s\), expected 2 as on line 1",
        files={"data/raw/ner.conll": ner_file(bad="Lonely")},
        params=TOKEN_PARAMS,
    ),
    Case(
        "conll without sentences",
        r"ner.conll: no sentences found",
        files={"data/raw/ner.conll": "\n\n-DOCSTART- O\n\n"},
        params=TOKEN_PARAMS,
    ),
    Case(
        "conll not utf-8",
        r"ner.conll, line 5: not valid utf-8",
        files={"data/raw/ner.conll": ner_file(bad="Caf\xe9 B-ORG").encode("latin-1")},
        params=TOKEN_PARAMS,
    ),
    Case(
        "tagged token without tag",
        r"pos.txt, line 2: token 'dog' is not word/TAG",
        files={"data/raw/pos.txt": "The/DT cat/NN\nA/DT dog\n"},
        params=TOKEN_PARAMS | {"load.source": "data/raw/pos.txt", "load.format": "tagged"},
    ),
    Case(
        "token tags not a list",
        r"r.jsonl, row 1: tags must be a list of strings, got 'O O'",
        files={"data/raw/r.jsonl": jsonl_of([{"tokens": ["a", "b"], "tags": "O O"}] * 3)},
        params=TOKEN_PARAMS | {"load.source": "data/raw/r.jsonl"},
    ),
    # ---- params ----
    Case(
        "params typo",
        r"params.yaml: train: unknown field\(s\) learnig_rate \(did you mean learning_rate\?\)",
        params={"train.learnig_rate": 0.1},
    ),
    Case(
        "unknown overlap policy",
        r"params.yaml: load.overlap: expected one of fail, drop, got 'ignore'",
        params={"load.overlap": "ignore"},
    ),
    Case(
        "unknown encoding",
        r"params.yaml: load.encoding: expected a text encoding Python knows .*got 'klingon'",
        params={"load.encoding": "klingon"},
    ),
    Case("params not YAML", r"params.yaml: not valid YAML", files={"params.yaml": "load: [unclosed\n"}),
    Case(
        "learning rate 0",
        r"train.learning_rate: expected greater than 0, got 0.0",
        params={"train.learning_rate": 0.0},
    ),
    Case(
        "learning rate 0 in the search space",
        r"search.space.learning_rate.*greater than 0",
        params={"search.space": {"learning_rate": [0.0, 1.0e-4]}},
    ),
    # ---- validation (GX): the stage exits 1 naming expectation, column and rows ----
    Case(
        "label outside the declared set",
        r"expect_column_values_to_be_in_set failed on column 'label'.*'label': 'meh'",
        files={"data/raw/reviews.csv": csv_of(GOOD[:10] + [dict(GOOD[10], category="meh")] + GOOD[11:])},
        stages=VALIDATE,
    ),
    Case(
        "label text kept as written",
        r"expect_column_values_to_be_in_set failed on column 'label'.*'label': '1.0'",
        files={"data/raw/n.csv": csv_of([dict(r, category=f"{i % 2}.0") for i, r in enumerate(GOOD)])},
        params={"load.source": "data/raw/n.csv", "load.labels": [0, 1]},
        stages=VALIDATE,
    ),
    Case(
        "rows without a group",
        r"carving a test split from data/raw/reviews.csv: 2 row\(s\) have no 'movie_name' "
        r"\(load.split.group_by\), e.g. row 3, 8; fill the column, or set load.split.group_by: null",
        files={
            "data/raw/reviews.csv": csv_of(
                [dict(r, movie_name="") if i in (2, 7) else r for i, r in enumerate(GOOD)]
            )
        },
    ),
    Case(
        "missing label, splits carved by label",
        r"expect_column_values_to_not_be_null failed on column 'label'.*\n +source row 4: ",
        files={"data/raw/reviews.csv": csv_of(GOOD[:3] + [dict(GOOD[3], category="")] + GOOD[4:])},
        params={"load.split.group_by": None},  # stratified carving: a missing label used to stop it
        stages=VALIDATE,
    ),
    Case(
        "empty text",
        r"expect_column_values_to_not_be_null failed on column 'text'",
        files={"data/raw/reviews.csv": csv_of(GOOD[:3] + [dict(GOOD[3], text="")] + GOOD[4:])},
        stages=VALIDATE,
    ),
    Case(
        "blank text",
        r"expect_column_values_to_not_match_regex failed on column 'text'",
        files={"data/raw/reviews.csv": csv_of(GOOD[:3] + [dict(GOOD[3], text="   ")] + GOOD[4:])},
        stages=VALIDATE,
    ),
    Case(
        "text too long",
        r"expect_column_value_lengths_to_be_between failed on column 'text'",
        params={"validate.max_chars": 10},
        stages=VALIDATE,
    ),
    Case(
        "too few rows of a class",
        r"expect_column_values_to_be_between failed on column 'rows' in split 'train' \(class_counts\)",
        params={"validate.min_rows_per_class": 100},
        stages=VALIDATE,
    ),
    Case(
        "ill-formed IOB",
        r"ner.conll, line 6: tag 'I-LOC' after 'O' is not IOB2 .*Set load.conll.tag_repair: fix",
        files={"data/raw/ner.conll": ner_file(bad="said O\nParis I-LOC")},
        params=TOKEN_PARAMS | {"load.tag_scheme": "iob2"},
    ),
    Case(
        "regression target out of range",
        r"expect_column_values_to_be_between failed on column 'label'",
        files={"data/raw/s.csv": csv_of([{"text": r["text"], "score": i / 10} for i, r in enumerate(GOOD)])},
        params={
            "task": "regression",
            "load.source": "data/raw/s.csv",
            "load.columns.label": "score",
            "load.labels": [],
            "load.drop_labels": [],
            "load.split.group_by": None,
            "validate.target_range": [0, 5],
            "evaluate.thresholds": {},
        },
        stages=VALIDATE,
    ),
    Case(
        "too much truncation",
        r"truncated_share_at_most failed on column 'text'",
        params={"tokenize.max_length": 8, "validate.max_truncated_share": 0.1},
        stages=VALIDATE,
    ),
    # ---- the pre-trained model: checked before transformers reads it ----
    Case(
        "model with pickled weights only",
        r"holds pytorch_model.bin but no model.safetensors.*convert them once",
        setup=model_copy(only_pickled_weights),
        params=BAD_MODEL,
        stages=VALIDATE,
    ),
    Case(
        "model with custom code",
        r"names custom code \(AutoModel\).*model.trust_remote_code: true",
        setup=model_copy(custom_code),
        params=BAD_MODEL,
        stages=VALIDATE,
    ),
    Case(
        "model config not JSON",
        r"badmodel/config.json is not valid JSON \(line 2",
        setup=model_copy(broken_config),
        params=BAD_MODEL,
        stages=VALIDATE,
    ),
    Case(
        "model without config",
        r"badmodel has no config.json",
        setup=model_copy(no_config),
        params=BAD_MODEL,
        stages=VALIDATE,
    ),
    Case(
        "model without weights",
        r"badmodel has no weights",
        setup=model_copy(no_weights),
        params=BAD_MODEL,
        stages=VALIDATE,
    ),
    Case(
        "model folder missing",
        r"model ./nowhere: directory nowhere not found",
        params={"model.name": "./nowhere"},
        stages=VALIDATE,
    ),
    Case(
        "hub model while offline",
        r"model someorg/somemodel: .*offline mode is on \(HF_HUB_OFFLINE=1\).*Unset HF_HUB_OFFLINE",
        params={"model.name": "someorg/somemodel"},
        stages=VALIDATE,
    ),
    # ---- predict ----
    Case(
        "predict empty cell",
        r"new.csv: column 'text' must hold non-empty text; 1 row\(s\) do not, e.g. row 2 \(empty\)",
        files={"new.csv": 'text\ngood film\n""\nbad film\n'},
        predict=predict_with(),
    ),
    Case(
        "predict non-string cell",
        r"new.jsonl: column 'text' must hold non-empty text.*row 2 \(int 5\)",
        files={"new.jsonl": jsonl_of([{"text": "good"}, {"text": 5}])},
        predict=predict_with(input="new.jsonl"),
    ),
    Case(
        "predict missing cell",
        r"row 1 \(empty\)",
        files={"new.jsonl": jsonl_of([{"text": None}, {"text": "ok"}])},
        predict=predict_with(input="new.jsonl"),
    ),
    Case(
        "predict output is a directory",
        r"outdir: is a directory; give the predictions a file name",
        files={"new.csv": "text\ngood\n"},
        setup=lambda root, m: (root / "outdir").mkdir(),
        predict=predict_with(output="outdir"),
    ),
    Case(
        "predict missing column",
        r"new.csv: no column 'text'; columns are review",
        files={"new.csv": "review\ngood\n"},
        predict=predict_with(),
    ),
    Case(
        "predict unknown suffix",
        r"new.xyz: cannot tell the file format",
        files={"new.xyz": "text\ngood\n"},
        predict=predict_with(input="new.xyz"),
    ),
    Case("predict missing input", r"nothing.csv: file not found", predict=predict_with(input="nothing.csv")),
    Case(
        "predict CoNLL with a sequence model",
        r"new.conll: a CoNLL file of tokens needs a token classification model",
        files={"new.conll": "a\nb\n"},
        predict=predict_with(input="new.conll"),
    ),
    Case(
        "predict empty text file",
        r"new.txt: no rows to predict",
        files={"new.txt": "\n\n"},
        predict=predict_with(input="new.txt"),
    ),
    Case(
        "predict CoNLL output from a table",
        r"out.conll: CoNLL output needs CoNLL input",
        files={"new.csv": "text\ngood\n"},
        predict=predict_with(output="out.conll"),
    ),
    Case(
        "predict broken quote",
        r"new.csv, line 3: a double quote opens",
        files={"new.csv": 'text\ngood\n"bad\n'},
        predict=predict_with(),
    ),
    Case(
        "predict empty token list",
        r"new.jsonl: column 'tokens' must hold non-empty text or a list of words.*row 2 \(empty\)",
        files={"new.jsonl": jsonl_of([{"tokens": ["a"]}, {"tokens": []}])},
        predict=predict_with(model="token", input="new.jsonl", text_column="tokens"),
    ),
    Case(
        "predict with pickled weights",
        r"holds pytorch_model.bin but no model.safetensors",
        files={"new.csv": "text\ngood\n"},
        setup=model_copy(only_pickled_weights),
        predict=predict_with(model="badmodel"),
    ),
    # ---- the registry: versions, the DVC cache, registration ----
    Case(
        "fetch without the DVC cache",
        NO_CACHE + WHAT_TO_DO,
        setup=uncached_version,
        cli=("fetch", "v0.1.0", "-o", "fetched"),
    ),
    Case(
        "fetch from a corrupted cache",
        CORRUPTED,
        setup=corrupted_cache,
        cli=("fetch", "model@v0.1.0", "-o", "fetched"),
    ),
    Case(
        "fetch with a cache file lost",
        LOST + WHAT_TO_DO,
        setup=lost_cache_file,
        cli=("fetch", "v0.1.0", "-o", "fetched"),
    ),
    Case(
        "fetch an unknown version",
        r"no registered version model@v9.9.9 \(registered versions of model: v0.1.0\)",
        setup=uncached_version,
        cli=("fetch", "v9.9.9", "-o", "fetched"),
    ),
    Case(
        "predict a version without the DVC cache",
        NO_CACHE + WHAT_TO_DO,
        files={"new.csv": "text\ngood\n"},
        setup=uncached_version,
        predict=predict_with(model="v0.1.0"),
    ),
    Case(
        "predict a version from a corrupted cache",
        CORRUPTED,
        files={"new.csv": "text\ngood\n"},
        setup=corrupted_cache,
        predict=predict_with(model="v0.1.0"),
    ),
    Case(
        "predict an unknown version",
        r"no registered version model@v9.9.9 \(registered versions of model: none\)",
        files={"new.csv": "text\ngood\n"},
        predict=predict_with(model="v9.9.9"),
    ),
    Case("lineage of an unknown version", r"no registered version model@v9.9.9", cli=("lineage", "v9.9.9")),
    Case("verify an unknown version", r"no registered version model@v9.9.9", cli=("verify", "v9.9.9")),
    Case(
        "verify a model folder that is not there",
        r"nowhere: not a directory \(expected a model folder to verify\)",
        setup=cached_version,
        cli=("verify", "v0.1.0", "--path", "nowhere"),
    ),
    Case(
        "verify a version without a lineage record",
        r"model@v0.1.0 failed verification \(1 of \d+ checks\): lineage/model@v0.1.0.json is not in the "
        r"tagged commit \w+: model@v0.1.0 has no lineage record",
        setup=cached_version,
        cli=("verify", "v0.1.0"),
    ),
    Case(
        "compare with an unknown version",
        r"no registered version model@v9.9.9 \(registered versions of model: v0.1.0\)",
        setup=uncached_version,
        cli=("compare", "v0.1.0", "v9.9.9"),
    ),
    Case(
        "predict with an unknown stage",
        r"'canary' is neither a version of model nor a stage holding one \(versions: v0.1.0; stages: none\)",
        files={"new.csv": "text\ngood\n"},
        setup=uncached_version,
        predict=predict_with(model="canary"),
    ),
    Case(
        "promote an unknown version",
        r"no registered version model@v9.9.9 \(registered versions of model: v0.1.0\)",
        setup=uncached_version,
        cli=("promote", "v9.9.9", "--stage", "prod"),
    ),
    Case(
        "promote to a stage GTO cannot name",
        r"stage 'bad stage!': expected letters, digits, '-', '_' or '/'",
        setup=uncached_version,
        cli=("promote", "v0.1.0", "--stage", "bad stage!"),
    ),
    Case(
        "register before evaluate",
        r"reports/evaluation.json not found: run the evaluate stage before registering",
        cli=("register",),
    ),
    Case(
        "register with missed thresholds",
        r"the model missed its evaluation thresholds; it cannot be registered",
        files={"reports/evaluation.json": evaluation_report(passed=False)},
        cli=("register",),
    ),
    Case(
        "register a stale pipeline",
        r"the pipeline is not up to date \(.*train.*\): run `dvc repro` first",
        files={"reports/evaluation.json": evaluation_report(passed=True)},
        cli=("register",),
    ),
    Case(
        "register an undeclared artifact",
        r"dvc.yaml: no artifact named 'classifier' under `artifacts:`",
        cli=("register", "--name", "classifier"),
    ),
    # ---- the flow's entry: params are checked before Prefect starts or any stage runs ----
    Case(
        "flow on a params typo",
        r"params.yaml: train: unknown field\(s\) learnin_rate \(did you mean learning_rate\?\)",
        params={"train.learnin_rate": 0.1},
        flow=FLOW,
    ),
    Case(
        "flow without params.yaml",
        r"params.yaml: file not found",
        setup=lambda root, m: (root / "params.yaml").unlink(),
        flow=FLOW,
    ),
    Case(
        "flow on a bad threshold metric",
        r"evaluate.thresholds.rmse: task sequence_classification does not report rmse",
        params={"evaluate.thresholds": {"rmse": {"max": 0.5}}},
        flow=FLOW,
    ),

    # ---- issue 22: output folders (fetch -o, atomic_dir) ----
    Case(
        "fetch -o the project root",
        r"refusing to replace it: it is a project or git work tree \(\.dvc, \.git, dvc\.yaml\); choose",
        cli=("fetch", "v0.1.0", "-o", "."),
    ),
    Case(
        "fetch -o the project root with --force",
        r"refusing to replace it: it is a project or git work tree",
        cli=("fetch", "v0.1.0", "-o", ".", "--force"),
    ),
    Case(
        "fetch -o the folder above the project",
        r"refusing to replace it: it is or holds the current directory",
        cli=("fetch", "v0.1.0", "-o", "..", "--force"),
    ),
    Case(
        "fetch -o a folder of other files",
        r"notes: refusing to replace a folder tunepipe did not write \(it holds other files\); .*--force",
        files={"notes/todo.txt": "mine\n"},
        cli=("fetch", "v0.1.0", "-o", "notes"),
    ),
    Case(
        "fetch -o a file",
        r"params.yaml: refusing to replace a file; choose a new or empty folder, or pass --force",
        cli=("fetch", "v0.1.0", "-o", "params.yaml"),
    ),
    Case(
        "fetch with a name that climbs out",
        r"artifact name '\.\./\.\./model': expected letters, digits",
        cli=("fetch", "../../model@v0.1.0", "-o", "fetched"),
    ),
    Case(
        "lineage --name with a wildcard",
        r"--name 'm\*': expected letters, digits",
        cli=("lineage", "v0.1.0", "--name", "m*"),
    ),
    Case(
        "register.name with a path",
        r"params.yaml: register.name: expected a name of letters, digits.*got '\.\./lineage-out'",
        params={"register.name": "../lineage-out"},
        cli=("register",),
    ),

    # ---- issue 22: values passed to git, dvc, torchrun, prefect ----
    Case(
        "replay --git-remote as a git option",
        r"--git-remote '--upload-pack=touch F': must not start with '-'",
        cli=("replay", "v0.1.0", "--git-remote=--upload-pack=touch F"),
    ),
    Case(
        "replay --git-remote through git's ext:: transport",
        r"--git-remote 'ext::sh -c touch% F': the `<transport>::` form is refused",
        cli=("replay", "v0.1.0", "--git-remote", "ext::sh -c touch% F"),
    ),
    Case(
        "replay --dvc-remote as an option",
        r"--dvc-remote '-oProxyCommand=touch F': must not start with '-'",
        cli=("replay", "v0.1.0", "--dvc-remote=-oProxyCommand=touch F"),
    ),
    Case(
        "deploy --remote as a git option",
        r"--remote '--upload-pack=touch F': must not start with '-'",
        cli=("deploy", "--remote=--upload-pack=touch F"),
    ),
    Case(
        "deploy --branch as a git option",
        r"--branch '--upload-pack=touch F': must not start with '-'",
        cli=("deploy", "--branch=--upload-pack=touch F"),
    ),
    Case(
        "deploy --branch that is no branch name",
        r"--branch '\.\./\.\.': not a valid git branch, tag or commit name",
        cli=("deploy", "--branch", "../.."),
    ),
    Case(
        "deploy --pool with a path in it",
        r"--pool '\.\./\.\.': expected a name without",
        cli=("deploy", "--pool", "../.."),
    ),
    Case(
        "train.master_addr as a torchrun option",
        r"train.master_addr: expected a host name or IP address .* got '-oProxyCommand=touch F'",
        params={"train.master_addr": "-oProxyCommand=touch F", "train.master_port": 29500},
    ),
    Case(
        "train.master_addr with shell words",
        r"train.master_addr: expected a host name or IP address .* got 'node0; touch F'",
        params={"train.master_addr": "node0; touch F", "train.master_port": 29500},
    ),
    Case(
        "train.rdzv_endpoint whose host is an option",
        r"train.rdzv_endpoint: expected host:port .* got '--upload-pack=x:29400'",
        params={"train.rdzv_endpoint": "--upload-pack=x:29400"},
    ),

    # ---- issue 22: numbers: finite params, threshold ranges, NaN loss ----
    Case(
        "learning rate .inf",
        r"params.yaml: train.learning_rate: expected a finite number, got inf",
        params={"train.learning_rate": float("inf")},
    ),
    Case(
        "learning rate .nan before training",
        r"params.yaml: train.learning_rate: expected a finite number, got nan",
        params={"train.learning_rate": float("nan")},
        stages=("train",),
    ),
    Case(
        "weight decay -.inf",
        r"params.yaml: train.weight_decay: expected a finite number, got -inf",
        params={"train.weight_decay": float("-inf")},
    ),
    Case(
        "warmup ratio .nan",
        r"params.yaml: train.warmup_ratio: expected a finite number, got nan",
        params={"train.warmup_ratio": float("nan")},
    ),
    Case(
        "early stopping threshold .inf",
        r"params.yaml: train.early_stopping_threshold: expected a finite number, got inf",
        params={"train.early_stopping_threshold": float("inf")},
    ),
    Case(
        "search range up to .inf",
        r"params.yaml: search.space.learning_rate.high: expected a finite number, got inf",
        params={"search.space": {"learning_rate": {"low": 1.0e-5, "high": float("inf"), "log": True}}},
    ),
    Case(
        "accuracy threshold above 1",
        r"evaluate.thresholds.accuracy: expected between 0 and 1 \(the range of accuracy\), got 1.5",
        params={"evaluate.thresholds": {"accuracy": 1.5}},
    ),
    Case(
        "accuracy threshold below 0",
        r"evaluate.thresholds.accuracy: expected between 0 and 1 \(the range of accuracy\), got -3",
        params={"evaluate.thresholds": {"accuracy": -3}},
    ),
    Case(
        "accuracy threshold .nan",
        r"params.yaml: evaluate.thresholds.accuracy: expected a finite number, got nan",
        params={"evaluate.thresholds": {"accuracy": float("nan")}},
    ),
    Case(
        "accuracy threshold above 1 before evaluate",
        r"evaluate.thresholds.accuracy: expected between 0 and 1",
        params={"evaluate.thresholds": {"accuracy": 1.5}},
        stages=("evaluate",),
    ),
    Case(
        "pearson threshold above 1",
        r"evaluate.thresholds.pearson: expected between -1 and 1 \(the range of pearson\), got 1.5",
        params={"task": "regression", "evaluate.thresholds": {"pearson": 1.5}},
    ),
    Case(
        "rmse threshold below 0",
        r"params.yaml: evaluate.thresholds.rmse.max: expected 0 or more \(the range of rmse\), got -0.5",
        params={"task": "regression", "evaluate.thresholds": {"rmse": {"max": -0.5}}},
    ),
    Case(
        "flow on an accuracy threshold above 1",
        r"evaluate.thresholds.accuracy: expected between 0 and 1 \(the range of accuracy\), got 1.5",
        params={"evaluate.thresholds": {"accuracy": 1.5}},
        flow=FLOW,
    ),
    Case(
        "flow on a learning rate .inf",
        r"train.learning_rate: expected a finite number, got inf",
        params={"train.learning_rate": float("inf")},
        flow=FLOW,
    ),
    Case(
        "replay tolerance inf",
        r"--tolerance: expected a finite number >= 0, got inf",
        setup=uncached_version,
        cli=("replay", "v0.1.0", "--tolerance", "inf"),
    ),

    # ---- issue 22: predict: new columns, input file, model folders ----
    Case(
        "predict output is the input file",
        r"new.csv: is the input file; predictions never overwrite their input",
        files={"new.csv": "text,label\ngood,fresh\n"},
        predict=predict_with(output="new.csv"),
    ),
    Case(
        "predict output is a link to the input",
        r"out.csv: is the input file; predictions never overwrite their input",
        files={"new.csv": "text,label\ngood,fresh\n"},
        setup=lambda root, m: (root / "out.csv").symlink_to(root / "new.csv"),
        predict=predict_with(),
    ),
    Case(
        "predict input has a column predict writes",
        r"new.csv: already has a column 'predicted_label', which predict writes",
        files={"new.csv": "text,predicted_label\ngood,fresh\n"},
        predict=predict_with(),
    ),
    Case(
        "predict with a model config linked out of its folder",
        r"badmodel/config.json is a link to .*foreign/config.json, outside the model folder",
        files={"new.csv": "text\ngood\n"},
        setup=classifier_linked_out,
        predict=predict_with(model="badmodel"),
    ),
    Case(
        "model.name with a config linked out of its folder",
        r"model badmodel: badmodel/config.json is a link to .*foreign/config.json, outside the model folder",
        setup=model_copy(config_linked_out),
        params=BAD_MODEL,
        stages=VALIDATE,
    ),
    Case(
        "pretrained hash of a model with weights linked out of its folder",
        r"badmodel/model.safetensors is a link to .*foreign/model.safetensors, outside the model folder",
        setup=model_copy(weights_linked_out),
        params=BAD_MODEL,
        stages=("pretrained",),
    ),
    Case(
        "predict with an encoder that has no trained head",
        r"badmodel: not a trained classifier; its weights lack classifier\.",
        files={"new.csv": "text\ngood\n"},
        setup=model_copy(lambda d: None),
        predict=predict_with(model="badmodel"),
    ),

    # ---- issue 22: escaping and ambiguous input headers ----
    Case(
        "csv header names text twice",
        r"reviews.csv: the header names column\(s\) 'text' more than once",
        files={"data/raw/reviews.csv": text_twice(",")},
    ),
    Case(
        "tsv header names text twice",
        r"r.tsv: the header names column\(s\) 'text' more than once",
        files={"data/raw/r.tsv": text_twice("\t")},
        params={"load.source": "data/raw/r.tsv"},
    ),
    Case(
        "semicolon-separated csv",
        r"reviews.csv: the header 'category;text;movie_name' is one column when read comma-separated "
        r"\(csv\), but 3 at each semicolon: save the file comma-separated",
        files={"data/raw/reviews.csv": csv_of(GOOD, sep=";")},
    ),
    Case(
        "init on a tab-separated csv",
        r"error: data/raw/tabs.csv: the header 'category\\ttext\\tmovie_name' is one column .* but 3 at each "
        r"tab: .*, or read it as tsv \(load.format: tsv; `tunepipe init --format tsv`\)",
        files={"data/raw/tabs.csv": csv_of(GOOD, sep="\t")},
        cli=("init", "data/raw/tabs.csv", "--force"),
    ),
    Case(
        "predict on a pipe-separated csv",
        r"new.csv: the header 'id\|text' is one column when read comma-separated \(csv\), but 2 at each pipe",
        files={"new.csv": "id|text\n1|good film\n"},
        predict=predict_with(),
    ),
    Case(
        "json record names text twice",
        r"r.json: an object has the key\(s\) 'text' more than once",
        files={"data/raw/r.json": json.dumps(GOOD[:5])[:-1] + ', {"category": "fresh", "text": "a", '
               '"text": "b", "movie_name": "m"}]'},
        params={"load.source": "data/raw/r.json"},
    ),
    Case(
        "jsonl record names text twice",
        r"r.jsonl, line 3: an object has the key\(s\) 'text' more than once",
        files={"data/raw/r.jsonl": jsonl_of(GOOD[:2]) + '{"category": "fresh", "text": "a", "text": "b"}\n'
               + jsonl_of(GOOD[2:])},
        params={"load.source": "data/raw/r.jsonl"},
    ),
    Case(
        "parquet names text twice",
        r"r.parquet: the file names column\(s\) 'text' more than once",
        setup=lambda root, m: parquet_text_twice(root / "data/raw/r.parquet"),
        params={"load.source": "data/raw/r.parquet"},
    ),
    # ---- issue 24 conll/evaluate ----
    Case(
        "evaluate file without the label column",
        r"scored.csv: missing label column 'category'; the file has columns text.*load.columns",
        files={"scored.csv": csv_of([{"text": r["text"]} for r in GOOD[:4]])},
        setup=lambda root, m: copy_model(root, m.sequence),
        cli=("evaluate", "--model", "m", "--no-verify", "scored.csv"),
    ),
    Case(
        "evaluate label the model does not know",
        r"scored.csv: 1 label\(s\) the model was not trained with: 'meh' \(row 2\); its labels "
        r"\(config.json id2label\) are rotten, fresh",
        files={"scored.csv": csv_of([GOOD[0], dict(GOOD[1], category="meh"), GOOD[2]])},
        setup=lambda root, m: copy_model(root, m.sequence),
        cli=("evaluate", "--model", "m", "--no-verify", "scored.csv"),
    ),
    Case(
        "evaluate label the model does not know, on several rows",
        r"scored.csv: 2 label\(s\) the model was not trained with: 'meh' \(3 rows, first row 2\), 'so-so' "
        r"\(row 4\); its labels",
        files={
            "scored.csv": csv_of(
                [GOOD[0], *(dict(r, category="meh") for r in GOOD[1:3]), dict(GOOD[3], category="so-so")]
                + [dict(GOOD[4], category="meh")]
            )
        },
        setup=lambda root, m: copy_model(root, m.sequence),
        cli=("evaluate", "--model", "m", "--no-verify", "scored.csv"),
    ),
    Case(
        "evaluate ill-formed tags without repair",
        r"tags.conll, line 5: tag 'I-PER' after 'O' is not IOB2 .*Set load.conll.tag_repair: fix",
        files={"tags.conll": "Ann B-PER\nsaid O\n\nhello O\nBob I-PER\n"},
        setup=lambda root, m: copy_model(root, m.token),
        cli=("evaluate", "--model", "m", "--no-verify", "tags.conll"),
    ),
    Case(
        "evaluate thresholds not a mapping",
        r"--thresholds: expected `params` or a mapping such as",
        files={"scored.csv": csv_of(GOOD[:3])},
        setup=lambda root, m: copy_model(root, m.sequence),
        cli=("evaluate", "--model", "m", "--no-verify", "--thresholds", "0.8", "scored.csv"),
    ),

    # ---- issue 24 init: `tunepipe init` on data it cannot read a task from ----
    Case(
        "init on a table without a text column",
        r"error: data/raw/codes.csv: no text column found .*; pass --text-column",
        files={"data/raw/codes.csv": "id,category\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(20))},
        cli=("init", "data/raw/codes.csv", "--force"),
    ),
    Case(
        "init on an empty file",
        r"error: data/raw/empty.csv: the file is empty; expected a header line naming the columns",
        files={"data/raw/empty.csv": ""},
        cli=("init", "data/raw/empty.csv", "--force"),
    ),
    Case(
        "init on a header without rows",
        r"error: data/raw/header.csv: no rows .*; add the examples",
        files={"data/raw/header.csv": HEADER},
        cli=("init", "data/raw/header.csv", "--force"),
    ),
    Case(
        "init on an unknown format",
        r"error: data/raw/reviews.xlsx: cannot tell the file format from its name; "
        r"pass --format \(one of csv",
        files={"data/raw/reviews.xlsx": csv_of(GOOD)},
        cli=("init", "data/raw/reviews.xlsx", "--force"),
    ),
    Case(
        "init with two label-like columns",
        r"error: data/raw/two.csv: ambiguous label column: label, category could each be the label; "
        r"pass --label-column",
        files={"data/raw/two.csv": csv_of([dict(r, label=r["category"]) for r in GOOD])},
        cli=("init", "data/raw/two.csv", "--force"),
    ),
    Case(
        "init with a label column of free text",
        r"error: data/raw/reviews.csv: ambiguous label column 'text': 60 values, too many for classes; "
        r"pass --label-column",
        cli=("init", "data/raw/reviews.csv", "--force", "--text-column", "movie_name",
             "--label-column", "text"),
    ),
    Case(
        "init with a text column the file lacks",
        r"error: data/raw/reviews.csv: no column 'review' \(--text-column\); "
        r"the file has columns category, text",
        cli=("init", "data/raw/reviews.csv", "--force", "--text-column", "review"),
    ),
    Case(
        "init on a folder without a train file",
        r"error: .*data/raw/splits: no train file .*name the training file train.csv",
        files={"data/raw/splits/dev.csv": csv_of(GOOD), "data/raw/splits/test.csv": csv_of(GOOD)},
        cli=("init", "data/raw/splits", "--force"),
    ),
    Case(
        "init with an unknown task",
        r"error: --task: expected one of sequence_classification, regression, token_classification, "
        r"got 'ner'",
        cli=("init", "data/raw/reviews.csv", "--force", "--task", "ner"),
    ),
    Case(
        "init over params.yaml without --force",
        r"error: params.yaml: exists; pass --force to overwrite it",
        cli=("init", "data/raw/reviews.csv"),
    ),
    Case(
        "init with an unknown example",
        r"error: --example 'nope': no examples/nope.yaml; choose one of none found",
        cli=("init", "--example", "nope", "--force"),
    ),

    # ---- issue 24 defaults: each error names the params key that fixes it ----
    Case(
        "missing group column names group_by null",
        r"missing group column 'film'.*set load.split.group_by to a column of the file, or null",
        params={"load.split.group_by": "film"},
    ),
    Case(
        "missing text column names load.columns.text",
        r"missing text column 'review'.*\(set load.columns.text to the text column\)",
        params={"load.columns.text": "review"},
    ),
    Case(
        "missing label column names load.columns.label",
        r"missing label column 'sentiment'.*\(set load.columns.label to the label column\)",
        params={"load.columns.label": "sentiment"},
    ),
    Case(
        "missing pair column names load.columns.text_pair",
        r"missing text_pair column 'hypothesis'.*set load.columns.text_pair to the second text's column",
        params={"load.columns.text_pair": "hypothesis"},
    ),
    Case(
        "numbers in the pair column name load.columns.text_pair",
        r"column 'n' must hold text.*\(set load.columns.text_pair to the text column",
        files={"data/raw/p.jsonl": jsonl_of([dict(r, n=i) for i, r in enumerate(GOOD)])},
        params={"load.source": "data/raw/p.jsonl", "load.columns.text_pair": "n"},
    ),
    Case(
        "drop_labels on a token task names the key",
        r"load.drop_labels applies to sequence_classification only, not token_classification; "
        r"set load.drop_labels: \[\]",
        files={"data/raw/ner.conll": NER},
        params=TOKEN_PARAMS | {"load.drop_labels": ["O"]},
    ),
    Case(
        "one group cannot be split names group_by null",
        r"carving a test split .* from 1 groups \(movie_name\) leaves one side empty; "
        r"set load.split.group_by: null to split rows instead of groups",
        files={"data/raw/reviews.csv": csv_of([dict(r, movie_name="one movie") for r in GOOD])},
    ),
    Case(
        "demo thresholds on a token task name evaluate.thresholds",
        r"evaluate.thresholds.f1_macro: task token_classification does not report f1_macro; .*"
        r"\(remove f1_macro from evaluate.thresholds, or bound one of those\)",
        files={"data/raw/ner.conll": NER},
        params=TOKEN_PARAMS | {"load.tag_scheme": "iob2", "evaluate.thresholds": {"f1_macro": 0.78}},
    ),
    Case(
        "too few train rows names min_rows_per_class",
        r"in split 'train' \(class_counts\).*\(validate.min_rows_per_class \(100\) is the train minimum",
        params={"validate.min_rows_per_class": 100},
        stages=VALIDATE,
    ),
    Case(
        "too few test rows names min_eval_rows_per_class",
        r"in split 'test' \(class_counts\).*validate.min_eval_rows_per_class \(100\) is the test minimum",
        params={"validate.min_rows_per_class": 0, "validate.min_eval_rows_per_class": 100},
        stages=VALIDATE,
    ),
    Case(
        "test label never seen in train when labels are read from train",
        r"failed on column 'label' in split 'test'.*labels were read from the train split "
        r"\(load.labels is not set\).*declare them in load.labels",
        files=split_files(GOOD[:40], GOOD[40:50] + [dict(r, category="meh") for r in GOOD[50:]]),
        params=split_source() | {"load.labels": None},
        stages=VALIDATE,
    ),
    Case(
        "label outside load.labels names the keys",
        r"failed on column 'label'.*\(labels outside load.labels: add them there, or drop their rows with "
        r"load.drop_labels\)",
        files={"data/raw/reviews.csv": csv_of(GOOD[:10] + [dict(GOOD[10], category="meh")] + GOOD[11:])},
        stages=VALIDATE,
    ),
    Case(
        "text too long names min_chars and max_chars",
        r"failed on column 'text'.*\(texts outside validate.min_chars / validate.max_chars",
        params={"validate.max_chars": 10},
        stages=VALIDATE,
    ),
    Case(
        "a folder that is no dataset names load.source",
        r"data/raw/folder: a directory, but not a saved dataset .*; set load.source to a file",
        setup=lambda root, m: (root / "data/raw/folder").mkdir(),
        params={"load.source": "data/raw/folder"},
    ),
    # ---- issue 26 lora: adapters' target modules, gradient checkpointing ----
    Case(
        "lora target module the model lacks",
        r"params.yaml: train.lora.target_modules: q_proj, v_proj matches no linear layer of "
        r"BertForSequenceClassification \(bert\); its linear layers are named .*\bquery\b.*\bvalue\b.*: "
        r"set train.lora.target_modules to some of them",
        params={"train.adapter": "lora", "train.lora": {"target_modules": ["q_proj", "v_proj"]}},
        stages=("pretrained", "load", "validate", "tokenize", "train"),
    ),
    Case(
        "lora with layer freezing",
        r"params.yaml: train.freeze: first_n and train.adapter: lora both choose what trains",
        params={"train.adapter": "lora", "train.freeze": "first_n", "train.freeze_layers": 1},
        stages=("train",),
    ),
    Case(
        "search over a lora key that does not exist",
        r"params.yaml: search.space.lora.rank: not a train.\* parameter",
        params={"search.space": {"lora.rank": [4, 8]}},
    ),
    # ---- issue 25 ingest: `tunepipe ingest FILE...` checks every file before it copies one ----
    Case("ingest a missing file", r"nowhere.csv: file not found", cli=("ingest", "nowhere.csv", "--no-push")),
    Case("ingest a directory", r"data: a directory; name the files", cli=("ingest", "data", "--no-push")),
    Case(
        "ingest a file in no table format",
        r"new.xlsx: not a table file tunepipe ingest adds rows from; expected a name ending in .csv",
        files={"new.xlsx": "not a table"},
        cli=("ingest", "new.xlsx", "--no-push"),
    ),
    Case(
        "ingest a file of the project itself",
        r"reports/old.csv: a file of the project itself \(reports/old.csv: tracked by git, or an ignored",
        files={"reports/old.csv": csv_of(GOOD[:5])},
        setup=lambda root, m: run(["git", "add", "-f", "reports/old.csv"], root),
        cli=("ingest", "reports/old.csv", "--no-push"),
    ),
    Case(
        "ingest rows without the label column",
        r"new.csv: missing label column 'category'",
        files={"new.csv": "text,movie_name\nwonderful,m\n"},
        cli=("ingest", "new.csv", "--no-push"),
    ),
    Case(
        "ingest a file with no rows",
        r"new.csv: no rows",
        files={"new.csv": HEADER},
        cli=("ingest", "new.csv", "--no-push"),
    ),
    Case(
        "ingest a name already ingested with other rows",
        r"data/raw/incoming/new.csv exists with other rows; give the new file another name",
        files={"new.csv": csv_of(GOOD[:5]), "data/raw/incoming/new.csv": csv_of(GOOD[5:10])},
        cli=("ingest", "new.csv", "--no-push"),
    ),
    Case(
        "ingest and push without a git remote",
        r"no git remote `origin`, so workers could not get the new rows; fix that, or pass --no-push",
        files={"new.csv": csv_of(GOOD[:5])},
        cli=("ingest", "new.csv"),
    ),
]


def copy_model(root: Path, model: Path) -> None:
    shutil.copytree(model, root / "m")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Models:
    root = tmp_path_factory.mktemp("models")
    return Models(
        tiny_bert,
        build_classifier(tiny_bert, root / "sequence", ["rotten", "fresh"]),
        build_classifier(tiny_bert, root / "token", ["O", "B-PER", "I-PER"], token=True),
    )


@pytest.fixture(scope="module")
def base_project(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    root = make_project(tmp_path_factory.mktemp("bad-inputs") / "project", tiny_bert, rows=GOOD)
    set_params(root, **{"load.split.group_by": "movie_name", "validate.min_rows_per_class": 3})
    return root


def files_under(root: Path) -> set[str]:
    return {
        str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts and ".dvc" not in p.parts
    }


def audit_record(root: Path) -> tuple[bytes | None, list[str], dict[str, bytes]]:
    """What registration and `dvc repro` leave as the record: dvc.lock, the git tags, lineage/."""
    lock = root / "dvc.lock"
    lineage = root / "lineage"
    return (
        lock.read_bytes() if lock.is_file() else None,
        run(["git", "tag", "--list"], root).stdout.split(),
        {str(p.relative_to(lineage)): p.read_bytes() for p in lineage.rglob("*") if p.is_file()},
    )


def run_entry(main: Callable[[list[str]], None], argv: list[str]) -> int:
    """A command-line entry point called in this process: its exit code."""
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def prepare(case: Case, root: Path, models: Models) -> None:
    for name, content in case.files.items():
        content = content() if callable(content) else content
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if case.setup:
        case.setup(root, models)
    if case.params:
        set_params(root, **case.params)


def run_stage(name: str) -> int:
    module = importlib.import_module(f"tasks.{name}")
    try:
        stage.run(module.main)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case,
    base_project: Path,
    models: Models,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = Path(shutil.copytree(base_project, tmp_path / "project", symlinks=True))
    monkeypatch.chdir(root)
    prepare(case, root, models)
    record = audit_record(root)
    check_row(case, root, models, capsys)
    assert audit_record(root) == record  # dvc.lock, git tags and lineage/ unchanged


def check_row(case: Case, root: Path, models: Models, capsys: pytest.CaptureFixture[str]) -> None:
    if case.cli is not None or case.flow is not None:
        if case.cli is not None:
            from tunepipe.cli import main as entry

            argv = list(case.cli)
        else:
            from flows.pipeline import main as entry

            argv = list(case.flow or ())
        capsys.readouterr()
        before = files_under(root)
        code = run_entry(entry, argv)
        err = capsys.readouterr().err
        assert code == case.exit_code, err
        assert re.search(case.message, err, re.DOTALL), err
        assert err.strip().splitlines()[-1].startswith("error: "), err  # one error line, last
        assert "Traceback" not in err
        assert files_under(root) == before  # no output, no temporary file
        return
    if case.predict is not None:
        from tunepipe.prediction import predict_file

        args = dict(case.predict)
        model = {"sequence": str(models.sequence), "token": str(models.token)}.get(
            args["model"], args["model"]
        )
        before = files_under(root)
        with pytest.raises(PipelineError, match=case.message):
            predict_file(model, Path(args["input"]), Path(args["output"]), args["text_column"], root=root)
        assert files_under(root) == before  # no output, no temporary file
        return
    *first, last = case.stages
    for name in first:
        assert run_stage(name) == 0, capsys.readouterr().err
    capsys.readouterr()
    before = files_under(root)
    code = run_stage(last)
    err = capsys.readouterr().err
    assert code == case.exit_code, err
    assert re.search(case.message, err, re.DOTALL), err
    assert "Traceback" not in err
    written = files_under(root) - before
    allowed = {"reports/validation.json"} if last == "validate" else set()  # the report of what failed
    assert written <= allowed, written
    assert not [p for p in files_under(root) if ".tmp-" in p]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)
