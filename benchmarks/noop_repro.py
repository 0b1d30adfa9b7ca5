"""Time the no-op paths that scheduled retraining hits most: `dvc repro` and `dvc status` when
nothing changed, and the `pretrained` stage that every repro runs (it hashes the model's files).
Run from a project whose pipeline is up to date:

    python benchmarks/noop_repro.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time

ALWAYS_RUN = {"pretrained"}  # always_changed in dvc.yaml: a no-op repro still runs it


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, proc.stdout


def nothing_to_do(name: str, out: str) -> bool:
    if name == "repro":
        return set(re.findall(r"Running stage '(\w+)'", out)) <= ALWAYS_RUN
    if name == "status":
        return all(entries == ["always changed"] for entries in json.loads(out).values())
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    commands = {
        "repro": [sys.executable, "-m", "dvc", "repro"],
        "status": [sys.executable, "-m", "dvc", "status", "--json"],
        "pretrained": [sys.executable, "-m", "tasks.pretrained"],
    }
    for name, cmd in commands.items():
        times = []
        for _ in range(args.runs):
            seconds, out = timed(cmd)
            if not nothing_to_do(name, out):
                sys.exit(f"dvc {name} found work to do; run `dvc repro` first:\n{out}")
            times.append(seconds)
        shown = f"dvc {name}" if name != "pretrained" else "stage pretrained alone"
        print(
            f"{shown:22} (no-op): median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s over {args.runs} runs"
        )


if __name__ == "__main__":
    main()
