"""LoRA adapters (train.adapter: lora) and gradient checkpointing on the tiny BERT: the merged
folder loads and predicts without peft as the unmerged model does, a run killed with SIGKILL
resumes to the same end, and what a model cannot do is refused before training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import (
    EPOCHS,
    KILL_AFTER_STEP,
    configure,
    copy_project,
    make_project,
    run_stages_in_process,
    saved_steps,
    set_params,
)

pytestmark = pytest.mark.e2e

LORA = {
    "train.adapter": "lora",
    "train.lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    "train.learning_rate": 1e-2,
}
DATA_STAGES = ("pretrained", "load", "validate", "tokenize")


def lora_project(root: Path, tiny_bert: Path) -> Path:
    project = configure(make_project(root, tiny_bert))
    set_params(project, **LORA)
    return project


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A LoRA project after one uninterrupted run of every stage."""
    root = lora_project(tmp_path_factory.mktemp("lora") / "p", tiny_bert)
    with pytest.MonkeyPatch.context() as mp:
        run_stages_in_process(root, mp)
    return root


def test_lora_saves_a_merged_model_and_the_adapter_alone(trained: Path) -> None:
    model, adapter = trained / "models/model", trained / "models/adapter"
    assert sorted(f.name for f in model.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    ]
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {f.name for f in adapter.iterdir()}
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    params = yaml.safe_load((trained / "params.yaml").read_text())
    assert config["base_model_name_or_path"] == params["model"]["name"]  # no path of this machine
    report = json.loads((trained / "reports/train.json").read_text())
    assert report["adapter"] == {
        "kind": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"],
    }
    assert 0 < report["parameters"]["trainable"] < report["parameters"]["total"] / 10
    size = (model / "model.safetensors").stat().st_size
    assert (adapter / "adapter_model.safetensors").stat().st_size < size / 5
    card = (model / "README.md").read_text()
    assert "LoRA" in card and "r 4" in card


LOGITS_WITHOUT_PEFT = """
import json, sys
sys.modules["peft"] = None  # any import of peft on the loading path fails
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
tok = AutoTokenizer.from_pretrained(sys.argv[1])
with torch.no_grad():
    logits = model(**tok(json.loads(sys.argv[2]), padding=True, return_tensors="pt")).logits
print(json.dumps({"logits": logits.tolist(), "peft": sys.modules.get("peft") is not None}))
"""


def test_merged_model_loads_without_peft_and_predicts_as_the_unmerged_one(
    trained: Path, tiny_bert: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["a wonderful gripping film", "dull and tedious", "the plot of the second act is messy"]
    out = subprocess.run(
        [sys.executable, "-c", LOGITS_WITHOUT_PEFT, str(trained / "models/model"), json.dumps(texts)],
        capture_output=True, text=True, check=True,
    )
    merged = json.loads(out.stdout.strip().splitlines()[-1])
    assert merged["peft"] is False

    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    unmerged = PeftModel.from_pretrained(base, trained / "models/adapter").eval()
    tok = AutoTokenizer.from_pretrained(trained / "models/model")
    with torch.no_grad():
        expected = unmerged(**tok(texts, padding=True, return_tensors="pt")).logits
    got = torch.tensor(merged["logits"])
    assert torch.allclose(got, expected, atol=1e-4), (got, expected)
    # the adapters trained: the merged weights differ from the base's
    from safetensors.torch import load_file

    lora = load_file(trained / "models/adapter/adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in lora.items())


def test_sigkilled_lora_run_resumes_to_the_same_end(
    trained: Path, tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    project = lora_project(tmp_path / "killed", tiny_bert)
    monkeypatch.chdir(project)
    for name in DATA_STAGES:
        importlib.import_module(f"tasks.{name}").main()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks.train"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not any(step >= KILL_AFTER_STEP for step in saved_steps(project)):
        assert proc.poll() is None, "train finished before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (project / "models/model").exists()
    assert max(saved_steps(project)) < 9 * EPOCHS

    for name in ("train", "evaluate"):
        importlib.import_module(f"tasks.{name}").main()
    run = json.loads((project / "reports/train_run.json").read_text())
    assert int(run["resumed_from"].removeprefix("checkpoint-")) >= KILL_AFTER_STEP
    for path in ("reports/train.json", "reports/metrics.json"):
        assert json.loads((project / path).read_text()) == json.loads((trained / path).read_text()), path
    for path in ("models/model/model.safetensors", "models/adapter/adapter_model.safetensors"):
        assert (project / path).read_bytes() == (trained / path).read_bytes(), path


def test_gradient_checkpointing_trains_lora_on_tiny_bert(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from tunepipe import params
    from tunepipe.training import train

    project = copy_project(trained, tmp_path / "gc")
    set_params(project, **{"train.gradient_checkpointing": True, "train.epochs": 1})
    monkeypatch.chdir(project)
    report = train(params.read("params.yaml"))
    assert report["gradient_checkpointing"] is True and report["global_step"] == 9
    # the adapters got gradients through the recomputed layers (lora_B starts at zero)
    lora = load_file(project / "models/adapter/adapter_model.safetensors")
    assert all(v.abs().max() > 0 for k, v in lora.items() if k.endswith("lora_B.weight"))
