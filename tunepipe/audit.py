"""Auditing a registered version: re-hash what its commit pins, and cross-check its lineage record.

A version's truth is its tagged commit: `dvc.lock` pins every output's hash, `reports/metrics.json`
holds the metrics, and the tag's message (written by GTO at registration) repeats them. The lineage
record is a claim about those, committed beside them: an edited record (committed and re-tagged)
must never pass for the truth, so every reader of it cross-checks it here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunepipe import catalog, dvcrepo, dvcstore, model_card, registry
from tunepipe.dvcrepo import lock_outputs, read_lock
from tunepipe.dvcstore import md5_bytes, md5_file, tree_md5
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import blob as git_blob
from tunepipe.gitrepo import git
from tunepipe.io import OUTPUT_MARKER
from tunepipe.metrics import flatten, format_value
from tunepipe.version import Tag

OK, MISMATCH, MISSING, SKIPPED = "ok", "MISMATCH", "NOT AVAILABLE", "skipped"

MODEL_FILE, DATA_OUTPUT, DATA_INPUT = "model file", "data output", "data input"
RECORD, LINEAGE = "lineage record", "lineage field"
METRICS, TAG = "metrics", "tag message"


@dataclass(frozen=True)
class Check:
    """One item checked: what the version's commit pins (expected) and what was found."""

    kind: str  # model file, data output, data input (dvc add), lineage record, lineage field, metrics, tag
    item: str  # a path (models/model/config.json) or a record field (model md5)
    expected: str
    found: str
    status: str = OK
    problem: str = ""  # the disagreement in words (a failure only)
    hint: str = ""  # what to do about a failure

    @property
    def ok(self) -> bool:
        return self.status in (OK, SKIPPED)

    def describe(self) -> str:
        return self.problem or f"{self.item}: expected {self.expected}, found {self.found}"


@dataclass
class Report:
    tag: str
    commit: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "commit": self.commit,
            "ok": self.ok,
            "checks": [asdict(c) | {"ok": c.ok} for c in self.checks],
        }


def _ok(kind: str, item: str, expected: str, found: str) -> Check:
    return Check(kind, item, expected, found)


def _bad(
    kind: str, item: str, expected: str, found: str, problem: str, hint: str = "", status: str = MISMATCH
) -> Check:
    return Check(kind, item, expected, found, status, problem, hint)





# --- files: the model and the data outputs ------------------------------------------------------


