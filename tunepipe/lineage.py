"""The lineage record of a registered version: what made the model (code, data and model hashes,
params, metrics, validation, training, packages), committed beside the version's dvc.lock."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import yaml

from tunepipe import assets, catalog, model_card
from tunepipe import params as params_mod
from tunepipe.dvcrepo import lock_outputs, read_lock, unversioned_inputs
from tunepipe.dvcstore import md5_bytes, md5_file
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import changed_paths, git
from tunepipe.io import read_json

PACKAGES = (
    "tunepipe",
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "accelerate",
    "prefect",
    "dvc",
    "gto",
    "great-expectations",
    "pandas",
    "numpy",
    "scikit-learn",
)


# What a registration commits beside its lineage record (and the stage folders' .gitignore files):
# their changes are part of the registered commit, not uncommitted changes.
REGISTERED_FILES = (str(catalog.PARAMS), "dvc.yaml", "dvc.lock", str(catalog.METRICS))


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


# What a lineage record keeps of each split's validation summary (which keys exist depends on the task).
SPLIT_SUMMARY = ("rows", "words", "class_counts", "tag_counts", "target")


def package_sources(p: params_mod.Params) -> dict[str, dict[str, Any]]:
    """`package:` sources of the load stage by content: DVC hashes data/raw (a dep of load), not a
    file inside an installed package, so the record pins it (a replay checks it before rebuilding)."""
    return {ref: file_pin(ref) for ref in package_refs(p)}


def source_refs(p: params_mod.Params) -> list[Any]:
    """load.source's references: the one, or each split's."""
    source = p.load.source
    return list(source.values()) if isinstance(source, dict) else [source]


def local_sources(p: params_mod.Params) -> list[str]:
    """load.source paths on this machine (not `hub:` or `package:` references)."""
    prefixes = (assets.HUB_PREFIX, assets.PACKAGE_PREFIX)
    return sorted({r for r in source_refs(p) if isinstance(r, str) and r and not r.startswith(prefixes)})


def unversioned_warning(tag: str, paths: list[str]) -> str:
    """What a registration says of data it names by hash only."""
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (
        f"{tag} was trained on {len(paths)} file(s) in neither git nor DVC: {shown}. Its lineage pins "
        "them by hash only, so `tunepipe replay` cannot rebuild it from the remotes; keep sources in "
        "data/raw, `dvc add` each file and commit its .dvc file (then `dvc push`) before the next "
        "registration"
    )


def unversioned_refusal(paths: list[str]) -> str:
    """Why register.require_versioned refuses a registration (or a run that would end in one)."""
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (
        f"register.require_versioned: the training data has {len(paths)} file(s) in neither git nor DVC: "
        f"{shown}; `dvc add` each file and commit its .dvc file (then `dvc push`), or set "
        "register.require_versioned: false to register with a warning"
    )


def package_refs(p: params_mod.Params) -> list[str]:
    return sorted({s for s in source_refs(p) if is_package(s)})


def is_package(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith(assets.PACKAGE_PREFIX)


def file_pin(ref: str) -> dict[str, Any]:
    """md5 and size of the file a `package:` reference names, and the distribution that ships it."""
    path = assets.package_path(ref)
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    digests = [(file.relative_to(path).as_posix(), md5_file(file)) for file in files]
    # A folder (a saved dataset): the md5 of its sorted `relpath md5` lines.
    listing = "".join(f"{rel} {digest}\n" for rel, digest in digests).encode()
    md5 = md5_bytes(listing) if path.is_dir() else digests[0][1]
    top = ref.removeprefix(assets.PACKAGE_PREFIX).split("/", 1)[0].split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    shipped = [f"{d}=={importlib.metadata.version(d)}" for d in dists]
    size = sum(f.stat().st_size for f in files)
    return {"md5": md5, "size": size, "distribution": ", ".join(shipped) or None}


def search_record(root: Path, p: params_mod.Params) -> dict[str, Any] | None:
    """The search study whose best values this model was trained with, or None.

    search/best.json counts only once `--apply` wrote its values into params.yaml and only while
    train: still holds them: a hand-edited value afterwards means the study no longer explains it.
    """
    best_file = root / catalog.SEARCH_BEST
    if not best_file.is_file():
        return None
    best = read_json(best_file)
    if not best.get("applied") or not best.get("best_params"):
        return None
    train = p.train.model_dump()
    train |= {f"lora.{k}": v for k, v in train["lora"].items()}  # a searched lora.r, as the study names it
    if not all(params_mod.same_value(train.get(k), v) for k, v in best["best_params"].items()):
        return None
    keep = ("study_name", "storage", "sampler", "metric", "direction", "best_trial", "best_value")
    return {k: best.get(k) for k in keep} | {
        "best_params": best["best_params"],
        "trials": best.get("trials", {}),
    }


def build_lineage(root: Path, name: str, version: str, flow_run_id: str | None) -> dict[str, Any]:
    lock = read_lock(root)
    outs = lock_outputs(lock)
    artifact_path = str(catalog.MODEL)
    if artifact_path not in outs:
        raise PipelineError(f"dvc.lock has no hash for {artifact_path}: run the train stage first")
    validation = read_json(root / catalog.VALIDATION_REPORT)
    committed_here = set(REGISTERED_FILES)
    dirty = [
        path for path in changed_paths(root) if path not in committed_here and not path.endswith(".gitignore")
    ]
    p = params_mod.read(root / catalog.PARAMS)
    return {
        "artifact": name,
        "version": version,
        "registered_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_commit": git(root, "rev-parse", "HEAD", check=False) or None,
        "uncommitted_changes": dirty,
        # Data pinned by hash but kept in neither git nor DVC (or outside data/raw: not pinned at all).
        "unversioned_inputs": unversioned_inputs(root, lock, local_sources(p)),
        "data": {
            "source": read_json(root / catalog.SPLITS / "manifest.json")["source"],
            "splits": outs.get(str(catalog.SPLITS)),
            # load.source files inside installed packages (data/raw is pinned by dvc.lock).
            "package_sources": package_sources(p),
            # One output per split, and labels.json: split -> {stage, md5, size, nfiles}.
            "tokenized": {
                **{s: outs.get(str(catalog.tokenized_split(s))) for s in catalog.SPLIT_NAMES},
                "labels": outs.get(str(catalog.tokenized_info())),
            },
        },
        "model": outs[artifact_path] | {"path": artifact_path},
        # LoRA's adapters alone (train.adapter: lora; a note otherwise): DVC-cached with the model.
        "adapter": (outs[str(catalog.ADAPTER)] | {"path": str(catalog.ADAPTER)})
        if str(catalog.ADAPTER) in outs
        else None,
        # The base model by content (data/pretrained.json): file hashes, or hub id and revision.
        "pretrained": read_json(pretrained) if (pretrained := root / catalog.PRETRAINED).is_file() else None,
        "params": yaml.safe_load((root / catalog.PARAMS).read_text()),
        # What the stages actually used: params.yaml with a preset's values filled in.
        "resolved_params": p.model_dump(),
        "metrics": read_json(root / catalog.METRICS),
        # What reports/model_card.md was rendered from (evaluation with per-class scores included):
        # `tunepipe fetch` renders the version's card from it, the same in every clone.
        "model_card": model_card.recorded_facts(root),
        "thresholds": read_json(root / catalog.EVALUATION)["thresholds"],
        "validation": {
            "success": validation["success"],
            "splits": {
                s: {k: v for k, v in d.items() if k in SPLIT_SUMMARY} for s, d in validation["splits"].items()
            },
            "truncation": validation.get("truncation"),
        },
        "training": read_json(root / catalog.TRAIN_REPORT),
        # Timings and resume point of the run that trained it (not hashed by DVC), when present.
        "training_run": read_json(run) if (run := root / catalog.TRAIN_RUN).is_file() else None,
        # The Optuna study that chose train: values, when they came from `search --apply`.
        "search": search_record(root, p),
        "packages": package_versions(),
        "python": platform.python_version(),
        "prefect_flow_run_id": flow_run_id,
    }
