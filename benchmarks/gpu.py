"""The default pipeline on one GPU and on N GPUs (data-parallel under torchrun), on a CUDA machine.

Clones this repository into a scratch directory, runs `dvc repro` with train.processes 1, then
with train.processes N (DVC re-runs just train and evaluate), and prints per run: training
samples/s, training time, rank 0's peak GPU memory, the global batch and the test metrics.

    python benchmarks/gpu.py [--gpus N] [--workdir /tmp/tunepipe-gpu] [--same-global-batch]

--gpus defaults to every visible GPU. The per-device batch stays train.batch_size, so N GPUs
train with an N times larger global batch; --same-global-batch divides the per-device batch by N
instead, which keeps the optimisation the same and shows the pure speed-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def repro(workdir: Path, processes: int, batch_size: int) -> dict[str, object]:
    params_file = workdir / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["train"].update(processes=processes, device="cuda", batch_size=batch_size)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=workdir, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dvc repro with {processes} GPU(s) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    report = json.loads((workdir / "reports/train.json").read_text())
    run = json.loads((workdir / "reports/train_run.json").read_text())
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    return {
        "gpus": processes,
        "global batch": report["batch"]["global"],
        "precision": report["device"]["precision"],
        "samples/s": run["train_samples_per_second"],
        "train s": run["train_runtime_s"],
        "peak MiB (rank 0)": run["peak_gpu_memory_mib"],
        "accuracy": round(metrics["accuracy"], 4),
        "f1_macro": round(metrics["f1_macro"], 4),
        "dvc repro s": round(elapsed, 1),
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=None, help="N (default: every visible GPU)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tunepipe-gpu")
    parser.add_argument("--same-global-batch", action="store_true", help="per-device batch / N")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible: this benchmark needs a GPU machine")
    gpus = args.gpus or torch.cuda.device_count()
    if gpus > torch.cuda.device_count():
        sys.exit(f"--gpus {gpus}: only {torch.cuda.device_count()} visible")
    if args.workdir.exists():
        sys.exit(f"{args.workdir} exists; remove it or pass --workdir")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(args.workdir)], check=True)
    batch = yaml.safe_load((args.workdir / "params.yaml").read_text())["train"]["batch_size"]
    print(f"{torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible; torch {torch.__version__}")
    rows = [repro(args.workdir, 1, batch)]
    if gpus > 1:
        per_device = max(1, batch // gpus) if args.same_global_batch else batch
        rows.append(repro(args.workdir, gpus, per_device))
    else:
        print("one GPU visible: only the single-GPU run")
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))


if __name__ == "__main__":
    main()
