"""Fixtures: a tiny BERT built locally, synthetic review data, and throwaway project copies."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PROJECT_FILES = (
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".gitignore",
    "tasks",
    "tunepipe",
    "flows",
    "cli",
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
os.environ.update(OFFLINE)
# Stage commands say `python`: it must be this interpreter.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])

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


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [r["text"] for r in make_reviews(400, seed=1)]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts)


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
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


@pytest.fixture
def project(tmp_path: Path, tiny_bert: Path) -> Path:
    return make_project(tmp_path / "project", tiny_bert)


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, str]:
    """A project after its first `dvc repro` (every stage ran), and that run's output.

    Read-only: tests that go on from this state work in `copy_project` of it, which saves them a
    full repro (about 25 s of stage start-ups) each.
    """
    root = make_project(tmp_path_factory.mktemp("reproduced") / "project", tiny_bert)
    return root, dvc(root, "repro").stdout


def copy_project(src: Path, dst: Path) -> Path:
    """A copy with its git history, DVC cache and outputs: another checkout in the same state."""
    return Path(shutil.copytree(src, dst, symlinks=True))


@pytest.fixture(scope="session")
def prefect_backend():
    """One temporary Prefect server for every flow test (starting one costs about 15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


STAGE_MODULES = ("load", "validate", "tokenize", "train", "evaluate")


def run_stages_in_process(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The five stage commands of dvc.yaml, called in this process inside `root`.

    Same code as `dvc repro`, without five interpreter start-ups per run: for tests that run the
    pipeline many times over (one per task preset). dvc repro itself is tested in test_pipeline.
    """
    import importlib

    monkeypatch.chdir(root)
    for name in STAGE_MODULES:
        module = importlib.import_module(f"tasks.{name}")
        module.main()
