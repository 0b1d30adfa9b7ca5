from pathlib import Path

import pytest

from tunepipe import params
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent


def test_shipped_params_parse() -> None:
    p = params.read(REPO / "params.yaml")
    assert p.task == "sequence_classification"
    assert p.load.labels == ["rotten", "fresh"]
    assert p.train.learning_rate == pytest.approx(5e-5)


def test_unknown_field_is_named() -> None:
    with pytest.raises(PipelineError, match=r"params.yaml: train: unknown field\(s\) learnig_rate"):
        params.parse({"train": {"learnig_rate": 0.1}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"train": {"learnin_rate": 0.1}},
            "params.yaml: train: unknown field(s) learnin_rate (did you mean learning_rate?)",
        ),
        (
            {"load": {"split": {"tset": 0.2}}},
            "params.yaml: load.split: unknown field(s) tset (did you mean test?)",
        ),
        ({"trian": {}}, "params.yaml: unknown field(s) trian (did you mean train?)"),
        (
            {"promote": {"zzz": 1, "sede": 3}},
            "params.yaml: promote: unknown field(s) sede (did you mean seed?), zzz; expected one of "
            "confidence, guards, metric, min_class_recall, min_delta, require_significant, resamples, seed, "
            "stage",
        ),
    ],
)
def test_unknown_field_says_the_closest_known_one(data: dict, message: str) -> None:
    with pytest.raises(PipelineError) as info:
        params.parse(data)
    assert str(info.value) == message


def test_number_fields_take_yaml_1_1_strings_in_code_too() -> None:
    assert params.TrainParams(learning_rate="1e-4").learning_rate == pytest.approx(1e-4)


def test_an_empty_section_takes_the_defaults() -> None:
    assert params.parse({"train": None}).train == params.TrainParams()


def test_a_section_that_is_not_a_mapping_is_named() -> None:
    with pytest.raises(PipelineError, match=r"^params.yaml: train: expected a mapping, got list$"):
        params.parse({"train": [1]})


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(PipelineError, match=r"train.batch_size: expected an integer, got 'big'"):
        params.parse({"train": {"batch_size": "big"}})


def test_unknown_task_rejected() -> None:
    with pytest.raises(PipelineError, match="task: expected one of sequence_classification"):
        params.parse({"task": "summarisation"})


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="file not found"):
        params.read(tmp_path / "params.yaml")


def test_source_accepts_split_mapping() -> None:
    p = params.parse({"load": {"source": {"train": "a.csv", "test": "b.csv"}}})
    assert p.load.source == {"train": "a.csv", "test": "b.csv"}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("warmup_ratio", 1.0, "at least 0 and below 1"),
        ("epochs", 0, "greater than 0"),
        ("learning_rate", -1e-5, "greater than 0"),
        ("learning_rate", 0.0, "greater than 0"),
        ("batch_size", 0, "1 or more"),
        ("max_train_samples", 0, "1 or more, or null"),
    ],
)
def test_out_of_range_train_value_names_the_field(field: str, value: float, expected: str) -> None:
    with pytest.raises(PipelineError, match=rf"train\.{field}: expected {expected}, got {value!r}"):
        params.parse({"train": {field: value}})


def test_range_edges_are_accepted() -> None:
    p = params.parse({"train": {"warmup_ratio": 0.0, "learning_rate": 1e-9, "max_train_samples": None}})
    assert (p.train.warmup_ratio, p.train.learning_rate, p.train.max_train_samples) == (0.0, 1e-9, None)
