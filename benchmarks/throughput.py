"""tunepipe's train stage and `tunepipe predict` against a plain Hugging Face Trainer script.

Clones this repository into a scratch directory, brings the data stages up to date on the
embedded default, then runs, interleaved (A, B, A, B, ...):

- train: the project's train stage (`dvc repro --force --single-item train`, then evaluate for
  test accuracy) against a plain Trainer written below (DataCollatorWithPadding, the same model,
  split rows, seed, epochs, batch size, learning rate, weight decay and warm-up);
- predict: `tunepipe predict` on the test split against `Trainer.predict` on the same rows.

Per run it prints samples/s, real (unpadded) tokens/s, MFU, test accuracy and the peak RSS of the
process tree; then medians and the ratio tunepipe/plain. MFU is 6 x (non-embedding parameters) x
real tokens per second for training (2 x for prediction) over the matmul peaks measured here in
fp32 and in bf16 (a CPU with bf16 matmul units may reach several times its fp32 peak).

    python benchmarks/throughput.py [--rows 3000] [--repeats 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def matmul_peak(dtype_name: str, size: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of a square matmul in `dtype_name`, best of a few timed bursts on this machine."""
    import torch

    dtype = getattr(torch, dtype_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start))
    return best


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the process and its waited-for children, output)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024, text


def set_params(root: Path, **sections: dict[str, Any]) -> None:
    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        data[section].update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def model_facts(root: Path) -> dict[str, Any]:
    """Non-embedding parameters (what the 6N FLOP rule counts) and real tokens per split."""
    import datasets
    from transformers import AutoModel

    from tunepipe import assets, catalog

    p = yaml.safe_load((root / "params.yaml").read_text())
    model = AutoModel.from_pretrained(assets.resolve_model(p["model"]["name"]))
    total = sum(t.numel() for t in model.parameters())
    embeddings = sum(t.numel() for t in model.get_input_embeddings().parameters())
    tokens = {}
    for split in ("train", "test"):
        ds = datasets.load_from_disk(str(root / catalog.tokenized_split(split)))
        lengths = [len(ids) for ids in ds["input_ids"]]
        tokens[split] = lengths
    return {"non_embedding_parameters": total - embeddings, "tokens": tokens}


# --- the plain Trainer script (what a user would write without tunepipe) -----------------------


def plain_train(root: Path, out: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from tunepipe import assets

    p = yaml.safe_load((root / "params.yaml").read_text())
    t = p["train"]
    labels = json.loads((root / "data/tokenized/labels.json").read_text())["labels"]
    name = assets.resolve_model(p["model"]["name"])
    tok = AutoTokenizer.from_pretrained(name)
    splits = {s: pd.read_parquet(root / f"data/splits/{s}.parquet") for s in ("train", "test")}
    splits["train"] = splits["train"].head(t["max_train_samples"] or len(splits["train"]))

    def encode(frame: pd.DataFrame) -> Dataset:
        ds = Dataset.from_dict({"text": frame["text"].tolist(), "label": frame["label"].map(labels.index)})
        return ds.map(
            lambda b: tok(b["text"], truncation=True, max_length=p["tokenize"]["max_length"]), batched=True
        )

    train_ds, test_ds = encode(splits["train"]), encode(splits["test"])
    model = AutoModelForSequenceClassification.from_pretrained(
        name,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={v: i for i, v in enumerate(labels)},
    )
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=t["epochs"],
        learning_rate=t["learning_rate"],
        per_device_train_batch_size=t["batch_size"],
        per_device_eval_batch_size=t["eval_batch_size"],
        weight_decay=t["weight_decay"],
        warmup_steps=t["warmup_ratio"],
        seed=t["seed"],
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        processing_class=tok,
        data_collator=DataCollatorWithPadding(tok),
    )
    result = trainer.train()
    start = time.perf_counter()
    logits = trainer.predict(test_ds.remove_columns(["text"])).predictions
    predict_s = time.perf_counter() - start
    accuracy = float((np.argmax(logits, axis=-1) == np.array(test_ds["label"])).mean())
    return {
        "train_runtime_s": result.metrics["train_runtime"],
        "accuracy": accuracy,
        "predict_s": predict_s,
        "test_rows": len(test_ds),
    }


# --- the benchmark -----------------------------------------------------------------------------


def run_tunepipe_train(root: Path) -> dict[str, Any]:
    dvc = [sys.executable, "-m", "dvc", "repro", "--force", "--single-item"]
    wall, rss, _ = timed([*dvc, "train"], root)
    timed([sys.executable, "-m", "dvc", "repro", "--single-item", "evaluate"], root)
    run = json.loads((root / "reports/train_run.json").read_text())
    metrics = json.loads((root / "reports/metrics.json").read_text())
    return {
        "train_runtime_s": run["train_runtime_s"],
        "wall_s": wall,
        "rss_mib": rss,
        "accuracy": metrics["accuracy"],
    }


