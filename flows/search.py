"""Hyperparameter search as a Prefect flow: the data stages through DVC, then the Optuna study.

The study needs only tokenized data, so pretrained, load, validate and tokenize run as in the pipeline flow
(Cached when dvc.lock says they are up to date); train and evaluate stay out of it. With --apply
the best values go into params.yaml, and the next `dvc repro` (or pipeline flow) trains on them.

    python -m flows.search                      # search.trials trials in all (a resumed study counts)
    python -m flows.search --trials 30 --apply
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import get_state_exception

from flows.pipeline import dvc_stage, failed, quiet_logs, run_from_command_line
from tunepipe import catalog
from tunepipe import markup as md
from tunepipe import params as params_mod
from tunepipe.errors import PipelineError
from tunepipe.search import check_request, run_search
from tunepipe.search_apply import apply_best

DATA_STAGES = ("pretrained", "load", "validate", "tokenize")


def best_markdown(result: dict[str, Any]) -> str:
    """The `search-best` artifact; names and values come from params.yaml and the study."""
    lines = [
        f"Study {md.code(result['study_name'])} ({md.text(result['sampler'])}) in "
        f"{md.code(result['storage'])}: {md.text(result['metric'])} ({md.text(result['direction'])})",
        "",
        "Trials: " + md.text(", ".join(f"{k.lower()} {v}" for k, v in result["trials"].items())),
        "",
    ]
    if result["best_trial"] is None:
        return "\n".join([*lines, "No trial has completed yet."])
    lines += [
        f"Best: trial {md.text(result['best_trial'])}, {md.text(result['metric'])} {result['best_value']:.4f}"
        + (f", model in {md.code(result['best_model'])}" if result["best_model"] else ""),
        "",
        md.table(["parameter", "value"], [[f"train.{k}", v] for k, v in result["best_params"].items()]),
    ]
    return "\n".join(lines)


def trial_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `search-trials` artifact's rows: Prefect's UI renders a table's text cells as Markdown,
    so those are escaped (parameter values may be text from params.yaml's search space)."""
    return [{k: md.cell(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]


@task(cache_policy=NO_CACHE, task_run_name="search")
def run_study(root: Path, trials: int | None) -> Any:
    import pandas as pd

    try:
        result = run_search(params_mod.read(root / catalog.PARAMS), root, trials)
    except PipelineError as exc:
        return failed(exc, root)
    table = pd.read_csv(root / catalog.SEARCH_TRIALS_CSV)
    rows = json.loads(table.to_json(orient="records"))  # plain JSON types; no value yet -> null
    study = md.text(result["study_name"])
    create_table_artifact(trial_rows(rows), key="search-trials", description=f"Optuna study {study}")
    create_markdown_artifact(best_markdown(result), key="search-best", description="Best trial")
    return result | {"table": rows}


@task(cache_policy=NO_CACHE, task_run_name="apply-best")
def apply_params(root: Path, best_params: dict[str, Any]) -> list[str]:
    changed = apply_best(root, best_params)
    get_run_logger().info("params.yaml: %s", ", ".join(changed) or "already holds the best values")
    return changed


@flow(name="tunepipe-search", log_prints=True)
def search(root: str = ".", trials: int | None = None, apply: bool = False) -> Any:
    """Bring the tokenized data up to date through DVC, run the study, optionally apply its best.

    As the pipeline flow does, a failure the user can act on (a malformed search space, a stage's
    `error:`) ends the flow Failed with that message and without a traceback."""
    quiet_logs()
    base = Path(root).resolve()
    try:
        check_request(params_mod.read(base / catalog.PARAMS), trials)  # before any stage runs
        for stage in DATA_STAGES:
            state = dvc_stage.with_options(name=stage, task_run_name=stage)(base, stage, return_state=True)
            if state.is_failed():
                return failed(get_state_exception(state), base)
        state = run_study(base, trials, return_state=True)
        if state.is_failed():
            return failed(get_state_exception(state), base)
        result = state.result()
        result["applied"] = None
        if apply:
            if result["best_trial"] is None:
                raise PipelineError("search: no completed trial, nothing to apply")
            result["applied"] = apply_params(base, result["best_params"])
    except PipelineError as exc:
        return failed(exc, base)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.search", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="project directory (with dvc.yaml and params.yaml)")
    parser.add_argument("--trials", type=int, help="finished trials in all (default: search.trials)")
    parser.add_argument("--apply", action="store_true", help="write the best values into params.yaml")
    args = parser.parse_args(argv)
    root = Path(args.root)

    def start() -> Any:
        check_request(params_mod.read(root / catalog.PARAMS), args.trials)  # before a Prefect server starts
        return search(root=args.root, trials=args.trials, apply=args.apply, return_state=True)

    result = run_from_command_line(root, start)
    import pandas as pd

    print(pd.DataFrame(result["table"]).to_string(index=False))
    if result["best_trial"] is None:
        print("no completed trial yet")
        return
    print(
        f"best: trial {result['best_trial']}, {result['metric']} {result['best_value']:.4f}: "
        + ", ".join(f"train.{k}={v}" for k, v in result["best_params"].items())
    )
    if result["applied"] is not None:
        print("applied to params.yaml: " + (", ".join(result["applied"]) or "no change"))
    elif result["best_model"]:
        print(f"model: {result['best_model']}; apply with --apply")


if __name__ == "__main__":
    main()
