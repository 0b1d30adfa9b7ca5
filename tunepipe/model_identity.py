"""What the pre-trained model in params.model is, by content rather than by name: the `pretrained`
stage writes it to data/pretrained.json, and the stages that load the model depend on that file.

A local directory (or package: reference) is described by the sha256 of its tokenizer files and,
separately, of its config, weights and code, plus the license its README.md card declares (the
fine-tuned model's card cites it); the same files at another path give the same file, so two
checkouts agree. A hub id is described by id and revision. No torch or transformers import:
this runs before every `dvc repro`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from pathlib import Path
from typing import Any

from tunepipe import assets
from tunepipe.errors import PipelineError
from tunepipe.params import ModelParams

# What AutoTokenizer.from_pretrained may read (fast and slow tokenizers, sentencepiece, remote code).
TOKENIZER_FILES = (
    "tokenizer*.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab*",
    "merges.txt",
    "*.model",  # sentencepiece: spiece.model, tokenizer.model, sentencepiece.bpe.model
    "spm*",
    "sentencepiece*",
    "chat_template*",
    "tokenization*.py",
)
# What the model and its config are loaded from; *.py is trust_remote_code's modelling code.
MODEL_FILES = (
    "config.json",
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.h5",
    "*.msgpack",
    "*.index.json",  # sharded weights
    "*.py",
)
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def matching(files: list[Path], patterns: tuple[str, ...]) -> list[Path]:
    return [f for f in files if any(fnmatch.fnmatch(f.name, p) for p in patterns)]


def describe_files(model: ModelParams, folder: Path) -> dict[str, Any]:
    assets.check_links(folder, model.name)  # a link out of the folder would hash a foreign file
    files = sorted(f for f in folder.iterdir() if f.is_file())
    tokenizer = matching(files, TOKENIZER_FILES)
    weights = [f for f in matching(files, MODEL_FILES) if f not in tokenizer]
    if not tokenizer:
        raise PipelineError(
            f"model {model.name}: no tokenizer files (tokenizer.json, vocab.txt, ...) in {folder}"
        )
    if not any(f.suffix in WEIGHTS for f in weights):
        raise PipelineError(f"model {model.name}: no weight files (*.safetensors, *.bin, ...) in {folder}")
    described = {
        "source": "files",
        "tokenizer": {f.name: sha256(f) for f in tokenizer},
        "model": {f.name: sha256(f) for f in weights},
        "trust_remote_code": model.trust_remote_code,
    }
    license_ = card_license(folder / "README.md")
    return described | ({"license": license_} if license_ else {})


def card_license(readme: Path) -> str | None:
    """The `license:` of a model card's YAML front matter (what model cards of fine-tuned models
    cite as the base's license), or None: no card, no front matter, or no license in it."""
    import yaml

    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("---"):
        return None
    head = text[3:].split("\n---", 1)[0]
    try:
        meta = yaml.safe_load(head)
    except yaml.YAMLError:
        return None
    value = meta.get("license") if isinstance(meta, dict) else None
    return str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else None


def describe(model: ModelParams) -> dict[str, Any]:
    """The JSON data/pretrained.json holds: equal for equal model files, wherever they lie."""
    # Identity only: the stages that load the model check its files and the hub's offline mode.
    resolved = assets.resolve(model.name)
    if Path(resolved).is_dir():
        return describe_files(model, Path(resolved))
    if resolved.startswith((".", "/")) or resolved.count("/") > 1:
        raise PipelineError(f"model {model.name}: directory {resolved} not found")
    # Nothing is fetched here. Only a commit sha pins a hub model: a branch or tag (or no
    # revision: "main") can move on the hub without this file changing, and nothing re-runs.
    return {
        "source": "hub",
        "hub": {"id": resolved, "revision": model.revision},
        "trust_remote_code": model.trust_remote_code,
    }


def pinned(described: dict[str, Any]) -> bool:
    """False for a hub model named by branch, tag or nothing: its content may change unseen."""
    hub = described.get("hub")
    return hub is None or bool(COMMIT_SHA.fullmatch(hub["revision"] or ""))


def summary(described: dict[str, Any]) -> str:
    if described["source"] == "hub":
        hub = described["hub"]
        return f"hub model {hub['id']} at revision {hub['revision'] or 'main (default)'}"
    return (
        f"{len(described['tokenizer'])} tokenizer files ({', '.join(described['tokenizer'])}), "
        f"{len(described['model'])} model files ({', '.join(described['model'])})"
    )
