"""Shared test helpers: a tiny BERT built locally, synthetic review data, throwaway project copies
(git + DVC), and readers of what a Prefect flow run recorded. Fixtures live in conftest.py."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PROJECT_FILES = (
    "dvc.yaml",
    "params.yaml",
    "prefect.yaml",
    ".dvcignore",
    ".gitignore",
    "tasks",
    "tunepipe",
    "flows",
    "data/raw/README.md",
    "data/.gitignore",
    "models/.gitignore",
    "reports/.gitignore",
)

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}

POSITIVE = ["wonderful", "brilliant", "moving", "delightful", "superb", "charming", "gripping", "masterful"]
NEGATIVE = ["dull", "tedious", "clumsy", "boring", "awful", "lifeless", "messy", "forgettable"]
FILLER = [
    "the",
    "film",
    "story",
    "cast",
    "plot",
    "director",
    "script",
    "movie",
    "scenes",
    "acting",
    "ending",
    "camera",
]


def review(rng: random.Random, label: str) -> str:
    words = rng.sample(POSITIVE if label == "fresh" else NEGATIVE, 2) + rng.sample(FILLER, 4)
    rng.shuffle(words)
    return " ".join(words) + f" {rng.randint(0, 10**6)}"


def make_reviews(n: int = 240, seed: int = 0, movies: int = 40) -> list[dict[str, str]]:
    """Separable fresh/rotten snippets with a movie column, like the real default data."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "fresh" if i % 2 == 0 else "rotten"
        rows.append({"category": label, "text": review(rng, label), "movie_name": f"movie {i % movies}"})
    return rows


def build_tiny_bert(out: Path, texts: list[str]) -> Path:
    """A 2-layer, hidden-32 BERT with a WordPiece vocabulary trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    fast.save_pretrained(out)
    return out


def build_classifier(base: Path, out: Path, labels: list[str], token: bool = False) -> Path:
    """A saved (untrained) classifier on top of `base`, as the train stage would leave it."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    cls = AutoModelForTokenClassification if token else AutoModelForSequenceClassification
    id2label = dict(enumerate(labels))
    model = cls.from_pretrained(base, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def run(
    cmd: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dvc", *args], root, check=check)


def set_params(root: Path, **changes: object) -> None:
    """set_params(root, **{"train.learning_rate": 1e-3})"""
    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def make_project(root: Path, model_dir: Path, rows: list[dict[str, str]] | None = None) -> Path:
    """A fresh git + DVC project holding this repository's pipeline, set up for a tiny model."""
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src, dst = REPO / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    pd.DataFrame(rows or make_reviews()).to_csv(root / "data/raw/reviews.csv", index=False)
    set_params(
        root,
        **{
            "model.name": str(model_dir),
            "load.source": "data/raw/reviews.csv",
            "load.split.validation": 0.2,
            "load.split.test": 0.2,
            "validate.min_rows_per_class": 5,
            "tokenize.max_length": 32,
            "train.epochs": 10,
            "train.learning_rate": 3e-3,
            "train.batch_size": 16,
            "train.logging_steps": 5,
            "train.evaluations_per_epoch": 1,
            "evaluate.thresholds": {"accuracy": 0.6},
        },
    )
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "project"], root)
    return root


def copy_project(src: Path, dst: Path) -> Path:
    """A copy with its git history, DVC cache and outputs: another checkout in the same state."""
    return Path(shutil.copytree(src, dst, symlinks=True))


STAGE_MODULES = ("pretrained", "load", "validate", "tokenize", "train", "evaluate")