def compare_folder(
    folder: Path, manifest: dict[str, str], card: Callable[[], str] | None = None
) -> list[Check]:
    """Each file of a model folder against the registered model's file list (relpath -> md5):
    a changed or missing file and a file the registered model does not have all fail. `card()`: the
    version's complete model card, which `tunepipe fetch` writes as README.md in place of the
    training card; README.md passes when it is either. The marker fetch leaves (OUTPUT_MARKER)
    is not a model file: it is skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: not a directory (expected a model folder to verify)")
    found = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    found.pop(OUTPUT_MARKER, None)
    checks = []
    for rel, md5 in sorted(manifest.items()):
        item = (folder / rel).as_posix()
        if rel not in found:
            checks.append(_bad(MODEL_FILE, item, md5, "missing", f"{item}: missing (registered md5 {md5})"))
            continue
        got = md5_file(found[rel])
        fetched_card = rel == model_card.README and card is not None and got != md5
        if fetched_card and found[rel].read_text(errors="replace") == card():
            checks.append(_ok(MODEL_FILE, item, "the version's model card (written by fetch)", got))
            continue
        checks.append(
            _ok(MODEL_FILE, item, md5, got)
            if got == md5
            else _bad(MODEL_FILE, item, md5, got, f"{item}: md5 {got}, registered {md5}")
        )
    for rel in sorted(set(found) - set(manifest)):
        item = (folder / rel).as_posix()
        got, problem = f"md5 {md5_file(found[rel])}", f"{item}: not a file of the registered model"
        checks.append(_bad(MODEL_FILE, item, "no such file", got, problem))
    return checks


def _manifest(repo: Any, dir_md5: str) -> tuple[dict[str, str] | None, str | None]:
    return dvcstore.read_manifest(dvcstore.cache_path(repo, dir_md5), dir_md5)


def _rebuild(tag: str) -> str:
    return f"delete it and `dvc pull` it again, or rebuild it: `git checkout {tag}` and `dvc repro`"


def _cached_checks(repo: Any, tag: str, kind: str, out: str, md5: str) -> list[Check]:
    """An output re-hashed from the DVC cache: each file of a directory, or the file itself."""
    missing_hint = registry._what_to_do(repo, tag)
    if not dvcstore.is_dir_hash(md5):
        return [_cached_file(repo, tag, kind, out, md5, missing_hint)]
    manifest, why = _manifest(repo, md5)
    listing = dvcstore.shown(repo, md5)
    if why == dvcstore.MISSING:
        problem = f"{out} ({md5}): not in the DVC cache nor a DVC remote"
        return [_bad(kind, out, md5, "not in the DVC cache", problem, missing_hint, MISSING)]
    if manifest is None:
        problem = f"{out}: its file list {listing} in the DVC cache is corrupted ({why})"
        return [_bad(kind, f"{out} (file list {listing})", md5, why or "", problem, _rebuild(tag))]
    return [
        _cached_file(repo, tag, kind, f"{out}/{rel}", m, missing_hint) for rel, m in sorted(manifest.items())
    ]


def _cached_file(repo: Any, tag: str, kind: str, item: str, md5: str, missing_hint: str) -> Check:
    path = dvcstore.cache_path(repo, md5)
    if not path.is_file():
        problem = f"{item} (md5 {md5}): not in the DVC cache nor a DVC remote"
        return _bad(kind, item, md5, "not in the DVC cache", problem, missing_hint, MISSING)
    got = md5_file(path)
    if got == md5:
        return _ok(kind, item, md5, got)
    problem = f"{item}: its cache file {dvcstore.shown(repo, md5)} hashes to {got}, registered {md5}"
    return _bad(kind, item, md5, got, problem, _rebuild(tag))


def _folder_checks(repo: Any, tag: str, md5: str, folder: Path, card: Callable[[], str]) -> list[Check]:
    """A model folder given by path, against the registered model: file by file when the cache
    holds the registered file list, else as a whole (DVC's directory hash)."""
    manifest, _ = _manifest(repo, md5)
    if manifest is not None:
        return compare_folder(folder, manifest, card)
    if not Path(folder).is_dir():
        raise PipelineError(f"{folder}: not a directory (expected a model folder to verify)")
    got, _ = tree_md5(Path(folder), skip=(OUTPUT_MARKER,))
    if got == md5:
        return [_ok(MODEL_FILE, str(folder), md5, got)]
    problem = (
        f"{folder}: hashes to {got}, the registered model is {md5} (the registered file list is not "
        "in the DVC cache, so the changed files cannot be named)"
    )
    return [_bad(MODEL_FILE, str(folder), md5, got, problem)]


def _uncached(root: Path, tag: str) -> set[str]:
    """Outputs the tag's dvc.yaml declares `cache: false` (DVC keeps no copy of them)."""
    text = git(root, "show", f"{tag}:dvc.yaml", check=False)
    found = set()
    for body in ((yaml.safe_load(text) or {}).get("stages") or {}).values():
        for section in ("outs", "metrics", "plots"):
            for out in body.get(section) or []:
                if isinstance(out, dict):
                    for path, opts in out.items():
                        if isinstance(opts, dict) and opts.get("cache") is False:
                            found.add(path)
    return found


def _uncached_check(root: Path, tag: str, out: str, md5: str) -> Check:
    """A `cache: false` output: re-hashed from git when the tagged commit holds it (metrics)."""
    kind = METRICS if out == str(catalog.METRICS) else DATA_OUTPUT
    blob = git_blob(root, tag, out)
    if blob is None:
        kept = "not kept (cache: false, not in git)"
        if out in {str(p) for p in COPIED.values()}:
            kept += "; its copy in the lineage record is checked below"
        return Check(kind, out, md5, kept, SKIPPED)
    got = md5_bytes(blob)
    if got == md5:
        return _ok(kind, f"{out} (in git)", md5, got)
    problem = (
        f"{out} in the tagged commit hashes to {got} but the tag's dvc.lock pins {md5}: it was edited "
        "after the stage that wrote it"
    )
    return _bad(kind, f"{out} (in git)", md5, got, problem)


def _in_cache(repo: Any, md5: str) -> bool:
    """The object and, for a directory, its file list and every file in it are in the cache."""
    if not dvcstore.is_dir_hash(md5):
        return dvcstore.cache_path(repo, md5).is_file()
    manifest, _ = _manifest(repo, md5)
    return manifest is not None and all(dvcstore.cache_path(repo, m).is_file() for m in manifest.values())


def tracked_inputs(root: Path, tag: str) -> dict[str, dict[str, Any]]:
    """Data that `dvc add` tracks in the tagged commit (data/raw.dvc): path -> {md5, ...}."""
    found = {}
    for name in git(root, "ls-tree", "-r", "--name-only", tag).splitlines():
        if not name.endswith(".dvc") or Path(name).name == ".dvc":
            continue
        spec = yaml.safe_load(git_blob(root, tag, name) or b"") or {}
        for out in spec.get("outs") or []:
            if isinstance(out, dict) and out.get("md5") and out.get("path"):
                found[(Path(name).parent / out["path"]).as_posix()] = {"md5": out["md5"], "file": name}
    return found


def _fetch_missing(repo: Any, tag: str, outs: dict[str, dict[str, Any]], uncached: set[str]) -> None:
    """Pull the tag's outputs from the DVC remote into the cache when some are missing there.

    The remote is this checkout's: DVC would read the tagged commit's own .dvc/config, which may
    predate the remote."""
    name = repo.config["core"].get("remote")
    if not name or name not in repo.config["remote"]:
        return
    if all(_in_cache(repo, e["md5"]) for p, e in outs.items() if p not in uncached):
        return
    from dvc.exceptions import DvcException

    with contextlib.suppress(DvcException):  # what is still missing is reported, file by file
        config = {"core": {"remote": name}, "remote": {name: dict(repo.config["remote"][name])}}
        repo.fetch(revs=[tag], workspace=False, config=config)


def verify(root: Path, name: str, version: str, path: Path | None = None) -> Report:
    """Every output the version's dvc.lock pins, re-hashed (the model from `path` when given, else
    from the DVC cache or remote), and its lineage record cross-checked with the tagged commit."""
    root = Path(root).resolve()
    tag = registry.registered_tag(root, name, version)
    report = Report(tag, git(root, "rev-list", "-n", "1", tag))
    lock = _tag_lock(root, tag)
    outs = lock_outputs(lock)
    model = str(catalog.MODEL)
    uncached = _uncached(root, tag)
    if model not in outs:
        problem = f"{tag}: its dvc.lock pins no {model}"
        report.checks.append(_bad(MODEL_FILE, model, "an md5", "none", problem))
    inputs = tracked_inputs(root, tag)
    with dvcrepo.open_repo(root) as repo:
        wanted = {p: e for p, e in outs.items() if not (p == model and path)} | inputs
        _fetch_missing(repo, tag, wanted, uncached)
        for out, entry in inputs.items():
            report.checks += _cached_checks(repo, tag, DATA_INPUT, out, entry["md5"])
        for out, entry in outs.items():
            if out == model:
                if path is not None:
                    card = functools.partial(registry.version_card, root, name, tag)
                    report.checks += _folder_checks(repo, tag, entry["md5"], Path(path), card)
                else:
                    report.checks += _cached_checks(repo, tag, MODEL_FILE, out, entry["md5"])
            elif out in uncached:
                report.checks.append(_uncached_check(root, tag, out, entry["md5"]))
            else:
                report.checks += _cached_checks(repo, tag, DATA_OUTPUT, out, entry["md5"])
    report.checks += record_checks(root, name, tag, lock)
    return report


# --- the lineage record against the tagged commit -------------------------------------------------


def _short(value: Any) -> str:
    return "none" if value is None else str(value)


def _shown_value(value: Any) -> str:
    return format_value(value, missing="none")


def _md5(entry: Any) -> str | None:
    return entry.get("md5") if isinstance(entry, dict) else None


METRIC_IN_MESSAGE = re.compile(r"(\w+) (-?\d+(?:\.\d+)?(?:e-?\d+)?)")


def tag_message(root: Path, tag: str) -> str | None:
    """The annotation of a version's tag (GTO writes `<tag>: <metrics>`), None for a plain tag."""
    out = git(root, "for-each-ref", "--format=%(objecttype)%00%(contents:subject)", f"refs/tags/{tag}")
    kind, _, subject = out.partition("\0")
    return subject if kind == "tag" else None


# Record fields that copy a JSON output whole (build_lineage), and that output.
COPIED = {"pretrained": catalog.PRETRAINED, "training": catalog.TRAIN_REPORT}


def record_checks(root: Path, name: str, tag: str, lock: dict[str, Any]) -> list[Check]:
    """The lineage record at `tag` against that commit's dvc.lock, reports/metrics.json,
    params.yaml and the tag's own message, and against its git history (written once, at
    registration)."""
    root = Path(root).resolve()
    version = Tag.parse(tag).version
    rel = registry.lineage_path(name, version).as_posix()
    commit = git(root, "rev-list", "-n", "1", tag)
    blob = git_blob(root, tag, rel)
    if blob is None:
        problem = f"{rel} is not in the tagged commit {commit[:10]}: {tag} has no lineage record"
        return [_bad(RECORD, rel, "in the tagged commit", "missing", problem)]
    try:
        record = json.loads(blob)
    except ValueError as exc:
        return [_bad(RECORD, rel, "JSON", "unreadable", f"{rel}: not valid JSON ({exc})")]
    checks = [_history_check(root, rel, tag)]

    def claim(kind: str, item: str, says: Any, truth: Any, source: str) -> None:
        if says == truth:
            checks.append(_ok(kind, item, _short(truth), _short(says)))
        else:
            problem = f"{rel} says {item} {_short(says)} but {source} {_short(truth)}"
            checks.append(_bad(kind, item, _short(truth), _short(says), problem))

    claim(LINEAGE, "artifact", record.get("artifact"), name, "the tag names")
    claim(LINEAGE, "version", record.get("version"), version, "the tag names")
    code = record.get("code_commit")
    ancestor = _is_ancestor(root, code, commit) if code else None
    expected = f"an ancestor of {commit[:10]}"
    if ancestor:
        checks.append(_ok(LINEAGE, "code commit", expected, code))
    elif ancestor is False:
        problem = f"{rel} says code commit {code} but that is not in the history of the tagged commit"
        checks.append(_bad(LINEAGE, "code commit", expected, code, problem))
    elif code:  # a shallow clone lacks it: nothing to say either way
        checks.append(Check(LINEAGE, "code commit", expected, f"{code} (not in this clone)", SKIPPED))

    outs = lock_outputs(lock)
    pins = "the tag's dvc.lock pins"
    claim(LINEAGE, "model md5", _md5(record.get("model")), _md5(outs.get(str(catalog.MODEL))), pins)
    data = record.get("data") or {}
    claim(LINEAGE, "data splits md5", _md5(data.get("splits")), _md5(outs.get(str(catalog.SPLITS))), pins)
    tokenized = data.get("tokenized") or {}
    if "md5" in tokenized:  # records from before one output per split
        claim(LINEAGE, "tokenized md5", tokenized["md5"], _md5(outs.get(str(catalog.TOKENIZED))), pins)
    else:
        for split in (*catalog.SPLIT_NAMES, "labels"):
            out = str(catalog.tokenized_info() if split == "labels" else catalog.tokenized_split(split))
            claim(LINEAGE, f"tokenized {split} md5", _md5(tokenized.get(split)), _md5(outs.get(out)), pins)

    # Fields that hold a whole JSON output: written back as the stage wrote it, they hash to its pin.
    for key, out in COPIED.items():
        if key in record and str(out) in outs:
            text = json.dumps(record[key], indent=2, sort_keys=False, default=str) + "\n"
            says = md5_bytes(text.encode()) if record[key] is not None else None
            claim(LINEAGE, f"{key} (as {out}) md5", says, _md5(outs[str(out)]), pins)

    said = record.get("metrics") or {}
    checks += _metrics_checks(root, rel, tag, said)
    checks += _message_checks(root, rel, tag, said)
    params_blob = git_blob(root, tag, str(catalog.PARAMS))
    if params_blob is not None and "params" in record:
        # Through JSON, as the record stored them (integer keys become text, dates strings).
        as_stored = json.loads(json.dumps(yaml.safe_load(params_blob) or {}, default=str))
        truth, says = flatten(as_stored), flatten(record.get("params") or {})
        differ = sorted(k for k in set(truth) | set(says) if truth.get(k) != says.get(k))
        if not differ:
            checks.append(_ok(LINEAGE, "params", f"the tag's {catalog.PARAMS}", "same"))
        else:
            problem = (
                f"{rel} says params " + ", ".join(f"{k}={_short(says.get(k))}" for k in differ)
                + f" but the tag's {catalog.PARAMS} has "
                + ", ".join(f"{k}={_short(truth.get(k))}" for k in differ)
            )
            checks.append(_bad(LINEAGE, "params", f"the tag's {catalog.PARAMS}", ", ".join(differ), problem))
    return checks


def _history_check(root: Path, rel: str, tag: str) -> Check:
    """A record is written once, by the registration commit; later commits that edited it (and
    then got the tag) are named."""
    history = git(root, "log", "--format=%H %s", tag, "--", rel).splitlines()
    edits = history[:-1]  # newest first; the last one wrote it
    if not edits:
        return _ok(RECORD, f"{rel} history", "written once, at registration", "written once")
    shown = "; ".join(f"{h[:10]} ({h.partition(' ')[2]})" for h in edits)
    problem = f"{rel} was edited after it was first committed: {shown}"
    return _bad(RECORD, f"{rel} history", "written once, at registration", f"{len(edits)} edit(s)", problem)


def _metrics_checks(root: Path, rel: str, tag: str, said: dict[str, Any]) -> list[Check]:
    """The record's metrics against reports/metrics.json in the tagged commit (which dvc.lock pins)."""
    blob = git_blob(root, tag, str(catalog.METRICS))
    if blob is None:
        problem = f"{catalog.METRICS} is not in the tagged commit: the record's metrics cannot be checked"
        return [_bad(METRICS, "metrics", f"{catalog.METRICS} in the tagged commit", "missing", problem)]
    truth = json.loads(blob)
    checks = []
    for key in sorted(set(said) | set(truth)):
        says, real = _shown_value(said.get(key)), _shown_value(truth.get(key))
        if said.get(key) == truth.get(key):
            checks.append(_ok(METRICS, f"metric {key}", real, says))
        else:
            problem = f"{rel} says {key} {says} but the tag's {catalog.METRICS} has {real}"
            checks.append(_bad(METRICS, f"metric {key}", real, says, problem))
    return checks


def _message_checks(root: Path, rel: str, tag: str, said: dict[str, Any]) -> list[Check]:
    """The record's metrics against the tag's message (`<tag>: accuracy 0.8333, ...`, rounded)."""
    message = tag_message(root, tag)
    body = message.split(": ", 1)[1] if message and message.startswith(f"{tag}: ") else ""
    announced = dict(METRIC_IN_MESSAGE.findall(body))
    if not announced:
        return [Check(TAG, tag, "metrics in the tag's message", "none", SKIPPED)]
    checks = []
    for key, text in announced.items():
        value = said.get(key)
        tolerance = 0.5 * 10 ** -_decimals(text)
        if isinstance(value, int | float) and abs(float(value) - float(text)) <= tolerance:
            checks.append(_ok(TAG, f"tag {key}", text, _shown_value(value)))
        else:
            problem = f"{rel} says {key} {_shown_value(value)} but the tag's message ({message}) has {text}"
            checks.append(_bad(TAG, f"tag {key}", text, _shown_value(value), problem))
    return checks


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text and "e" not in text else 4


COMMIT_HASH = re.compile(r"[0-9a-f]{7,64}")


def _is_ancestor(root: Path, older: str, newer: str) -> bool | None:
    """None when git cannot tell (`older` is not in this clone, e.g. a shallow one). `older` comes
    from a committed record: anything but a commit hash (an option, a range) is no ancestor."""
    import subprocess

    if not isinstance(older, str) or not COMMIT_HASH.fullmatch(older):
        return False

    proc = subprocess.run(
        ["git", "merge-base", "--is-ancestor", older, newer], cwd=root, capture_output=True, check=False
    )
    return {0: True, 1: False}.get(proc.returncode)


def cross_check(root: Path, name: str, version: str) -> list[str]:
    """The disagreements between a version's lineage record and its tagged commit (dvc.lock,
    reports/metrics.json, params.yaml, the tag's message, the record's history), in words."""
    root = Path(root).resolve()
    tag = registry.registered_tag(root, name, version)
    return [c.describe() for c in record_checks(root, name, tag, _tag_lock(root, tag)) if not c.ok]


def _tag_lock(root: Path, tag: str) -> dict[str, Any]:
    if git_blob(root, tag, "dvc.lock") is None:
        raise PipelineError(f"{tag}: the tagged commit has no dvc.lock, so nothing it pins can be checked")
    return read_lock(root, tag)
