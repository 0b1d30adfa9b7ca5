"""The pipeline as a Prefect flow: each DVC stage is a task, then registration.

DVC decides what re-runs (dvc.lock is the one cache); a stage that DVC reports up to date is
shown as Cached in Prefect, so `dvc repro` and this flow never disagree about what is stale.

    python -m flows.pipeline            # run (ephemeral Prefect unless PREFECT_API_URL is set)
    python -m flows.pipeline --no-register
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# gto.log runs logging.config.dictConfig when first imported, which flushes every handler: inside
# a flow run that waits up to 5 s for Prefect's API log handler to drain. Imported here, before
# any flow runs, it costs nothing.
import gto.log  # noqa: F401
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State, get_state_exception

from tunepipe import catalog, drift, dvcrepo, lineage, registry, remote, staleness
from tunepipe import markup as md
from tunepipe import params as params_mod
from tunepipe import promotion as promotion_mod
from tunepipe.errors import PipelineError
from tunepipe.io import read_json
from tunepipe.metrics import format_metrics, format_threshold
from tunepipe.report import registration_page
from tunepipe.stage import RAN_MARKER, set_env_defaults
from tunepipe.version import Tag

STAGES = ("pretrained", "load", "validate", "tokenize", "train", "evaluate")
# always_changed in dvc.yaml: the flow runs it and compares its output with dvc.lock's before.
ALWAYS_RUN = (dvcrepo.PRETRAINED_STAGE,)
TAIL_LINES = 40
PROGRESS_SECONDS = 30  # progress bar updates in a log that is not a terminal
EXIT_STATUS = re.compile(r"exited with (-?\d+)")  # DVC's line for a failed stage command


class StageFailed(PipelineError):
    """A stage command failed: its own last `error:` line (or its output's tail), and its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def stage_env(marker: Path | None = None) -> dict[str, str]:
    """Stage commands say `python`: make that the interpreter running this flow.

    Their output reaches the terminal through a pipe (reproduce): when this flow writes to a
    terminal, TTY_COMPATIBLE=1 tells rich in the stage to draw its progress bars anyway.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if getattr(sys.stdout, "isatty", lambda: False)():
        env.setdefault("TTY_COMPATIBLE", "1")
    else:
        # A worker's log, not a terminal: tqdm bars (Trainer, datasets) redraw at most every
        # PROGRESS_SECONDS instead of several times a second, one log line each time.
        env.setdefault("TQDM_MININTERVAL", str(PROGRESS_SECONDS))
    if marker is not None:
        env[RAN_MARKER] = str(marker)
    return env


def reproduce(root: Path, stage: str, pull: bool = False) -> bool:
    """`dvc repro --single-item <stage>`: output streams through; its tail goes into any error.

    Returns whether the stage's command ran: False when DVC restored its outputs from the
    run-cache (the same code, params and data ran before, here or on a machine that pushed).
    `pull`: fetch a run-cache entry's outputs from the DVC remote (`--pull`) to restore them.
    """
    # -q hides DVC's own chatter (git hints per stage); the stage command's output still streams.
    cmd = [
        sys.executable,
        "-m",
        "dvc",
        "repro",
        "--quiet",
        "--single-item",
        *(["--pull"] if pull else []),
        stage,
    ]
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    with tempfile.TemporaryDirectory(prefix="tunepipe-stage-") as tmp:
        marker = Path(tmp) / "ran"
        returncode = stream(cmd, root, stage_env(marker), tail)
        ran = marker.exists()
    if returncode != 0:
        raise stage_error(root, stage, list(tail), returncode)
    return ran


def stream(cmd: list[str], root: Path, env: dict[str, str], tail: collections.deque[str]) -> int:
    """Run `cmd`, passing its output through and keeping its last lines in `tail`."""
    with subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
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
    return proc.returncode


def stage_error(root: Path, stage: str, tail: list[str], returncode: int) -> PipelineError:
    """What a failed `dvc repro` of one stage means: the project busy (another DVC process holds
    the lock), or the stage's own error (its last `error:` line and the lines after it) with the
    stage's exit code, or else the output's tail."""
    lines = [line for line in tail if line.strip() and not line.startswith("ERROR:")]  # DVC's own
    text = "\n".join(lines)
    # `dvc repro -q` hides DVC's own lock error too: a lock another process holds now explains it.
    if dvcrepo.is_lock_error("\n".join(tail)) or dvcrepo.lock_holders(root):
        return dvcrepo.busy(root, "\n".join(tail))
    statuses = EXIT_STATUS.findall("\n".join(tail))
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    # `dvc repro -q` exits 255 for any failed stage and hides its "exited with N" line; a stage
    # that reports an `error:` exits 1 (tunepipe.stage.run, and validate's failed checks).
    code = int(statuses[-1]) if statuses else 1 if starts else returncode
    code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says
    if starts:
        message = "\n".join(lines[starts[-1] :]).removeprefix("error: ")
        return StageFailed(message, code)
    shown = f":\n{text}" if text else f" without output: `dvc repro {stage}` shows DVC's own message"
    return StageFailed(f"stage {stage!r} failed (exit {code}){shown}", code)


def failed(exc: BaseException, root: Path | None = None) -> State:
    """A task or flow that ends on a user-facing error: Failed with the message, no traceback logged.

    `root`: the project checkout, shown as paths relative to it (a worker's clone is a temporary
    folder whose name means nothing to the reader); the error itself too, as the engine logs it
    and `state.result()` raises it."""
    message = relative(str(exc), root)
    if isinstance(exc, PipelineError) and message != str(exc):
        exc.args = (message, *exc.args[1:])
    return Failed(message=message, data=exc)


def relative(message: str, root: Path | None) -> str:
    """`message` with the checkout's absolute path left out of the paths in it."""
    if root is None:
        return message
    base = str(Path(root).resolve())
    return message.replace(base + os.sep, "").replace(base, ".")


class QuietFailures(logging.Filter):
    """A failure the user can act on is logged once at ERROR, as one line with its cause.

    Prefect logs a task that returned a Failed state with exc_info=True outside any `except`,
    which prints `NoneType: None` under the message: that empty exception info is dropped. A flow
    run that ends Failed on a PipelineError is logged by the engine as "Engine execution exited
    with unexpected exception" and its own traceback (some 45 lines) at ERROR: that record becomes
    one line naming the cause, and the traceback goes to DEBUG (shown when the logger lets DEBUG
    through, e.g. PREFECT_LOGGING_LEVEL=DEBUG). Any other exception keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        if record.exc_info[0] is None:
            record.exc_info = None
            return True
        exc = record.exc_info[1]
        if record.levelno >= logging.ERROR and isinstance(exc, PipelineError):
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(logging.DEBUG):  # passes this filter: below ERROR
                logger.debug("%s", record.getMessage(), exc_info=record.exc_info)
            record.msg, record.args = f"run failed: {one_line(str(exc))}", ()
            record.exc_info, record.exc_text = None, None
        return True


def one_line(message: str) -> str:
    """A message's first line, and how many more the run's state message holds."""
    lines = [line for line in message.strip().splitlines() if line.strip()] or [""]
    more = len(lines) - 1
    return lines[0] + (
        f" (and {more} more line{'s' if more > 1 else ''} in the run's state message)" if more else ""
    )


QUIET_FAILURES = QuietFailures()
# The run loggers (their records reach the Prefect API) and the engine's (the worker's output).
QUIET_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.engine")


def quiet_logs() -> None:
    """A failed run logs its cause once, as one line (see QuietFailures)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).addFilter(QUIET_FAILURES)


