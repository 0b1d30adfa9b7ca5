"""Time and peak memory of the data stages (load, validate, tokenize) as the data grows: each
stage runs as its own process (`python -m tasks.<stage>`) in a scratch project, on synthetic rows
shaped like the Rotten Tomatoes snippets (about 25 words, two classes, about 20 rows per movie);
peak RSS is the stage process's own (resource.getrusage(RUSAGE_CHILDREN) after it ends).

    python benchmarks/scale.py [--rows 10000 100000 400000] [--stages load validate tokenize]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CODE = REPO  # whose tunepipe/ and tasks/ run (--code: another checkout, e.g. a baseline)
VOCABULARY = (
    "film movie story plot actor actress director script scene moment charm wit humor drama "
    "thriller comedy romance action visual score pacing ending beginning character dialogue "
    "performance cast camera light color sound music heart soul mind love fear hope joy "
    "tedious brilliant dull sharp clever lazy warm cold bold flat fresh stale smart silly "
    "the a an of to and in with is but not never always rarely often quite very too"
)
WORDS = VOCABULARY.split()


def synthetic_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(WORDS, k=rng.randint(8, 40))
        rows.append(
            {
                "text": " ".join(words).capitalize() + f" ({i}).",
                "category": "fresh" if rng.random() < 0.6 else "rotten",
                "movie_name": f"movie {i // 20}",
            }
        )
    return rows


def make_project(root: Path, rows: int) -> None:
    import pandas as pd

    root.mkdir(parents=True)
    shutil.copytree(CODE / "tasks", root / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["load"]["source"] = "data/raw/synthetic.csv"
    p["load"]["drop_labels"] = []
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    (root / "data/raw").mkdir(parents=True)
    pd.DataFrame(synthetic_rows(rows)).to_csv(root / "data/raw/synthetic.csv", index=False)


def run_stage(root: Path, stage: str) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one stage process; the stage runs alone in a fresh child."""
    code = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        f"subprocess.run([sys.executable, '-m', 'tasks.{stage}'], check=True, stdout=subprocess.DEVNULL)\n"
        "s = time.perf_counter() - t\n"
        "print(json.dumps([s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(CODE))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, check=True, capture_output=True, text=True
    ).stdout
    seconds, kb = json.loads(out.strip().splitlines()[-1])
    return seconds, kb / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 400_000])
    parser.add_argument("--stages", nargs="+", default=["load", "validate", "tokenize"])
    parser.add_argument("--keep", help="keep the scratch projects in this folder")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose stages run")
    args = parser.parse_args()
    global CODE
    CODE = args.code.resolve()
    work = Path(args.keep or tempfile.mkdtemp(prefix="tunepipe-scale-"))
    print(f"cpu: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'rows':>8} {'stage':<9} {'seconds':>8} {'peak RSS GB':>12} {'us/row':>7}", flush=True)
    try:
        for rows in args.rows:
            root = work / f"rows{rows}"
            if not root.exists():
                make_project(root, rows)
            for stage in args.stages:
                seconds, gb = run_stage(root, stage)
                print(
                    f"{rows:>8} {stage:<9} {seconds:>8.1f} {gb:>12.2f} {seconds / rows * 1e6:>7.0f}"
                    f"   (load avg {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
