"""`tunepipe init`: each inference rule on small files written here, the overwrite rules and the
examples. tests/test_init_repro.py takes three kinds of source from `init` to `dvc repro`."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import FILLER, NEGATIVE, POSITIVE, REPO, cli, make_reviews
from tunepipe import params, project_init
from tunepipe.errors import PipelineError
from tunepipe.project_init import Options

pytestmark = pytest.mark.unit


def reviews(n: int, seed: int = 0, text: str = "review") -> pd.DataFrame:
    df = pd.DataFrame(make_reviews(n, seed=seed))
    return df.rename(columns={"text": text})


def conll_text(n: int, seed: int = 0) -> str:
    """Sentences of filler words with one B-GOOD word and, every other one, a B-BAD I-BAD pair."""
    rng, out = random.Random(seed), []
    for i in range(n):
        words = [(w, "O") for w in rng.sample(FILLER, 4)]
        words.insert(rng.randint(0, 4), (rng.choice(POSITIVE), "B-GOOD"))
        if i % 2:
            at = rng.randint(0, len(words))
            words[at:at] = [(rng.choice(NEGATIVE), "B-BAD"), (rng.choice(NEGATIVE), "I-BAD")]
        out.append("".join(f"{w} {t}\n" for w, t in words))
    return "\n".join(out)


def split_folder(folder: Path, df: pd.DataFrame, names: tuple[str, ...] = ("train", "dev", "test")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cut = len(df) * 2 // 3
    parts = {"train": df[:cut]}
    evaluation = [n for n in names if n != "train"]
    size = (len(df) - cut) // len(evaluation)
    for i, name in enumerate(evaluation):
        parts[name] = df[cut + i * size : cut + (i + 1) * size]
    for name in names:
        parts[name].to_csv(folder / f"{name}.csv", index=False)
    return folder


def infer(tmp_path: Path, source: Path | str, model: Path, **opts: object) -> project_init.Inferred:
    return project_init.infer(str(source), tmp_path, Options(model=str(model), **opts))  # type: ignore[arg-type]


def said(out: project_init.Inferred, key: str) -> str:
    return next(line for line in out.lines if line.startswith(key))


# --- format, columns, task, labels --------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_format_from_the_suffix(tmp_path: Path, tiny_bert: Path, suffix: str) -> None:
    df, path = reviews(60), tmp_path / f"data.{suffix}"
    if suffix == "csv":
        df.to_csv(path, index=False)
    elif suffix == "tsv":
        df.to_csv(path, sep="\t", index=False)
    elif suffix == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    out = infer(tmp_path, path, tiny_bert)
    assert out.data["load"]["format"] == suffix
    assert "from the file suffix" in said(out, "load.format")


def test_format_option_reads_a_file_with_another_suffix(tmp_path: Path, tiny_bert: Path) -> None:
    path = tmp_path / "data.export"
    reviews(60).to_csv(path, sep="\t", index=False)
    out = infer(tmp_path, path, tiny_bert, fmt="tsv")
    assert out.data["load"]["format"] == "tsv"
    assert said(out, "load.format") == "load.format: tsv  (--format)"


def test_text_and_label_columns_by_their_usual_names(tmp_path: Path, tiny_bert: Path) -> None:
    path = tmp_path / "data.csv"
    reviews(60, text="content").to_csv(path, index=False)
    out = infer(tmp_path, path, tiny_bert)
    assert out.data["load"]["columns"] == {"text": "content", "text_pair": None, "label": "category"}
    assert "usual name" in said(out, "load.columns.text")


def test_pair_columns(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(60, text="premise")
    df["hypothesis"] = df["premise"].str.upper()
    df.to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["load"]["columns"]["text"] == "premise"
    assert out.data["load"]["columns"]["text_pair"] == "hypothesis"


def test_unnamed_columns_fall_back_to_the_longest_text_and_the_few_valued_column(
    tmp_path: Path, tiny_bert: Path
) -> None:
    df = reviews(60, text="snippet").rename(columns={"category": "verdict"})
    df["id"] = range(len(df))
    df.to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["load"]["columns"]["text"] == "snippet"
    assert out.data["load"]["columns"]["label"] == "verdict"
    assert "longest texts" in said(out, "load.columns.text")
    assert "few distinct values (2)" in said(out, "load.columns.label")


def test_column_options_win(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(60)
    df["label"] = ["a", "b", "c"] * 20
    df.to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert, text_column="movie_name", label_column="label")
    assert out.data["load"]["columns"]["text"] == "movie_name"
    assert out.data["load"]["labels"] == ["a", "b", "c"]
    assert said(out, "load.columns.label") == "load.columns.label: label  (--label-column)"


def test_string_labels_make_classification_with_their_counts(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(80)
    df.loc[:59, "category"] = "fresh"
    df.to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["task"] == "sequence_classification"
    assert out.data["load"]["labels"] == ["fresh", "rotten"]
    assert "counts: fresh 70, rotten 10" in said(out, "load.labels")
    assert out.data["load"]["drop_labels"] == []


def test_integer_labels_in_numeric_order(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(66)
    df["category"] = [i % 11 for i in range(66)]
    df.to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["task"] == "sequence_classification"
    assert out.data["load"]["labels"] == [str(i) for i in range(11)]


def test_fractional_scores_make_regression(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(60).drop(columns=["category"])
    df["score"] = [round(i / 7, 3) for i in range(60)]
    df.to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["task"] == "regression"
    assert out.data["load"]["labels"] == []
    assert list(out.data["evaluate"]["thresholds"]) == ["pearson"]
    assert out.data["evaluate"]["thresholds"]["pearson"] > 0


def test_task_option_makes_regression_of_few_integers(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(60)
    df["category"] = [i % 5 for i in range(60)]
    df.to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert, task="regression")
    assert out.data["task"] == "regression"
    assert said(out, "task") == "task: regression  (--task)"


def test_conll_makes_token_classification_with_the_tag_scheme(tmp_path: Path, tiny_bert: Path) -> None:
    (tmp_path / "train.conll").write_text(conll_text(30))
    out = infer(tmp_path, tmp_path / "train.conll", tiny_bert)
    assert out.data["task"] == "token_classification"
    assert out.data["load"]["tag_scheme"] == "iob2"
    assert out.data["load"]["labels"] == ["O", "B-BAD", "I-BAD", "B-GOOD"]
    assert list(out.data["evaluate"]["thresholds"]) == ["f1"]  # not f1_macro


def test_plain_tags_are_scored_by_accuracy_over_the_majority_tag(tmp_path: Path, tiny_bert: Path) -> None:
    lines = ["the DT\nfilm NN\nwas VBD\ndull JJ\n", "a DT\nstory NN\n"] * 20
    (tmp_path / "pos.conll").write_text("\n".join(lines))
    out = infer(tmp_path, tmp_path / "pos.conll", tiny_bert)
    assert out.data["load"]["tag_scheme"] == "none"
    assert list(out.data["evaluate"]["thresholds"]) == ["accuracy"]
    # DT and NN are each 2 of 6 words' worth: the majority tag scores 1/3
    assert 1 / 3 < out.data["evaluate"]["thresholds"]["accuracy"] < 0.6


def test_iob1_tags_are_recognised(tmp_path: Path, tiny_bert: Path) -> None:
    (tmp_path / "train.conll").write_text("John I-PER\nSmith I-PER\nran O\n\nMary I-PER\nsat O\n" * 5)
    out = infer(tmp_path, tmp_path / "train.conll", tiny_bert)
    assert out.data["load"]["tag_scheme"] == "iob1"


# --- splits -------------------------------------------------------------------------------------


def test_single_file_carves_validation_and_test(tmp_path: Path, tiny_bert: Path) -> None:
    reviews(60).to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["load"]["source"] == "data.csv"  # relative to the project root
    assert out.data["load"]["split"]["from_source"] == {}
    assert said(out, "splits").endswith("validation and test carved from train (10% each)")
    assert said(out, "note:").startswith("note: the source is outside data/raw/")


def test_rows_without_a_label_are_noted_with_their_rows(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(60)
    df.loc[[4, 9], "category"] = None
    df.to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["load"]["labels"] == ["fresh", "rotten"]
    assert [line for line in out.lines if "have no" in line] == [
        "note: 2 row(s) of train have no 'category' (row 5, 10): load keeps them and validate fails on "
        "them; label or remove them"
    ]


def test_blank_lines_are_noted_and_later_rows_keep_their_numbers(tmp_path: Path, tiny_bert: Path) -> None:
    """init reads the file as load does: blank lines are not rows without a label, and a note's row
    numbers are the file's."""
    df = reviews(60)
    df.loc[9, "category"] = None
    df.to_csv(tmp_path / "data.csv", index=False)
    lines = (tmp_path / "data.csv").read_text().splitlines(keepends=True)
    (tmp_path / "data.csv").write_text("".join(lines[:3] + ["\n"] + lines[3:] + ["\n"]))
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert [line for line in out.lines if "blank" in line or "have no" in line] == [
        "note: 1 blank row(s) of train (row 3): load skips them, and says so",
        "note: 1 row(s) of train have no 'category' (row 11): load keeps them and validate fails on "
        "them; label or remove them",
    ]
    assert said(out, "splits").startswith("splits: train 60 rows supplied")


