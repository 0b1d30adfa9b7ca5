"""Faults a team meets in production, with the real components: a `prefect server start`, a
process work pool and worker, `tunepipe deploy --notify` from a clone of a bare git remote, a
directory DVC remote, and a webhook receiver (an http.server thread recording POSTs).

1. The worker and its flow process are SIGKILLed mid-train: the project's automations mark the
   silent run Crashed (heartbeats), POST the crash, and run the retrain again, which resumes from
   the crashed run's checkpoint (TUNEPIPE_CHECKPOINTS) and completes; the dead clone is swept.
2. A broken params.yaml pushed to origin: a Failed run, a POST naming it, one ERROR line and no
   traceback in the run's logs.

Heartbeats every 30 s (Prefect's minimum), a run silent for 65 s counts as lost. Every wait is
bounded and every process started here is killed in teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import KILL_AFTER_STEP, configure, make_team, run
from tests.test_deployments import (
    POOL,
    RETRAIN,
    clone,
    free_port,
    kill_leftovers,
    server_env,
    start,
    stop,
    tail,
    wait_healthy,
)

pytestmark = pytest.mark.e2e

HEARTBEAT_S, CRASH_AFTER_S = 30, 65
RUN_S = 300
RECOVERY_S = 600  # the acceptance bound: a later run completes within 10 minutes of the kill
POST_S = 180  # an automation's POST on a loaded 2-core host (SQLite's locks slow the event services)


@dataclass
class Hooks:
    """POST bodies the webhook receiver got, as parsed JSON."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    server_log: Path | None = None
    api: str | None = None

    def wait_for(self, flow_run_id: str, state: str, timeout: float) -> dict[str, Any]:
        start = time.monotonic()
        while time.monotonic() < start + timeout:
            for post in list(self.posts):
                if post.get("flow_run_id") == flow_run_id and post.get("state") == state:
                    print(f"POST for {state} run {flow_run_id} after {time.monotonic() - start:.0f} s")
                    return post
            time.sleep(1)
        problems = ""
        if self.server_log and self.server_log.exists():  # what the server's services said
            lines = self.server_log.read_text(errors="replace").splitlines()
            problems = "\n".join(line for line in lines if "| ERROR" in line or "| WARNING" in line)
        raise AssertionError(
            f"no POST for flow run {flow_run_id} in state {state} in {timeout} s: {self.posts}\n"
            f"server warnings and errors:\n{problems}\nautomation events:\n{self.automation_events()}"
        )

    def automation_events(self) -> str:
        """What the server's automations did (triggered, actions run or failed), for a failure."""
        import httpx

        if not self.api:
            return ""
        body = {"filter": {"event": {"prefix": ["prefect.automation"]}}, "limit": 50}
        try:
            events = httpx.post(f"{self.api}/events/filter", json=body, timeout=10).json()["events"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            return f"(could not read: {exc})"
        return "\n".join(
            f"{e['occurred']} {e['event']} {e['resource'].get('prefect.resource.name', '')} "
            f"{json.dumps(e.get('payload', {}))[:300]}"
            for e in events
        )


@dataclass
class Faults:
    url: str
    env: dict[str, str]
    worker_env: dict[str, str]
    bare: Path
    runs: Path
    checkpoints: Path
    tmp: Path
    logs: Path
    hooks: Hooks
    procs: list[subprocess.Popen[bytes]]

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        prefect = [sys.executable, "-m", "prefect"]
        proc = start(
            [*prefect, "worker", "start", "--pool", POOL, "--type", "process"],
            self.worker_env,
            self.logs / f"{name}.log",
            self.tmp,
        )
        self.procs.append(proc)
        return proc


@contextlib.contextmanager
def webhook_receiver() -> Iterator[tuple[str, Hooks]]:
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with contextlib.suppress(ValueError):
                hooks.posts.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", hooks
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Iterator[Faults]:
    tmp = tmp_path_factory.mktemp("faults")
    bare, _ = make_team(tmp, tiny_bert)
    logs, runs, checkpoints = tmp / "logs", tmp / "runs", tmp / "checkpoints"
    for folder in (logs, runs, checkpoints):
        folder.mkdir()
    port = str(free_port())
    url = f"http://127.0.0.1:{port}/api"
    env = server_env(tmp, url)
    # A killed run's clone is swept by the next run at once (no live process in it).
    worker_env = {**env, "TMPDIR": str(runs), "TUNEPIPE_STALE_CLONE_HOURS": "0"}
    prefect = [sys.executable, "-m", "prefect"]
    procs: list[subprocess.Popen[bytes]] = []
    with webhook_receiver() as (hook_url, hooks):
        try:
            server_log = logs / "server.log"
            hooks.server_log, hooks.api = server_log, url
            procs.append(
                start(
                    [*prefect, "server", "start", "--host", "127.0.0.1", "--port", port], env, server_log, tmp
                )
            )
            wait_healthy(url, procs[-1], server_log)
            run([*prefect, "work-pool", "create", POOL, "--type", "process"], tmp, env=env)
            stack = Faults(url, env, worker_env, bare, runs, checkpoints, tmp, logs, hooks, procs)
            stack.start_worker("worker")
            deployer = clone(bare, tmp / "deployer")
            tunepipe = [sys.executable, "-m", "tunepipe.cli", "deploy", "--pool", POOL, "--notify", hook_url]
            tunepipe += ["--heartbeat", str(HEARTBEAT_S), "--crash-after", str(CRASH_AFTER_S)]
            tunepipe += ["--checkpoints", str(checkpoints)]
            run(tunepipe, deployer, env=env)
            out = run(tunepipe, deployer, env=env).stdout  # a re-deploy updates, never duplicates
            assert "automation:" in out, out
            yield stack
        finally:
            for proc in reversed(procs):
                stop(proc)
            kill_leftovers(runs)


@contextlib.contextmanager
def client(stack: Faults) -> Iterator[Any]:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(stack.url) as c:
        yield c


def start_run(stack: Faults, **parameters: Any) -> str:
    """A run of the retrain deployment; `ref="main"` trains the branch head, as the schedule does
    (by default a run trains the deployed commit)."""
    with client(stack) as c:
        deployment = c.read_deployment_by_name(RETRAIN)
        return str(c.create_flow_run_from_deployment(deployment.id, parameters=parameters).id)


def wait_state(stack: Faults, flow_run_id: str, names: set[str], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    with client(stack) as c:
        while time.monotonic() < deadline:
            flow_run = c.read_flow_run(flow_run_id)
            if flow_run.state and flow_run.state.name in names:
                return flow_run
            time.sleep(1)
    raise AssertionError(
        f"flow run {flow_run_id} not in {names} after {timeout} s:\n{tail(stack.logs / 'worker.log')}"
    )


def saved_steps(checkpoints: Path) -> list[int]:
    """Complete checkpoints (trainer_state.json comes last) under TUNEPIPE_CHECKPOINTS."""
    states = checkpoints.glob("*/*/checkpoint-*/trainer_state.json")
    return sorted(int(p.parent.name.removeprefix("checkpoint-")) for p in states)


def push(stack: Faults, name: str, change: Any, message: str) -> Path:
    editor = clone(stack.bare, stack.tmp / name)
    change(editor)
    run(["git", "commit", "-q", "-am", message], editor)
    run(["git", "push", "-q", "origin", "HEAD:main"], editor)
    return editor


def test_deploy_makes_each_automation_once(faults: Faults) -> None:
    from prefect.events.schemas.automations import Posture

    with client(faults) as c:
        automations = c.read_automations()
        retrain = c.read_deployment_by_name(RETRAIN)
    names = sorted(a.name for a in automations)
    assert names == [
        "tunepipe: mark runs Crashed when their heartbeats stop",
        "tunepipe: notify on Failed or Crashed runs",
        "tunepipe: retrain on ingested data",  # the deployment's own trigger, prefect.yaml
        "tunepipe: run a crashed retrain again once",
    ]
    zombies = next(a for a in automations if "heartbeats" in a.name)
    assert zombies.trigger.posture == Posture.Proactive
    assert zombies.trigger.within.total_seconds() == CRASH_AFTER_S
    assert retrain.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_S)
    assert retrain.job_variables["env"]["TUNEPIPE_CHECKPOINTS"] == str(faults.checkpoints)


def test_a_lost_worker_is_crashed_notified_and_run_again_from_its_checkpoint(faults: Faults) -> None:
    editor = push(faults, "editor", configure, "train longer")  # long enough to be killed half-way
    trained = run(["git", "rev-parse", "HEAD"], editor).stdout.strip()
    crashed_id = start_run(faults, ref="main")
    deadline = time.monotonic() + RUN_S
    while time.monotonic() < deadline and max(saved_steps(faults.checkpoints), default=0) < KILL_AFTER_STEP:
        time.sleep(0.2)
    assert max(saved_steps(faults.checkpoints), default=0) >= KILL_AFTER_STEP, "no checkpoint to resume from"
    # The host is lost: the worker, its flow process and everything under them, at once.
    worker = faults.procs.pop()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    kill_leftovers(faults.runs)
    killed_at = time.monotonic()
    (dead_clone,) = [p for p in faults.runs.iterdir() if p.name.endswith("prefect")]
    faults.start_worker("worker-2")

    crashed = wait_state(faults, crashed_id, {"Crashed"}, CRASH_AFTER_S + 120)
    assert "no heartbeat" in crashed.state.message
    post = faults.hooks.wait_for(crashed_id, "Crashed", POST_S)
    assert post["deployment"] == "retrain" and post["flow_run"] == crashed.name
    with client(faults) as c:
        deadline = killed_at + RECOVERY_S
        rerun = None
        while rerun is None and time.monotonic() < deadline:
            rerun = next(
                (r for r in c.read_flow_runs() if r.parameters.get("after_crash") == crashed_id), None
            )
            time.sleep(1)
    assert rerun is not None, f"no re-run of {crashed_id}"
    done = wait_state(
        faults, str(rerun.id), {"Completed", "Failed", "Crashed"}, max(1, deadline - time.monotonic())
    )
    assert done.state.name == "Completed", f"{done.state.message}\n{tail(faults.logs / 'worker-2.log')}"
    assert time.monotonic() - killed_at < RECOVERY_S
    assert not dead_clone.exists(), "the killed run's clone was not swept"
    user = clone(faults.bare, faults.tmp / "user")
    (record,) = user.glob("lineage/model@*.json")
    lineage = json.loads(record.read_text())
    assert lineage["code_commit"] == trained, "the re-run trained another commit than the crashed run"
    resumed = lineage["training_run"]["resumed_from"]
    assert resumed and int(resumed.removeprefix("checkpoint-")) >= KILL_AFTER_STEP


def test_a_broken_params_yaml_fails_the_run_with_one_line_and_a_post(faults: Faults) -> None:
    def break_params(editor: Path) -> None:
        path = editor / "params.yaml"
        path.write_text(path.read_text().replace("train:", "train:\n  no_such_key: 1", 1))

    push(faults, "breaker", break_params, "a typo")
    flow_run_id = start_run(faults, ref="main")
    failed = wait_state(faults, flow_run_id, {"Failed", "Crashed", "Completed"}, RUN_S)
    assert failed.state.name == "Failed", failed.state.message
    assert "no_such_key" in failed.state.message
    post = faults.hooks.wait_for(flow_run_id, "Failed", POST_S)
    assert "no_such_key" in post["message"] and post["deployment"] == "retrain"
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    time.sleep(5)  # the worker ships logs in batches
    with client(faults) as c:
        logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[failed.id])))
    errors = [log.message for log in logs if log.level >= 40]
    assert any(m.startswith("run failed: params.yaml: train:") and "no_such_key" in m for m in errors), errors
    assert all("Traceback" not in m for m in errors), errors
    assert sum(len(m.splitlines()) for m in errors) <= 3, errors
    assert all(str(faults.runs) not in log.message for log in logs), "a temp clone's path leaked"
