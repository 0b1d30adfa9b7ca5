"""Model registry on git tags (GTO, DVC's registry) plus a lineage record per version.

A version is an annotated tag `<name>@vX.Y.Z` on a commit whose dvc.lock pins the exact data and
model hashes; the lineage record (lineage/<name>@<version>.json) is committed in that same commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tunepipe import dvcrepo, paths
from tunepipe import params as params_mod
from tunepipe.errors import PipelineError
from tunepipe.io import read_json, write_json
from tunepipe.metrics import format_metrics

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
FALLBACK_NAME, FALLBACK_EMAIL = "tunepipe", "tunepipe@localhost"


def git(root: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise PipelineError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def identity_args(root: Path) -> tuple[str, ...]:
    """Commit as the user when git knows them, else as `tunepipe` (fresh CI machines)."""
    known = git(root, "config", "user.email", check=False)
    return () if known else ("-c", f"user.name={FALLBACK_NAME}", "-c", f"user.email={FALLBACK_EMAIL}")


def lock_outputs(lock: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """path -> {stage, md5, size, nfiles} for every cached output in dvc.lock."""
    out = {}
    for stage, body in (lock.get("stages") or {}).items():
        for o in body.get("outs", []):
            if "md5" in o:
                out[o["path"]] = {"stage": stage, "md5": o["md5"]} | {
                    k: o[k] for k in ("size", "nfiles") if k in o
                }
    return out


def read_lock(root: Path, rev: str | None = None) -> dict[str, Any]:
    text = git(root, "show", f"{rev}:dvc.lock") if rev else (root / "dvc.lock").read_text()
    return yaml.safe_load(text) or {}


def full_name(name: str, version: str) -> str:
    version = version.split("@", 1)[-1]
    return f"{name}@{version if version.startswith('v') else 'v' + version}"


def lineage_path(name: str, version: str) -> Path:
    return paths.LINEAGE / f"{full_name(name, version)}.json"


def versions(root: Path, name: str) -> list[str]:
    """Registered versions, oldest first (GTO tags `<name>@vX.Y.Z`, sorted as versions)."""
    prefix = f"{name}@v"
    return [
        t.split("@", 1)[1] for t in git(root, "tag", "--list", f"{prefix}*", "--sort=v:refname").splitlines()
    ]


def bump(version: str | None, part: str) -> str:
    if not version:
        return "v0.1.0" if part != "major" else "v1.0.0"
    major, minor, patch = (int(x) for x in version.lstrip("v").split("."))
    if part == "major":
        return f"v{major + 1}.0.0"
    if part == "minor":
        return f"v{major}.{minor + 1}.0"
    return f"v{major}.{minor}.{patch + 1}"


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


def search_record(root: Path, p: params_mod.Params) -> dict[str, Any] | None:
    """The search study whose best values this model was trained with, or None.

    search/best.json counts only once `--apply` wrote its values into params.yaml and only while
    train: still holds them: a hand-edited value afterwards means the study no longer explains it.
    """
    from tunepipe import search

    best_file = root / search.BEST_JSON
    if not best_file.is_file():
        return None
    best = read_json(best_file)
    if not best.get("applied") or not best.get("best_params"):
        return None
    train = dataclasses.asdict(p.train)
    if not all(search.same_value(train.get(k), v) for k, v in best["best_params"].items()):
        return None
    keep = ("study_name", "storage", "sampler", "metric", "direction", "best_trial", "best_value")
    return {k: best.get(k) for k in keep} | {
        "best_params": best["best_params"],
        "trials": best.get("trials", {}),
    }


def build_lineage(root: Path, name: str, version: str, flow_run_id: str | None) -> dict[str, Any]:
    lock = read_lock(root)
    outs = lock_outputs(lock)
    artifact_path = str(paths.MODEL)
    if artifact_path not in outs:
        raise PipelineError(f"dvc.lock has no hash for {artifact_path}: run the train stage first")
    validation = read_json(root / paths.VALIDATION_REPORT)
    committed_here = {str(paths.PARAMS), "dvc.yaml", "dvc.lock"}
    dirty = [
        path
        for line in git(root, "status", "--porcelain", "--untracked-files=no").splitlines()
        if (path := line[3:]) not in committed_here and not path.endswith(".gitignore")
    ]
    p = params_mod.read(root / paths.PARAMS)
    return {
        "artifact": name,
        "version": version,
        "registered_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code_commit": git(root, "rev-parse", "HEAD", check=False) or None,
        "uncommitted_changes": dirty,
        "data": {
            "source": read_json(root / paths.SPLITS / "manifest.json")["source"],
            "splits": outs.get(str(paths.SPLITS)),
            "tokenized": outs.get(str(paths.TOKENIZED)),
        },
        "model": outs[artifact_path] | {"path": artifact_path},
        "params": yaml.safe_load((root / paths.PARAMS).read_text()),
        # What the stages actually used: params.yaml with a preset's values filled in.
        "resolved_params": dataclasses.asdict(p),
        "metrics": read_json(root / paths.METRICS),
        "thresholds": read_json(root / paths.EVALUATION)["thresholds"],
        "validation": {
            "success": validation["success"],
            "splits": {
                s: {k: v for k, v in d.items() if k in SPLIT_SUMMARY} for s, d in validation["splits"].items()
            },
            "truncation": validation.get("truncation"),
        },
        "training": read_json(root / paths.TRAIN_REPORT),
        # The Optuna study that chose train: values, when they came from `search --apply`.
        "search": search_record(root, p),
        "packages": package_versions(),
        "python": platform.python_version(),
        "prefect_flow_run_id": flow_run_id,
    }


def find_registered_model(root: Path, name: str, model_md5: str) -> str | None:
    """The version already registered for exactly this model, if any (registration is idempotent)."""
    for version in reversed(versions(root, name)):
        tag = full_name(name, version)
        try:
            lock = read_lock(root, tag)
        except PipelineError:
            continue
        if lock_outputs(lock).get(str(paths.MODEL), {}).get("md5") == model_md5:
            return version
    return None


def check_declared(root: Path, name: str) -> None:
    artifacts = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("artifacts") or {}
    if name not in artifacts:
        raise PipelineError(
            f"dvc.yaml: no artifact named {name!r} under `artifacts:` (register.name in params.yaml "
            f"must name one of: {', '.join(artifacts) or 'none declared'})"
        )


def register(
    root: Path, name: str, bump_part: str = "patch", flow_run_id: str | None = None
) -> dict[str, Any]:
    """Register the current, evaluated model as a new version; returns {version, tag, commit, new}."""
    from gto.api import register as gto_register

    root = Path(root).resolve()
    check_declared(root, name)
    evaluation_file = root / paths.EVALUATION
    if not evaluation_file.is_file():
        raise PipelineError(f"{paths.EVALUATION} not found: run the evaluate stage before registering")
    if not read_json(evaluation_file)["passed"]:
        raise PipelineError("the model missed its evaluation thresholds; it cannot be registered")
    stale = dvcrepo.stale(root)
    if stale:
        raise PipelineError(
            f"the pipeline is not up to date ({', '.join(sorted(stale))}): run `dvc repro` first, "
            "so that the registered commit pins the data and model actually used"
        )
    model_md5 = lock_outputs(read_lock(root))[str(paths.MODEL)]["md5"]
    existing = find_registered_model(root, name, model_md5)
    if existing:
        tag = full_name(name, existing)
        return {
            "version": existing,
            "tag": tag,
            "commit": git(root, "rev-list", "-n", "1", tag),
            "new": False,
        }

    known = versions(root, name)
    version = bump(known[-1] if known else None, bump_part)
    record = build_lineage(root, name, version, flow_run_id)
    record_path = lineage_path(name, version)
    write_json(root / record_path, record)
    # metrics.json too, so that `dvc metrics diff <tag>` compares against a registered version.
    tracked = [str(paths.PARAMS), "dvc.yaml", "dvc.lock", str(paths.METRICS), str(record_path)]
    tracked += [
        g for g in ("data/.gitignore", "models/.gitignore", "reports/.gitignore") if (root / g).exists()
    ]
    git(root, "add", "--", *tracked)
    metrics = record["metrics"]
    summary = format_metrics(metrics)
    ident = identity_args(root)
    git(
        root,
        *ident,
        "commit",
        "--quiet",
        "-m",
        f"Register {full_name(name, version)} ({summary})",
        "--",
        *tracked,
    )
    commit = git(root, "rev-parse", "HEAD")
    gto_register(
        str(root),
        name,
        commit,
        version=version,
        message=f"{full_name(name, version)}: {summary}",
        author=FALLBACK_NAME if ident else None,
        author_email=FALLBACK_EMAIL if ident else None,
    )
    return {"version": version, "tag": full_name(name, version), "commit": commit, "new": True}


def registered_tag(root: Path, name: str, version: str) -> str:
    """The tag of a registered version, or an error listing the versions there are."""
    tag = full_name(name, version)
    if not git(root, "tag", "--list", tag):
        known = ", ".join(versions(root, name)) or "none"
        raise PipelineError(f"no registered version {tag} (registered versions of {name}: {known})")
    return tag


def lineage(root: Path, name: str, version: str) -> dict[str, Any]:
    tag = registered_tag(root, name, version)
    record = json.loads(git(root, "show", f"{tag}:{lineage_path(name, version).as_posix()}"))
    record["registered_commit"] = git(root, "rev-list", "-n", "1", tag)
    return record


def fetch_model(root: Path, name: str, version: str, out: Path) -> Path:
    """Materialise a registered version's model directory from the DVC cache (or remote)."""
    tag = registered_tag(root, name, version)
    out = Path(out).resolve()
    with dvcrepo.open_repo(root) as repo:
        repo.artifacts.download(name, version=tag.split("@", 1)[1], out=str(out), force=True)
    return out
