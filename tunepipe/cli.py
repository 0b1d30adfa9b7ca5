"""`tunepipe` command line: run the flow, explain what is stale, predict, inspect the registry.

Heavy libraries (torch, transformers, DVC, Prefect) are imported inside each command so that
`tunepipe --help` and `tunepipe --version` stay instant. `--root` is accepted before the
subcommand and after it; after wins.

`run` and `search` start the project's own flows/ (project code, like tasks/, never installed):
the library does not import them; `_flow_main` loads them from the project root at call time.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from tunepipe import __version__, catalog
from tunepipe.errors import PipelineError
from tunepipe.stage import set_env_defaults
from tunepipe.version import format_tag

app = typer.Typer(
    name="tunepipe",
    help="Reproducible fine-tuning pipeline: DVC stages, a Prefect flow, a git-tag model registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ROOT_HELP = "project directory, with dvc.yaml and params.yaml (default: current directory)"
NAME_HELP = "artifact name (default: register.name in params.yaml)"
VERSION_HELP = "a registered version (v0.1.0 or model@v0.1.0) or a stage (prod: the version in it)"
Root = Annotated[str | None, typer.Option("--root", help=ROOT_HELP, show_default=False)]
Name = Annotated[str | None, typer.Option("--name", help=NAME_HELP, show_default=False)]
NoVerify = Annotated[
    bool,
    typer.Option(
        "--no-verify",
        help="use the model even when its files do not match the hashes dvc.lock pins (warns instead)",
    ),
]


def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


def _version(value: bool) -> None:
    if value:
        print(f"tunepipe {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    root: Root = None,
    version: Annotated[
        bool, typer.Option("--version", help="print the version and exit", callback=_version, is_eager=True)
    ] = False,
) -> None:
    ctx.obj = root


def _root(ctx: typer.Context, root: str | None) -> str:
    """--root after the subcommand, else before it, else the current directory."""
    return root or ctx.obj or "."


def _artifact_name(root: str, name: str | None) -> str:
    """--name (or `name@` of a version), else register.name; it names files, so it is checked."""
    if name:
        from tunepipe.io import check_path_name

        return check_path_name(name, "--name")
    from tunepipe import params

    return params.read(Path(root) / catalog.PARAMS).register.name


def _model_artifact(root: str, model: str, name: str | None, registered: str | None) -> str:
    """The artifact a `--model` belongs to: --name, else params.yaml's register.name
    (`registered`), else "model" for a folder (a version without params.yaml is an error)."""
    artifact = name or registered
    if artifact is None:
        artifact = "model" if Path(model).is_dir() else _artifact_name(root, name)
    return artifact


def _split_version(version: str, name: str | None) -> tuple[str, str | None]:
    """`model@v0.1.0` names the artifact too; an explicit --name wins."""
    from tunepipe.version import Tag

    artifact, version = Tag.split(version)
    if artifact is not None and not name:
        from tunepipe.io import check_path_name

        name = check_path_name(artifact, "artifact name")
    return version, name


def _flow_main(root: str, flow: str, command: str) -> Callable[[list[str]], None]:
    """main() of the project's flows/<flow>.py, imported with the project root first on sys.path.

    In process, as `python -m flows.<flow>` from the root would run it: its exit code and error
    line are the command's, Ctrl-C reaches the flow's own handling, and the flows/ that runs is the
    one the project's dvc.yaml and prefect.yaml run, not an installed copy. A process imports one
    flows/ (the first one loaded stays in sys.modules); the CLI runs one command per process.
    """
    base = str(Path(root).resolve())
    if base not in sys.path:
        sys.path.insert(0, base)
    try:
        module = importlib.import_module(f"flows.{flow}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("flows", f"flows.{flow}"):
            raise  # a missing dependency of the flow: its own traceback says which
        raise PipelineError(
            f"{Path(base) / 'flows' / f'{flow}.py'}: not found; `tunepipe {command}` runs the project's "
            "flows/ (run it in a project root, or name one with --root)"
        ) from None
    return module.main


def _versioned(ctx: typer.Context, root: str | None, version: str, name: str | None) -> tuple[Path, str, str]:
    """(project root, artifact name, version) of a command that takes `<version>` or `name@version`."""
    base = _root(ctx, root)
    version, name = _split_version(version, name)
    return Path(base), _artifact_name(base, name), version


def _opt(flag: str, text: str) -> Any:
    return typer.Option(flag, help=text, show_default=False)


@app.command()
def init(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Argument(
            help="a file, a folder of split files (train, validation, test by name), a saved dataset "
            "or hub:<id>; a relative path is read from the project root",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing params.yaml")] = False,
    task: Annotated[
        str | None, _opt("--task", "sequence_classification, regression or token_classification")
    ] = None,
    text_column: Annotated[str | None, _opt("--text-column", "the text column (default: inferred)")] = None,
    text_pair_column: Annotated[
        str | None, _opt("--text-pair-column", "the second text of a pair task (default: inferred)")
    ] = None,
    label_column: Annotated[
        str | None, _opt("--label-column", "the label column (default: inferred)")
    ] = None,
    model: Annotated[
        str | None,
        _opt(
            "--model",
            "the pre-trained model whose tokenizer measures lengths (default: model.name's default)",
        ),
    ] = None,
    group_by: Annotated[
        str | None, _opt("--group-by", "keep rows sharing this column's value in one split")
    ] = None,
    fmt: Annotated[str | None, _opt("--format", "the file format (default: from the suffix)")] = None,
    encoding: Annotated[str, typer.Option("--encoding", help="text encoding of the files")] = "utf-8",
    sets: Annotated[
        list[str] | None,
        _opt("--set", "KEY=VALUE: write another params.yaml value too (e.g. train.epochs=3); repeatable"),
    ] = None,
    example: Annotated[
        str | None, _opt("--example", "copy examples/NAME.yaml to params.yaml instead of reading data")
    ] = None,
    root: Root = None,
) -> None:
    """Write params.yaml for your data: format, columns, task, labels, splits, max_length, thresholds."""
    from tunepipe import project_init

    base = Path(_root(ctx, root))
    if example is not None:
        if source is not None:
            raise PipelineError("init: pass either SOURCE or --example, not both")
        project_init.copy_example(example, base, force)
        return
    if source is None:
        raise PipelineError("init: name the data (SOURCE), or an example with --example NAME")
    opts = project_init.Options(
        task=task,
        text_column=text_column,
        label_column=label_column,
        text_pair_column=text_pair_column,
        model=model,
        group_by=group_by,
        fmt=fmt,
        encoding=encoding,
        sets=sets or [],
    )
    project_init.init(source, base, opts, force)


@app.command()
def run(
    ctx: typer.Context,
    no_register: Annotated[bool, typer.Option("--no-register", help="stop after evaluation")] = False,
    root: Root = None,
) -> None:
    """Run the whole pipeline as a Prefect flow, then register the model."""
    base = _root(ctx, root)
    _flow_main(base, "pipeline", "run")(["--root", base] + (["--no-register"] if no_register else []))


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable: one object per stage")] = False,
    root: Root = None,
) -> None:
    """Show each stage as up to date or stale, and why (DVC's own status)."""
    from tunepipe import remote, staleness

    base = Path(_root(ctx, root))
    states = staleness.check(base)
    unpushed = remote.unpushed(base)
    if as_json:
        print(json.dumps({"stages": [s.to_json() for s in states], "unpushed": unpushed}, indent=2))
        return
    width = max((len(s.stage) for s in states), default=0)
    for s in states:
        print(f"{s.stage:<{width}}  {s.shown}")
        for reason in s.reasons:
            print(f"{'':<{width}}    {reason}")
    stale = [s.stage for s in states if s.state == staleness.STALE]
    print(
        f"stale: {', '.join(stale)}; `dvc repro` or `tunepipe run` re-runs them"
        if stale
        else "everything up to date"
    )
    for line in unpushed_lines(unpushed):
        print(line)


def unpushed_lines(unpushed: dict[str, Any] | None) -> list[str]:
    """What `status` says about git remote origin: registered versions it lacks and the command
    that pushes them; nothing when origin has everything (or there is no origin)."""
    if not unpushed:
        return []
    if "error" in unpushed:
        return [f"origin: not checked for unpushed versions ({unpushed['error']})"]
    lines = []
    if unpushed["tags"]:
        lines.append(f"not on origin: {', '.join(unpushed['tags'])}")
    if unpushed["commits"]:
        shown = ", ".join(c[:10] for c in unpushed["commits"])
        branch = unpushed["branch"]
        where = f"origin's {branch}" if branch else "any branch of origin (HEAD detached)"
        lines.append(f"registration commits not on {where}: {shown}")
    if unpushed["taken"]:
        lines.append(
            f"taken on origin by another registration: {', '.join(unpushed['taken'])} "
            "(two runs registered the same number; delete this checkout's tag and register again)"
        )
    if unpushed["command"]:
        lines.append(f"  push them: {unpushed['command']}")
    return lines


@app.command()
def search(
    ctx: typer.Context,
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials", help="finished trials in all, a resumed study's included (default: search.trials)"
        ),
    ] = None,
    apply: Annotated[bool, typer.Option("--apply", help="write the best values into params.yaml")] = False,
    root: Root = None,
) -> None:
    """Hyperparameter search: an Optuna study (search: in params.yaml)."""
    base = _root(ctx, root)
    _flow_main(base, "search", "search")(
        ["--root", base]
        + (["--trials", str(trials)] if trials is not None else [])
        + (["--apply"] if apply else [])
    )


