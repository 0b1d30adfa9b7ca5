"""Where a training step's time goes: torch.profiler over a few steps of the default model on
batches of the tokenized train split, in fp32 and in bf16 autocast.

Run from a project whose tokenize stage is up to date (`dvc repro tokenize`):

    python benchmarks/profile_train.py [--steps 8] [--batch-size 32] [--precisions fp32 bf16]

Prints, per precision, seconds per step and the share of the profiled time in each group of
operators (matmuls, attention, the optimizer, ...), then the top operators by self time.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import defaultdict
from typing import Any

GROUPS = {  # substrings of an operator's name, first match wins
    "matmul (linear layers)": ("addmm", "mm", "linear", "matmul", "mkldnn"),
    "attention (sdpa, softmax)": ("scaled_dot_product", "attention", "softmax"),
    "optimizer (fused AdamW)": ("adam", "foreach"),
    "layer norm": ("layer_norm",),
    "gelu": ("gelu",),
    "dropout": ("dropout", "bernoulli"),
    "embedding": ("embedding",),
    "dtype casts (autocast)": ("_to_copy", "copy_", "aten::to"),
}


def group_of(name: str) -> str:
    lowered = name.lower()
    return next((g for g, keys in GROUPS.items() if any(k in lowered for k in keys)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import DataCollatorWithPadding

    from tunepipe import catalog, params
    from tunepipe.pretrained import load_tokenizer
    from tunepipe.training import MODEL_INPUTS, build_model

    p = params.read(catalog.PARAMS)
    info = catalog.read_info(catalog.TOKENIZED)
    train = catalog.read_tokenized(catalog.TOKENIZED, ["train"])["train"].shuffle(seed=0)
    columns = [c for c in MODEL_INPUTS if c in train.column_names]
    train = train.select_columns(columns)
    collate = DataCollatorWithPadding(load_tokenizer(p))
    batches = [
        collate([train[i] for i in range(s * args.batch_size, (s + 1) * args.batch_size)])
        for s in range(args.steps + 2)
    ]
    tokens = sum(int(b["attention_mask"].sum()) for b in batches[2:])
    padded = sum(b["input_ids"].numel() for b in batches[2:])
    print(
        f"{args.steps} steps of {args.batch_size} rows: {tokens} real tokens, {padded} with padding; "
        f"{torch.get_num_threads()} threads"
    )
    for precision in args.precisions:
        torch.manual_seed(0)
        model = build_model(p, info["labels"])
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
        dtype = {"bf16": torch.bfloat16, "fp32": None}[precision]

        def step(
            batch: dict[str, Any], model: Any = model, optimizer: Any = optimizer, dtype: Any = dtype
        ) -> None:
            cast = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
            with cast:
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        for batch in batches[:2]:  # warm-up
            step(batch)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for batch in batches[2:]:
                step(batch)
            elapsed = time.perf_counter() - start
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        shares: dict[str, float] = defaultdict(float)
        for e in events:
            shares[group_of(e.key)] += e.self_cpu_time_total / total
        print(f"\n{precision}: {elapsed / args.steps:.3f} s per step (profiled)")
        for group, share in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"  {group:26} {share:6.1%}")
        print("  top operators by self time:")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
            print(f"    {e.key:40} {e.self_cpu_time_total / total:6.1%}  {e.count:6d} calls")


if __name__ == "__main__":
    main()
