"""Auditing a shipped model: `tunepipe verify` re-hashes what a version's commit pins, `lineage`
and `versions` cross-check the lineage record with the tagged commit, and fetch/predict refuse
files that do not match (unless --no-verify)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import cli, copy_project, dvc, make_reviews, run
from tunepipe import audit, registry

pytestmark = pytest.mark.stage





def lock_md5(root: Path, rev: str, path: str) -> str:
    lock = yaml.safe_load(run(["git", "show", f"{rev}:dvc.lock"], root).stdout)
    return next(o["md5"] for s in lock["stages"].values() for o in s.get("outs", []) if o["path"] == path)


def cache_file(root: Path, dir_md5: str, name: str) -> Path:
    """The DVC cache file holding `name` of a cached directory output."""
    cache = root / ".dvc/cache/files/md5"
    entries = json.loads((cache / dir_md5[:2] / dir_md5[2:]).read_text())
    md5 = next(e["md5"] for e in entries if e["relpath"] == name)
    return cache / md5[:2] / md5[2:]


def alter(path: Path) -> None:
    """Flip the last bytes of a file, as bit rot or a hand edit would (the file stays loadable:
    a safetensors file ends in tensor data). Written anew: a cache file may be read-only."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[:-4] + bytes(b ^ 0xFF for b in data[-4:]))


@pytest.fixture
def registered(reproduced: tuple[Path, str], tmp_path: Path) -> Path:
    project = copy_project(reproduced[0], tmp_path / "project")
    registry.register(project, "model")
    return project


