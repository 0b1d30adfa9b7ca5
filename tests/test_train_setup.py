import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import fake_tokenized
from tunepipe import checkpoints, devices, params, training
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit


@pytest.fixture
def fresh_decision(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """devices.cpu_auto_precision decides once per process: undo that around a test."""
    monkeypatch.delenv(devices.DECISION_ENV, raising=False)
    devices.cpu_auto_precision.cache_clear()
    yield
    devices.cpu_auto_precision.cache_clear()


@pytest.mark.parametrize(
    ("flags", "speedup", "expected"),
    [
        ({"avx2", "avx512f"}, None, "fp32"),  # no bf16 units: not even measured
        ({"avx512f", "avx512_bf16"}, 4.3, "bf16"),
        ({"amx_bf16", "amx_tile"}, 9.0, "bf16"),
        ({"avx512_bf16"}, 1.1, "fp32"),  # units present but not faster here
        (set(), 2.0, "bf16"),  # flags unknown (not Linux): the measurement decides
    ],
)
def test_auto_precision_on_a_cpu_follows_its_bf16_units_and_their_measured_speed(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fresh_decision: None,
    flags: set[str],
    speedup: float | None,
    expected: str,
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path")

    def measured() -> float:
        assert speedup is not None, "measured although the CPU has no bf16 units"
        return speedup

    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    monkeypatch.setattr(devices, "matmul_speedup", measured)
    assert devices.choose_device(params.TrainParams()) == {"device": "cpu", "precision": expected}
    assert devices.choose() == {"device": "cpu", "precision": expected}
    # decided once, printed once, and handed to child processes (torchrun ranks)
    assert capsys.readouterr().err.count(f"precision auto on this CPU: {expected} (") == 1
    assert os.environ[devices.DECISION_ENV] == expected
    # an explicit precision is never overridden; a regression model's scores stay fp32 under auto
    assert devices.choose(precision="fp32")["precision"] == "fp32"
    assert devices.choose(task="regression")["precision"] == "fp32"
    assert devices.choose(precision="bf16", task="regression")["precision"] == "bf16"


def test_a_child_process_takes_its_parents_cpu_precision(
    monkeypatch: pytest.MonkeyPatch, fresh_decision: None
) -> None:
    monkeypatch.setenv(devices.DECISION_ENV, "fp32")
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(devices, "matmul_speedup", lambda: 4.0)
    assert devices.cpu_auto_precision()["precision"] == "fp32"


def test_matmul_speedup_is_a_positive_ratio() -> None:
    # tiny shapes time microseconds: only the sign and finiteness say anything here
    speedup = devices.matmul_speedup(rows=64, inner=32, outer=32, repeats=2)
    assert 0 < speedup < float("inf")


def test_cpu_machine_refuses_gpu_only_settings() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path")
    assert devices.choose_device(params.TrainParams(precision="bf16")) == {
        "device": "cpu",
        "precision": "bf16",
    }
    with pytest.raises(PipelineError, match="train.device is cuda but no CUDA device"):
        devices.choose_device(params.TrainParams(device="cuda"))
    with pytest.raises(PipelineError, match="fp16 needs a CUDA device"):
        devices.choose_device(params.TrainParams(precision="fp16"))
    with pytest.raises(PipelineError, match="train.device: expected one of auto, cpu, cuda"):
        devices.choose_device(params.TrainParams.model_construct(device="tpu"))  # unchecked, as in code


def test_checkpoint_fingerprint_follows_data_and_params(tmp_path: Path) -> None:
    """A changed run must never resume another run's checkpoints; an identical one must. Only
    what training reads counts: new test rows keep them."""
    data, pretrained = fake_tokenized(tmp_path, pretrained='{"tokenizer": {"vocab.txt": "1"}}')
    base = params.parse({})

    def fingerprint(p: params.Params = base) -> str:
        return checkpoints.fingerprint(p, data, pretrained)

    same = fingerprint(params.parse({}))
    assert fingerprint() == same
    assert fingerprint(params.parse({"train": {"learning_rate": 1e-3}})) != same
    assert fingerprint(params.parse({"evaluate": {"thresholds": {"accuracy": 0.9}}})) == same
    (data / "test/part.arrow").write_bytes(b"abd")
    assert fingerprint() == same
    for changed in (
        data / "train/part.arrow",
        data / "validation/part.arrow",
        data / "labels.json",
        pretrained,
    ):
        before = changed.read_bytes()
        changed.write_bytes(before + b" ")
        assert fingerprint() != same, changed
        changed.write_bytes(before)
    assert fingerprint() == same


def test_balanced_weights_follow_train_label_frequencies() -> None:
    # 6 of class 0, 2 of class 1, none of class 2: n / (classes present * count), absent -> 0
    assert training.balanced_weights([0, 0, 0, 0, 0, 0, 1, 1], 3) == pytest.approx([8 / 12, 8 / 4, 0.0])
    # token labels: -100 (special tokens, later sub-tokens) does not count
    assert training.balanced_weights([[-100, 0, 0, -100], [-100, 1, 0, -100]], 2) == pytest.approx(
        [4 / 6, 4 / 2]
    )


def test_weighted_loss_is_class_weighted_cross_entropy(tiny_bert: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    batch = {"input_ids": torch.randint(5, 50, (6, 8)), "labels": torch.tensor([0, 0, 0, 0, 1, 1])}
    logits = model(input_ids=batch["input_ids"]).logits

    weighted = training.weighted_trainer([0.75, 1.5])(model=model, args=args)
    loss = weighted.compute_loss(model, dict(batch))
    per_example = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
    w = torch.tensor([0.75, 1.5])[batch["labels"]]
    assert loss.item() == pytest.approx(((per_example * w).sum() / w.sum()).item(), rel=1e-5)

    # equal weights give the model's own (unweighted) loss
    even = training.weighted_trainer([1.0, 1.0])(model=model, args=args)
    assert even.compute_loss(model, dict(batch)).item() == pytest.approx(model(**batch).loss.item(), rel=1e-5)


def test_validation_rows_go_shortest_first_and_none_is_lost() -> None:
    from datasets import Dataset

    ds = Dataset.from_dict({"input_ids": [[1, 2, 3], [1], [1, 2], [4]], "labels": [0, 1, 2, 3]})
    ordered = training.by_length(ds)
    assert [len(x) for x in ordered["input_ids"]] == [1, 1, 2, 3]
    assert ordered["labels"] == [1, 3, 2, 0]  # ties keep their order