def run_stages_in_process(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The six stage commands of dvc.yaml, called in this process inside `root`.

    Same code as `dvc repro`, without six interpreter start-ups per run: for tests that run the
    pipeline many times over (one per task preset). dvc repro itself is tested in test_pipeline.
    """
    import importlib

    monkeypatch.chdir(root)
    for name in STAGE_MODULES:
        module = importlib.import_module(f"tasks.{name}")
        module.main()


# --- reading a Prefect flow run -----------------------------------------------------------


def task_states(flow_state: Any) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_run_id = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r.state.name for r in runs}


def artifacts(flow_state: Any) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_run_id = flow_state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in found}


# --- the pipeline through DVC and the CLI -------------------------------------------------------


STAGES = ("pretrained", "load", "validate", "tokenize", "train", "evaluate")
# always_changed in dvc.yaml: it runs on every `dvc repro`, even when nothing else does.
ALWAYS_RUN = ["pretrained"]


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def tunepipe(root: Path, *args: str, check: bool = True):
    return run([sys.executable, "-m", "tunepipe.cli", *args], root, check=check)


def tags(root: Path) -> list[str]:
    return run(["git", "tag", "--list"], root).stdout.split()


# --- killing and resuming training -------------------------------------------------------------


EPOCHS = 12  # one checkpoint per epoch, 9 steps each: long enough to be killed half-way
KILL_AFTER_STEP = 27  # three epochs done


def configure(project: Path) -> Path:
    set_params(project, **{"train.epochs": EPOCHS, "train.early_stopping_patience": EPOCHS})
    return project


def saved_steps(project: Path) -> list[int]:
    """Steps of the checkpoints written completely (trainer_state.json comes last)."""
    states = project.glob("models/checkpoints/*/checkpoint-*/trainer_state.json")
    return sorted(int(p.parent.name.removeprefix("checkpoint-")) for p in states)


# --- the team's remotes: a bare git repository and a directory DVC remote ------------------------


def raw_data_in_dvc(author: Path, base: Path) -> tuple[Path, Path]:
    """(bare git remote, DVC remote) under `base` for `author`, whose data/raw moves from git into
    DVC (committed; nothing pushed yet): the remotes a team shares."""
    bare, store = base / "origin.git", base / "dvc-remote"
    run(["git", "init", "-q", "--bare", str(bare)], base)
    run(["git", "rm", "-r", "-q", "--cached", "data/raw"], author)
    dvc(author, "add", "-q", "data/raw")
    dvc(author, "remote", "add", "-d", "shared", str(store))
    run(["git", "add", "-A"], author)
    run(["git", "commit", "-q", "-m", "raw data in DVC, a DVC remote"], author)
    run(["git", "remote", "add", "origin", str(bare)], author)
    return bare, store


def make_team(tmp_path: Path, model_dir: Path) -> tuple[Path, Path]:
    """(bare git remote, DVC remote) holding a project whose raw data DVC tracks; branch main."""
    author = make_project(tmp_path / "author", model_dir)
    bare, store = raw_data_in_dvc(author, tmp_path)
    dvc(author, "push", "-q")
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], author)
    run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], bare)
    return bare, store


def worker_clone(bare: Path, dest: Path) -> Path:
    """A clone as a deployment's pull step makes one: one commit deep, no tags."""
    run(["git", "clone", "-q", "--depth", "1", f"file://{bare}", str(dest)], dest.parent)
    return dest


def remote_tags(bare: Path) -> set[str]:
    out = run(["git", "ls-remote", "--tags", str(bare)], bare).stdout
    return {line.split("refs/tags/", 1)[1] for line in out.splitlines() if not line.endswith("^{}")}


def stored_files(dvc_remote: Path) -> int:
    return sum(1 for p in dvc_remote.rglob("*") if p.is_file())


def fake_tokenized(tmp_path: Path, pretrained: str = "{}") -> tuple[Path, Path]:
    """A stand-in for data/tokenized and data/pretrained.json: what a checkpoint fingerprint hashes."""
    data = tmp_path / "tokenized"
    for split in ("train", "validation", "test"):
        (data / split).mkdir(parents=True)
        (data / split / "part.arrow").write_bytes(b"abc")
    (data / "labels.json").write_text('{"labels": ["a", "b"]}')
    record = tmp_path / "pretrained.json"
    record.write_text(pretrained)
    return data, record


FAKE_MODEL_FILES = {"config.json": '{"model_type": "bert"}', "model.safetensors": "weights"}


def fake_registered_model(root: Path, name: str = "model", version: str = "v0.1.0") -> Path:
    """A minimal git + DVC project whose `models/model` (two small files, made by a shell stage)
    is registered as `<name>@<version>`: what `fetch` needs, in seconds instead of a training run.
    The tag is a plain annotated GTO tag; the commit holds no lineage record."""
    root.mkdir(parents=True, exist_ok=True)
    writes = " && ".join(f"printf '%s' '{text}' > models/model/{f}" for f, text in FAKE_MODEL_FILES.items())
    stages = {
        "stages": {"train": {"cmd": f"mkdir -p models/model && {writes}", "outs": ["models/model"]}},
        "artifacts": {name: {"path": "models/model", "type": "model"}},
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump(stages, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    # DVC's command line, not its Python API: in-process DVC logs to whichever stream pytest had
    # captured when DVC first ran in this worker, and that stream may be closed by now.
    dvc(root, "init", "-q")
    dvc(root, "repro", "-q")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "model"], root)
    message = f"Registering artifact {name} version {version}"
    run(["git", "tag", "-a", f"{name}@{version}", "-m", message], root)
    return root


def deploy_project(tmp_path: Path, origin: bool = True, pushed: bool = True) -> Path:
    """A project with prefect.yaml on branch main, pushed (or not) to a bare `origin`."""
    root, bare = tmp_path / "project", tmp_path / "origin.git"
    root.mkdir()
    (root / "prefect.yaml").write_text("deployments: []\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "project"]):
        subprocess.run([*git, *cmd], cwd=root, check=True)
    if origin:
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], cwd=tmp_path, check=True)
        subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=root, check=True)
    if origin and pushed:
        subprocess.run(["git", "push", "-q", "origin", "main", "main:release"], cwd=root, check=True)
    return root


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`tunepipe <args>` in this process: (exit code, stdout, stderr)."""
    from tunepipe.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