def test_source_files_in_neither_git_nor_dvc_are_noted(tmp_path: Path, tiny_bert: Path) -> None:
    """A registered model trained on them could never be replayed: say so before the first run."""
    import subprocess

    split_folder(tmp_path / "data/raw/splits", reviews(90))
    git = ["git", "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "data/raw/splits/train.csv"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "train in git"], cwd=tmp_path, check=True)
    # What `dvc add data/raw/splits/test.csv` leaves, committed.
    (tmp_path / "data/raw/splits/test.csv.dvc").write_text("outs:\n- md5: 0123\n  path: test.csv\n")
    subprocess.run([*git, "add", "data/raw/splits/test.csv.dvc"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "test in dvc"], cwd=tmp_path, check=True)
    out = infer(tmp_path, tmp_path / "data/raw/splits", tiny_bert)
    assert [line for line in out.lines if "neither git nor DVC" in line] == [
        "note: data/raw/splits/dev.csv: in neither git nor DVC; a registered model trained on it cannot be "
        "replayed from the remotes: `dvc add data/raw/splits/dev.csv`, then commit the .dvc file"
    ]


def test_folder_of_split_files_by_name(tmp_path: Path, tiny_bert: Path) -> None:
    split_folder(tmp_path / "data/raw/splits", reviews(90))
    out = infer(tmp_path, tmp_path / "data/raw/splits", tiny_bert)
    assert out.data["load"]["source"] == {
        "train": "data/raw/splits/train.csv",
        "validation": "data/raw/splits/dev.csv",
        "test": "data/raw/splits/test.csv",
    }
    assert "all supplied" in said(out, "splits")
    assert not [line for line in out.lines if line.startswith("note:")]


def test_folder_without_validation_carves_it(tmp_path: Path, tiny_bert: Path) -> None:
    split_folder(tmp_path / "raw", reviews(90), names=("train", "test"))
    out = infer(tmp_path, tmp_path / "raw", tiny_bert)
    assert set(out.data["load"]["source"]) == {"train", "test"}
    assert said(out, "splits").endswith("validation carved from train (10%)")


def test_saved_dataset_maps_its_splits_and_skips_hidden_labels(tmp_path: Path, tiny_bert: Path) -> None:
    from datasets import Dataset, DatasetDict

    df = reviews(90)[["review", "category"]]
    hidden = df[60:].assign(category=None)
    DatasetDict(
        train=Dataset.from_pandas(df[:60], preserve_index=False),
        dev=Dataset.from_pandas(df[60:], preserve_index=False),
        test=Dataset.from_pandas(hidden, preserve_index=False),
    ).save_to_disk(tmp_path / "saved")
    out = infer(tmp_path, tmp_path / "saved", tiny_bert)
    assert out.data["load"]["split"]["from_source"] == {"train": "train", "validation": "dev"}
    assert any(line.startswith("split test: left out") for line in out.lines)
    params.parse(yaml.safe_load(project_init.render(out, "tunepipe init saved")))


def test_group_by_only_when_asked(tmp_path: Path, tiny_bert: Path) -> None:
    reviews(60).to_csv(tmp_path / "data.csv", index=False)
    assert infer(tmp_path, tmp_path / "data.csv", tiny_bert).data["load"]["split"]["group_by"] is None
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert, group_by="movie_name")
    assert out.data["load"]["split"]["group_by"] == "movie_name"


