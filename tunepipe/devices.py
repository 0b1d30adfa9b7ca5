"""Where a model runs: CUDA with bf16 (fp16 where bf16 is missing) when present; on a CPU, bf16
where this CPU's bf16 matmuls measure clearly faster than fp32 (avx512_bf16 or AMX), else fp32."""

from __future__ import annotations

import os
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from tunepipe.errors import PipelineError
from tunepipe.params import TrainParams, check_train_value

# bf16 pays on a CPU only where it has bf16 matmul units: emulated bf16 is slower than fp32.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# The measured bf16/fp32 matmul speed-up above which `auto` trains a CPU run in bf16. Where the
# units exist the ratio is far above it (4.3x on an EPYC with avx512_bf16), so the decision does
# not flip between runs on one machine.
CPU_BF16_MIN_SPEEDUP = 1.5
# Inherited by child processes (torchrun ranks, a relaunched stage) so that all agree.
DECISION_ENV = "TUNEPIPE_CPU_AUTO_PRECISION"


def choose_device(t: TrainParams, task: str | None = None) -> dict[str, Any]:
    """CUDA with bf16 (or fp16 where bf16 is unsupported) when present, else the CPU's choice."""
    return choose(t.device, t.precision, task)


def choose(device: str = "auto", precision: str = "auto", task: str | None = None) -> dict[str, Any]:
    """Where a model runs and in which precision, from train.device and train.precision (training,
    and evaluate and predict on the trained model). On a CPU, `auto` keeps a regression model in
    fp32: bf16 would round its predicted scores to about three significant digits."""
    import torch

    # The values are checked when params are read; these checks are for TrainParams built in code
    # (a search trial's) and for what only the hardware can say.
    check_train_value("device", device, "params.yaml: train.device")
    check_train_value("precision", precision, "params.yaml: train.precision")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise PipelineError("params.yaml: train.device is cuda but no CUDA device is available")
    on_cuda = cuda and device != "cpu"
    if precision == "auto" and on_cuda:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif precision == "auto":
        precision = cpu_auto_precision()["precision"] if asks_cpu("cpu", precision, task) else "fp32"
    if precision == "fp16" and not on_cuda:
        raise PipelineError("params.yaml: train.precision fp16 needs a CUDA device")
    return {"device": "cuda" if on_cuda else "cpu", "precision": precision}


def asks_cpu(device: str, precision: str, task: str | None) -> bool:
    """Whether `choose` decides this precision by the CPU's bf16 measurement (cpu_auto_precision):
    auto on a CPU, except for regression."""
    return precision == "auto" and device == "cpu" and task != "regression"


def cpu_flags() -> set[str]:
    """This CPU's feature flags where the OS lists them (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def matmul_speedup(rows: int = 2048, inner: int = 384, outer: int = 1536, repeats: int = 5) -> float:
    """bf16 over fp32 speed of a matmul shaped like an encoder layer's feed-forward on one batch
    (best of a few, after a warm-up): what autocast would gain on this CPU."""
    import torch

    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(rows, inner, dtype=dtype)
        b = torch.randn(inner, outer, dtype=dtype)
        a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        best[dtype] = min(times)
    return best[torch.float32] / best[torch.bfloat16]


@lru_cache(maxsize=1)
def cpu_auto_precision() -> dict[str, Any]:
    """What `precision: auto` means on this CPU, decided once per process (and inherited by its
    children): bf16 where the CPU has bf16 matmul units and they measure at least
    CPU_BF16_MIN_SPEEDUP times fp32, else fp32. Prints the decision and why."""
    inherited = os.environ.get(DECISION_ENV)
    if inherited in ("fp32", "bf16"):
        return {"precision": inherited, "reason": f"decided by the parent process ({DECISION_ENV})"}
    flags = cpu_flags()
    units = [f for f in CPU_BF16_FLAGS if f in flags]
    if flags and not units:
        decision = {"precision": "fp32", "reason": "no bf16 matmul units (avx512_bf16, amx_bf16)"}
    else:
        speedup = matmul_speedup()
        fast = speedup >= CPU_BF16_MIN_SPEEDUP
        decision = {
            "precision": "bf16" if fast else "fp32",
            "reason": f"{', '.join(units) or 'CPU flags unknown'}; bf16 matmul measured {speedup:.1f}x fp32 "
            f"({'at least' if fast else 'under'} {CPU_BF16_MIN_SPEEDUP}x)",
            "bf16_matmul_speedup": round(speedup, 2),
        }
    os.environ[DECISION_ENV] = decision["precision"]
    print(f"precision auto on this CPU: {decision['precision']} ({decision['reason']})", file=sys.stderr)
    return decision
