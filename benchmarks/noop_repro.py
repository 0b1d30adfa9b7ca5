"""Time the no-op paths that scheduled retraining hits most: `dvc repro` and `dvc status` when
nothing changed. Run from a project whose pipeline is up to date:

    python benchmarks/noop_repro.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for name in ("repro", "status"):
        times = []
        for _ in range(args.runs):
            seconds, out = timed([sys.executable, "-m", "dvc", name])
            if "up to date" not in out:
                sys.exit(f"dvc {name} found work to do; run `dvc repro` first:\n{out}")
            times.append(seconds)
        print(
            f"dvc {name:6} (no-op): median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s over {args.runs} runs"
        )


if __name__ == "__main__":
    main()
