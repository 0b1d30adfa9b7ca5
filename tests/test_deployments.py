"""prefect.yaml's deployments, run the way a team runs them: a real `prefect server start`, a
process work pool with a real `prefect worker start`, `tunepipe deploy` from a clone of a bare git
remote, a directory DVC remote, and `prefect deployment run`. The worker's pull step clones the
bare remote; the retrain flow pulls, runs the pipeline on the tiny model and pushes back.

One server and worker serve the whole file (module fixture); the tests run in order, each
starting from what the previous one pushed. Every subprocess is killed in teardown and every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers import (
    KILL_AFTER_STEP,
    OFFLINE,
    configure,
    dvc,
    make_reviews,
    make_team,
    remote_tags,
    run,
    saved_steps,
)

pytestmark = pytest.mark.e2e

POOL = "tunepipe-test"
RETRAIN = "retrain/retrain"  # <flow name>/<deployment name>
SERVER_START_S = 120
RUN_S = 300  # one flow run on the worker: clone, pull, six stages, register, push
UUID = re.compile(r"UUID: ([0-9a-f-]{36})")


@dataclass
class Stack:
    url: str  # PREFECT_API_URL of the test server
    env: dict[str, str]  # for prefect and tunepipe commands run by the tests
    bare: Path  # the team's git remote
    runs: Path  # TMPDIR of the worker: each flow run's clone is made under it
    tmp: Path
    logs: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(tmp: Path, url: str) -> dict[str, str]:
    """The environment of a test's own Prefect server, worker and CLI calls."""
    return {
        **os.environ,
        **OFFLINE,
        "PREFECT_HOME": str(tmp / "prefect-home"),  # its own SQLite database
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        # Stage commands say `python`: this interpreter, which has the project's dependencies.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        # Registration commits on the worker need an identity, whatever the host's git config.
        "GIT_AUTHOR_NAME": "worker",
        "GIT_AUTHOR_EMAIL": "worker@example.com",
        "GIT_COMMITTER_NAME": "worker",
        "GIT_COMMITTER_EMAIL": "worker@example.com",
    }


def start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """The process and everything it started (its own session): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # the group outlives its leader
        os.killpg(proc.pid, signal.SIGKILL)


def tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"prefect server exited ({proc.returncode}):\n{tail(log)}"
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {SERVER_START_S} s:\n{tail(log)}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("deployments")
    bare, _ = make_team(tmp, tiny_bert)
    logs, runs = tmp / "logs", tmp / "runs"
    logs.mkdir()
    runs.mkdir()
    port = str(free_port())
    url = f"http://127.0.0.1:{port}/api"
    env = server_env(tmp, url)
    prefect = [sys.executable, "-m", "prefect"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        server_log = logs / "server.log"
        procs.append(
            start([*prefect, "server", "start", "--host", "127.0.0.1", "--port", port], env, server_log, tmp)
        )
        wait_healthy(url, procs[-1], server_log)
        run([*prefect, "work-pool", "create", POOL, "--type", "process"], tmp, env=env)
        worker_env = {**env, "TMPDIR": str(runs)}
        procs.append(
            start(
                [*prefect, "worker", "start", "--pool", POOL, "--type", "process"],
                worker_env,
                logs / "worker.log",
                tmp,
            )
        )
        deployer = clone(bare, tmp / "deployer")
        out = run([sys.executable, "-m", "tunepipe.cli", "deploy", "--pool", POOL], deployer, env=env).stdout
        assert "retrain/retrain" in out and "tunepipe-search/search" in out, out
        yield Stack(url, env, bare, runs, tmp, logs)
    finally:
        for proc in reversed(procs):
            stop(proc)
        kill_leftovers(runs)


def kill_leftovers(runs: Path) -> None:
    """A flow run's processes (flow, dvc, stage) still working in a clone under `runs`."""
    import psutil

    for proc in psutil.process_iter(["cwd"]):
        if (proc.info["cwd"] or "").startswith(str(runs)):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def clone(bare: Path, dest: Path) -> Path:
    """A full clone with its branch, as a user or data producer makes one."""
    run(["git", "clone", "-q", f"file://{bare}", str(dest)], dest.parent)
    return dest


@contextlib.contextmanager
def client(stack: Stack) -> Iterator[Any]:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(stack.url) as c:
        yield c


def start_run(stack: Stack, deployment: str = RETRAIN) -> str:
    """A run of the branch's head (`ref=main`): the tests push to main after deploying, and a
    deployment's own default is the commit it was deployed from."""
    params = ["--param", "ref=main"] if deployment == RETRAIN else []
    out = run(
        [sys.executable, "-m", "prefect", "deployment", "run", deployment, *params], stack.tmp, env=stack.env
    ).stdout
    found = UUID.search(out)
    assert found, out
    return found.group(1)