def test_a_clean_version_verifies_and_an_edited_lineage_record_is_caught(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(registered)
    code, out, _ = cli(capsys, "verify", "v0.1.0", "--root", root)
    assert code == 0, out
    # Every file the tag's dvc.lock pins is listed: model files, data outputs, reports.
    for name in (
        "models/model/model.safetensors",
        "models/model/config.json",
        "data/splits/train.parquet",
        "data/tokenized/train/state.json",
        "data/tokenized/labels.json",
        "reports/metrics.json (in git)",
        "model md5",
        "metric accuracy",
    ):
        assert re.search(rf"^  ok +[a-z ]+  {re.escape(name)}  ", out, re.M), name
    assert re.search(r"verified model@v0.1.0: all \d+ checks passed", out)
    assert audit.cross_check(registered, "model", "v0.1.0") == []
    report = json.loads(cli(capsys, "verify", "model@v0.1.0", "--json", "--root", root)[1])
    assert report["ok"] and all(c["ok"] for c in report["checks"])
    code, out, err = cli(capsys, "versions", "--root", root)
    assert code == 0 and "[!]" not in out and "WARNING" not in err

    # As a new user might: the record rewritten with a fake model md5 and a better accuracy,
    # committed, and the tag moved onto that commit with a matching message.
    real_md5 = lock_md5(registered, "model@v0.1.0", "models/model")
    record_file = registered / "lineage/model@v0.1.0.json"
    record = json.loads(record_file.read_text())
    true_accuracy = record["metrics"]["accuracy"]
    record["model"]["md5"] = "f" * 32 + ".dir"
    record["metrics"]["accuracy"] = 0.9999
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    run(["git", "commit", "-q", "-am", "Update lineage"], registered)
    run(["git", "tag", "-f", "-a", "model@v0.1.0", "-m", "model@v0.1.0: accuracy 0.9999"], registered)

    says = "lineage/model@v0.1.0.json says"
    fake_md5 = f"{says} model md5 {'f' * 32}.dir but the tag's dvc.lock pins {real_md5}"
    fake_accuracy = f"{says} accuracy 0.9999 but the tag's reports/metrics.json has "
    edited = "lineage/model@v0.1.0.json was edited after it was first committed"
    code, out, err = cli(capsys, "lineage", "v0.1.0", "--root", root)
    assert code == 0  # a report: it still prints the record, and says loudly that it is not the truth
    assert f"WARNING: {fake_md5}" in err and f"WARNING: {fake_accuracy}{true_accuracy:.6g}" in err
    assert f"WARNING: {edited}" in err and "Update lineage" in err
    assert "DISAGREES with the tagged commit in 3 place(s)" in out
    code, out, err = cli(capsys, "versions", "--root", root)
    assert code == 0 and "model@v0.1.0" in out and "[!] lineage disagrees with the tag (3)" in out
    assert f"WARNING: {fake_md5}" in err

    code, out, err = cli(capsys, "verify", "v0.1.0", "--root", root)
    assert code == 1
    assert re.search(r"^  MISMATCH +lineage field +model md5 ", out, re.M)
    assert re.search(r"^  MISMATCH +metrics +metric accuracy +found 0.9999", out, re.M)
    assert "  ok " in out and "models/model/model.safetensors" in out  # the files themselves are fine
    assert err.startswith("error: model@v0.1.0 failed verification (3 of ")
    assert fake_md5 in err and fake_accuracy in err and edited in err

    # A stage name works wherever a version does.
    registry.assign_stage(registered, "model", "v0.1.0", "prod")
    assert cli(capsys, "verify", "prod", "--root", root)[0] == 1


def test_altered_model_and_data_files_are_named(registered: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, fetched = str(registered), registered.parent / "fetched"
    assert cli(capsys, "fetch", "v0.1.0", "-o", str(fetched), "--root", root)[0] == 0
    code, out, _ = cli(capsys, "verify", "v0.1.0", "--path", str(fetched), "--root", root)
    assert code == 0 and f"{fetched.as_posix()}/model.safetensors" in out
    # fetch wrote the version's complete model card as README.md: it passes as that card.
    assert re.search(rf"^  ok +model file +{re.escape(fetched.as_posix())}/README.md ", out, re.M)

    # A folder given with --path: a changed file and a file the registered model lacks.
    alter(fetched / "model.safetensors")
    (fetched / "notes.txt").write_text("added later\n")
    card = fetched / "README.md"
    card.write_text(card.read_text().replace("| accuracy |", "| accuracy (edited) |"))
    code, out, err = cli(capsys, "verify", "v0.1.0", "--path", str(fetched), "--root", root)
    assert code == 1
    weights_line = rf"^  MISMATCH +model file +{re.escape(fetched.as_posix())}/model.safetensors "
    assert re.search(weights_line, out, re.M)
    assert f"{fetched.as_posix()}/model.safetensors: md5 " in err
    assert f"{fetched.as_posix()}/notes.txt: not a file of the registered model" in err
    assert f"{fetched.as_posix()}/README.md: md5 " in err
    assert "config.json" not in err

    # The DVC cache: a data file and a model file altered there.
    splits = cache_file(registered, lock_md5(registered, "model@v0.1.0", "data/splits"), "train.parquet")
    model_dir = lock_md5(registered, "model@v0.1.0", "models/model")
    weights = cache_file(registered, model_dir, "model.safetensors")
    alter(splits)
    alter(weights)
    code, out, err = cli(capsys, "verify", "v0.1.0", "--root", root)
    assert code == 1
    shown = weights.relative_to(registered).as_posix()
    assert f"models/model/model.safetensors: its cache file {shown} hashes to " in err
    assert "data/splits/train.parquet: its cache file " in err
    assert "data/splits/test.parquet" not in err and "to fix: delete it and `dvc pull` it again" in err
    assert re.search(r"^  MISMATCH +data output +data/splits/train.parquet ", out, re.M)

    # fetch (and predict by version) refuse it; --no-verify takes it, with a warning.
    code, _, err = cli(capsys, "fetch", "v0.1.0", "-o", str(registered.parent / "f2"), "--root", root)
    assert code == 1 and "the DVC cache is corrupted" in err and "--no-verify" in err
    code, out, err = cli(
        capsys, "fetch", "v0.1.0", "-o", str(registered.parent / "f2"), "--no-verify", "--root", root
    )
    assert code == 0 and "fetched v0.1.0" in out
    assert err.startswith("WARNING: model@v0.1.0: the DVC cache is corrupted") and "--no-verify" not in err

    # A cache file that is gone, with no DVC remote: not available, and what to do.
    weights.unlink()
    code, out, err = cli(capsys, "verify", "v0.1.0", "--root", root)
    assert code == 1
    assert re.search(r"^  NOT AVAILABLE +model file +models/model/model.safetensors ", out, re.M)
    assert "not in the DVC cache nor a DVC remote" in err and "dvc remote add -d" in err


def test_verify_takes_missing_files_from_the_dvc_remote(
    reproduced: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Raw data that `dvc add` tracks is checked too; a remote added after registration serves."""
    project = copy_project(reproduced[0], tmp_path / "project")
    run(["git", "rm", "-r", "-q", "--cached", "data/raw"], project)
    dvc(project, "add", "-q", "data/raw")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "raw data in DVC"], project)
    registry.register(project, "model")
    dvc(project, "remote", "add", "-d", "store", str(tmp_path / "store"))
    dvc(project, "push", "-q")
    shutil.rmtree(project / ".dvc/cache")
    code, out, _ = cli(capsys, "verify", "v0.1.0", "--root", str(project))
    assert code == 0, out
    for name in ("data input +data/raw/reviews.csv", "model file +models/model/model.safetensors"):
        assert re.search(rf"^  ok +{name}  [0-9a-f]{{32}}$", out, re.M), name
    assert "data/splits/train.parquet" in out


def test_predict_refuses_an_altered_workspace_model(
    reproduced: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(reproduced[0], tmp_path / "project")
    rows = tmp_path / "new.csv"
    pd.DataFrame({"text": [r["text"] for r in make_reviews(4, seed=3)]}).to_csv(rows, index=False)
    model, out = str(project / "models/model"), str(tmp_path / "out.csv")
    args = ("predict", "--model", model, str(rows), "-o", out, "--root", str(project))
    assert cli(capsys, *args)[0] == 0  # as trained: dvc.lock agrees
    Path(out).unlink()

    alter(project / "models/model/model.safetensors")
    code, _, err = cli(capsys, *args)
    assert code == 1 and not Path(out).exists()
    changed = "its files differ from what dvc.lock pins (models/model/model.safetensors modified)"
    assert changed in err and "dvc checkout models/model" in err and "--no-verify" in err
    code, printed, _ = cli(capsys, *args, "--no-verify")
    assert code == 0 and "predicted 4 rows" in printed and Path(out).is_file()