@app.command()
def register(ctx: typer.Context, name: Name = None, root: Root = None) -> None:
    """Register the evaluated model as a new version (after `dvc repro`)."""
    from tunepipe import lineage, params, registry, remote, report

    base = Path(_root(ctx, root))
    p = params.read(base / catalog.PARAMS)
    result = registry.register(  # checks the name
        base,
        name or p.register.name,
        p.register.bump,
        page=report.registration_page,
        require_versioned=p.register.require_versioned,
    )
    state = "registered" if result["new"] else "already registered as"
    print(f"{state} {result['tag']} (commit {result['commit'][:10]})")
    if result.get("unversioned_inputs"):
        _warn(lineage.unversioned_warning(result["tag"], result["unversioned_inputs"]))
    for line in unpushed_lines(remote.unpushed(base)):  # the team sees it once it is on origin
        print(line)


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@app.command()
def predict(
    ctx: typer.Context,
    input_file: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", help="file with a text column (CSV, TSV, JSONL, parquet) or a CoNLL file"
        ),
    ],
    model: Annotated[
        str,
        typer.Option("--model", help="a registered version (v0.1.0), a stage (prod) or a model directory"),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="output CSV or .jsonl; CoNLL for CoNLL input (default: <input>.predictions.csv)",
            show_default=False,
        ),
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(
            "--text-column",
            help="text column (default: the one the model was trained on, else load.columns.text, else text)",
        ),
    ] = None,
    text_pair_column: Annotated[
        str | None, typer.Option("--text-pair-column", help="second text column, for sentence-pair models")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="examples per forward pass")] = 64,
    precision: Annotated[
        Precision,
        typer.Option(
            "--precision",
            help="auto: bf16 on a GPU and on a CPU with fast bf16 matmuls, else fp32",
        ),
    ] = Precision.auto,
    skip_empty: Annotated[
        bool,
        typer.Option(
            "--skip-empty",
            help="rows whose text is empty or missing get empty predicted_* cells, counted and named, "
            "instead of failing the run",
        ),
    ] = False,
    no_verify: NoVerify = False,
    name: Name = None,
    root: Root = None,
) -> None:
    """Predict labels for unlabelled rows of a table or CoNLL file, into new predicted_* columns."""
    from tunepipe import params
    from tunepipe.prediction import predict_file

    base = _root(ctx, root)
    params_file = Path(base) / catalog.PARAMS
    # A model folder is enough: params.yaml, when there is one, gives the artifact name (for a
    # version) and the text columns a model saved without them was trained on.
    p = params.read(params_file) if params_file.exists() else None
    defaults = (p.load.columns.text, p.load.columns.text_pair) if p is not None else None
    artifact = _model_artifact(base, model, name, p.register.name if p is not None else None)
    # No -o: predict_file picks <input>.predictions.csv, or .conll when it reads CoNLL tokens
    # (a .txt file is CoNLL for a token classification model, one text per line for others).
    out = predict_file(
        model,
        input_file,
        output,
        text_column,
        text_pair_column,
        root=Path(base),
        name=artifact,
        batch_size=batch_size,
        verify=not no_verify,
        warn=_warn,
        precision=precision.value,
        default_columns=defaults,
        keep=False,  # streamed to the file: memory stays that of one chunk
        skip_empty=skip_empty,
    )
    skipped = out.attrs["skipped"]
    predicted = out.attrs["rows"] - len(skipped)
    print(f"predicted {predicted} rows -> {out.attrs['output']} ({out.attrs['summary']})")
    if skipped:
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        shown = ", ".join(map(str, skipped[:10])) + more
        print(f"skipped {len(skipped)} row(s) without text (row {shown}): their predicted_* cells are empty")


