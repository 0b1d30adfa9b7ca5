"""`tunepipe` command line: run the flow, predict, and inspect the registry.

Heavy libraries are imported inside each command so that `tunepipe --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tunepipe import catalog
from tunepipe.errors import PipelineError
from tunepipe.stage import set_env_defaults


def _artifact_name(args: argparse.Namespace) -> str:
    if args.name:
        return args.name
    from tunepipe import params

    return params.read(Path(args.root) / catalog.PARAMS).register.name


def cmd_run(args: argparse.Namespace) -> None:
    from flows.pipeline import main as flow_main

    flow_main(["--root", args.root] + (["--no-register"] if args.no_register else []))


def cmd_search(args: argparse.Namespace) -> None:
    from flows.search import main as search_main

    search_main(
        ["--root", args.root]
        + (["--trials", str(args.trials)] if args.trials is not None else [])
        + (["--apply"] if args.apply else [])
    )


def cmd_register(args: argparse.Namespace) -> None:
    from tunepipe import params, registry

    p = params.read(Path(args.root) / catalog.PARAMS)
    result = registry.register(Path(args.root), args.name or p.register.name, p.register.bump)
    state = "registered" if result["new"] else "already registered as"
    print(f"{state} {result['tag']} (commit {result['commit'][:10]})")


def cmd_predict(args: argparse.Namespace) -> None:
    from tunepipe import params
    from tunepipe.prediction import predict_file, summarise

    text_column, pair_column = args.text_column, args.text_pair_column
    params_file = Path(args.root) / catalog.PARAMS
    if text_column is None and params_file.exists():
        columns = params.read(params_file).load.columns
        text_column, pair_column = columns.text, pair_column or columns.text_pair
    conll = Path(args.input).suffix.lower() in (".conll", ".txt", ".iob", ".bio")
    output = Path(
        args.output or Path(args.input).with_suffix(".predictions" + (".conll" if conll else ".csv"))
    )
    out = predict_file(
        args.model,
        Path(args.input),
        output,
        text_column or "text",
        pair_column,
        root=Path(args.root),
        name=_artifact_name(args),
        batch_size=args.batch_size,
    )
    print(f"predicted {len(out)} rows -> {output} ({summarise(out)})")


def cmd_lineage(args: argparse.Namespace) -> None:
    from tunepipe import registry

    record = registry.read_lineage(Path(args.root), _artifact_name(args), args.version)
    if args.json:
        print(json.dumps(record, indent=2))
        return
    data, model = record["data"], record["model"]
    lines = [
        f"{record['artifact']}@{record['version']}  registered {record['registered_at']}",
        f"  registered commit   {record['registered_commit']}",
        f"  code commit         {record['code_commit']}"
        + (" (with uncommitted changes)" if record["uncommitted_changes"] else ""),
        f"  model               {model['path']} md5 {model['md5']}",
        f"  data splits         {data['splits']['md5'] if data['splits'] else '-'}",
        f"  tokenized data      {_tokenized_line(data['tokenized'])}",
        "  data source         " + "; ".join(f"{k}: {v}" for k, v in data["source"].items()),
        "  metrics             "
        + ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record["metrics"].items()
        ),
        "  validation          "
        + ("passed" if record["validation"]["success"] else "FAILED")
        + ", rows "
        + ", ".join(f"{s} {d['rows']}" for s, d in record["validation"]["splits"].items()),
        f"  prefect flow run    {record['prefect_flow_run_id'] or '-'}",
        "  search study        " + _search_line(record.get("search")),
        "  packages            " + ", ".join(f"{k}=={v}" for k, v in record["packages"].items()),
        "  params              "
        + json.dumps({k: record["params"][k] for k in ("model", "train") if k in record["params"]}),
    ]
    print("\n".join(lines))


def _tokenized_line(tokenized: dict[str, Any] | None) -> str:
    """Records before one output per split hold a single {md5, ...} for data/tokenized."""
    if not tokenized or "md5" in tokenized:
        return tokenized["md5"] if tokenized else "-"
    return ", ".join(f"{k} {v['md5'] if v else '-'}" for k, v in tokenized.items())


def _search_line(study: dict[str, Any] | None) -> str:
    if not study:
        return "-"
    return (
        f"{study['study_name']} in {study['storage']} ({study['sampler']}), best trial "
        f"{study['best_trial']} of "
        + ", ".join(f"{n} {k.lower()}" for k, n in study["trials"].items())
        + f": {study['metric']} {study['best_value']:.4f}"
    )


def cmd_versions(args: argparse.Namespace) -> None:
    from tunepipe import registry
    from tunepipe.metrics import format_metrics

    name = _artifact_name(args)
    found = registry.versions(Path(args.root), name)
    if not found:
        print(f"no registered versions of {name}")
    for version in found:
        record = registry.read_lineage(Path(args.root), name, version)
        print(f"{name}@{version}  {record['registered_commit'][:10]}  {format_metrics(record['metrics'])}")


def cmd_fetch(args: argparse.Namespace) -> None:
    from tunepipe import registry

    out = registry.fetch_model(Path(args.root), _artifact_name(args), args.version, Path(args.output))
    print(f"fetched {args.version} -> {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunepipe", description="Reproducible fine-tuning pipeline")
    parser.add_argument("--root", default=".", help="project directory (default: current)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole pipeline as a Prefect flow")
    run.add_argument("--no-register", action="store_true")
    run.set_defaults(func=cmd_run)

    search = sub.add_parser("search", help="hyperparameter search: an Optuna study (search: in params.yaml)")
    search.add_argument("--trials", type=int, help="finished trials in all (default: search.trials)")
    search.add_argument("--apply", action="store_true", help="write the best values into params.yaml")
    search.set_defaults(func=cmd_search)

    reg = sub.add_parser("register", help="register the evaluated model (after `dvc repro`)")
    reg.add_argument("--name", help="artifact name (default: register.name in params.yaml)")
    reg.set_defaults(func=cmd_register)

    pred = sub.add_parser("predict", help="predict unlabelled rows of a CSV/JSONL/parquet or CoNLL file")
    pred.add_argument("input", help="file with a text column, or a CoNLL file of tokens")
    pred.add_argument("--model", required=True, help="a registered version (v0.1.0) or a model directory")
    pred.add_argument(
        "-o",
        "--output",
        help="output CSV, .jsonl, or CoNLL for CoNLL input (default: <input>.predictions.csv)",
    )
    pred.add_argument("--text-column", help="default: load.columns.text in params.yaml")
    pred.add_argument("--text-pair-column", help="second text column for sentence-pair models")
    pred.add_argument("--batch-size", type=int, default=64)
    pred.add_argument("--name", help="artifact name (default: register.name in params.yaml)")
    pred.set_defaults(func=cmd_predict)

    lin = sub.add_parser("lineage", help="print the lineage record of a registered version")
    lin.add_argument("version", help="e.g. v0.1.0 or model@v0.1.0")
    lin.add_argument("--json", action="store_true", help="the full record as JSON")
    lin.add_argument("--name", help="artifact name (default: register.name in params.yaml)")
    lin.set_defaults(func=cmd_lineage)

    ver = sub.add_parser("versions", help="list registered versions with their metrics")
    ver.add_argument("--name")
    ver.set_defaults(func=cmd_versions)

    fetch = sub.add_parser("fetch", help="materialise a registered version's model directory")
    fetch.add_argument("version")
    fetch.add_argument("-o", "--output", required=True)
    fetch.add_argument("--name")
    fetch.set_defaults(func=cmd_fetch)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "version", None) and "@" in args.version:
        name, _, args.version = args.version.partition("@")
        args.name = args.name or name
    set_env_defaults()
    try:
        args.func(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
