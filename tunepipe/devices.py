"""Where a model runs: CUDA with bf16 (fp16 where bf16 is missing) when present, else CPU in fp32."""

from __future__ import annotations

from typing import Any

from tunepipe.errors import PipelineError
from tunepipe.params import TrainParams


def choose_device(t: TrainParams) -> dict[str, Any]:
    """CUDA with bf16 (or fp16 where bf16 is unsupported) when present, else CPU in fp32."""
    import torch

    cuda = torch.cuda.is_available()
    if t.device == "cuda" and not cuda:
        raise PipelineError("params.yaml: train.device is cuda but no CUDA device is available")
    if t.device not in ("auto", "cpu", "cuda"):
        raise PipelineError(f"params.yaml: train.device must be auto, cpu or cuda, got {t.device!r}")
    on_cuda = cuda and t.device != "cpu"
    precision = t.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_cuda else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise PipelineError(
            f"params.yaml: train.precision must be auto, fp32, bf16 or fp16, got {precision!r}"
        )
    if precision == "fp16" and not on_cuda:
        raise PipelineError("params.yaml: train.precision fp16 needs a CUDA device")
    return {"device": "cuda" if on_cuda else "cpu", "precision": precision}