def retry_unless_busy(task: Any, task_run: Any, state: State) -> bool:
    """A retry is for a worker lost mid-run; another DVC process's lock would only be met again."""
    return not isinstance(get_state_exception(state), dvcrepo.ProjectBusy)


def locked_outs(root: Path, stage: str) -> Any:
    lock = dvcrepo.read_lock(root) if (root / "dvc.lock").is_file() else {}
    return ((lock.get("stages") or {}).get(stage) or {}).get("outs")


@task(cache_policy=NO_CACHE, retry_condition_fn=retry_unless_busy)
def dvc_stage(root: Path, stage: str, pull: bool = False) -> Any:
    try:
        return run_stage(root, stage, pull)
    except PipelineError as exc:
        return failed(exc, root)


def run_stage(root: Path, stage: str, pull: bool = False) -> Any:
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
    if not reproduce(root, stage, pull):
        logger.info("dvc: stage %s restored from DVC's run-cache, not re-run", stage)
        why = "ran before with the same code, params and data"
        return Completed(name="Cached", message=f"dvc run-cache: stage {stage} {why}")
    return stage


@task(cache_policy=NO_CACHE, task_run_name="drift")
def check_drift(root: Path, p: params_mod.Params) -> Any:
    """The drift report against the version in promote.stage: logged, published as the `drift`
    artifact, and Failed when a measure is above its `drift:` limit (before registration)."""
    try:
        found = drift.report(root, p)
        get_run_logger().info(drift.headline(found))
        create_markdown_artifact(
            drift_markdown(found), key="drift", description="This run's data against the production version's"
        )
        drift.check(found, p.drift)
    except PipelineError as exc:
        return failed(exc, root)
    if "labels" not in found:  # nothing measured: no version in the stage, or its data is this run's
        return Completed(name="Cached", message=drift.headline(found), data=found)
    return found


