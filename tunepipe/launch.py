"""Data-parallel training through torchrun: the train stage relaunches itself, so dvc.yaml keeps one
command and `dvc repro` and the flow run it alike.

Hugging Face's Trainer already runs DDP when started by torchrun (it reads LOCAL_RANK, RANK and
WORLD_SIZE); this module only decides the world, builds the torchrun command and turns its failure
into one clear error. Child processes see those variables and train instead of relaunching.
Stage start-up housekeeping (stale outputs, checkpoint clean-up) is done once, by the launching
process: the children get LAUNCHED and the checkpoint to resume from in RESUME.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Any

from tunepipe.errors import PipelineError
from tunepipe.params import TrainParams
from tunepipe.stage import LAUNCHED

# The checkpoint the launching process chose to resume from ("" for a fresh start).
RESUME = "TUNEPIPE_RESUME"


def under_launcher() -> bool:
    """Started by torchrun or accelerate launch (one of several ranks, or a world of one)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    """This process's global rank; 0 outside a launcher."""
    return int(os.environ.get("RANK", "0")) if under_launcher() else 0


def is_main() -> bool:
    """The one process that writes the model, reports, curves and markers."""
    return rank() == 0


def world_size() -> int:
    """Processes in this training run: WORLD_SIZE under a launcher, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) if under_launcher() else 1


def processes_per_node(t: TrainParams) -> int:
    """train.processes as a number: auto is every visible GPU (train.device cpu: 1), at least 1."""
    if t.device == "cpu":
        return 1 if t.processes == "auto" else int(t.processes)
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if t.processes == "auto":
        return max(1, gpus)
    if gpus and int(t.processes) > gpus:  # one process per GPU: rank N would ask for cuda:N
        raise PipelineError(
            f"params.yaml: train.processes is {t.processes} but {gpus} GPU(s) are visible; "
            "use at most that many, or auto"
        )
    return int(t.processes)


def planned_world_size(t: TrainParams) -> int:
    return processes_per_node(t) * t.nodes


def torchrun_command(t: TrainParams, module: str, env: dict[str, str] | None = None) -> list[str]:
    """`python -m torch.distributed.run ... -m <module>`: no restarts (a failed rank fails the stage;
    the next run resumes from the last checkpoint), rendezvous as params.yaml says."""
    env = os.environ if env is None else env
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={processes_per_node(t)}",
        f"--nnodes={t.nodes}",
        "--max-restarts=0",
    ]
    if t.rdzv_endpoint:
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={t.rdzv_endpoint}", f"--rdzv-id={run_id(env)}"]
    elif t.master_addr:
        node_rank = env.get("NODE_RANK", "0" if t.nodes == 1 else "")
        if not node_rank.isdigit() or int(node_rank) >= t.nodes:
            raise PipelineError(
                f"params.yaml: train.nodes is {t.nodes} with train.master_addr: set NODE_RANK "
                f"(0 to {t.nodes - 1}) in each node's environment, got {node_rank!r}"
            )
        cmd += [f"--master-addr={t.master_addr}", f"--master-port={t.master_port}"]
        cmd += [f"--node-rank={node_rank}"]
    else:
        cmd += ["--standalone"]  # one node: a free local port, no address to configure
    return [*cmd, "-m", module]


def run_id(env: Any) -> str:
    """The rendezvous id every node of one run shares (TUNEPIPE_RUN_ID, else a fixed name)."""
    return env.get("TUNEPIPE_RUN_ID", "tunepipe-train")


def relaunch(t: TrainParams, module: str, resume: str | None) -> bool:
    """Run `module` under torchrun when train.processes x train.nodes is above 1; True when it did.

    Returns False (train in this process) inside a launcher or for a world of one. A failed rank
    makes torchrun stop the others and exit non-zero: that becomes a PipelineError, and the next
    run resumes from the last complete checkpoint.
    """
    if under_launcher() or planned_world_size(t) == 1:
        return False
    cmd = torchrun_command(t, module)
    env = {**os.environ, LAUNCHED: "1", RESUME: resume or ""}
    per_node = processes_per_node(t)
    print(f"train: {planned_world_size(t)} processes ({per_node} x {t.nodes} nodes) under torchrun")
    sys.stdout.flush()
    code = run_tied(cmd, env)
    if code != 0:
        raise PipelineError(
            f"train: a training process failed under torchrun (exit code {code}); its error is above. "
            "Re-run the stage to resume from the last checkpoint"
        )
    return True


def run_tied(cmd: list[str], env: dict[str, str]) -> int:
    """Run `cmd` and return its exit code, never leaving it behind: a SIGTERM to this process is
    passed on (torchrun then stops its workers), and on Linux the child gets SIGTERM when this
    process dies, even by SIGKILL, so no orphaned training goes on writing checkpoints."""
    tie = _die_with_parent if sys.platform == "linux" else None
    proc = subprocess.Popen(cmd, env=env, preexec_fn=tie)

    def forward(signum: int, frame: Any) -> None:
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:  # interrupted (Ctrl-C): stop it before leaving
            proc.terminate()
            proc.wait()


def _die_with_parent() -> None:
    """In the child before exec: prctl(PR_SET_PDEATHSIG, SIGTERM)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
