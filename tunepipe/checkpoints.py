"""Checkpoints of an unfinished train run: one folder per data+params fingerprint, so a killed
run resumes from its last checkpoint while a run with other data or params never picks up a
stale one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from tunepipe import catalog
from tunepipe.params import Params

NOTE = (
    "Checkpoints of an unfinished train run live here, one folder per data+params+world-size\n"
    "fingerprint (run.json in it names the world size: processes x nodes).\n"
    "A re-run of the train stage resumes from the newest; a finished run removes its folder.\n"
    "A checkpoint that does not load is renamed broken-checkpoint-N and skipped.\n"
)
# Prefix of a checkpoint set aside: out of Trainer's `checkpoint-*` rotation, which would count
# (and delete) it; it goes with its run's folder once that run finishes.
BROKEN = "broken-"
# In each run folder: the world size its checkpoints were written at, and the fingerprint of the
# data and params without it, so that a run at another world size can say why it does not resume.
RUN_INFO = "run.json"
# How the processes meet, not what they compute: left out of the fingerprint. The world size they
# make (processes x nodes, with auto resolved) goes in instead.
LAUNCH_FIELDS = ("processes", "nodes", "master_addr", "master_port", "rdzv_endpoint", "ddp_timeout")


# A folder outside the checkout that keeps checkpoints between runs: a worker's run clones the
# project into a temporary folder that goes with the run, so a re-run after a crash (a lost host,
# a killed worker) finds the crashed run's checkpoints only there. One subfolder per project.
ENV = "TUNEPIPE_CHECKPOINTS"


def folder(root: Path = Path(".")) -> Path:
    """Where the train stage keeps checkpoints: `$TUNEPIPE_CHECKPOINTS/<project>` when set, else
    models/checkpoints of the checkout. <project> is named after the git remote `origin` (every
    clone of the team's remote shares it), or the checkout's path when there is none; inside it
    the data+params fingerprint picks the run, as in models/checkpoints."""
    shared = os.environ.get(ENV)
    if not shared:
        return root / catalog.CHECKPOINTS
    return Path(shared).expanduser() / project_key(root)


def project_key(root: Path) -> str:
    """A folder name for the project: origin's last path part and a hash of its URL."""
    proc = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True, check=False
    )
    identity = proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else str(root.resolve())
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", identity.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    return f"{stem.strip('.-') or 'project'}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def fingerprint(p: Params, data_dir: Path, pretrained: Path = catalog.PRETRAINED, world_size: int = 1) -> str:
    """Identifies a training run: same data, base model, params and world size -> same checkpoint
    folder (a checkpoint holds one RNG state per rank and steps of one global batch size).

    Only what training reads counts (the train and validation splits, labels.json, the base
    model's content hashes), as in dvc.yaml's deps of train: new test rows keep the checkpoints.
    """
    return with_world_size(base_fingerprint(p, data_dir, pretrained), world_size)


def with_world_size(base: str, world_size: int) -> str:
    h = hashlib.sha256(base.encode())
    h.update(f"world_size={world_size}".encode())
    return h.hexdigest()[:16]


def base_fingerprint(p: Params, data_dir: Path, pretrained: Path = catalog.PRETRAINED) -> str:
    """The fingerprint of data and params alone, whatever the world size."""
    train = {k: v for k, v in p.train.model_dump().items() if k not in LAUNCH_FIELDS}
    h = hashlib.sha256()
    model, tokenize = p.model.model_dump(), p.tokenize.model_dump()
    h.update(json.dumps([p.task, model, train, tokenize], sort_keys=True).encode())
    paths = [catalog.tokenized_split(s, data_dir) for s in catalog.TRAINING_SPLITS]
    paths += [catalog.tokenized_info(data_dir), Path(pretrained)]
    for path in paths:
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                h.update(f.relative_to(path.parent).as_posix().encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def prepare_run(
    p: Params, data_dir: Path, checkpoints: Path, world_size: int, pretrained: Path = catalog.PRETRAINED
) -> tuple[Path, str | None]:
    """The run folder for these data, params and world size, and the checkpoint to resume from.

    Other runs' folders go (their params or data changed). One with the same data and params at
    another world size goes too, named in a warning: Trainer cannot resume a run at another world
    size (one RNG state per rank, another global batch), so this run starts afresh.
    """
    base = base_fingerprint(p, data_dir, pretrained)  # hashes the data once
    run_dir = checkpoints / with_world_size(base, world_size)
    if checkpoints.exists():
        for other in checkpoints.iterdir():
            if other == run_dir or not other.is_dir():
                continue
            info = _run_info(other)
            if (
                info.get("base") == base
                and info.get("world_size") != world_size
                and any(other.glob("checkpoint-*"))
            ):
                print(
                    f"warning: {other} holds checkpoints of this run at world size {info.get('world_size')}"
                    f" (processes x nodes); this run has world size {world_size} and cannot resume"
                    " from them: they are removed and training starts afresh",
                    file=sys.stderr,
                )
            shutil.rmtree(other, ignore_errors=True)
    resume = last_complete_checkpoint(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_INFO).write_text(json.dumps({"base": base, "world_size": world_size}) + "\n")
    return run_dir, resume


def _run_info(folder: Path) -> dict[str, object]:
    try:
        info = json.loads((folder / RUN_INFO).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


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