def drift_markdown(found: dict[str, Any]) -> str:
    rows = drift.lines(found)
    text = f"**{md.text(drift.headline(found))}**"
    if rows:
        text += "\n\n" + md.table(["measure", "production", "this run", "limit"], [list(r) for r in rows])
    return text


# log_prints off: dill (datasets' fingerprints of the promotion's scoring) disassembles functions
# with dis.dis into a captured sys.stdout, and a print logged instead of captured would put Python
# bytecode in the run's log (and leave dill's capture empty).
@task(cache_policy=NO_CACHE, task_run_name="register", log_prints=False)
def register_model(root: Path, p: params_mod.Params, found: dict[str, Any] | None = None) -> Any:
    """Register a new model, deciding its promotion first (the lineage record holds the decision)."""
    name = p.register.name

    def decide(version: str) -> dict[str, Any]:
        return promotion_mod.compare(root, name, version, p.promote, p).to_json()

    try:
        result = registry.register(
            root,
            name,
            p.register.bump,
            flow_run_id=str(flow_run.get_id() or "") or None,
            decide=decide,
            page=registration_page,
            extra={"drift": found} if found is not None else None,
            require_versioned=p.register.require_versioned,
        )
    except PipelineError as exc:
        return failed(exc, root)
    if not result["new"]:
        return Completed(name="Cached", message=f"already registered as {result['tag']}", data=result)
    logger = get_run_logger()
    logger.info("registered %s at commit %s", result["tag"], result["commit"][:10])
    if result.get("unversioned_inputs"):
        logger.warning("%s", lineage.unversioned_warning(result["tag"], result["unversioned_inputs"]))
    decision = result["promotion"]
    logger.info("%s: %s", promotion_mod.outcome(decision), decision["reason"])
    publish_promotion(decision)
    return result


def promotion_markdown(decision: dict[str, Any]) -> str:
    """Both scores, the improvement, its interval and the decision, as the `promotion` artifact shows them."""
    champion, challenger = decision["champion"], decision["challenger"]
    fmt = "{:.4f}".format
    rows = [["challenger", challenger["version"], fmt(challenger["score"])]]
    if champion is None:
        rows.append(["champion", md.raw(f"none in {md.text(decision['stage'])}"), ""])
    else:
        rows.append([f"champion ({champion['scored']})", champion["version"], fmt(champion["score"])])
    lines = [
        f"**{md.text(promotion_mod.outcome(decision).capitalize())}**: {md.text(decision['reason'])}",
        "",
        md.table(["", "version", decision["metric"]], rows),
    ]
    if champion is None:
        return "\n".join(lines)
    lines += [
        "",
        f"Improvement {decision['improvement']:+.4f}, {decision['confidence']:.0%} interval "
        f"[{decision['low']:+.4f}, {decision['high']:+.4f}] (paired bootstrap, "
        f"{md.text(decision['resamples'])} resamples of {md.text(decision['examples'])} test examples, "
        f"seed {md.text(decision['seed'])}); min_delta {md.text(decision['min_delta'])}, "
        f"require_significant {md.text(str(decision['require_significant']).lower())}.",
        "",
        f"Both scored on the same rows: {md.text(promotion_mod.rows_line(decision))}.",
    ]
    guards = decision.get("guards") or []
    if guards:
        fmt4 = "{:.4f}".format
        rows = [
            [g["metric"], fmt4(g["challenger"]), fmt4(g["champion"]), fmt4(g["worse_by"]), g["limit"],
             "pass" if g["passed"] else "BLOCKS"]
            for g in guards
        ]  # fmt: skip
        lines += ["", md.table(["guard", "challenger", "champion", "worse by", "limit", ""], rows)]
    return "\n".join(lines)


