"""Data-parallel training on CPU: two gloo processes under torchrun, started by the train stage
itself through `dvc repro`, against one process with the same global batch; a killed rank fails
the stage within a bounded time and the next run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import (
    EPOCHS,
    dvc,
    make_project,
    make_reviews,
    run_stages_in_process,
    saved_steps,
    set_params,
)

pytestmark = pytest.mark.e2e

# Same global batch (16), different sharding and per-rank dropout: the runs follow close but not
# identical paths. Test metrics of the tiny model on 24 test rows may differ by this much.
TOLERANCE = 0.1
TWO = {"train.processes": 2, "train.batch_size": 8}


def test_two_gloo_processes_through_dvc_repro_match_one_process(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = make_reviews(120)
    # every epoch runs (no early stop) in both; the gate is not what is compared here
    settings = {
        "train.epochs": 10,
        "train.early_stopping_patience": 10,
        "evaluate.thresholds": {"accuracy": 0.0},
    }
    single = make_project(tmp_path / "single", tiny_bert, rows)
    set_params(single, **settings)
    run_stages_in_process(single, monkeypatch)
    monkeypatch.chdir(tmp_path)

    ddp = make_project(tmp_path / "ddp", tiny_bert, rows)
    set_params(ddp, **settings, **TWO)
    out = dvc(ddp, "repro")
    assert "train: 2 processes (2 x 1 nodes) under torchrun" in out.stdout
    # one model, written once: no leftovers of a second writer beside it
    assert sorted(p.name for p in (ddp / "models").iterdir()) == [
        ".gitignore",
        "adapter",
        "checkpoints",
        "model",
    ]
    assert (ddp / "models/model/model.safetensors").is_file()
    assert not list((ddp / "models/checkpoints").glob("*/"))  # finished: run folder removed
    report = json.loads((ddp / "reports/train.json").read_text())
    batch = {"per_device": 8, "processes": 2, "gradient_accumulation_steps": 1, "global": 16}
    assert report["batch"] == batch
    expected = json.loads((single / "reports/train.json").read_text())
    assert expected["batch"]["global"] == 16 and expected["batch"]["processes"] == 1
    assert report["global_step"] == expected["global_step"]  # same steps per epoch
    loss_rows = (ddp / "reports/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert loss_rows == sorted(set(loss_rows), key=loss_rows.index)  # one writer: no repeated rows

    got = json.loads((ddp / "reports/metrics.json").read_text())
    want = json.loads((single / "reports/metrics.json").read_text())
    assert got["examples"] == want["examples"]
    print("metrics: 1 process", want, "2 processes", got)
    for name in ("accuracy", "f1_macro"):
        assert abs(got[name] - want[name]) <= TOLERANCE, (name, got[name], want[name])
    assert dvc(ddp, "status").stdout.count("changed") <= 1  # only `pretrained: always changed`


def _rank_process(root: Path, rank: str) -> psutil.Process | None:
    """The training process of `rank` started under `root` (its environment says RANK)."""
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if proc.info["cwd"] == str(root) and "tasks.train" in (proc.info["cmdline"] or []):
                env = proc.environ()
                if env.get("RANK") == rank and env.get("LOCAL_RANK") is not None:
                    return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def test_a_killed_rank_fails_the_stage_promptly_and_the_next_repro_resumes(
    tmp_path: Path, tiny_bert: Path
) -> None:
    project = make_project(tmp_path / "project", tiny_bert)
    set_params(project, **{"train.epochs": EPOCHS, "train.early_stopping_patience": EPOCHS}, **TWO)
    dvc(project, "repro", "tokenize")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(step >= 18 for step in saved_steps(project)):
            assert proc.poll() is None, "dvc repro finished before a rank could be killed"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.05)
        victim = _rank_process(project, "1")
        assert victim is not None, "no rank 1 process found"
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        output, _ = proc.communicate(timeout=120)  # torchrun stops rank 0; nothing waits on a timeout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    print(f"stage failed {time.monotonic() - killed_at:.1f} s after the kill")
    assert time.monotonic() - killed_at < 120
    assert "a training process failed under torchrun" in output
    assert not (project / "models/model").exists()
    assert not [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(project)]
    kept = saved_steps(project)
    assert kept and max(kept) < 9 * EPOCHS

    second = dvc(project, "repro")
    assert "train: resuming from" in second.stdout
    run = json.loads((project / "reports/train_run.json").read_text())
    assert int(run["resumed_from"].removeprefix("checkpoint-")) >= 18
    report = json.loads((project / "reports/train.json").read_text())
    assert report["global_step"] == 9 * EPOCHS and report["batch"]["processes"] == 2
    assert not list(project.glob("models/checkpoints/*/checkpoint-*"))


def test_a_killed_launcher_takes_torchrun_with_it(tmp_path: Path) -> None:
    """The stage's own process killed (SIGKILL, no handler runs): what it started gets SIGTERM
    instead of training on as an orphan beside the next run."""
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    launcher = (
        "import os, sys\nfrom tunepipe.launch import run_tied\n"
        f"run_tied([sys.executable, '-c', {child!r}], dict(os.environ))"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert parent.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child outlived its launcher"
        time.sleep(0.05)


EVAL_ORDER = """
import json, os, random, sys
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
from transformers import Trainer, TrainingArguments
from tunepipe.training import by_length, in_order_evaluation

model_dir, out = sys.argv[1], sys.argv[2]
random.seed(0)
ids = [[2] + [7] * random.randint(1, 40) + [3] for _ in range(48)]
# each row's label is its index: the gathered label_ids show the order predictions come back in
rows = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids],
                          "labels": [float(i) for i in range(len(ids))]})
rows = by_length(rows)
args = TrainingArguments(output_dir=out, per_device_eval_batch_size=4, use_cpu=True, ddp_backend="gloo",
                         train_sampling_strategy="group_by_length", report_to=[], seed=1)
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
trainer = in_order_evaluation(Trainer)(model=model, args=args, eval_dataset=rows,
                                       data_collator=DataCollatorWithPadding(tok), processing_class=tok)
lengths = [batch["input_ids"].shape[1] for batch in trainer.get_eval_dataloader()]
gathered = trainer.predict(rows).label_ids.tolist()
with open(os.path.join(out, os.environ["RANK"] + ".json"), "w") as f:
    json.dump({"lengths": lengths, "gathered": gathered, "expected": list(rows["labels"])}, f)
"""


def test_each_rank_evaluates_sorted_batches_and_the_gathered_rows_keep_their_order(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """Under group_by_length Trainer would batch evaluation rows in random length groups on every
    rank; sharded in order instead, each process pads its batches to about their own length."""
    script = tmp_path / "eval_order.py"
    script.write_text(EVAL_ORDER)
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script), str(tiny_bert), str(tmp_path)],
        cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in ("0", "1")]
    for rank in ranks:
        assert len(rank["lengths"]) >= 6
        assert rank["lengths"] == sorted(rank["lengths"]), rank["lengths"]
        assert rank["gathered"] == rank["expected"]  # every row once, in the order given
    assert ranks[0]["lengths"] != ranks[1]["lengths"]  # sharded, not each rank doing every row
