"""Model registry on git tags (GTO, DVC's registry).

A version is an annotated tag `<name>@vX.Y.Z` on a commit whose dvc.lock pins the exact data and
model hashes; the lineage record (lineage/<name>@<version>.json) is committed in that same commit.
Stages (`staging`, `prod`) are GTO's stage tags (`<name>#<stage>#N`), assigned with gto.api; the
latest assignment of a stage wins, and a stage name works wherever a version is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tunepipe import catalog, dvcrepo, dvcstore, model_card, report
from tunepipe.dvcrepo import lock_outputs, read_lock
from tunepipe.errors import PipelineError
from tunepipe.gitrepo import FALLBACK_EMAIL, FALLBACK_NAME, blob, git, identity_args
from tunepipe.io import (
    atomic_dir,
    check_path_name,
    check_replaceable,
    read_json,
    write_json,
    write_text,
)
from tunepipe.lineage import REGISTERED_FILES, build_lineage, unversioned_refusal
from tunepipe.metrics import format_metrics
from tunepipe.version import Tag, Version, format_tag, next_version, version_of

STAGING = "staging"  # every new version the flow registers; the promotion stage (prod) when it wins


def _record_name(name: str, version: str) -> str:
    """`<name>@<version>`, checked to stay one file name inside lineage/."""
    check_path_name(name, "artifact name")
    check_path_name(version_of(version), "version")
    return format_tag(name, version)


def lineage_path(name: str, version: str) -> Path:
    return catalog.LINEAGE / f"{_record_name(name, version)}.json"


def report_path(name: str, version: str) -> Path:
    """The version's run report, committed beside its lineage record."""
    return catalog.LINEAGE / f"{_record_name(name, version)}.html"


def versions(root: Path, name: str) -> list[str]:
    """Registered versions, oldest first (GTO tags `<name>@vX.Y.Z`, sorted as versions)."""
    listed = git(root, "tag", "--list", "--sort=v:refname", "--", f"{name}@v*")
    return [Tag.parse(t).version for t in listed.splitlines()]


def version_in_stage(root: Path, name: str, stage: str) -> str | None:
    """The version GTO has in `stage` now (its latest assignment), or None."""
    from gto.api import find_versions_in_stage
    from gto.exceptions import GTOException

    try:
        found = find_versions_in_stage(str(root), name, stage)
    except GTOException:
        return None
    if not found:
        return None
    found = found if isinstance(found, list) else [found]
    return str(found[0].version)


def stages(root: Path, name: str) -> dict[str, list[str]]:
    """version -> the stages it holds now."""
    from gto.api import get_stages

    held: dict[str, list[str]] = {}
    for stage in get_stages(str(root), used=True):
        version = version_in_stage(root, name, stage)
        if version:
            held.setdefault(version, []).append(stage)
    return held


def resolve(root: Path, name: str, version: str) -> str:
    """A version as given (v0.1.0, 0.1.0, model@v0.1.0), or the version now in stage `version`."""
    bare = version_of(version)
    if Version.matches(bare):
        return bare
    holder = version_in_stage(root, name, bare)
    if holder is None:
        known = ", ".join(versions(root, name)) or "none"
        held = ", ".join(f"{s} ({v})" for v, ss in stages(root, name).items() for s in ss) or "none"
        raise PipelineError(
            f"{version!r} is neither a version of {name} nor a stage holding one "
            f"(versions: {known}; stages: {held})"
        )
    return holder


def assign_stage(root: Path, name: str, version: str, stage: str) -> str:
    """Put `version` in `stage` with GTO (a new stage tag); returns the tag's name."""
    from gto.api import assign
    from gto.constants import check_string_is_valid
    from gto.exceptions import GTOException

    root = Path(root).resolve()
    tag = registered_tag(root, name, version)
    if not check_string_is_valid(stage):
        raise PipelineError(
            f"stage {stage!r}: expected letters, digits, '-', '_' or '/' (starting and ending with a "
            "letter or digit), e.g. prod or staging"
        )
    ident = identity_args(root)
    before = set(git(root, "tag", "--list", "--", f"{name}#{stage}#*").splitlines())
    try:
        assign(
            str(root),
            name,
            stage,
            version=Tag.parse(tag).version,
            message=f"{tag} -> {stage}",
            author=FALLBACK_NAME if ident else None,
            author_email=FALLBACK_EMAIL if ident else None,
        )
    except GTOException as exc:
        raise PipelineError(f"assigning stage {stage} to {tag}: {exc}") from None
    new = sorted(set(git(root, "tag", "--list", "--", f"{name}#{stage}#*").splitlines()) - before)
    return new[-1] if new else f"{name}#{stage}"


