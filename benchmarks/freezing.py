"""Full fine-tuning vs frozen encoder vs first-N frozen layers on the embedded default.

Clones this repository into a scratch directory, runs `dvc repro` once (all stages), then
changes only train.freeze / train.freeze_layers and re-runs (DVC re-runs just train and
evaluate), printing test accuracy, macro F1, trainable parameters and training time per mode:

    python benchmarks/freezing.py [--workdir /tmp/tunepipe-freezing] [--modes none head_only first_n:4]

A mode is `freeze[:layers]`, optionally followed by train overrides: `head_only,learning_rate=1e-3`.
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


def number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tunepipe-freezing")
    parser.add_argument("--modes", nargs="+", default=["none", "head_only", "first_n:4", "first_n:2"])
    args = parser.parse_args()
    if args.workdir.exists():
        sys.exit(f"{args.workdir} exists; remove it or pass --workdir")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(args.workdir)], check=True)
    params_file = args.workdir / "params.yaml"
    rows = []
    for mode in args.modes:
        freeze, *overrides = mode.split(",")
        name, _, layers = freeze.partition(":")
        params = yaml.safe_load(params_file.read_text())
        params["train"].update(freeze=name, freeze_layers=int(layers or 0))
        for override in overrides:
            key, _, value = override.partition("=")
            params["train"][key] = number(value)
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "repro"], cwd=args.workdir, capture_output=True, text=True
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:  # a mode below the thresholds still reports its metrics
            print(f"{mode}: dvc repro exit {proc.returncode} ({proc.stderr.strip().splitlines()[-1:]})")
        metrics = json.loads((args.workdir / "reports/metrics.json").read_text())
        train = json.loads((args.workdir / "reports/train.json").read_text())
        timing = json.loads((args.workdir / "reports/train_run.json").read_text())
        rows.append(
            {
                "mode": mode,
                "accuracy": round(metrics["accuracy"], 4),
                "f1_macro": round(metrics["f1_macro"], 4),
                "trainable": f"{train['parameters']['trainable']:,} of {train['parameters']['total']:,}",
                "train_s": timing["train_runtime_s"],
                "repro_s": round(elapsed),
            }
        )
        print(rows[-1], flush=True)
    print("\n| mode | test accuracy | macro F1 | trainable parameters | training (s) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['accuracy']} | {r['f1_macro']} | {r['trainable']} | {r['train_s']} |")


if __name__ == "__main__":
    main()
