"""Where a model runs: CUDA with bf16 (fp16 where bf16 is missing) when present; on a CPU, bf16
where this CPU's bf16 matmuls measure clearly faster than fp32 (avx512_bf16 or AMX), else fp32."""

from __future__ import annotations

import json
import os
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from tunepipe.errors import PipelineError
from tunepipe.io import write_text
from tunepipe.params import TrainParams, check_train_value

# bf16 pays on a CPU only where it has bf16 matmul units: emulated bf16 is slower than fp32.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# The measured bf16/fp32 matmul speed-up above which `auto` trains a CPU run in bf16. Where the
# units exist the ratio is far above it (4.3x on an EPYC with avx512_bf16), so the decision does
# not flip between runs on one machine.
CPU_BF16_MIN_SPEEDUP = 1.5
# Inherited by child processes (torchrun ranks, a relaunched stage) so that all agree.
DECISION_ENV = "TUNEPIPE_CPU_AUTO_PRECISION"
# A file to keep the measured decision in, or `off` (tests); default: the user cache folder.
CACHE_ENV = "TUNEPIPE_PRECISION_CACHE"


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


def bf16_units(flags: set[str]) -> list[str]:
    """The bf16 matmul units among a CPU's flags: what makes bf16 worth measuring there."""
    return [f for f in CPU_BF16_FLAGS if f in flags]


def matmul_speedup(rows: int = 2048, inner: int = 384, outer: int = 1536, repeats: int = 5) -> float:
    """bf16 over fp32 speed of a matmul shaped like an encoder layer's feed-forward on one batch
    (best of a few, after a warm-up): what autocast would gain on this CPU."""
    figures = matmul_figures(rows, inner, outer, repeats)
    return figures["fp32_gflops"] and figures["bf16_gflops"] / figures["fp32_gflops"]


def matmul_figures(
    rows: int = 2048, inner: int = 384, outer: int = 1536, repeats: int = 5
) -> dict[str, float]:
    """fp32 and bf16 GFLOP/s of that matmul, each the best of `repeats` after a warm-up: the best
    time is the one least disturbed by other processes on a shared CPU."""
    import torch

    flops = 2.0 * rows * inner * outer
    out: dict[str, float] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(rows, inner, dtype=dtype)
        b = torch.randn(inner, outer, dtype=dtype)
        a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        # three significant figures: a tiny shape on a loaded CPU runs at well under 0.1 GFLOP/s
        out[f"{name}_gflops"] = float(f"{flops / max(min(times), 1e-9) / 1e9:.3g}")
    return out


def cpu_model() -> str:
    """The CPU's model name where the OS lists it (Linux), else what platform says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cache_path() -> Path | None:
    """Where the measured decision is kept between processes: $TUNEPIPE_PRECISION_CACHE (a file,
    or `off`), else the user cache folder ($XDG_CACHE_HOME or ~/.cache)/tunepipe/precision.json."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "off", "0", "false", "no") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tunepipe" / "precision.json"


def cache_key(units: list[str]) -> str:
    """What the measurement depends on: the CPU model, its bf16 units and the torch build."""
    import torch

    return f"{cpu_model()} | {','.join(units) or 'no bf16 flags'} | torch {torch.__version__}"


def _read_cache(path: Path | None, key: str) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a damaged cache is measured again and rewritten
    if not isinstance(data, dict) or data.get("key") != key or data.get("precision") not in ("fp32", "bf16"):
        return None
    return data


def _write_cache(path: Path | None, decision: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        write_text(path, json.dumps(decision, indent=2) + "\n")
    except OSError as exc:  # a read-only home: decide anyway, measure again next time
        print(f"precision cache not written ({path}: {exc.strerror})", file=sys.stderr)


def measure_decision(units: list[str], flags: set[str]) -> dict[str, Any]:
    """Measure this CPU and decide, without the cache."""
    if flags and not units:
        return {"precision": "fp32", "reason": "no bf16 matmul units (avx512_bf16, amx_bf16)"}
    figures = matmul_figures() if matmul_speedup is _MEASURED_SPEEDUP else {}
    speedup = figures["bf16_gflops"] / figures["fp32_gflops"] if figures else matmul_speedup()
    fast = speedup >= CPU_BF16_MIN_SPEEDUP
    return {
        "precision": "bf16" if fast else "fp32",
        "reason": f"{', '.join(units) or 'CPU flags unknown'}; bf16 matmul measured {speedup:.1f}x fp32 "
        f"({'at least' if fast else 'under'} {CPU_BF16_MIN_SPEEDUP}x)",
        "bf16_matmul_speedup": round(speedup, 2),
        **figures,
    }


_MEASURED_SPEEDUP = matmul_speedup


@lru_cache(maxsize=1)
def cpu_auto_precision() -> dict[str, Any]:
    """What `precision: auto` means on this CPU: bf16 where the CPU has bf16 matmul units and they
    measure at least CPU_BF16_MIN_SPEEDUP times fp32, else fp32. Measured once per machine and
    torch build, then cached (cache_path): a measurement taken while other jobs load the CPU
    would otherwise flip the decision from one stage to the next. Decided once per process,
    inherited by its children; prints the decision and why."""
    inherited = os.environ.get(DECISION_ENV)
    if inherited in ("fp32", "bf16"):
        return {"precision": inherited, "reason": f"decided by the parent process ({DECISION_ENV})"}
    flags = cpu_flags()
    units = bf16_units(flags)
    path, key = cache_path(), cache_key(units)
    cached = _read_cache(path, key)
    if cached is not None:
        where = f"measured {cached.get('measured')}, cached in {path}"
        decision = dict(cached, reason=f"{cached.get('reason')}; {where}")
        decision.pop("key", None)
    else:
        decision = measure_decision(units, flags)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        _write_cache(path, {"key": key, **decision, "cpu": cpu_model(), "measured": stamp})
    os.environ[DECISION_ENV] = decision["precision"]
    print(f"precision auto on this CPU: {decision['precision']} ({decision['reason']})", file=sys.stderr)
    return decision


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask; a container's CPU set), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def doctor() -> dict[str, Any]:
    """What `tunepipe doctor` prints: the CPU, its bf16 units, the cached or fresh precision
    measurement and decision, library versions and thread settings."""
    import torch
    import transformers

    flags = cpu_flags()
    units = bf16_units(flags)
    path, key = cache_path(), cache_key(units)
    cached = _read_cache(path, key)
    return {
        "cpu": cpu_model(),
        "cores": {"machine": os.cpu_count(), "usable": usable_cores()},
        "bf16_units": units,
        "amx": sorted(f for f in flags if f.startswith("amx")),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "precision_cache": {"path": str(path) if path else None, "key": key, "entry": cached},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": {
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
            **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(k)},
        },
    }