def find_registered_model(root: Path, name: str, model_md5: str) -> str | None:
    """The version already registered for exactly this model, if any (registration is idempotent)."""
    for version in reversed(versions(root, name)):
        tag = format_tag(name, version)
        try:
            lock = read_lock(root, tag)
        except PipelineError:
            continue
        if lock_outputs(lock).get(str(catalog.MODEL), {}).get("md5") == model_md5:
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
    root: Path,
    name: str,
    bump_part: str = "patch",
    flow_run_id: str | None = None,
    decide: Callable[[str], dict[str, Any]] | None = None,
    page: Callable[[Path, dict[str, Any], str], str] | None = None,
    extra: dict[str, Any] | None = None,
    require_versioned: bool = False,
) -> dict[str, Any]:
    """Register the current, evaluated model as a new version; returns {version, tag, commit, new}.

    `decide(version)`: the promotion decision for the new version (tunepipe.promotion), made before
    the commit so that the lineage record holds it; the version then gets stage `staging`, and the
    decision's stage when it says promote ({..., promotion, stages} in the result).
    `page(root, record, tag)`: the version's run report (report.registration_page), committed
    beside its lineage record; without it none is (`tunepipe report` then builds one from it).
    `extra`: more of the run's findings for the lineage record (the flow's drift report).
    `require_versioned` (register.require_versioned): refuse a model trained on data in neither
    git nor DVC, which the lineage would name by hash only.
    """
    root = Path(root).resolve()
    check_path_name(name, "artifact name")
    check_declared(root, name)
    evaluation_file = root / catalog.EVALUATION
    if not evaluation_file.is_file():
        raise PipelineError(f"{catalog.EVALUATION} not found: run the evaluate stage before registering")
    if not read_json(evaluation_file)["passed"]:
        raise PipelineError("the model missed its evaluation thresholds; it cannot be registered")
    stale = dvcrepo.stale(root)
    if stale:
        raise PipelineError(
            f"the pipeline is not up to date ({', '.join(sorted(stale))}): run `dvc repro` first, "
            "so that the registered commit pins the data and model actually used"
        )
    model_md5 = lock_outputs(read_lock(root))[str(catalog.MODEL)]["md5"]
    existing = find_registered_model(root, name, model_md5)
    if existing:
        tag = format_tag(name, existing)
        return {
            "version": existing,
            "tag": tag,
            "commit": git(root, "rev-list", "-n", "1", tag),
            "new": False,
        }

    known = versions(root, name)
    version = next_version(known[-1] if known else None, bump_part)
    record = build_lineage(root, name, version, flow_run_id)
    if require_versioned and record["unversioned_inputs"]:
        raise PipelineError(unversioned_refusal(record["unversioned_inputs"]))
    decision = decide(version) if decide is not None else None
    if decision is not None:
        record["promotion"] = decision
    record |= extra or {}
    record_path = lineage_path(name, version)
    write_json(root / record_path, record)
    # metrics.json too, so that `dvc metrics diff <tag>` compares against a registered version.
    tracked = [*REGISTERED_FILES, str(record_path)]
    if page is not None:
        write_text(root / report_path(name, version), page(root, record, format_tag(name, version)))
        tracked.append(str(report_path(name, version)))
    tracked += [
        g for g in ("data/.gitignore", "models/.gitignore", "reports/.gitignore") if (root / g).exists()
    ]
    commit = commit_and_tag(root, name, version, tracked, format_metrics(record["metrics"]))
    result = {
        "version": version,
        "tag": format_tag(name, version),
        "commit": commit,
        "new": True,
        "unversioned_inputs": record["unversioned_inputs"],
    }
    if decision is not None:
        assigned = [assign_stage(root, name, version, STAGING)]
        if decision["promote"]:
            assigned.append(assign_stage(root, name, version, decision["stage"]))
        result |= {"promotion": decision, "stage_tags": assigned}
    return result


def commit_and_tag(root: Path, name: str, version: str, tracked: list[str], summary: str) -> str:
    """Commit `tracked` and tag the commit as `name@version` with GTO; returns the commit."""
    from gto.api import register as gto_register

    tag = format_tag(name, version)
    ident = identity_args(root)
    git(root, "add", "--", *tracked)
    git(root, *ident, "commit", "--quiet", "-m", f"Register {tag} ({summary})", "--", *tracked)
    commit = git(root, "rev-parse", "HEAD")
    gto_register(
        str(root),
        name,
        commit,
        version=version,
        message=f"{tag}: {summary}",
        author=FALLBACK_NAME if ident else None,
        author_email=FALLBACK_EMAIL if ident else None,
    )
    return commit


