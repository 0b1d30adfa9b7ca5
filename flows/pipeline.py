"""The pipeline as a Prefect flow: each DVC stage is a task, then registration.

DVC decides what re-runs (dvc.lock is the one cache); a stage that DVC reports up to date is
shown as Cached in Prefect, so `dvc repro` and this flow never disagree about what is stale.

    python -m flows.pipeline            # run (ephemeral Prefect unless PREFECT_API_URL is set)
    python -m flows.pipeline --no-register
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed

from tunepipe import catalog, dvcrepo, registry, staleness
from tunepipe import params as params_mod
from tunepipe.errors import PipelineError
from tunepipe.io import read_json
from tunepipe.metrics import format_metrics, format_threshold
from tunepipe.stage import set_env_defaults

STAGES = ("pretrained", "load", "validate", "tokenize", "train", "evaluate")
# always_changed in dvc.yaml: the flow runs it and compares its output with dvc.lock's before.
ALWAYS_RUN = ("pretrained",)
TAIL_LINES = 40


def stage_env() -> dict[str, str]:
    """Stage commands say `python`: make that the interpreter running this flow.

    Their output reaches the terminal through a pipe (reproduce): when this flow writes to a
    terminal, TTY_COMPATIBLE=1 tells rich in the stage to draw its progress bars anyway.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if getattr(sys.stdout, "isatty", lambda: False)():
        env.setdefault("TTY_COMPATIBLE", "1")
    return env


def reproduce(root: Path, stage: str) -> None:
    """`dvc repro --single-item <stage>`: output streams through; its tail goes into any error."""
    # -q hides DVC's own chatter (git hints per stage); the stage command's output still streams.
    cmd = [sys.executable, "-m", "dvc", "repro", "--quiet", "--single-item", stage]
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        cmd, cwd=root, env=stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        assert proc.stdout is not None
        # Bytes pass through unchanged, so progress bars redraw in place ('\r') instead of
        # printing one line per update.
        out = getattr(sys.stdout, "buffer", None)
        for raw in proc.stdout:
            text = raw.decode(errors="replace")
            if out is not None:
                out.write(raw)
                out.flush()
            else:
                sys.stdout.write(text)
            tail.append(text.rstrip().rsplit("\r", 1)[-1])
    if proc.returncode != 0:
        shown = "\n".join(line for line in tail if line.strip())
        raise PipelineError(f"stage {stage!r} failed (exit {proc.returncode}):\n{shown}")


def locked_outs(root: Path, stage: str) -> Any:
    lock = dvcrepo.read_lock(root) if (root / "dvc.lock").is_file() else {}
    return ((lock.get("stages") or {}).get(stage) or {}).get("outs")


@task(cache_policy=NO_CACHE)
def dvc_stage(root: Path, stage: str) -> Any:
    logger = get_run_logger()
    if stage in ALWAYS_RUN:
        # Runs every time (cheap); Cached when what it wrote is what dvc.lock already held.
        before = locked_outs(root, stage)
        reproduce(root, stage)
        if before is not None and locked_outs(root, stage) == before:
            return Completed(name="Cached", message=f"dvc.lock: stage {stage} ran, its output is unchanged")
        return stage
    (state,) = staleness.check(root, stage)
    if not state.runs:
        logger.info("dvc: stage %s is up to date, not re-run", stage)
        return Completed(name="Cached", message=f"dvc.lock: stage {stage} up to date")
    logger.info("dvc: running stage %s (%s): %s", stage, state.state, "; ".join(state.reasons))
    reproduce(root, stage)
    return stage


@task(cache_policy=NO_CACHE, task_run_name="register")
def register_model(root: Path, name: str, bump: str) -> Any:
    result = registry.register(root, name, bump, flow_run_id=str(flow_run.get_id() or "") or None)
    if not result["new"]:
        return Completed(name="Cached", message=f"already registered as {result['tag']}", data=result)
    get_run_logger().info("registered %s at commit %s", result["tag"], result["commit"][:10])
    return result


def publish_validation(root: Path) -> None:
    report = read_json(root / catalog.VALIDATION_REPORT)
    truncation = report.get("truncation", {})
    rows = []
    for split, data in report["splits"].items():
        counts = data.get("class_counts") or data.get("tag_counts") or data.get("target") or {}
        cut = truncation.get(split)
        rows.append(
            {
                "split": split,
                "rows": data["rows"],
                "labels": ", ".join(f"{k}: {v}" for k, v in counts.items()),
                "truncated": f"{cut['truncated']} ({cut['share']:.1%})" if cut else "",
                "checks passed": f"{sum(c['success'] for c in data['checks'])}/{len(data['checks'])}",
            }
        )
    create_table_artifact(rows, key="validation-summary", description="Great Expectations checks per split")


def publish_metrics(root: Path) -> dict[str, Any]:
    evaluation = read_json(root / catalog.EVALUATION)
    metrics = evaluation["metrics"]
    lines = ["| metric | value | threshold |", "|---|---|---|"]
    thresholds = {c["metric"]: format_threshold(c) for c in evaluation["thresholds"]}
    for name, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"| {name} | {shown} | {thresholds.get(name, '')} |")
    if "confusion_matrix" not in evaluation:
        create_markdown_artifact("\n".join(lines), key="test-metrics", description="Test-split metrics")
        return evaluation
    labels = evaluation["confusion_matrix"]["labels"]
    matrix = evaluation["confusion_matrix"]["rows_true_cols_predicted"]
    lines += [
        "",
        "Confusion matrix (rows: true, columns: predicted)",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---" * (len(labels) + 1) + "|",
    ]
    lines += [
        f"| {label} | " + " | ".join(map(str, row)) + " |" for label, row in zip(labels, matrix, strict=True)
    ]
    create_markdown_artifact("\n".join(lines), key="test-metrics", description="Test-split metrics")
    return evaluation


@flow(name="tunepipe", log_prints=True)
def pipeline(root: str = ".", registration: bool = True, train_retries: int = 1) -> dict[str, Any]:
    """Run pretrained -> load -> validate -> tokenize -> train -> evaluate through DVC, then register.

    A train task that dies (a worker killed, a node lost) is retried `train_retries` times; the
    retry resumes from the last checkpoint. Other stages fail for reasons a retry cannot fix.
    """
    base = Path(root).resolve()
    p = params_mod.read(base / catalog.PARAMS)
    for stage in STAGES:
        retries = train_retries if stage == "train" else 0
        dvc_stage.with_options(name=stage, task_run_name=stage, retries=retries)(base, stage)
        if stage == "validate":
            publish_validation(base)
    evaluation = publish_metrics(base)
    result: dict[str, Any] = {"metrics": evaluation["metrics"], "registered": None}
    if registration:
        # A task returning a State (Cached) hands back that State: unwrap it; a failure raises here.
        result["registered"] = register_model(
            base, p.register.name, p.register.bump, return_state=True
        ).result()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="project directory (with dvc.yaml and params.yaml)")
    parser.add_argument("--no-register", action="store_true", help="stop after evaluation")
    args = parser.parse_args(argv)
    set_env_defaults()
    try:
        result = pipeline(root=args.root, registration=not args.no_register)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"test metrics: {format_metrics(result['metrics'])}")
    reg = result["registered"]
    if reg:
        print(
            f"registered: {reg['tag']} (commit {reg['commit'][:10]})"
            + ("" if reg["new"] else ", already registered")
        )


if __name__ == "__main__":
    main()
