"""Scheduled retraining on a worker: pull from the team's remotes, run the pipeline, push back.

A deployment's pull step clones the project's git remote; this flow runs in that clone. Order
matters: DVC's remote receives the data, model and run-cache first, and only then does git's
remote receive the registration commit and tags, so a pushed tag never names missing bytes.

    python -m flows.retrain               # in a clone whose `origin` and DVC remote are the team's
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import get_state_exception

from flows.pipeline import failed, pipeline, quiet_logs, run_from_command_line
from tunepipe import checkpoints, clones, pins, remote
from tunepipe import promotion as promotion_mod
from tunepipe.argcheck import check_ref
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import git
from tunepipe.metrics import format_metrics

NO_DVC_REMOTE = (
    "no DVC remote configured: data, model and run-cache stay in this checkout "
    "(`dvc remote add -d <name> <url>` shares them with other workers)"
)


# No flow retries: Prefect's server retries every Failed flow run, a PipelineError returned as a
# Failed state too, and the same input fails the same way. What is retried lives elsewhere, one
# rule each: the train task's own retries (a killed trainer resumes from its checkpoint) and the
# automation that runs a Crashed retrain again once (a lost host).
@flow(name="retrain", log_prints=True)
def retrain(
    ref: str | None = None,
    registration: bool = True,
    promotion: dict[str, Any] | None = None,
    train_retries: int = 1,
    root: str = ".",
    after_crash: str | None = None,
    branch: str | None = None,
) -> dict[str, Any]:
    """Pull, run the pipeline (registering and promoting per params.yaml), push DVC, then git.

    `ref`: a branch, tag or commit of git remote `origin` to check out first (None: as cloned).
    `branch`: the branch registrations go on when `ref` (or the clone) is a tag or commit: it is
    checked out there as that branch and the push merges origin's branch into it (a deployment
    pins the commit it was deployed from; None: a tag or commit stays detached).
    `promotion`: overrides keys of params.yaml's `promote:` section for this run.
    `root`: the project checkout; "." is the clone a deployment's pull step made.
    `after_crash`: the id of a Crashed run this run replaces (set by the project's automation,
    tunepipe/automations.py); a re-run that crashed in turn is not run a third time.
    """
    quiet_logs()
    logger = get_run_logger()
    base = Path(root).resolve()
    try:
        check_parameters(ref, branch)
        origin = remote.git_origin(base)
        # --- a run after a lost host: clean what the crashed run left, say what it resumes ---
        swept = clones.sweep(base, origin)
        if swept.folders:
            logger.info("%s", swept.describe())
        if after_crash:
            # What the crashed run trained, not the deployment's defaults: its checkpoints are of that.
            earlier = check_rerun(after_crash)
            ref, branch = earlier.get("ref", ref), earlier.get("branch", branch)
            registration = earlier.get("registration", registration)
            promotion = earlier.get("promotion", promotion)
            check_parameters(ref, branch)
            logger.info(
                "re-run of crashed flow run %s (ref %s): training resumes from its last checkpoint (%s)",
                after_crash,
                ref or "as cloned",
                checkpoints.folder(base),
            )
        if origin:
            # Before the fetch: a forced tag fetch would overwrite a local tag origin holds otherwise.
            stranded = remote.check_taken(base)
            if stranded.tags:
                logger.warning(
                    "not on git remote origin yet (an earlier push failed?): %s; pushed after this run",
                    ", ".join(stranded.tags),
                )
            remote.fetch_tags(base)
            if not ref and branch and remote.current_branch(base) is None:
                ref = git(base, "rev-parse", "HEAD")  # the commit the pull step checked out
            if ref:
                logger.info("git: checked out %s", remote.checkout(base, ref, branch))
        elif ref or branch:
            raise PipelineError(
                f"ref {ref or branch!r} given, but {base} has no git remote `origin` to fetch it from"
            )
        else:
            logger.warning("no git remote `origin`: registrations stay in this checkout")
        pins.check(base)  # the worker's packages are the ones this commit pins
        dvc_remote = remote.dvc_remote(base)
        if dvc_remote:
            try:
                logger.info("dvc pull from %r: %s", dvc_remote, remote.pull(base))
            except PipelineError as exc:  # the stages rebuild what could not be pulled
                logger.warning("%s\nthe stages will rebuild what could not be pulled", exc)
        else:
            logger.warning(NO_DVC_REMOTE)
        state = pipeline(
            root=str(base),
            registration=registration,
            train_retries=train_retries,
            promotion=promotion,
            return_state=True,
        )
        if not state.is_completed():
            return failed(get_state_exception(state), base)
        result: dict[str, Any] = dict(state.result())
        result["pulled"] = bool(dvc_remote)
        result["pushed"] = []
        if dvc_remote:
            logger.info("dvc push to %r: %s", dvc_remote, remote.push(base))
            result["pushed"].append(f"dvc:{dvc_remote}")
        result["git_pushed"] = []
        if origin:
            # Whatever origin lacks, read from origin now: this run's registration and any an
            # earlier run failed to push. A rejected push merges origin's branch and retries.
            pushed = remote.publish(base, log=logger.warning)
            if pushed is not None:
                logger.info("git: %s", pushed.describe())
                result["pushed"].append("git:origin")
                result["git_pushed"] = list(pushed.tags)
        result["cached_stages"] = [s for s, name in result.get("stages", {}).items() if name == "Cached"]
        result["message"] = summary(result)
        logger.info(result["message"])
    except PipelineError as exc:
        return failed(exc, base)
    return result


def check_rerun(crashed: str) -> dict[str, Any]:
    """A crashed run is run again once: when the run it replaces was itself such a re-run, stop
    here (Failed, which notifies) instead of crashing the same way in a loop. Returns the crashed
    run's parameters."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    try:
        crashed_id = UUID(crashed)
    except ValueError as exc:
        raise PipelineError(f"retrain parameter after_crash {crashed!r}: expected a flow run id") from exc
    with get_client(sync_client=True) as client:
        earlier = client.read_flow_run(crashed_id)
    if earlier.parameters.get("after_crash"):
        raise PipelineError(
            f"flow run {earlier.name} was already the re-run of crashed run "
            f"{earlier.parameters['after_crash']} and crashed too: not run again; see both runs' "
            "logs, then start one with `prefect deployment run retrain/retrain`"
        )
    return dict(earlier.parameters)