def registered_tag(root: Path, name: str, version: str) -> str:
    """The tag of a registered version (or of the one in a stage), or an error listing the versions."""
    check_path_name(name, "artifact name")  # also a `git tag --list` pattern: no wildcards
    tag = format_tag(name, resolve(root, name, version))
    if not git(root, "tag", "--list", "--", tag):  # `--`: a name like `--format=x` lists nothing
        known = ", ".join(versions(root, name)) or "none"
        raise PipelineError(f"no registered version {tag} (registered versions of {name}: {known})")
    return tag


def read_lineage(root: Path, name: str, version: str) -> dict[str, Any]:
    tag = registered_tag(root, name, version)
    version = Tag.parse(tag).version
    record = json.loads(git(root, "show", f"{tag}:{lineage_path(name, version).as_posix()}"))
    record["registered_commit"] = git(root, "rev-list", "-n", "1", tag)
    return record


def has_lineage(root: Path, tag: str) -> bool:
    """Whether a version's commit holds its lineage record (a tag made by hand with GTO has none)."""
    parsed = Tag.parse(tag)
    record = lineage_path(parsed.name, parsed.version).as_posix()
    return bool(git(root, "ls-tree", "--name-only", tag, "--", record, check=False))


def version_card(root: Path, name: str, version: str) -> str:
    """A registered version's complete model card (what `fetch` writes as README.md), from its
    lineage record in git: the same text in every clone, so a verifier can compare."""
    tag = registered_tag(root, name, version)
    if not has_lineage(root, tag):
        raise PipelineError(
            f"{tag}: its commit holds no lineage record ({lineage_path(name, tag).as_posix()}); "
            "it was not registered by `tunepipe register`, so there is no card to render"
        )
    return model_card.version_card(read_lineage(root, name, tag), name, tag, tag_reader(root, tag))


def version_report(root: Path, name: str, version: str) -> str:
    """A registered version's run report: the page its registration committed, or for a version
    registered before reports existed, one built from its lineage record and the outputs its
    dvc.lock pins (read from the DVC cache; a section whose file is not there says so)."""
    tag = registered_tag(root, name, version)
    version = Tag.parse(tag).version
    committed = git(root, "show", f"{tag}:{report_path(name, version).as_posix()}", check=False)
    if committed:
        return committed + "\n"
    record = read_lineage(root, name, version)
    return report.render(report.gather(tag_reader(root, tag), record, tag))


def tag_reader(root: Path, tag: str) -> report.Reader:
    """Files as of a registered version: from its commit, else from the DVC cache by the hashes
    its dvc.lock pins (a file inside an output directory through the directory's manifest)."""
    outs = lock_outputs(read_lock(root, tag))
    with dvcrepo.open_repo(root) as repo:

        def cached(md5: str) -> bytes | None:
            path = dvcstore.cache_path(repo, md5)
            return path.read_bytes() if path.is_file() else None

        def read(path: str) -> bytes | None:
            committed = blob(root, tag, path)
            if committed is not None:
                return committed
            if path in outs:
                return cached(outs[path]["md5"])
            for out, entry in outs.items():
                if path.startswith(out + "/") and dvcstore.is_dir_hash(entry["md5"]):
                    md5 = dvcstore.cached_manifest(repo, entry["md5"]).get(path.removeprefix(out + "/"))
                    return cached(md5) if md5 else None
            return None

    return read


