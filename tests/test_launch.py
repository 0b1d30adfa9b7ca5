"""Training beyond one process, without starting any: the torchrun command each params setting
gives, when the stage relaunches itself, the world size in the checkpoint fingerprint, the global
batch, and inference in another precision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import build_classifier, fake_tokenized
from tunepipe import checkpoints, launch, params, training
from tunepipe.errors import PipelineError
from tunepipe.inference import load_model, logits_for

pytestmark = pytest.mark.unit

DISTRIBUTED_ENV = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", launch.LAUNCHED)


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DISTRIBUTED_ENV:
        monkeypatch.delenv(name, raising=False)


def train_params(**values: object) -> params.TrainParams:
    return params.parse({"train": values}).train


def test_one_node_runs_standalone_without_restarts() -> None:
    cmd = launch.torchrun_command(train_params(processes=2), "tasks.train")
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nproc-per-node=2", "--nnodes=1", "--max-restarts=0", "--standalone"} <= set(cmd)
    assert cmd[-2:] == ["-m", "tasks.train"]


def test_nodes_meet_at_a_c10d_endpoint_or_a_static_master() -> None:
    c10d = launch.torchrun_command(train_params(processes=4, nodes=2, rdzv_endpoint="node0:29400"), "m")
    assert {"--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29400"} <= set(c10d)
    assert "--standalone" not in c10d
    static = train_params(nodes=2, master_addr="node0", master_port=29500)
    cmd = launch.torchrun_command(static, "m", env={"NODE_RANK": "1"})
    assert {"--master-addr=node0", "--master-port=29500", "--node-rank=1"} <= set(cmd)
    with pytest.raises(PipelineError, match=r"set NODE_RANK \(0 to 1\) in each node's environment"):
        launch.torchrun_command(static, "m", env={})
    with pytest.raises(PipelineError, match="got '2'"):
        launch.torchrun_command(static, "m", env={"NODE_RANK": "2"})


def test_auto_is_one_process_on_cpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path")
    assert launch.processes_per_node(train_params(processes="auto")) == 1
    assert launch.processes_per_node(train_params(processes="auto", device="cpu")) == 1
    assert launch.planned_world_size(train_params(processes=3)) == 3


def test_a_world_of_one_or_a_launched_child_trains_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("relaunched")

    monkeypatch.setattr(launch, "run_tied", no_subprocess)
    assert launch.relaunch(train_params(), "tasks.train", None) is False
    for name, value in {"LOCAL_RANK": "1", "RANK": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    assert launch.relaunch(train_params(processes=2), "tasks.train", None) is False
    assert (launch.world_size(), launch.rank(), launch.is_main()) == (2, 1, False)


def test_a_failed_torchrun_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_run(cmd: list[str], env: dict[str, str]) -> int:
        seen.update(cmd=cmd, env=env)
        return 1

    monkeypatch.setattr(launch, "run_tied", fake_run)
    with pytest.raises(PipelineError, match=r"failed under torchrun \(exit code 1\).*resume"):
        launch.relaunch(train_params(processes=2), "tasks.train", "models/checkpoints/x/checkpoint-9")
    env = seen["env"]
    assert isinstance(env, dict)
    assert env[launch.LAUNCHED] == "1" and env[launch.RESUME] == "models/checkpoints/x/checkpoint-9"


def test_fingerprint_holds_the_world_size_not_the_rendezvous(tmp_path: Path) -> None:
    data, pretrained = fake_tokenized(tmp_path)

    def fingerprint(world: int = 1, **train: object) -> str:
        return checkpoints.fingerprint(params.parse({"train": train}), data, pretrained, world)

    one = fingerprint()
    assert fingerprint(2) != one
    assert fingerprint(processes=2) == one  # what counts is the world it makes, passed in
    assert fingerprint(master_addr="h", master_port=1234, ddp_timeout=60) == one
    assert fingerprint(gradient_accumulation_steps=2) != one


def test_checkpoints_of_another_world_size_are_named_and_not_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, pretrained = fake_tokenized(tmp_path)
    p, root = params.parse({}), tmp_path / "checkpoints"
    run_dir, resume = checkpoints.prepare_run(p, data, root, 2, pretrained)
    assert resume is None
    assert json.loads((run_dir / checkpoints.RUN_INFO).read_text())["world_size"] == 2
    assert checkpoints.prepare_run(p, data, root, 2, pretrained)[0] == run_dir  # same world: kept
    (run_dir / "checkpoint-3").mkdir()  # an interrupted run at world size 2
    capsys.readouterr()

    other, resume = checkpoints.prepare_run(p, data, root, 1, pretrained)
    err = capsys.readouterr().err
    assert other != run_dir and resume is None and not run_dir.exists()
    assert "at world size 2" in err and "this run has world size 1 and cannot resume" in err


def test_global_batch_and_steps_count_every_process_and_accumulation(tmp_path: Path) -> None:
    t = {"batch_size": 8, "gradient_accumulation_steps": 2, "evaluations_per_epoch": 1}
    p = params.parse({"train": t})
    assert training.global_batch_size(p.train, 2) == 32
    cpu = {"device": "cpu", "precision": "fp32"}
    args = training.training_arguments(p, tmp_path, 320, cpu)
    assert args.gradient_accumulation_steps == 2 and args.per_device_train_batch_size == 8
    assert args.eval_steps == 20  # 320 examples / 16 per optimizer step
    # with two processes (built in the ranks, where the process group exists): 32 per step
    assert training.global_batch_size(p.train, 2) == 32
    assert training.ddp_backend(2, cpu) == "gloo" and training.ddp_backend(1, cpu) is None
    assert training.ddp_backend(2, {"device": "cuda", "precision": "bf16"}) is None


def test_autocast_inference_matches_fp32_within_tolerance(tmp_path: Path, tiny_bert: Path) -> None:
    """The bf16 path evaluate and predict take on a GPU, run here on the CPU: same labels, logits
    within bf16 rounding."""
    from datasets import Dataset

    saved = build_classifier(tiny_bert, tmp_path / "clf", ["rotten", "fresh"])
    fp32, tok = load_model(saved, device="cpu", precision="fp32")
    bf16, _ = load_model(saved, device="cpu", precision="bf16")
    assert (fp32.inference_precision, bf16.inference_precision) == ("fp32", "bf16")
    texts = ["a dull and tedious film", "a wonderful, moving story", "the plot"] * 4
    encoded = Dataset.from_dict(dict(tok(texts, truncation=True, max_length=32)))
    exact = logits_for(fp32, tok, encoded, batch_size=5)
    rounded = logits_for(bf16, tok, encoded, batch_size=5)
    assert rounded.dtype == np.float32
    np.testing.assert_allclose(rounded, exact, atol=0.05)
    close = np.abs(exact[:, 0] - exact[:, 1]) > 0.1  # a near tie may flip in bf16
    assert (rounded.argmax(-1) == exact.argmax(-1))[close].all()


def test_more_processes_than_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert launch.processes_per_node(train_params(processes="auto")) == 2
    assert launch.processes_per_node(train_params(processes=2)) == 2
    assert launch.processes_per_node(train_params(processes=4, device="cpu")) == 4
    with pytest.raises(PipelineError, match="train.processes is 3 but 2 GPU"):
        launch.processes_per_node(train_params(processes=3))