@app.command("evaluate")
def evaluate_command(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="labelled rows: a CSV/TSV/JSONL/parquet or CoNLL file, a saved dataset folder or hub:<id>, "
            "read with params.yaml's load settings",
        ),
    ],
    model: Annotated[
        str,
        typer.Option("--model", help="a registered version (v0.1.0), a stage (prod) or a model directory"),
    ],
    thresholds: Annotated[
        str | None,
        typer.Option(
            "--thresholds",
            help="check these and exit 1 when one is missed: `params` (evaluate.thresholds) or a mapping "
            "as in params.yaml, e.g. '{accuracy: 0.8}' (default: none, metrics only)",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split", help="the split of a dataset folder or hub dataset (default: test)", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole evaluation as JSON")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="write the evaluation (.json) or the predictions (.csv) there; nothing else is written",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="examples per forward pass (default: evaluate.batch_size)",
            show_default=False,
        ),
    ] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            "--precision", help="default: train.precision, as the evaluate stage", show_default=False
        ),
    ] = None,
    no_verify: NoVerify = False,
    name: Name = None,
    root: Root = None,
) -> None:
    """Score a model on any labelled file: the evaluate stage's metrics, no pipeline output touched."""
    from tunepipe import params
    from tunepipe.evaluation import describe_misses
    from tunepipe.io import write_json, write_text
    from tunepipe.metrics import format_metrics
    from tunepipe.scoring import evaluate_source, parse_thresholds

    base = _root(ctx, root)
    params_file = Path(base) / catalog.PARAMS
    p = params.read(params_file) if params_file.exists() else params.parse({})
    if out is not None and out.suffix.lower() not in (".json", ".csv"):
        raise PipelineError(
            f"--out {out}: name a .json file (the evaluation) or a .csv file (the predictions)"
        )
    checks = parse_thresholds(thresholds, p)
    artifact = _model_artifact(base, model, name, p.register.name if params_file.exists() else None)
    evaluation, predictions = evaluate_source(
        model,
        source,
        p,
        root=Path(base),
        name=artifact,
        thresholds=checks,
        split=split,
        batch_size=batch_size or p.evaluate.batch_size,
        verify=not no_verify,
        warn=_warn,
        precision=precision.value if precision else p.train.precision,
    )
    if evaluation.get("tags_repaired"):
        _warn(f"repaired {evaluation['tags_repaired']} IOB2 tag(s) I-X -> B-X (load.conll.tag_repair: fix)")
    if evaluation.get("dropped_labels"):
        _warn(f"left out {evaluation['dropped_labels']} row(s) with a label in load.drop_labels")
    if evaluation.get("blank_rows_skipped"):
        rows = evaluation["blank_rows_skipped"]
        _warn(f"skipped {len(rows)} blank row(s) (every cell empty): row {', '.join(map(str, rows[:10]))}")
    if out is not None:
        if out.suffix.lower() == ".json":
            write_json(out, evaluation)
        else:
            write_text(out, predictions.to_csv(index=False))
    if as_json:
        print(json.dumps(evaluation, indent=2, ensure_ascii=False))
    else:
        print(
            f"evaluate: {format_metrics(evaluation['metrics'])} on {evaluation['metrics']['examples']} "
            f"examples of {evaluation['source']} (model {model})" + (f"; written to {out}" if out else "")
        )
    if checks and not evaluation["passed"]:
        raise PipelineError(f"evaluate: {describe_misses(evaluation)} (--thresholds)")


