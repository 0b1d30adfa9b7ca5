"""Where a model runs: CUDA with bf16 (fp16 where bf16 is missing) when present, else CPU in fp32."""

from __future__ import annotations

from typing import Any

from tunepipe.errors import PipelineError
from tunepipe.params import TrainParams, check_train_value


def choose_device(t: TrainParams) -> dict[str, Any]:
    """CUDA with bf16 (or fp16 where bf16 is unsupported) when present, else CPU in fp32."""
    return choose(t.device, t.precision)


def choose(device: str = "auto", precision: str = "auto") -> dict[str, Any]:
    """Where a model runs and in which precision, from train.device and train.precision (training,
    and evaluate and predict on the trained model)."""
    import torch

    # The values are checked when params are read; these checks are for TrainParams built in code
    # (a search trial's) and for what only the hardware can say.
    check_train_value("device", device, "params.yaml: train.device")
    check_train_value("precision", precision, "params.yaml: train.precision")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise PipelineError("params.yaml: train.device is cuda but no CUDA device is available")
    on_cuda = cuda and device != "cpu"
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_cuda else "fp32"
    if precision == "fp16" and not on_cuda:
        raise PipelineError("params.yaml: train.precision fp16 needs a CUDA device")
    return {"device": "cuda" if on_cuda else "cpu", "precision": precision}
