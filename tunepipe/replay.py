"""Replay a registered version from nothing but its remotes, and compare what comes out.

A scratch clone of the git remote at the version's commit gets the raw data the commit pins from
the DVC remote (and nothing else: no outputs, no run-cache), then `dvc repro --force` rebuilds
every stage. Each output's hash in the version's dvc.lock is compared with the rebuilt one, and
each recorded metric with the rebuilt metric. The project's own checkout (workspace, dvc.lock,
tags, lineage, DVC cache) is only read: everything is written inside the scratch directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunepipe import catalog, dvcstore, lineage, registry, remote
from tunepipe.argcheck import check_remote, first_line
from tunepipe.dvcrepo import lock_outputs, pinned_inputs, read_lock
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import git
from tunepipe.metrics import flatten, format_value, is_number

REMOTE_NAME = "replay-source"  # the scratch clone's DVC remote (in its .dvc/config.local)
LOG = "replay.log"  # the rebuild's output, inside the scratch directory
TAIL_LINES = 20


class ReplayError(PipelineError):
    """The replay stopped before its comparison; `report` holds what was found until then."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report | {"ok": False, "error": message}


def replay(
    root: Path,
    name: str,
    version: str,
    git_remote: str | None = None,
    dvc_remote: str | None = None,
    tolerance: float = 0.0,
    workdir: Path | None = None,
    keep: bool = False,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Rebuild `version` in a scratch clone and compare; returns the comparison (see `ok`, `differed`).

    `dry_run`: stop after the package listing and the check of the pinned raw inputs.
    """
    root = Path(root).resolve()
    if not 0 <= tolerance < float("inf"):  # NaN fails every comparison: it would pass no metric
        raise PipelineError(f"--tolerance: expected a finite number >= 0, got {tolerance}")
    # Both reach git or dvc as arguments: no option-like values, no `ext::` transports.
    if git_remote is not None:
        check_remote(git_remote, "--git-remote")
    if dvc_remote is not None:
        check_remote(dvc_remote, "--dvc-remote", schemes=None)
    if git_remote and "://" not in git_remote and Path(git_remote).exists():
        git_remote = str(Path(git_remote).resolve())  # as the user meant it, not relative to root
    git_source = git_remote or remote.git_origin(root) or str(root)
    dvc_source, dvc_described = dvc_source_of(root, dvc_remote)
    parent = Path(workdir).resolve() if workdir else None
    if parent is not None:
        if parent == root or root in parent.parents:
            raise PipelineError(
                f"--workdir {workdir}: inside the project {root}; the replay must not touch it"
            )
        parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="tunepipe-replay-", dir=parent))
    report: dict[str, Any] = {
        "sources": {"git": git_source, "dvc": dvc_described},
        "tolerance": tolerance,
        "workdir": str(scratch) if keep else None,
        "replayed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # Where the rebuild ran: exact hashes are expected on the same kind of machine only.
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
    }
    try:
        clone = scratch / "project"
        tag, record = checkout_version(root, git_source, clone, name, version)
        commit = record["registered_commit"]
        report |= {"version": tag, "commit": commit}
        say(f"replaying {tag} (commit {commit[:10]}) from git {git_source}, DVC data from {dvc_described}")
        report["packages"] = package_differences(record)
        if report["packages"]:
            say("installed packages differ from the lineage record's (exact hashes are then not expected):")
            for row in report["packages"]:
                recorded, installed = row["recorded"] or "-", row["installed"] or "-"
                say(f"  {row['name']:<20} recorded {recorded:<14} installed {installed}")
        else:
            count = len(record.get("packages") or {})
            say(f"packages and Python as recorded ({count} packages, Python {record.get('python')})")
        lock = read_lock(clone)
        report["inputs"] = pull_inputs(clone, lock, dvc_source, dvc_described, record, report, say)
        if dry_run:
            report |= {"ok": True, "dry_run": True, "differed": []}
            say("dry run: pinned inputs checked, nothing rebuilt")
            return report
        rebuild(clone, scratch / LOG, say)
        report |= compare(lock, read_lock(clone), record, read_metrics(clone), tolerance)
        return report
    except ReplayError:
        raise
    except PipelineError as exc:
        raise ReplayError(str(exc), report) from None
    finally:
        if keep:
            log = f" (rebuild log {scratch / LOG})" if (scratch / LOG).is_file() else ""
            say(f"scratch clone kept: {scratch / 'project'}{log}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def dvc_source_of(root: Path, given: str | None) -> tuple[str, str]:
    """(URL or folder the scratch clone pulls from, how to say it): --dvc-remote (a URL, a folder or
    a remote's name in this project), else this project's default remote, else its DVC cache."""
    from dvc.config import Config

    config = Config(dvc_dir=str(root / ".dvc")) if (root / ".dvc").is_dir() else None
    remotes = dict(config["remote"]) if config else {}
    if given:
        if given in remotes:
            return str(remotes[given]["url"]), f"DVC remote {given!r} ({remotes[given]['url']})"
        local = Path(given)
        if "://" not in given and not local.is_absolute():
            given = str((Path.cwd() / local).resolve())
        return given, given
    default = config["core"].get("remote") if config else None
    if default and default in remotes:
        return str(remotes[default]["url"]), f"DVC remote {default!r} ({remotes[default]['url']})"
    if config is None:
        raise PipelineError(f"{root}: not a DVC project (no .dvc folder), and no --dvc-remote given")
    cache = config["cache"].get("dir") or str(root / ".dvc" / "cache")
    return str(cache), f"this project's DVC cache {cache} (no DVC remote configured)"


def checkout_version(
    root: Path, source: str, clone: Path, name: str, version: str
) -> tuple[str, dict[str, Any]]:
    """Clone `source` into `clone` and check out the version's registered commit (detached)."""
    proc = subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", "--", source, str(clone)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise PipelineError(f"cannot clone git remote {source}: {first_line(proc.stderr)}")
    try:
        tag = registry.registered_tag(clone, name, version)
        record = registry.read_lineage(clone, name, version)
    except PipelineError as exc:
        raise PipelineError(
            f"git remote {source}: {exc} (push the version's tag there, or --git-remote)"
        ) from None
    git(clone, "checkout", "--quiet", "--detach", record["registered_commit"])
    return tag, record


def package_differences(record: dict[str, Any]) -> list[dict[str, str | None]]:
    """Packages (and Python) whose installed version is not the one the lineage record names."""
    installed = lineage.package_versions()
    recorded = record.get("packages") or {}
    rows = [
        {"name": pkg, "recorded": recorded.get(pkg), "installed": installed.get(pkg)}
        for pkg in sorted(set(recorded) | set(installed))
        if recorded.get(pkg) != installed.get(pkg)
    ]
    if record.get("python") and record["python"] != platform.python_version():
        rows.insert(
            0, {"name": "python", "recorded": record["python"], "installed": platform.python_version()}
        )
    return rows


def _dvc(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=clone,
        capture_output=True,
        text=True,
        check=False,
        env=_env(),
    )


def _env() -> dict[str, str]:
    """Stage commands say `python`: it must be this interpreter, with its packages."""
    return os.environ | {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    }


def _tail(text: str) -> str:
    return "\n".join([line for line in text.splitlines() if line.strip()][-TAIL_LINES:])


def pull_inputs(
    clone: Path,
    lock: dict[str, Any],
    source: str,
    described: str,
    record: dict[str, Any],
    report: dict[str, Any],
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Pull what the pipeline starts from (the `.dvc` files: raw data) and check every input the
    version's dvc.lock pins that no stage writes (raw data, code) and every `package:` source."""
    cache = clone / ".dvc" / "cache"
    for args in (
        ("remote", "add", "--local", "--default", "--force", "--", REMOTE_NAME, source),
        ("config", "--local", "--", "cache.dir", str(cache)),  # never a shared cache the commit may name
    ):
        proc = _dvc(clone, *args)
        if proc.returncode != 0:
            raise PipelineError(f"setting up the scratch clone (dvc {' '.join(args)}): {_tail(proc.stderr)}")
    targets = [t for t in git(clone, "ls-files", "-z", "--", "*.dvc").split("\0") if t]
    if targets:
        proc = _dvc(clone, "pull", *targets)
        if proc.returncode != 0:
            missing = _missing_files(clone, lock, proc.stdout + proc.stderr, source)
            said = (_tail(proc.stdout + proc.stderr) or "`dvc pull` failed").splitlines()[-1]
            raise PipelineError(
                f"the pinned raw data cannot be had from {described}: "
                + (f"{', '.join(missing)} could not be pulled (DVC: {said})" if missing else f"DVC: {said}")
            )
        say(f"pulled {', '.join(t.removesuffix('.dvc') for t in targets)}")
    rows = [check_input(clone, path, md5, source) for path, md5 in pinned_inputs(lock).items()]
    rows += check_package_sources(clone, record)
    rows += check_base_model(clone, record)
    report["inputs"] = rows
    bad = [r for r in rows if not r["same"]]
    if bad:
        raise PipelineError(
            "pinned input(s) differ from what the version recorded, so nothing was rebuilt: "
            + "; ".join(r["problem"] for r in bad)
        )
    named = ", ".join(r["path"] for r in rows if r["kind"] != "code")
    say(f"inputs as pinned: {len(rows)} checked ({named})")
    for r in rows:
        if r.get("note"):
            say(f"  note: {r['path']}: {r['note']}")
    return rows


def _manifest(clone: Path, dir_md5: str, source: str | None = None) -> dict[str, str]:
    """relpath -> md5 of a pinned folder: from the clone's cache, else from a directory remote
    (a failed pull leaves no `.dir` object behind); {} when neither has it."""
    places = [clone / ".dvc" / "cache"] + ([Path(source)] if source and "://" not in source else [])
    return dvcstore.find_manifest(places, dir_md5)


def check_input(clone: Path, path: str, md5: str, source: str) -> dict[str, Any]:
    """One pinned input in the clone against its dvc.lock hash; a differing folder names its files."""
    target = clone / path
    kind = "code" if path.endswith(".py") else "data"
    row: dict[str, Any] = {"path": path, "kind": kind, "recorded": md5, "found": None, "same": False}
    if not target.exists():
        row["problem"] = f"{path} is missing from the scratch clone (neither in git nor pulled)"
        return row
    if not dvcstore.is_dir_hash(md5):
        row["found"] = dvcstore.md5_file(target)
        row["same"] = row["found"] == md5
        row["problem"] = f"{path}: md5 {row['found']}, pinned {md5}"
        return row
    row["found"], files = dvcstore.tree_md5(target)
    row["same"] = row["found"] == md5
    manifest = _manifest(clone, md5, source)
    wrong = [rel for rel, want in manifest.items() if files.get(rel) != want]
    extra = sorted(set(files) - set(manifest)) if manifest else []
    details = [
        f"{path}/{rel}: md5 {files.get(rel) or 'missing'}, pinned {manifest[rel]} "
        f"(DVC object {dvcstore.object_url(source, manifest[rel])})"
        for rel in wrong
    ]
    details += [f"{path}/{rel}: not in the pinned folder" for rel in extra]
    row["files"] = [f"{path}/{rel}" for rel in wrong + extra]
    row["problem"] = "; ".join(details) or f"{path}: md5 {row['found']}, pinned {md5}"
    return row


def check_package_sources(clone: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """`package:` sources of load, installed here, against the hashes the lineage recorded."""
    from tunepipe import params as params_mod

    p = params_mod.read(clone / catalog.PARAMS)
    pinned = (record.get("data") or {}).get("package_sources") or {}
    rows = []
    for ref in sorted(lineage.package_refs(p)):
        row: dict[str, Any] = {"path": ref, "kind": "data", "recorded": (pinned.get(ref) or {}).get("md5")}
        try:
            found = lineage.file_pin(ref)
        except PipelineError as exc:
            rows.append(row | {"found": None, "same": False, "problem": f"load.source {exc}"})
            continue
        row["found"] = found["md5"]
        if row["recorded"] is None:
            # Records before package_sources: data/splits' hash after load is the only check.
            row |= {"same": True, "note": "not pinned by the record; checked through data/splits after load"}
        else:
            row["same"] = row["found"] == row["recorded"]
            row["problem"] = (
                f"{ref}: md5 {found['md5']} ({found['distribution'] or 'installed'}), "
                f"pinned {row['recorded']} ({pinned[ref].get('distribution') or 'recorded'})"
            )
        rows.append(row)
    return rows


def check_base_model(clone: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """params.model, as found here, against the lineage's data/pretrained.json (files by sha256):
    a different base model cannot give the registered model, so this is checked before training."""
    from tunepipe import model_identity
    from tunepipe import params as params_mod

    recorded = record.get("pretrained")
    model = params_mod.read(clone / catalog.PARAMS).model
    row: dict[str, Any] = {"path": f"model.name {model.name}", "kind": "model", "recorded": recorded}
    if recorded is None:
        return []  # a record from before data/pretrained.json: data/pretrained.json's hash says it
    try:
        with contextlib.chdir(clone):  # a relative model.name is relative to the project
            found = model_identity.describe(model)
    except PipelineError as exc:
        return [row | {"found": None, "same": False, "problem": f"the base model cannot be had: {exc}"}]
    row |= {"found": found, "same": found == recorded}
    if not row["same"]:
        changed = [
            f"{name} (sha256 {(found.get(part) or {}).get(name, 'missing')[:12]}, pinned {digest[:12]})"
            for part in ("tokenizer", "model")
            for name, digest in (recorded.get(part) or {}).items()
            if (found.get(part) or {}).get(name) != digest
        ]
        extra = [
            f"{name} (not pinned)"
            for part in ("tokenizer", "model")
            for name in (found.get(part) or {})
            if name not in (recorded.get(part) or {})
        ]
        row["problem"] = f"base model {model.name}: " + (
            ", ".join(changed + extra)
            or f"{model_identity.summary(found)}, pinned {model_identity.summary(recorded)}"
        )
    elif not model_identity.pinned(found):
        row["note"] = "a hub model named by branch or tag: its files may have changed since"
    return [row]


def _missing_files(clone: Path, lock: dict[str, Any], text: str, source: str) -> list[str]:
    """The files a failed pull names by md5 (DVC names objects, not paths)."""
    found = []
    for path, md5 in pinned_inputs(lock).items():
        if dvcstore.is_dir_hash(md5):
            if md5 in text:
                found.append(f"{path} (its file list {md5})")
            found += [f"{path}/{rel}" for rel, m in _manifest(clone, md5, source).items() if m in text]
        elif md5 in text:
            found.append(path)
    return found


def rebuild(clone: Path, log: Path, say: Callable[[str], None]) -> None:
    """`dvc repro --force`: every stage runs (no run-cache restores), its output kept in `log`."""
    say("rebuilding: dvc repro --force")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro", "--force"],
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if line.startswith("Running stage"):
                say(f"  {line.strip()}")
        code = proc.wait()
    if code != 0:
        raise PipelineError(
            f"the rebuild failed (`dvc repro --force`, exit {code}):\n{_tail(log.read_text())}"
        )


def read_metrics(clone: Path) -> dict[str, Any]:
    path = clone / catalog.METRICS
    return json.loads(path.read_text()) if path.is_file() else {}


def compare(
    recorded_lock: dict[str, Any],
    rebuilt_lock: dict[str, Any],
    record: dict[str, Any],
    rebuilt_metrics: dict[str, Any],
    tolerance: float,
) -> dict[str, Any]:
    """Per output: recorded vs rebuilt hash; per metric: values, difference, within tolerance; the verdict."""
    before, after = lock_outputs(recorded_lock), lock_outputs(rebuilt_lock)
    outputs = [
        {
            "path": path,
            "stage": entry["stage"],
            "recorded": entry["md5"],
            "rebuilt": (after.get(path) or {}).get("md5"),
            "same": entry["md5"] == (after.get(path) or {}).get("md5"),
        }
        for path, entry in before.items()
    ]
    old, new = flatten(record.get("metrics") or {}), flatten(rebuilt_metrics)
    metrics = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        diff = b - a if is_number(a) and is_number(b) else None
        within = (abs(diff) <= tolerance) if diff is not None else a == b
        metrics.append({"name": key, "recorded": a, "rebuilt": b, "difference": diff, "within": within})
    model_path = str(catalog.MODEL)
    model = next((o for o in outputs if o["path"] == model_path), None)
    model_same = bool(model and model["same"])
    differed = [o["path"] for o in outputs if not o["same"]] + [m["name"] for m in metrics if not m["within"]]
    notes = []
    if model and record.get("model", {}).get("md5") not in (None, model["recorded"]):
        notes.append(
            f"the lineage record's model md5 {record['model']['md5']} is not the one the tag's dvc.lock "
            f"pins ({model['recorded']})"
        )
        differed.append("lineage record")
    ok = not notes and (model_same or (bool(metrics) and all(m["within"] for m in metrics)))
    return {
        "outputs": outputs,
        "metrics": metrics,
        "model_identical": model_same,
        "differed": differed,
        "notes": notes,
        "ok": ok,
    }


def render(report: dict[str, Any]) -> str:
    """The comparison as the table `tunepipe replay` prints."""
    lines = []
    if report.get("outputs"):
        width = max(len(o["path"]) for o in report["outputs"])
        lines.append(f"{'output':<{width}}  {'recorded':<36}  {'rebuilt':<36}")
        for o in report["outputs"]:
            lines.append(
                f"{o['path']:<{width}}  {_short(o['recorded']):<36}  {_short(o['rebuilt']):<36}  "
                + ("same" if o["same"] else "DIFFERENT")
            )
    if report.get("metrics"):
        width = max(len(m["name"]) for m in report["metrics"])
        lines.append("")
        lines.append(f"{'metric':<{width}}  {'recorded':>12}  {'rebuilt':>12}  {'difference':>12}")
        for m in report["metrics"]:
            diff = f"{m['difference']:+.3g}" if m["difference"] is not None else "-"
            recorded, rebuilt = format_value(m["recorded"]), format_value(m["rebuilt"])
            lines.append(
                f"{m['name']:<{width}}  {recorded:>12}  {rebuilt:>12}  {diff:>12}  "
                + ("within tolerance" if m["within"] else f"OUTSIDE tolerance {report['tolerance']:g}")
            )
    lines += [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines)


def _short(md5: str | None) -> str:
    return md5 or "missing"


def verdict(report: dict[str, Any]) -> str:
    """One line: reproduced exactly, within tolerance, or what differed."""
    if report["model_identical"] and not report["differed"]:
        return f"replay: {report['version']} reproduced exactly (model and every output hash identical)"
    if report["ok"]:
        if report["model_identical"]:
            return f"replay: {report['version']}: the model's hash is identical; also differed: " + ", ".join(
                report["differed"]
            )
        return (
            f"replay: {report['version']}: the model's hash differs, every metric within tolerance "
            f"{report['tolerance']:g} (differed: {', '.join(report['differed'])})"
        )
    return f"replay: {report['version']} NOT reproduced: differed: {', '.join(report['differed'])}"
