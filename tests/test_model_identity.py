"""data/pretrained.json: the base model by content (tokenizer files, then config, weights and
code), never by path; a hub model by id and revision."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO
from tunepipe import model_identity
from tunepipe.errors import PipelineError
from tunepipe.params import ModelParams

pytestmark = pytest.mark.unit

SHA = "0123456789abcdef0123456789abcdef01234567"


def fake_model(folder: Path) -> Path:
    files = {
        "config.json": '{"model_type": "bert"}',
        "model.safetensors": "weights",
        "tokenizer.json": '{"model": {}}',
        "tokenizer_config.json": "{}",
        "special_tokens_map.json": "{}",
        "vocab.txt": "[PAD]\n[UNK]\n",
        "README.md": "not read by from_pretrained",
        "1_Pooling/config.json": "sentence-transformers' own",
    }
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def describe(folder: Path) -> dict:
    return model_identity.describe(ModelParams(name=str(folder)))


def test_local_model_is_described_by_file_content_not_path(tmp_path: Path) -> None:
    one = describe(fake_model(tmp_path / "one"))
    assert one == {
        "source": "files",
        "tokenizer": {
            name: model_identity.sha256(tmp_path / "one" / name)
            for name in ("special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")
        },
        "model": {
            "config.json": model_identity.sha256(tmp_path / "one/config.json"),
            "model.safetensors": model_identity.sha256(tmp_path / "one/model.safetensors"),
        },
        "trust_remote_code": False,
    }
    two = Path(shutil.copytree(tmp_path / "one", tmp_path / "elsewhere" / "two"))
    assert describe(two) == one
    assert str(tmp_path) not in json.dumps(one)

    (two / "README.md").write_text("edited")  # not a file the model or tokenizer loads
    assert describe(two) == one
    (two / "vocab.txt").write_text("[PAD]\n[UNK]\nnew\n")
    changed = describe(two)
    assert changed["tokenizer"]["vocab.txt"] != one["tokenizer"]["vocab.txt"]
    assert changed["model"] == one["model"]
    (two / "model.safetensors").write_text("other weights")
    assert describe(two)["model"]["model.safetensors"] != one["model"]["model.safetensors"]
    remote = model_identity.describe(ModelParams(name=str(two), trust_remote_code=True))
    assert remote["trust_remote_code"] is True


def test_sentencepiece_and_remote_code_files_count(tmp_path: Path) -> None:
    folder = fake_model(tmp_path / "m")
    for name in (
        "spiece.model",
        "tokenization_custom.py",
        "modeling_custom.py",
        "model.safetensors.index.json",
    ):
        (folder / name).write_text(name)
    described = describe(folder)
    assert {"spiece.model", "tokenization_custom.py"} <= set(described["tokenizer"])
    assert {"modeling_custom.py", "model.safetensors.index.json"} <= set(described["model"])


def test_a_folder_without_tokenizer_or_weights_is_refused(tmp_path: Path) -> None:
    folder = fake_model(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(PipelineError, match=r"no weight files \(\*\.safetensors"):
        describe(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (folder / name).unlink()
    with pytest.raises(PipelineError, match=r"no tokenizer files \(tokenizer\.json, vocab\.txt"):
        describe(folder)


def test_hub_model_is_its_id_and_revision_without_network() -> None:
    floating = model_identity.describe(ModelParams(name="org/some-model"))
    assert floating == {
        "source": "hub",
        "hub": {"id": "org/some-model", "revision": None},
        "trust_remote_code": False,
    }
    assert not model_identity.pinned(floating)
    assert not model_identity.pinned(model_identity.describe(ModelParams(name="bert-base", revision="v1")))
    pinned = model_identity.describe(ModelParams(name="org/some-model", revision=SHA))
    assert pinned["hub"]["revision"] == SHA and model_identity.pinned(pinned)


def test_stage_writes_the_description_without_loading_torch_or_transformers(tmp_path: Path) -> None:
    folder = fake_model(tmp_path / "model")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"model": {"name": str(folder)}}))
    script = (
        "import runpy, sys; runpy.run_module('tasks.pretrained', run_name='__main__'); "
        "print([m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": str(Path(sys.executable).parent)}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"
    assert json.loads((tmp_path / "data/pretrained.json").read_text()) == describe(folder)