def wait_final(stack: Stack, flow_run_id: str, timeout: float = RUN_S) -> Any:
    deadline = time.monotonic() + timeout
    with client(stack) as c:
        while time.monotonic() < deadline:
            flow_run = c.read_flow_run(flow_run_id)
            if flow_run.state and flow_run.state.is_final():
                return flow_run
            time.sleep(1)
    raise AssertionError(
        f"flow run {flow_run_id} not finished after {timeout} s:\n{tail(stack.logs / 'worker.log')}"
    )


def completed(stack: Stack, flow_run_id: str) -> Any:
    flow_run = wait_final(stack, flow_run_id)
    assert flow_run.state.is_completed(), (
        f"{flow_run.state.name}: {flow_run.state.message}\n{tail(stack.logs / 'worker.log')}"
    )
    return flow_run


def pipeline_task_runs(stack: Stack, flow_run_id: str) -> dict[str, Any]:
    """The task runs of the retrain run's pipeline subflow, by name."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    with client(stack) as c:
        (child,) = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
        runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[child.id])))
    return {r.name: r for r in runs}


def logged(stack: Stack, flow_run_id: str, text: str, timeout: float = 20) -> None:
    """`text` in one of the run's log lines; the worker ships logs in batches, so wait a little."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    lines: list[str] = []
    with client(stack) as c:
        while time.monotonic() < deadline:
            logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            lines = [log.message for log in logs]
            if any(text in line for line in lines):
                return
            time.sleep(1)
    raise AssertionError(f"{text!r} not logged by flow run {flow_run_id}:\n" + "\n".join(lines[-30:]))


def model_tags(bare: Path) -> set[str]:
    return {t for t in remote_tags(bare) if t.startswith("model@")}


def push_new_raw_data(stack: Stack, name: str, rows: int, seed: int) -> None:
    """A data producer's round: pull the raw data, add rows, `dvc add` + `dvc push`, commit, push."""
    producer = clone(stack.bare, stack.tmp / name)
    dvc(producer, "pull", "-q", "data/raw.dvc")
    csv = producer / "data/raw/reviews.csv"
    table = pd.concat([pd.read_csv(csv, dtype=str), pd.DataFrame(make_reviews(rows, seed=seed))])
    table.to_csv(csv, index=False)
    dvc(producer, "add", "-q", "data/raw")
    dvc(producer, "push", "-q")
    run(["git", "commit", "-q", "-am", f"{rows} new reviews"], producer)
    run(["git", "push", "-q", "origin", "HEAD:main"], producer)


def test_the_schedule_is_paused_and_runs_are_one_at_a_time(stack: Stack) -> None:
    with client(stack) as c:
        retrain = c.read_deployment_by_name(RETRAIN)
        search = c.read_deployment_by_name("tunepipe-search/search")
    (schedule,) = retrain.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "0 3 * * 1",
        "UTC",
        False,
    )
    assert retrain.global_concurrency_limit.limit == 1  # the deployment's own limit
    assert retrain.concurrency_options.collision_strategy == "ENQUEUE"
    deployed = run(["git", "rev-parse", "HEAD"], stack.tmp / "deployer").stdout.strip()
    # Runs train the commit deployed (ref), register on the branch; the schedule runs the head.
    assert retrain.parameters == {"registration": True, "ref": deployed, "branch": "main", "promotion": None}
    assert schedule.parameters == {"ref": "main"}
    assert retrain.work_pool_name == search.work_pool_name == POOL
    clone_step = retrain.pull_steps[0]["prefect.deployments.steps.git_clone"]
    assert (clone_step["repository"], clone_step["commit_sha"]) == (f"file://{stack.bare}", deployed)
    assert search.schedules == [] and search.entrypoint == "flows/search.py:search"


def test_a_run_registers_a_version_that_another_clone_fetches_and_predicts_with(stack: Stack) -> None:
    flow_run = completed(stack, start_run(stack))
    assert model_tags(stack.bare) == {"model@v0.1.0"}
    logged(stack, flow_run.id, "registered model@v0.1.0")

    user = clone(stack.bare, stack.tmp / "user")
    run(["git", "fetch", "-q", "--tags"], user)
    tunepipe = [sys.executable, "-m", "tunepipe.cli"]
    run([*tunepipe, "fetch", "v0.1.0", "-o", str(stack.tmp / "model")], user, env=stack.env)
    pd.DataFrame({"text": ["wonderful brilliant film", "dull tedious plot"]}).to_csv(
        user / "new.csv", index=False
    )
    run(
        [*tunepipe, "predict", "--model", str(stack.tmp / "model"), "new.csv", "-o", "out.csv"],
        user,
        env=stack.env,
    )
    predicted = pd.read_csv(user / "out.csv")
    assert len(predicted) == 2 and set(predicted["predicted_label"]) <= {"fresh", "rotten"}