@app.command()
def report(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help=VERSION_HELP)],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write (default: <name>@<version>.html here)"),
    ] = None,
    name: Name = None,
    root: Root = None,
) -> None:
    """Write a registered version's run report: metrics, charts, mistakes, promotion, lineage."""
    from tunepipe import registry
    from tunepipe.io import write_text

    base, artifact, version = _versioned(ctx, root, version, name)
    tag = registry.registered_tag(base, artifact, version)
    target = out or Path(f"{tag}.html")
    if target.is_dir():
        raise PipelineError(f"--out {target}: is a directory; give the HTML file to write")
    write_text(target, registry.version_report(base, artifact, version))
    print(f"{tag}: run report written to {target}")


@app.command()
def lineage(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help=VERSION_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help="the full record as JSON")] = False,
    name: Name = None,
    root: Root = None,
) -> None:
    """Print a registered version's lineage: commits, hashes, params, metrics (cross-checked)."""
    from tunepipe import audit, registry

    base, artifact, version = _versioned(ctx, root, version, name)
    record = registry.read_lineage(base, artifact, version)
    disagreements = audit.cross_check(base, artifact, version)
    for problem in disagreements:
        _warn(problem)
    if as_json:
        print(json.dumps(record, indent=2))
        return
    data, model = record["data"], record["model"]
    lines = [
        f"{format_tag(record['artifact'], record['version'])}  registered {record['registered_at']}",
        f"  registered commit   {record['registered_commit']}",
        f"  code commit         {record['code_commit']}"
        + (" (with uncommitted changes)" if record["uncommitted_changes"] else ""),
        *(
            [f"  unversioned data    {', '.join(record['unversioned_inputs'])} (in neither git nor DVC)"]
            if record.get("unversioned_inputs")
            else []
        ),
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
        *_promotion_lines(record.get("promotion")),
        "  cross-checked       "
        + (
            f"DISAGREES with the tagged commit in {len(disagreements)} place(s): see the WARNING lines"
            if disagreements
            else "agrees with the tag's dvc.lock, reports/metrics.json, params.yaml and message"
        ),
    ]
    print("\n".join(lines))


