"""Prediction speed and memory: `tunepipe predict` (chunked, length-sorted batches, inference
mode) against a plain `Trainer.predict` script on the same saved model, in the same precision
(bf16 where the CPU has bf16 units, as `precision: auto` decides), arms interleaved; then the
peak RSS of `tunepipe predict` on a small and a large file (it should not grow with the file).
Every arm runs in its own process; peak RSS is that process's (getrusage(RUSAGE_CHILDREN)).

    python benchmarks/predict.py [--rows 2000] [--repeats 2] [--memory-rows 20000 200000] [--layers 6]

`--repeats 0` runs the memory arm alone.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from scale import synthetic_rows  # noqa: E402

# Each arm's clock starts after its imports: predict_file imports torch and transformers itself,
# which the plain script has done before its clock starts (some 5 s on a 2-core host).
TUNEPIPE = """
import sys, time
import torch, transformers
from tunepipe.prediction import predict_file
model, source, out, precision = sys.argv[1:5]
start = time.perf_counter()
result = predict_file(model, source, out, "text", verify=False, precision=precision, keep=False)
print("SECONDS", time.perf_counter() - start, result.attrs["rows"])
"""

PLAIN = """
import sys, time
import pandas as pd
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
from transformers import Trainer, TrainingArguments
model_dir, source, out, precision = sys.argv[1:5]
start = time.perf_counter()
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir)
df = pd.read_csv(source)
ds = Dataset.from_pandas(df[["text"]]).map(
    lambda b: tok(b["text"], truncation=True, max_length=128), batched=True, remove_columns=["text"]
)
args = TrainingArguments(
    output_dir=out + ".trainer", per_device_eval_batch_size=64, bf16=precision == "bf16",
    report_to=[], use_cpu=True, dataloader_num_workers=0,
)
trainer = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tok))
logits = trainer.predict(ds).predictions
pd.DataFrame({"predicted": logits.argmax(-1)}).to_csv(out, index=False)
print("SECONDS", time.perf_counter() - start, len(df))
"""

CHILD = """
import resource, subprocess, sys, json
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if proc.returncode:
    sys.exit(proc.stderr[-3000:])
line = [x for x in proc.stdout.splitlines() if x.startswith("SECONDS")][-1].split()
print(json.dumps([float(line[1]), int(line[2]), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))
"""


def make_model(out: Path, layers: int) -> Path:
    """The default pre-trained encoder (MiniLM-L6) with a two-class head, saved as train saves it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunepipe import assets
    from tunepipe.params import read

    p = read(REPO / "params.yaml")
    base = assets.resolve_model(p.model.name, p.model.trust_remote_code, p.model.revision)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label={0: "rotten", 1: "fresh"}, label2id={"rotten": 0, "fresh": 1}
    )
    model.bert.encoder.layer = model.bert.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    model.save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(base)
    tok.model_max_length = 128
    tok.save_pretrained(out)
    return out


def arm(script: str, model: Path, source: Path, out: Path, precision: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="true")
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        sys.executable,
        "-c",
        script,
        str(model),
        str(source),
        str(out),
        precision,
    ]
    seconds, rows, kb = json.loads(
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    )
    return {"seconds": seconds, "rows": rows, "rows_per_s": rows / seconds, "peak_gb": kb / 1024**2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[20_000, 200_000])
    parser.add_argument("--memory-layers", type=int, default=1, help="layers of the memory arm's model")
    parser.add_argument("--layers", type=int, default=6, help="encoder layers kept (MiniLM-L6 has 6)")
    args = parser.parse_args()
    from tunepipe import devices

    precision = devices.cpu_auto_precision()["precision"]
    work = Path(tempfile.mkdtemp(prefix="tunepipe-predict-"))
    print(
        f"cpu: {devices.cpu_model()}, {devices.usable_cores()} cores, precision {precision}, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    try:
        model = make_model(work / "model", args.layers)
        source = work / "rows.csv"
        import pandas as pd

        pd.DataFrame(synthetic_rows(args.rows, seed=1)).to_csv(source, index=False)
        results: dict[str, list[dict[str, float]]] = {"tunepipe predict": [], "Trainer.predict": []}
        for repeat in range(args.repeats):
            for name, script in (("tunepipe predict", TUNEPIPE), ("Trainer.predict", PLAIN)):
                r = arm(script, model, source, work / f"out-{repeat}.csv", precision)
                results[name].append(r)
                print(
                    f"{name:<17} {r['rows']:>8} rows {r['seconds']:>7.1f} s {r['rows_per_s']:>7.0f} rows/s "
                    f"peak {r['peak_gb']:.2f} GB (load avg {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
        if args.repeats:  # --repeats 0: the memory arm alone
            medians = {k: statistics.median(r["rows_per_s"] for r in v) for k, v in results.items()}
            print(
                "median rows/s: "
                + ", ".join(f"{k} {v:.0f}" for k, v in medians.items())
                + f"; ratio {medians['tunepipe predict'] / medians['Trainer.predict']:.2f}x",
                flush=True,
            )
        if args.memory_rows:
            small = make_model(work / "small", args.memory_layers)
            for n in args.memory_rows:
                big = work / f"rows{n}.csv"
                pd.DataFrame(synthetic_rows(n, seed=2)).to_csv(big, index=False)
                r = arm(TUNEPIPE, small, big, work / f"mem{n}.csv", precision)
                print(
                    f"memory: tunepipe predict {n:>8} rows ({args.memory_layers}-layer model) "
                    f"{r['seconds']:>7.1f} s {r['rows_per_s']:>7.0f} rows/s peak {r['peak_gb']:.2f} GB "
                    f"(load avg {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    finally:  # a million-row run leaves some 350 MB of rows and predictions
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
