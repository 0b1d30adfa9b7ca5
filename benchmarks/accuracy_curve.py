"""Test accuracy of the default recipe against epochs and learning rate, through the pipeline.

Clones this repository into a scratch directory and, for each (epochs, learning rate) given, runs
the train and evaluate stages of the embedded default (every train row) with those two values
changed, and prints the best validation score train selected, the test accuracy evaluate
measured, and the train stage's time. The rows are what `make run` would give with that
params.yaml on this machine; use them to choose the shipped recipe.

    python benchmarks/accuracy_curve.py [--runs 1:5e-5 2:5e-5 3:1e-4] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from throughput import REPO, set_params, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        nargs="+",
        default=["1:5e-5", "2:5e-5", "3:5e-5", "3:1e-4", "2:1e-4", "3:3e-5"],
        help="epochs:learning_rate pairs",
    )
    parser.add_argument("--precision", default="auto", help="train.precision of every run")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows here (JSON lines)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tunepipe-curve-"))
    if not (workdir / ".git").exists():
        timed(["git", "clone", "--quiet", str(REPO), str(workdir)], Path.cwd())
    set_params(workdir, evaluate={"thresholds": {}}, train={"precision": args.precision})
    timed([sys.executable, "-m", "dvc", "repro", "tokenize"], workdir)
    print(f"scratch clone {workdir}; precision {args.precision}", flush=True)
    print(f"{'epochs':>6} {'lr':>8} {'train s':>8} {'valid acc':>9} {'test acc':>8} {'macro F1':>8}  best at")
    for run in args.runs:
        epochs, lr = run.split(":")
        set_params(workdir, train={"epochs": int(epochs), "learning_rate": float(lr)})
        timed([sys.executable, "-m", "dvc", "repro", "evaluate"], workdir)
        report = json.loads((workdir / "reports/train.json").read_text())
        train_run = json.loads((workdir / "reports/train_run.json").read_text())
        metrics = json.loads((workdir / "reports/metrics.json").read_text())
        row = {
            "epochs": int(epochs),
            "learning_rate": float(lr),
            "precision": report["device"]["precision"],
            "train_runtime_s": train_run["train_runtime_s"],
            "validation": report["best_metric"],
            "best_checkpoint": report["best_checkpoint"],
            "test_accuracy": metrics["accuracy"],
            "test_f1_macro": metrics.get("f1_macro"),
        }
        print(
            f"{row['epochs']:>6} {row['learning_rate']:>8.0e} {row['train_runtime_s']:>8.1f} "
            f"{next(iter(row['validation'].values())):>9.4f} {row['test_accuracy']:>8.4f} "
            f"{row['test_f1_macro'] or float('nan'):>8.4f}  {row['best_checkpoint']} "
            f"({row['precision']})",
            flush=True,
        )
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