def _promotion_lines(decision: dict[str, Any] | None) -> list[str]:
    """`lineage`'s promotion lines: the outcome and reason, then the versions, scores and rows."""
    from tunepipe.promotion import outcome
    from tunepipe.report import promotion_rows

    if not decision:
        return ["  promotion           none recorded (registered without the flow's comparison)"]
    lines = [f"  promotion           {outcome(decision)}: {decision['reason']}"]
    champion = decision.get("champion")
    scores = f"{decision['metric']} {decision['challenger']['score']:.4f}"
    if champion:
        scores += f" vs {champion['version']} {champion['score']:.4f} ({champion.get('scored', '')})"
    lines.append(f"  decided on          {promotion_rows(decision)}: {scores}")
    for guard in decision.get("guards") or []:
        verdict = "pass" if guard["passed"] else "BLOCKS"
        lines.append(
            f"  guard               {guard['metric']} {guard['challenger']:.4f} vs {guard['champion']:.4f}, "
            f"worse by {guard['worse_by']:.4f} (limit {guard['limit']}): {verdict}"
        )
    return lines


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


@app.command()
def versions(ctx: typer.Context, name: Name = None, root: Root = None) -> None:
    """List registered versions with their stages (GTO), test metrics and promotion decision (lineage
    cross-checked); each version's metrics are on its own test split, the decision on the same rows."""
    from tunepipe import audit, registry
    from tunepipe.metrics import format_metrics
    from tunepipe.promotion import summary as promotion_summary

    base = _root(ctx, root)
    artifact = _artifact_name(base, name)
    found = registry.versions(Path(base), artifact)
    if not found:
        print(f"no registered versions of {artifact}")
        return
    held = registry.stages(Path(base), artifact)
    width = max(len(", ".join(held.get(v, ["-"]))) for v in found)
    for version in found:
        record = registry.read_lineage(Path(base), artifact, version)
        stages = ", ".join(held.get(version, ["-"]))
        disagreements = audit.cross_check(Path(base), artifact, version)
        decision = record.get("promotion")
        print(
            f"{format_tag(artifact, version)}  {stages:<{width}}  {record['registered_commit'][:10]}  "
            f"{format_metrics(record['metrics'])}"
            + (f"  [{promotion_summary(decision)}]" if decision else "")
            + (f"  [!] lineage disagrees with the tag ({len(disagreements)})" if disagreements else "")
        )
        for problem in disagreements:
            _warn(problem)


