"""Checkpoints of an unfinished train run: one folder per data+params fingerprint, so a killed
run resumes from its last checkpoint while a run with other data or params never picks up a
stale one."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from tunepipe.params import Params

NOTE = (
    "Checkpoints of an unfinished train run live here, one folder per data+params fingerprint.\n"
    "A re-run of the train stage resumes from the newest; a finished run removes its folder.\n"
)


def fingerprint(p: Params, data_dir: Path) -> str:
    """Identifies a training run: same data and same params -> same checkpoint folder."""
    h = hashlib.sha256()
    h.update(
        json.dumps([p.task, asdict(p.model), asdict(p.train), asdict(p.tokenize)], sort_keys=True).encode()
    )
    for f in sorted(data_dir.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(data_dir)).encode())
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