def publish_promotion(decision: dict[str, Any]) -> None:
    create_markdown_artifact(
        promotion_markdown(decision), key="promotion", description="Challenger against the stage's version"
    )


def validation_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The `validation-summary` table: Prefect's UI renders a table's text cells as Markdown, so
    each is escaped (labels and counts come from the data)."""
    truncation = report.get("truncation", {})
    rows = []
    for split, data in report["splits"].items():
        counts = data.get("class_counts") or data.get("tag_counts") or data.get("target") or {}
        cut = truncation.get(split)
        row = {
            "split": split,
            "rows": data["rows"],
            "labels": ", ".join(f"{k}: {v}" for k, v in counts.items()),
            "truncated": f"{cut['truncated']} ({cut['share']:.1%})" if cut else "",
            "checks passed": f"{sum(c['success'] for c in data['checks'])}/{len(data['checks'])}",
        }
        rows.append({k: md.cell(v) if isinstance(v, str) else v for k, v in row.items()})
    return rows


def publish_validation(root: Path) -> None:
    rows = validation_rows(read_json(root / catalog.VALIDATION_REPORT))
    create_table_artifact(rows, key="validation-summary", description="Great Expectations checks per split")


def metrics_markdown(evaluation: dict[str, Any]) -> str:
    """The `test-metrics` artifact: metrics against thresholds, and the confusion matrix."""
    metrics = evaluation["metrics"]
    thresholds = {c["metric"]: format_threshold(c) for c in evaluation["thresholds"]}
    rows = [
        [name, f"{value:.4f}" if isinstance(value, float) else value, thresholds.get(name, "")]
        for name, value in metrics.items()
    ]
    text = md.table(["metric", "value", "threshold"], rows)
    if "confusion_matrix" not in evaluation:
        return text
    labels = evaluation["confusion_matrix"]["labels"]
    matrix = evaluation["confusion_matrix"]["rows_true_cols_predicted"]
    confusion = md.table(["", *labels], [[label, *row] for label, row in zip(labels, matrix, strict=True)])
    return f"{text}\n\nConfusion matrix (rows: true, columns: predicted)\n\n{confusion}"


def publish_metrics(root: Path) -> dict[str, Any]:
    evaluation = read_json(root / catalog.EVALUATION)
    create_markdown_artifact(
        metrics_markdown(evaluation), key="test-metrics", description="Test-split metrics"
    )
    return evaluation


def publish_report(root: Path, registered: dict[str, Any] | None) -> Path:
    """The `run-report` artifact: where the run's HTML report is (the registered version's, with
    the production comparison and lineage, else the evaluate stage's) and what it holds."""
    page = root / catalog.REPORT
    tag = None
    if registered:
        tag = registered["tag"]
        parsed = Tag.parse(tag)
        page = root / registry.report_path(parsed.name, parsed.version)
        if not page.is_file():  # registered before reports existed: `tunepipe report` builds one
            page = root / catalog.REPORT
    create_markdown_artifact(
        report_markdown(page, tag), key="run-report", description="Self-contained HTML run report"
    )
    return page


def report_markdown(page: Path, tag: str | None) -> str:
    """The `run-report` artifact's text: a link to the page (an absolute path: `as_uri` percent-
    encodes every character a Markdown link could trip on) and the path as code."""
    what = "the evaluate stage's report (the production comparison and lineage are added at registration)"
    if tag:
        what = f"the report of {md.text(tag)}: metrics, charts, mistakes, production comparison, lineage"
    return f"[Run report]({page.absolute().as_uri()}): {what}.\n\n{md.code(page)}"