@app.command()
def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help=VERSION_HELP)],
    stage: Annotated[
        str | None,
        typer.Option("--stage", help="GTO stage to assign (default: promote.stage in params.yaml)"),
    ] = None,
    name: Name = None,
    root: Root = None,
) -> None:
    """Assign a registered version to a stage by hand (GTO stage tag), without the bootstrap check."""
    from tunepipe import params, registry

    base, artifact, version = _versioned(ctx, root, version, name)
    stage = stage or params.read(base / catalog.PARAMS).promote.stage
    resolved = registry.resolve(base, artifact, version)
    before = registry.version_in_stage(base, artifact, stage)
    if before == resolved:
        print(f"{format_tag(artifact, resolved)} is already in {stage}")
        return
    tag = registry.assign_stage(base, artifact, resolved, stage)
    print(f"{format_tag(artifact, resolved)} -> {stage} ({tag}" + (f"; was {before})" if before else ")"))


@app.command()
def fetch(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help=VERSION_HELP)],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="directory to write the model into: a new or empty one, or one an earlier fetch wrote",
        ),
    ],
    no_verify: NoVerify = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="replace the output directory even if tunepipe did not write it (never a project, "
            "a git work tree, the current directory or home)",
        ),
    ] = False,
    name: Name = None,
    root: Root = None,
) -> None:
    """Materialise a registered version's model directory (DVC cache or remote), hash-checked."""
    from tunepipe import registry

    base, artifact, version = _versioned(ctx, root, version, name)
    out = registry.fetch_model(base, artifact, version, output, verify=not no_verify, warn=_warn, force=force)
    print(f"fetched {version} -> {out}")


@app.command()
def verify(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help=VERSION_HELP)],
    path: Annotated[
        Path | None,
        typer.Option(
            "--path", help="check this model folder instead of the DVC cache's copy", show_default=False
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="every check as JSON")] = False,
    name: Name = None,
    root: Root = None,
) -> None:
    """Re-hash a version's model and data against its dvc.lock; cross-check its lineage record."""
    from tunepipe import audit

    base, artifact, version = _versioned(ctx, root, version, name)
    report = audit.verify(base, artifact, version, path)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"{report.tag} (commit {report.commit[:10]}): {len(report.checks)} checks")
        status_width = max(len(c.status) for c in report.checks)
        kind_width = max(len(c.kind) for c in report.checks)
        for c in report.checks:
            shown = c.found if c.ok else f"found {c.found}, expected {c.expected}"
            print(f"  {c.status:<{status_width}}  {c.kind:<{kind_width}}  {c.item}  {shown}")
    if not report.ok:
        hints = sorted({c.hint for c in report.failures if c.hint})
        raise PipelineError(
            f"{report.tag} failed verification ({len(report.failures)} of {len(report.checks)} checks): "
            + "; ".join(c.describe() for c in report.failures)
            + (" (to fix: " + "; ".join(hints) + ")" if hints else "")
        )
    if not as_json:
        print(f"verified {report.tag}: all {len(report.checks)} checks passed")


@app.command()
def compare(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help=VERSION_HELP)],
    b: Annotated[str, typer.Argument(help="the version (or stage) to compare it with")],
    as_json: Annotated[bool, typer.Option("--json", help="the comparison as JSON")] = False,
    name: Name = None,
    root: Root = None,
) -> None:
    """Compare two versions: params that differ, metrics side by side, data hashes same/different."""
    from tunepipe import compare as compare_mod

    base = _root(ctx, root)
    a, name = _split_version(a, name)
    b, name = _split_version(b, name)
    result = compare_mod.compare(Path(base), _artifact_name(base, name), a, b)
    print(json.dumps(result, indent=2) if as_json else compare_mod.render(result))