def run_plain_train(root: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "plain.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--plain-run",
            str(root),
            "--report",
            str(report),
        ]
        wall, rss, _ = timed(cmd, root)
        return json.loads(report.read_text()) | {"wall_s": wall, "rss_mib": rss}


def run_tunepipe_predict(root: Path, test_file: Path) -> dict[str, Any]:
    out = root / "bench-predictions.csv"
    cmd = [
        str(Path(sys.executable).parent / "tunepipe"),
        "predict",
        "--model",
        "models/model",
        str(test_file),
        "-o",
        str(out),
    ]
    wall, rss, text = timed(cmd, root)
    return {"wall_s": wall, "rss_mib": rss}


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="train rows (train.max_train_samples)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--precision", default="auto", help="train.precision of the tunepipe runs (the plain script: fp32)"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--plain-run", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_run:  # the baseline, in a process of its own (its own RSS and start-up)
        args.report.write_text(json.dumps(plain_train(args.plain_run, args.report.parent / "out")))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tunepipe-throughput-"))
    if (workdir / ".git").exists():
        sys.exit(f"{workdir} holds a clone already; remove it or pass another --workdir")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(workdir)], check=True)
    # No threshold gate: a short benchmark run is measured, not shipped.
    set_params(workdir, train={"max_train_samples": args.rows, "epochs": 1, "batch_size": 32})
    set_params(workdir, evaluate={"thresholds": {}})
    set_params(workdir, train={"precision": args.precision})
    print(f"scratch clone {workdir}: data stages ...", flush=True)
    timed([sys.executable, "-m", "dvc", "repro", "tokenize"], workdir)

    import torch

    peaks = {d: matmul_peak(d) for d in ("float32", "bfloat16")}
    facts = model_facts(workdir)
    n = facts["non_embedding_parameters"]
    train_tokens = sum(facts["tokens"]["train"][: args.rows])
    test_tokens = sum(facts["tokens"]["test"])
    rows = min(args.rows, len(facts["tokens"]["train"]))
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"matmul peak fp32 {peaks['float32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bfloat16'] / 1e9:.1f} GFLOP/s"
    )
    print(f"model: {n / 1e6:.1f}M non-embedding parameters; train {rows} rows, {train_tokens} real tokens")

    results: dict[str, list[dict[str, Any]]] = {"tunepipe": [], "plain": []}
    for i in range(args.repeats):
        for who, run in (("tunepipe", run_tunepipe_train), ("plain", run_plain_train)):
            r = run(workdir)
            r["samples_s"] = rows / r["train_runtime_s"]
            r["tokens_s"] = train_tokens / r["train_runtime_s"]
            r["mfu"] = {d: 6 * n * r["tokens_s"] / f for d, f in peaks.items()}
            results[who].append(r)
            print(
                f"train {who:8} #{i + 1}: {r['train_runtime_s']:7.1f} s train, "
                f"{r['samples_s']:6.1f} samples/s, "
                f"{r['tokens_s']:8.0f} tokens/s, MFU {r['mfu']['float32']:.1%} of fp32 "
                f"({r['mfu']['bfloat16']:.1%} of bf16), test accuracy {r['accuracy']:.4f}, "
                f"peak RSS {r['rss_mib']:.0f} MiB, wall {r['wall_s']:.1f} s",
                flush=True,
            )

    # Prediction: the test split through `tunepipe predict` (a CLI start-up included) against
    # Trainer.predict's time measured inside the plain runs.
    test_file = workdir / "data/splits/test.parquet"
    predicted = [run_tunepipe_predict(workdir, test_file) for _ in range(args.repeats)]
    test_rows = results["plain"][0]["test_rows"]
    for r in predicted:
        print(
            f"predict tunepipe: {r['wall_s']:.1f} s wall for {test_rows} rows (CLI start-up included), "
            f"peak RSS {r['rss_mib']:.0f} MiB"
        )
    plain_predict = statistics.median(r["predict_s"] for r in results["plain"])
    print(
        f"predict plain Trainer.predict: {plain_predict:.1f} s for {test_rows} rows "
        f"({2 * n * test_tokens / plain_predict / peaks['float32']:.1%} MFU of fp32)"
    )

    noop, _, _ = timed([sys.executable, "-m", "dvc", "repro"], workdir)
    noop, _, _ = timed([sys.executable, "-m", "dvc", "repro"], workdir)

    print("\nmedians (tunepipe / plain):")
    for key, label in (
        ("samples_s", "train samples/s"),
        ("tokens_s", "train tokens/s"),
        ("accuracy", "test accuracy"),
        ("rss_mib", "peak RSS MiB"),
    ):
        a, b = median(results["tunepipe"], key), median(results["plain"], key)
        print(f"  {label:16} {a:10.4g} {b:10.4g}   ratio {a / b:.2f}")
    a = median(predicted, "wall_s")
    print(
        f"  {'predict wall s':16} {a:10.4g} {plain_predict:10.4g}   "
        f"speed-up {plain_predict / a:.2f} (tunepipe's includes start-up)"
    )
    print(f"  no-op dvc repro: {noop:.2f} s")


if __name__ == "__main__":
    main()