def test_new_data_and_two_runs_at_once_make_one_new_version(stack: Stack) -> None:
    """ENQUEUE: the second run waits for the first, then finds everything Cached (b)."""
    push_new_raw_data(stack, "producer-1", rows=60, seed=5)
    ids = [start_run(stack), start_run(stack)]
    runs = sorted((completed(stack, i) for i in ids), key=lambda r: r.start_time)
    first, second = runs
    assert first.end_time <= second.start_time, "the two runs overlapped"
    with client(stack) as c:
        waited = {s.name for s in c.read_flow_run_states(second.id)}
    assert "AwaitingConcurrencySlot" in waited, waited
    assert model_tags(stack.bare) == {"model@v0.1.0", "model@v0.1.1"}
    logged(stack, first.id, "registered model@v0.1.1")
    # Nothing changed for the second: every stage Cached (restored from the remotes), no new tag.
    states = {name: r.state.name for name, r in pipeline_task_runs(stack, second.id).items()}
    assert {states[s] for s in ("pretrained", "load", "validate", "tokenize", "train", "evaluate")} == {
        "Cached"
    }
    logged(stack, second.id, "nothing changed: every stage Cached, no new version (model@v0.1.1 is current)")


def test_a_run_killed_mid_train_is_retried_and_resumes(stack: Stack) -> None:
    import psutil

    editor = clone(stack.bare, stack.tmp / "editor")
    configure(editor)  # long enough to be killed half-way
    run(["git", "commit", "-q", "-am", "train longer"], editor)
    run(["git", "push", "-q", "origin", "HEAD:main"], editor)
    killed: list[int] = []

    def kill_training() -> None:
        deadline = time.monotonic() + RUN_S
        while time.monotonic() < deadline and not killed:
            for proc in psutil.process_iter(["cmdline", "cwd"]):
                cwd = proc.info["cwd"] or ""
                if "tasks.train" not in (proc.info["cmdline"] or []) or not cwd.startswith(str(stack.runs)):
                    continue
                if any(step >= KILL_AFTER_STEP for step in saved_steps(Path(cwd))):
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_training, daemon=True)
    killer.start()
    flow_run_id = start_run(stack)
    flow_run = wait_final(stack, flow_run_id)
    killer.join()
    assert killed, "training finished before it could be killed"
    assert flow_run.state.is_completed(), flow_run.state.message
    train = pipeline_task_runs(stack, flow_run_id)["train"]
    assert (train.run_count, train.state.name) == (2, "Completed")
    assert model_tags(stack.bare) == {"model@v0.1.0", "model@v0.1.1", "model@v0.1.2"}
    run(["git", "pull", "-q", "--tags", "origin", "main"], editor)
    record = json.loads((editor / "lineage/model@v0.1.2.json").read_text())
    assert int(record["training_run"]["resumed_from"].removeprefix("checkpoint-")) >= KILL_AFTER_STEP


def test_ingested_rows_start_a_run_of_their_commit_by_event(stack: Stack) -> None:
    """`tunepipe ingest` pushes the rows and emits tunepipe.data.ingested; the retrain deployment's
    trigger (prefect.yaml) starts a run of that commit, which registers a new version."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    producer = clone(stack.bare, stack.tmp / "ingester")
    rows = stack.tmp / "week-12.csv"
    pd.DataFrame(make_reviews(40, seed=12)).to_csv(rows, index=False)
    with client(stack) as c:
        earlier = {r.id: r for r in c.read_flow_runs()}
    for flow_run in earlier.values():  # a run an earlier test left going would register meanwhile
        if not (flow_run.state and flow_run.state.is_final()):
            wait_final(stack, str(flow_run.id))
    tags = model_tags(stack.bare)
    out = run([sys.executable, "-m", "tunepipe.cli", "ingest", str(rows)], producer, env=stack.env).stdout
    assert "added week-12.csv (40 rows) to data/raw/incoming" in out, out
    assert "event tunepipe.data.ingested sent" in out, out
    commit = run(["git", "rev-parse", "HEAD"], producer).stdout.strip()
    assert run(["git", "rev-parse", "main"], stack.bare).stdout.strip() == commit

    deadline, started = time.monotonic() + 60, []
    with client(stack) as c:
        while time.monotonic() < deadline and not started:
            runs = c.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain"]))
            )
            started = [r for r in runs if r.id not in earlier]
            time.sleep(1)
    assert started, f"no run triggered within 60 s:\n{tail(stack.logs / 'server.log')}"
    (triggered,) = started
    assert triggered.parameters["ref"] == commit
    completed(stack, str(triggered.id))
    (new,) = model_tags(stack.bare) - tags  # the next version (model@v0.1.3 after the tests above)
    logged(stack, str(triggered.id), f"registered {new}")
    # The registration commit is on main, on top of the ingested commit.
    main = run(["git", "rev-parse", "main"], stack.bare).stdout.strip()
    assert run(["git", "rev-parse", f"{new}^{{commit}}"], stack.bare).stdout.strip() == main
    assert run(["git", "merge-base", "--is-ancestor", commit, main], stack.bare, check=False).returncode == 0