@app.command()
def replay(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help=VERSION_HELP)],
    git_remote: Annotated[
        str | None,
        typer.Option(
            "--git-remote", help="git URL to clone (default: `origin`, else this repo)", show_default=False
        ),
    ] = None,
    dvc_remote: Annotated[
        str | None,
        typer.Option(
            "--dvc-remote",
            help="DVC remote URL, folder or name (default: the default remote, else this repo's DVC cache)",
            show_default=False,
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="largest metric difference accepted when hashes differ")
    ] = 0.0,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir", help="where the scratch clone is made (default: the temp dir)", show_default=False
        ),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="keep the scratch clone")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="list package differences, check the pinned inputs, rebuild nothing"),
    ] = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="also write the comparison to this JSON file", show_default=False),
    ] = None,
    name: Name = None,
    root: Root = None,
) -> None:
    """Rebuild a registered version from its git and DVC remotes; compare hashes and metrics."""
    from tunepipe import replay as replay_mod
    from tunepipe.io import write_json

    base, artifact, version = _versioned(ctx, root, version, name)
    try:
        report = replay_mod.replay(
            base,
            artifact,
            version,
            git_remote=git_remote,
            dvc_remote=dvc_remote,
            tolerance=tolerance,
            workdir=workdir,
            keep=keep,
            dry_run=dry_run,
        )
    except replay_mod.ReplayError as exc:
        if json_out:
            write_json(json_out, exc.report)
        raise
    if json_out:
        write_json(json_out, report)
    if dry_run:
        return
    print(replay_mod.render(report))
    print(replay_mod.verdict(report))
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def deploy(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[NAME]...", help="deployments of prefect.yaml to create or update (default: all)"
        ),
    ] = None,
    pool: Annotated[str, typer.Option("--pool", help="the work pool whose workers run them")] = "gpu",
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch", help="branch the workers clone (default: the checked-out one)", show_default=False
        ),
    ] = None,
    remote_url: Annotated[
        str | None,
        typer.Option("--remote", help="git URL the workers clone (default: `origin`'s)", show_default=False),
    ] = None,
    notify: Annotated[
        str | None,
        typer.Option(
            "--notify",
            help="URL that receives a JSON POST for every Failed or Crashed run (a Prefect webhook block)",
            show_default=False,
        ),
    ] = None,
    heartbeat: Annotated[
        int, typer.Option("--heartbeat", help="seconds between a run's heartbeats (30 or more)")
    ] = 60,
    crash_after: Annotated[
        int | None,
        typer.Option(
            "--crash-after",
            help="seconds without a heartbeat before a run is marked Crashed (default: 3 heartbeats)",
            show_default=False,
        ),
    ] = None,
    checkpoints: Annotated[
        str | None,
        typer.Option(
            "--checkpoints",
            help="folder on the workers that keeps unfinished trainings' checkpoints between runs "
            "(TUNEPIPE_CHECKPOINTS): a re-run after a crash resumes from there",
            show_default=False,
        ),
    ] = None,
    root: Root = None,
) -> None:
    """Create or update the Prefect deployments of prefect.yaml (`prefect deploy`), and the
    automations that crash runs whose heartbeats stop, run a crashed retrain again once, and
    (--notify) POST failures to a URL."""
    from tunepipe import deploy as deployments

    guard = deployments.Guard(
        heartbeat=heartbeat, crash_after=crash_after, notify=notify, checkpoints=checkpoints
    )
    deployments.deploy(
        Path(_root(ctx, root)), names or (), pool=pool, branch=branch, remote_url=remote_url, guard=guard
    )


