from pathlib import Path

import pytest

from tasks import train
from tunepipe import params
from tunepipe.errors import PipelineError


def test_cpu_machine_trains_in_fp32_and_refuses_gpu_only_settings() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path")
    assert train.choose_device(params.TrainParams()) == {"device": "cpu", "precision": "fp32"}
    assert train.choose_device(params.TrainParams(precision="bf16")) == {"device": "cpu", "precision": "bf16"}
    with pytest.raises(PipelineError, match="train.device is cuda but no CUDA device"):
        train.choose_device(params.TrainParams(device="cuda"))
    with pytest.raises(PipelineError, match="fp16 needs a CUDA device"):
        train.choose_device(params.TrainParams(precision="fp16"))
    with pytest.raises(PipelineError, match="train.device must be auto, cpu or cuda"):
        train.choose_device(params.TrainParams(device="tpu"))


def test_checkpoint_fingerprint_follows_data_and_params(tmp_path: Path) -> None:
    """A changed run must never resume another run's checkpoints; an identical one must."""
    data = tmp_path / "tokenized"
    data.mkdir()
    (data / "part.arrow").write_bytes(b"abc")
    base = params.parse({})
    same = train.fingerprint(params.parse({}), data)
    assert train.fingerprint(base, data) == same
    assert train.fingerprint(params.parse({"train": {"learning_rate": 1e-3}}), data) != same
    assert train.fingerprint(params.parse({"evaluate": {"thresholds": {"accuracy": 0.9}}}), data) == same
    (data / "part.arrow").write_bytes(b"abd")
    assert train.fingerprint(base, data) != same