@flow(name="tunepipe", log_prints=True)
def pipeline(
    root: str = ".",
    registration: bool = True,
    train_retries: int = 1,
    promotion: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run pretrained -> load -> validate -> tokenize -> train -> evaluate through DVC, then register
    and decide promotion (params.yaml's `promote:`; `promotion` overrides its keys for this run).

    A train task that dies (a worker killed, a node lost) is retried `train_retries` times; the
    retry resumes from the last checkpoint. Other stages fail for reasons a retry cannot fix, and
    so does the train task when another DVC process holds the project's lock.

    A failure the user can act on (a stage's `error:`, a missed threshold, a busy project) ends
    the flow Failed with that message and without a traceback; `state.result()` raises it.
    """
    quiet_logs()
    base = Path(root).resolve()
    try:
        p = params_mod.read(base / catalog.PARAMS, {"promote": promotion} if promotion else None)
        if registration and p.register.require_versioned:  # refused now, not after training
            loose = dvcrepo.unversioned_before_run(base, lineage.local_sources(p))
            if loose:
                raise PipelineError(lineage.unversioned_refusal(loose))
        states: dict[str, str] = {}
        # With a DVC remote, a stage that ran elsewhere is restored from the remote's run-cache.
        pull = remote.dvc_remote(base) is not None
        for stage in STAGES:
            retries = train_retries if stage == "train" else 0
            state = dvc_stage.with_options(name=stage, task_run_name=stage, retries=retries)(
                base, stage, pull, return_state=True
            )
            if state.is_failed():
                return failed(get_state_exception(state), base)
            states[stage] = state.name or ""
            if stage == "validate":
                publish_validation(base)
        evaluation = publish_metrics(base)
        # The new data against the production version's, before anything is registered.
        state = check_drift(base, p, return_state=True)
        if state.is_failed():
            return failed(get_state_exception(state))
        # stage -> Prefect state name: "Cached" when DVC found it up to date or restored it.
        result: dict[str, Any] = {
            "metrics": evaluation["metrics"],
            "registered": None,
            "promotion": None,
            "stages": states,
            "drift": state.result(),
        }
        if registration:
            # A task returning a State (Cached) hands back that State: unwrap it.
            state = register_model(base, p, result["drift"], return_state=True)
            if state.is_failed():
                return failed(get_state_exception(state), base)
            result["registered"] = state.result()
            # None when the model was registered before: its promotion was decided then.
            result["promotion"] = result["registered"].pop("promotion", None)
        result["report"] = str(publish_report(base, result["registered"]))
    except PipelineError as exc:
        return failed(exc, base)
    return result


UNREACHABLE = "Failed to reach API at"  # Prefect's RuntimeError when its API does not answer


def run_from_command_line(root: Path, start: Callable[[], State]) -> dict[str, Any]:
    """A flow started from a shell: its result, or its error on stderr and the stage's exit code.

    A broken params.yaml fails first, before a Prefect server starts or any stage runs.
    """
    set_env_defaults()
    try:
        params_mod.read(root / catalog.PARAMS)
        state = start()
        if not state.is_completed():
            raise get_state_exception(state)
        return state.result()
    except PipelineError as exc:
        # The flow's last line is the stage's own error, with the stage's exit code.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except RuntimeError as exc:
        if not str(exc).startswith(UNREACHABLE):
            raise
        # A PREFECT_API_URL that does not answer: Prefect raises before the flow run exists.
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        print(
            f"error: {exc} (PREFECT_API_URL){cause}; start that server (`prefect server start`), or unset "
            "PREFECT_API_URL and each run starts a temporary one",
            file=sys.stderr,
        )
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="project directory (with dvc.yaml and params.yaml)")
    parser.add_argument("--no-register", action="store_true", help="stop after evaluation")
    args = parser.parse_args(argv)
    register = not args.no_register
    result = run_from_command_line(
        Path(args.root), lambda: pipeline(root=args.root, registration=register, return_state=True)
    )
    print(f"test metrics: {format_metrics(result['metrics'])}")
    reg = result["registered"]
    if reg:
        print(
            f"registered: {reg['tag']} (commit {reg['commit'][:10]})"
            + ("" if reg["new"] else ", already registered")
        )
        if reg.get("unversioned_inputs"):  # logged mid-run too; the last lines are the ones read
            warning = lineage.unversioned_warning(reg["tag"], reg["unversioned_inputs"])
            print(f"WARNING: {warning}", file=sys.stderr)
    decision = result.get("promotion")
    if decision:
        print(f"{promotion_mod.outcome(decision)}: {decision['reason']}")


if __name__ == "__main__":
    main()