def check_parameters(ref: str | None, branch: str | None = None) -> None:
    """What reaches git from whoever starts a run, checked before any git command runs: `ref`
    and `branch` must be plain branch, tag or commit names (`--upload-pack=...` would be a git
    option)."""
    if ref:  # None or "": as cloned
        check_ref(ref, "retrain parameter ref")
    if branch:
        check_ref(branch, "retrain parameter branch")


def summary(result: dict[str, Any]) -> str:
    """One line for the run's log and return value: what changed, and what was registered."""
    reg = result.get("registered") or {}
    stages = result.get("stages", {})
    earlier = [] if reg.get("new") else result.get("git_pushed", [])
    pushed = f"; pushed to origin what an earlier run left unpushed: {', '.join(earlier)}" if earlier else ""
    if stages and len(result["cached_stages"]) == len(stages) and reg and not reg.get("new"):
        return f"nothing changed: every stage Cached, no new version ({reg['tag']} is current){pushed}"
    if reg:
        line = f"{'registered' if reg.get('new') else 'already registered as'} {reg['tag']}"
        decision = result.get("promotion")
        if decision:
            line += f", {promotion_mod.outcome(decision)}"
        return line + pushed
    return "not registered (registration off)" + pushed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.retrain", description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default=None, help="branch, tag or commit of `origin` to check out first")
    parser.add_argument(
        "--branch", default=None, help="the branch registrations go on when --ref is a tag or commit"
    )
    parser.add_argument(
        "--no-register", action="store_true", help="stop after evaluation (still pushes to DVC)"
    )
    args = parser.parse_args(argv)

    def start() -> Any:
        check_parameters(args.ref, args.branch)  # before a Prefect server starts
        return retrain(ref=args.ref, branch=args.branch, registration=not args.no_register, return_state=True)

    result = run_from_command_line(Path("."), start)
    print(f"test metrics: {format_metrics(result['metrics'])}")
    print(result["message"])


if __name__ == "__main__":
    main()