@app.command()
def doctor(
    remeasure: Annotated[
        bool, typer.Option("--remeasure", help="measure fp32 and bf16 matmuls again and rewrite the cache")
    ] = False,
) -> None:
    """This machine as the pipeline sees it: CPU, bf16 units, the cached precision decision, threads."""
    from tunepipe import devices

    if remeasure:
        path = devices.cache_path()
        if path is not None and path.is_file():
            path.unlink()  # the cache file is tunepipe's own (devices.cache_path)
    os.environ.pop(devices.DECISION_ENV, None)  # read the cache (or measure), not an inherited answer
    devices.cpu_auto_precision.cache_clear()
    with contextlib.redirect_stderr(io.StringIO()):  # its line is printed below, with the figures
        decision = devices.cpu_auto_precision()
    info = devices.doctor()
    print(f"cpu: {info['cpu']}")
    print(f"cores: {info['cores']['usable']} usable of {info['cores']['machine']}")
    print(f"bf16 units: {', '.join(info['bf16_units']) or 'none'}; amx: {', '.join(info['amx']) or 'none'}")
    print(f"cuda: {info['cuda'] or 'none'}")
    if "fp32_gflops" in decision:
        print(
            f"matmul: fp32 {decision['fp32_gflops']} GFLOP/s, bf16 {decision['bf16_gflops']} GFLOP/s "
            f"({decision['bf16_matmul_speedup']}x)"
        )
    print(f"precision auto on this CPU: {decision['precision']} ({decision['reason']})")
    print(f"cache: {info['precision_cache']['path'] or 'off'} (key {info['precision_cache']['key']})")
    print(f"torch {info['torch']}, transformers {info['transformers']}")
    threads = info["threads"]
    extra = "".join(f", {k}={v}" for k, v in threads.items() if k.isupper())
    print(f"threads: torch {threads['torch_intra_op']} intra-op, {threads['torch_inter_op']} inter-op{extra}")


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(help="table files of new rows (csv, tsv, json, jsonl, parquet)")
    ],
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="the commit message", show_default=False)
    ] = None,
    no_push: Annotated[
        bool, typer.Option("--no-push", help="commit here only: no dvc push, git push or Prefect event")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable summary")] = False,
    root: Root = None,
) -> None:
    """Add new rows: copy into data/raw/incoming, `dvc add`, commit, push DVC then git, emit a
    Prefect event that triggers the retrain deployment."""
    from tunepipe import ingest as ingest_mod

    say = (lambda _line: None) if as_json else print
    result = ingest_mod.ingest(Path(_root(ctx, root)), files, message=message, push=not no_push, say=say)
    if as_json:
        print(json.dumps(ingest_mod.to_json(result), indent=2))


params_app = typer.Typer(
    help="params.yaml's JSON Schema and reference page, generated from its models (tunepipe/params.py).",
    no_args_is_help=True,
)
app.add_typer(params_app, name="params")
Output = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="file to write (default: its place in the project)", show_default=False
    ),
]


def _generate(ctx: typer.Context, root: str | None, what: str, output: Path | None) -> None:
    from tunepipe import params_schema

    path, changed = params_schema.generate(Path(_root(ctx, root)), what, output)
    print(f"wrote {path}" if changed else f"{path} is up to date")


@params_app.command("schema")
def params_schema_command(ctx: typer.Context, output: Output = None, root: Root = None) -> None:
    """Write params.schema.json, which editors read through params.yaml's first line."""
    _generate(ctx, root, "schema", output)


@params_app.command("docs")
def params_docs_command(ctx: typer.Context, output: Output = None, root: Root = None) -> None:
    """Write the params reference page, docs/reference/params.md."""
    _generate(ctx, root, "docs", output)


def _one_line_summaries(group: typer.Typer) -> None:
    """The commands table prints a docstring's first paragraph with its line breaks, which cut a
    summary mid-sentence: give each command that paragraph as one line."""
    for info in group.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if info.short_help is None and doc:
            info.short_help = " ".join(doc.strip().split("\n\n")[0].split())


_one_line_summaries(app)
_one_line_summaries(params_app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: `tunepipe ...`, `python -m tunepipe.cli ...`, or tests' `main([...])`.

    Returns normally on success (tests call it twice in one process); a PipelineError is a user
    error: one `error: ...` line and exit 1, no traceback.
    """
    set_env_defaults()
    try:
        app(args=argv, prog_name="tunepipe")
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except SystemExit as exc:  # typer ends every run with sys.exit, success included
        if exc.code not in (0, None):
            raise


if __name__ == "__main__":
    main()
