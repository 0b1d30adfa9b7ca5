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
