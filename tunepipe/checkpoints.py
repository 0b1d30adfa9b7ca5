"""Checkpoints of an unfinished train run: one folder per data+params fingerprint, so a killed
run resumes from its last checkpoint while a run with other data or params never picks up a
stale one."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from tunepipe import catalog
from tunepipe.params import Params

NOTE = (
    "Checkpoints of an unfinished train run live here, one folder per data+params fingerprint.\n"
    "A re-run of the train stage resumes from the newest; a finished run removes its folder.\n"
)


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
    """The newest checkpoint that was fully written, or None.

    Trainer writes a checkpoint in place and trainer_state.json last, so a run killed while
    saving leaves a folder without it (or with a truncated one): that folder is removed, and the
    run resumes from the checkpoint before it.
    """
    found = sorted(
        (p for p in run_dir.glob("checkpoint-*") if p.name.removeprefix("checkpoint-").isdigit()),
        key=lambda p: int(p.name.removeprefix("checkpoint-")),
        reverse=True,
    )
    for folder in found:
        try:
            json.loads((folder / "trainer_state.json").read_text())
            return str(folder)
        except (FileNotFoundError, json.JSONDecodeError):
            shutil.rmtree(folder, ignore_errors=True)
    return None
