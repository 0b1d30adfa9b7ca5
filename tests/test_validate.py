import pandas as pd
import pytest

from tunepipe import params
from tunepipe import validation as validate

pytestmark = pytest.mark.unit


def frames(texts_by_split: dict[str, list[tuple[str, str]]]) -> dict[str, pd.DataFrame]:
    return {
        split: pd.DataFrame(
            {
                "text": [t for t, _ in rows],
                "label": [label for _, label in rows],
                "source_row": range(1, len(rows) + 1),
            }
        )
        for split, rows in texts_by_split.items()
    }


def clean() -> dict[str, list[tuple[str, str]]]:
    return {
        split: [(f"{split} review {i}", "pos" if i % 2 else "neg") for i in range(n)]
        for split, n in (("train", 20), ("validation", 6), ("test", 6))
    }


P = params.parse({"load": {"labels": ["neg", "pos"]}, "validate": {"min_rows_per_class": 3, "max_chars": 40}})


@pytest.fixture(scope="module")
def gx_ready() -> None:
    pytest.importorskip("great_expectations")


def failures(report: dict) -> list[tuple[str, str, str]]:
    return [(f["split"], f["expectation"], f["column"]) for f in report["failures"]]


def test_clean_data_passes(gx_ready: None) -> None:
    report = validate.validate(P, frames(clean()))
    assert report["success"], report["failures"]
    assert report["splits"]["train"]["class_counts"] == {"neg": 10, "pos": 10}


def test_label_outside_set_names_the_row(gx_ready: None) -> None:
    data = clean()
    data["train"][7] = ("a review with a stray label", "maybe")
    report = validate.validate(P, frames(data))
    assert ("train", "expect_column_values_to_be_in_set", "label") in failures(report)
    check = next(f for f in report["failures"] if f["column"] == "label" and not f.get("table"))
    assert check["unexpected_count"] == 1
    assert check["examples"][0]["source_row"] == 8
    text = validate.describe_failure(check)
    assert "split 'train'" in text and "source row 8" in text and "maybe" in text


def test_empty_text_and_length_bounds(gx_ready: None) -> None:
    data = clean()
    data["validation"][0] = ("   ", "neg")
    data["validation"][2] = ("x" * 60, "neg")
    report = validate.validate(P, frames(data))
    found = failures(report)
    assert ("validation", "expect_column_values_to_not_match_regex", "text") in found
    assert ("validation", "expect_column_value_lengths_to_be_between", "text") in found


def test_too_few_rows_per_class(gx_ready: None) -> None:
    data = clean()
    data["test"] = [(f"test review {i}", "neg") for i in range(6)]
    report = validate.validate(P, frames(data))
    check = next(f for f in report["failures"] if f.get("table") == "class_counts")
    assert check["split"] == "test"
    assert check["examples"] == [{"label": "pos", "rows": 0}]


def test_text_shared_between_train_and_test(gx_ready: None) -> None:
    data = clean()
    data["test"][3] = (data["train"][5][0], "pos")
    report = validate.validate(P, frames(data))
    check = next(f for f in report["failures"] if f.get("table") == "test_vs_train")
    assert check["unexpected_count"] == 1
    assert check["examples"][0]["example"] == "train review 5"


def test_report_is_deterministic(gx_ready: None) -> None:
    assert validate.validate(P, frames(clean())) == validate.validate(P, frames(clean()))


def messy() -> dict[str, list[tuple[str, str]]]:
    """Failures spread over many batches: more offending rows than the report shows."""
    data = clean()
    for i in (1, 4, 8, 9, 13, 17, 19):
        data["train"][i] = (f"train review {i} stray", "maybe")
    data["train"][6] = ("  ", "neg")
    data["train"][11] = ("x" * 60, "pos")
    data["test"][3] = (data["train"][5][0], "pos")
    data["test"][5] = (data["train"][7][0], "neg")
    return data


def test_batched_validation_reports_what_one_run_over_the_whole_split_reports(
    gx_ready: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = validate.validate(P, frames(messy()))
    assert not whole["success"]
    for size in (1, 3, 7):
        monkeypatch.setattr(validate, "BATCH", size)
        assert validate.validate(P, frames(messy())) == whole, size
    label = next(f for f in whole["failures"] if f["column"] == "label" and not f.get("table"))
    assert label["unexpected_count"] == 7 and label["element_count"] == 20
    assert [e["source_row"] for e in label["examples"]] == [2, 5, 9, 10, 14]


def test_batched_truncation_counts_match_one_call(gx_ready: None, monkeypatch: pytest.MonkeyPatch) -> None:
    p = params.parse({"load": {"labels": ["neg", "pos"]}, "tokenize": {"max_length": 8}})
    splits = frames({"train": [(" ".join(["word"] * (i % 13 + 1)), "pos") for i in range(40)]})
    whole = validate.truncation_report(p, splits)
    monkeypatch.setattr(validate, "BATCH", 6)
    assert validate.truncation_report(p, splits) == whole
    assert whole["train"]["truncated"] > 0


def test_a_split_of_many_batches_validates(gx_ready: None) -> None:
    # Figures for time and memory are benchmarks/scale.py's; this checks the many-batch path runs.
    rows = 2 * validate.BATCH + 123
    data = {
        "train": [(f"train review number {i}", "pos" if i % 2 else "neg") for i in range(rows)],
        "validation": [(f"validation review {i}", "pos" if i % 2 else "neg") for i in range(8)],
        "test": [(f"test review {i}", "pos" if i % 2 else "neg") for i in range(8)],
    }
    data["train"][rows - 2] = ("late stray", "maybe")  # a "pos" row
    report = validate.validate(P, frames(data))
    label = next(f for f in report["failures"] if f["column"] == "label" and not f.get("table"))
    assert label["unexpected_count"] == 1 and label["element_count"] == rows
    assert label["examples"][0]["source_row"] == rows - 1
    assert report["splits"]["train"]["class_counts"] == {"neg": rows // 2 + 1, "pos": rows // 2 - 1}