def fetch_model(
    root: Path,
    name: str,
    version: str,
    out: Path,
    verify: bool = True,
    warn: Callable[[str], None] | None = None,
    force: bool = False,
) -> Path:
    """Materialise a registered version's model directory from the DVC cache (or remote).

    `out` is replaced only when io.check_replaceable allows it (new, empty, or written by an
    earlier fetch; `force`: any folder but a project, a git work tree, home, the current
    directory or `/`); the folder gets io.OUTPUT_MARKER, which verification ignores.

    The files are checked against the model's hash in the tag's dvc.lock before `out` is
    replaced: a corrupted cache gives an error naming the file, never a silently different model.
    README.md is then the version's complete card (version_card), so the folder no
    longer hashes to the registered md5 with it: a check compares the other files, or the card
    with version_card's.
    `verify=False` (`--no-verify`) takes the files as they are; the mismatch goes to `warn`.
    """
    from dvc.exceptions import DvcException
    from dvc_data.index.index import DataIndexDirError

    out = Path(out).resolve()
    check_replaceable(out, force)  # before any download: a refused folder costs nothing
    tag = registered_tag(root, name, version)
    entry = lock_outputs(read_lock(root, tag)).get(str(catalog.MODEL))
    if not entry:
        raise PipelineError(f"{tag}: its dvc.lock pins no {catalog.MODEL}; it cannot be fetched")
    with dvcrepo.open_repo(root) as repo, atomic_dir(out, force=force) as tmp:
        staged = tmp / ".download"  # DVC writes into a folder that does not exist yet
        try:
            repo.artifacts.download(name, version=Tag.parse(tag).version, out=str(staged), force=True)
        except (DvcException, DataIndexDirError, FileNotFoundError) as exc:
            raise not_in_cache(repo, tag, entry["md5"], exc) from None
        try:
            check_fetched(repo, tag, entry["md5"], staged)
        except PipelineError as exc:
            if verify:
                raise
            if warn is not None:
                warn(str(exc).removesuffix(NO_VERIFY))
        for child in staged.iterdir():
            child.rename(tmp / child.name)
        staged.rmdir()
        # The files checked, the folder gets the version's complete card (evaluation, lineage) in
        # place of the one training wrote; version_card(...) gives the same text again.
        # A version tagged without tunepipe has no lineage record: it keeps the training card.
        if has_lineage(root, tag):
            write_text(tmp / model_card.README, version_card(root, name, tag))
    return out


def _what_to_do(repo: Any, tag: str) -> str:
    remote = repo.config["core"].get("remote")
    rebuild = f"or rebuild it: `git checkout {tag}` and `dvc repro`"
    if remote:
        return f"`dvc push` it to DVC remote {remote!r} from the checkout that trained it, {rebuild}"
    return (
        "no DVC remote is configured: add the one it was pushed to (`dvc remote add -d <name> <url>`) "
        f"and run `dvc pull`, {rebuild}"
    )


def not_in_cache(repo: Any, tag: str, dir_md5: str, exc: Exception) -> PipelineError:
    """DVC could not read the model: which file is missing from the cache, and what to do."""
    missing = getattr(exc, "filename", None)
    remote = repo.config["core"].get("remote")
    where = "the DVC cache (.dvc/cache)" + (f" nor in DVC remote {remote!r}" if remote else "")
    if isinstance(missing, str) and missing.startswith(f"{catalog.MODEL}/"):
        md5 = dvcstore.cached_manifest(repo, dir_md5).get(missing.removeprefix(f"{catalog.MODEL}/"))
        cached = f" (its cache file {dvcstore.shown(repo, md5)})" if md5 else ""
        return PipelineError(f"{tag}: {missing}{cached} is not in {where}: {_what_to_do(repo, tag)}")
    return PipelineError(
        f"{tag}: the model ({catalog.MODEL}, {dir_md5}) is not in {where}"
        + ("" if remote else " (as in a fresh clone)")
        + f": {_what_to_do(repo, tag)}"
    )


NO_VERIFY = " (--no-verify uses the files as they are)"


def check_fetched(repo: Any, tag: str, dir_md5: str, folder: Path) -> None:
    """The fetched folder hashes to the registered model; otherwise name the corrupted cache files."""
    got, files = dvcstore.tree_md5(folder)
    if got == dir_md5:
        return
    remedy = f"and run `dvc pull` to get it again, or rebuild it: `git checkout {tag}` and `dvc repro`"
    manifest = dvcstore.cached_manifest(repo, dir_md5)
    bad = [rel for rel, md5 in manifest.items() if files.get(rel) != md5]
    if manifest and bad:
        shown = ", ".join(f"{dvcstore.shown(repo, manifest[rel])} ({catalog.MODEL}/{rel})" for rel in bad)
        raise PipelineError(
            f"{tag}: the DVC cache is corrupted: {shown} no longer holds what was registered: "
            f"delete {'it' if len(bad) == 1 else 'them'} {remedy}{NO_VERIFY}"
        )
    raise PipelineError(
        f"{tag}: the DVC cache is corrupted: {dvcstore.shown(repo, dir_md5)} (the file list of "
        f"{catalog.MODEL}) does not match the registered model {dir_md5}: delete it {remedy}{NO_VERIFY}"
    )