# --- max_length, thresholds, validate -----------------------------------------------------------


def test_max_length_covers_95_percent_rounded_to_8(tmp_path: Path, tiny_bert: Path) -> None:
    words = FILLER * 3
    rows = [{"text": " ".join(words[: 5 if i < 96 else 30]), "label": "ab"[i % 2]} for i in range(100)]
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["tokenize"]["max_length"] == 8  # 5 words + [CLS] [SEP] = 7 tokens, the 30-word 4% cut
    assert "4.0% are cut" in said(out, "tokenize.max_length")


def test_max_length_is_capped_at_the_model_limit(tmp_path: Path, tiny_bert: Path) -> None:
    rows = [{"text": " ".join(FILLER * 20), "label": "ab"[i % 2]} for i in range(20)]
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["tokenize"]["max_length"] == 128  # the tiny model's limit
    assert "the model's limit" in said(out, "tokenize.max_length")


def test_accuracy_threshold_is_the_majority_baseline_plus_a_margin(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(400)
    df["category"] = ["fresh"] * 320 + ["rotten"] * 80
    split_folder(tmp_path / "raw", df.sample(frac=1, random_state=0), names=("train", "test"))
    out = infer(tmp_path, tmp_path / "raw", tiny_bert)
    test = pd.read_csv(tmp_path / "raw/test.csv")
    base = (test["category"] == "fresh").mean()
    limit = out.data["evaluate"]["thresholds"]["accuracy"]
    assert base < limit <= base + 0.2
    assert limit != 0.8
    assert f"scores {base:.3f} on test" in said(out, "evaluate.thresholds")


def test_min_rows_per_class_fits_the_smallest_split(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(200)
    df["category"] = ["fresh"] * 180 + ["rotten"] * 20
    df.to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert)
    assert out.data["validate"]["min_rows_per_class"] == 1  # 20 rotten, 2 expected in a 10% split
    assert "rotten has about 2 rows in validation" in said(out, "validate.min_rows_per_class")


def test_a_label_missing_from_a_supplied_split_is_said(tmp_path: Path, tiny_bert: Path) -> None:
    df = reviews(90)
    df.loc[60:, "category"] = "fresh"  # the test file holds no rotten row
    split_folder(tmp_path / "raw", df, names=("train", "test"))
    out = infer(tmp_path, tmp_path / "raw", tiny_bert)
    assert out.data["validate"]["min_rows_per_class"] == 0
    assert "label rotten has no rows in test" in said(out, "validate.min_rows_per_class")


def test_set_writes_other_values_and_refuses_unknown_keys(tmp_path: Path, tiny_bert: Path) -> None:
    reviews(60).to_csv(tmp_path / "data.csv", index=False)
    out = infer(tmp_path, tmp_path / "data.csv", tiny_bert, sets=["train.epochs=3", "evaluate.thresholds={}"])
    assert out.data["train"]["epochs"] == 3
    assert out.data["evaluate"]["thresholds"] == {}
    with pytest.raises(PipelineError, match=r"--set 'train.epoch=3': expected section.key=value"):
        infer(tmp_path, tmp_path / "data.csv", tiny_bert, sets=["train.epoch=3"])


# --- writing ------------------------------------------------------------------------------------


def test_writes_a_valid_params_file_with_the_schema_line_and_the_reasons(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reviews(60).to_csv(tmp_path / "data.csv", index=False)
    code, out, err = cli(capsys, "init", "data.csv", "--root", str(tmp_path), "--model", str(tiny_bert))
    assert code == 0, err
    text = (tmp_path / "params.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=params.schema.json\n")
    for line in out.splitlines()[:-1]:
        assert f"#   {line}\n" in text  # what was printed is what the file records
    assert out.splitlines()[-1] == f"wrote {tmp_path / 'params.yaml'}"
    p = params.read(tmp_path / "params.yaml")
    assert p.load.columns.text == "review" and p.load.labels == ["fresh", "rotten"]
    assert p.register == params.Params().register and p.search == params.Params().search


def test_refuses_to_overwrite_without_force(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    reviews(60).to_csv("data.csv", index=False)
    Path("params.yaml").write_text("task: regression\n")
    code, _, err = cli(capsys, "init", "data.csv", "--model", str(tiny_bert))
    assert code == 1
    assert err.strip() == "error: params.yaml: exists; pass --force to overwrite it"
    assert Path("params.yaml").read_text() == "task: regression\n"
    code, _, err = cli(capsys, "init", "data.csv", "--model", str(tiny_bert), "--force")
    assert code == 0, err
    assert params.read("params.yaml").task == "sequence_classification"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "params.yaml"]  # no temporary left


def test_example_is_copied_with_the_same_overwrite_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "examples").mkdir()
    text = (REPO / "examples/glue-sst2.yaml").read_text()
    (tmp_path / "examples/glue-sst2.yaml").write_text(text)
    assert cli(capsys, "init", "--example", "glue-sst2", "--root", str(tmp_path))[0] == 0
    written = (tmp_path / "params.yaml").read_text()
    assert written == text.replace("$schema=../params.schema.json", "$schema=params.schema.json", 1)
    code, _, err = cli(capsys, "init", "--example", "glue-sst2", "--root", str(tmp_path))
    assert code == 1 and "pass --force" in err
    code, _, err = cli(capsys, "init", "--example", "nope", "--root", str(tmp_path), "--force")
    assert code == 1 and "choose one of glue-sst2" in err


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid_params(path: Path) -> None:
    params.parse(yaml.safe_load(path.read_text()), str(path))


def test_the_rt_snippets_example_is_the_default_params() -> None:
    example = params.read(REPO / "examples/rt-snippets.yaml")
    assert example == params.read(REPO / "params.yaml")
