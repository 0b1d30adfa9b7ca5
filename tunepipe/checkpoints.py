"""Checkpoints of an unfinished train run: one folder per data+params fingerprint, so a killed
run resumes from its last checkpoint while a run with other data or params never picks up a
stale one."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from tunepipe import catalog
from tunepipe.params import Params

NOTE = (
    "Checkpoints of an unfinished train run live here, one folder per data+params fingerprint.\n"
    "A re-run of the train stage resumes from the newest; a finished run removes its folder.\n"
    "A checkpoint that does not load is renamed broken-checkpoint-N and skipped.\n"
)
# Prefix of a checkpoint set aside: out of Trainer's `checkpoint-*` rotation, which would count
# (and delete) it; it goes with its run's folder once that run finishes.
BROKEN = "broken-"


def fingerprint(p: Params, data_dir: Path, pretrained: Path = catalog.PRETRAINED) -> str:
    """Identifies a training run: same data, base model and params -> same checkpoint folder.

    Only what training reads counts (the train and validation splits, labels.json, the base
    model's content hashes), as in dvc.yaml's deps of train: new test rows keep the checkpoints.
    """
    h = hashlib.sha256()
    h.update(
        json.dumps([p.task, asdict(p.model), asdict(p.train), asdict(p.tokenize)], sort_keys=True).encode()
    )
    paths = [catalog.tokenized_split(s, data_dir) for s in catalog.TRAINING_SPLITS]
    paths += [catalog.tokenized_info(data_dir), Path(pretrained)]
    for path in paths:
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                h.update(f.relative_to(path.parent).as_posix().encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def last_complete_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint that was fully written and loads, or None.

    Trainer writes a checkpoint in place and trainer_state.json last, so a run killed while
    saving leaves a folder without it (or with a truncated one): that folder is removed. A
    complete one whose state files do not load (damaged on disk, overwritten) would fail every
    resume: it is set aside as `broken-checkpoint-N` with a warning. Either way the run resumes
    from the checkpoint before it, or starts afresh.
    """
    found = sorted(
        (p for p in run_dir.glob("checkpoint-*") if p.name.removeprefix("checkpoint-").isdigit()),
        key=lambda p: int(p.name.removeprefix("checkpoint-")),
        reverse=True,
    )
    for folder in found:
        try:
            json.loads((folder / "trainer_state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            shutil.rmtree(folder, ignore_errors=True)
            continue
        problem = unloadable(folder)
        if problem is None:
            return str(folder)
        aside = folder.with_name(BROKEN + folder.name)
        shutil.rmtree(aside, ignore_errors=True)
        folder.rename(aside)
        print(
            f"warning: {folder} cannot be resumed from ({problem}); set aside as {aside}",
            file=sys.stderr,
        )
    return None


def unloadable(folder: Path) -> str | None:
    """Why Trainer could not load this checkpoint's weights or state, or None when it can.

    Loads what Trainer's resume loads, the same safe way (tensors only, never arbitrary pickled
    objects): weights from safetensors, optimizer, scheduler, scaler and RNG states with
    weights_only=True.
    """
    import torch
    from safetensors import safe_open
    from transformers.trainer_pt_utils import safe_globals

    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no model.safetensors"
    for path in weights:
        try:
            with safe_open(path, framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                    f.get_tensor(key)
        except Exception as exc:  # safetensors raises its own (and OSError) on a damaged file
            return f"{path.name}: {_first_line(exc)}"
    for path in sorted(folder.glob("*.pt")) + sorted(folder.glob("rng_state*.pth")):
        try:
            with safe_globals(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's note on a foreign pickle protocol
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and weights_only errors differ by damage
            return f"{path.name}: {_first_line(exc)}"
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
