"""Output folders and names used as paths: `tunepipe fetch -o` replaces only a folder it wrote
itself (io.OUTPUT_MARKER), an empty one, or with --force any folder that is not a project, a git
work tree, home, the current directory or `/`; artifact names and versions never climb out of
their folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import FAKE_MODEL_FILES, cli, fake_registered_model, run
from tunepipe import audit, dvcstore, io, params, registry
from tunepipe.errors import PipelineError


def listing(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (.git and .dvc included), with each file's bytes."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return fake_registered_model(tmp_path / "project")


def model_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.stage
def test_fetch_into_the_project_root_is_refused_and_nothing_is_deleted(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)
    before = listing(project)
    for extra in ((), ("--force",)):
        code, out, err = cli(capsys, "fetch", "model@v0.1.0", "-o", ".", *extra)
        assert code == 1 and "fetched" not in out
        assert err.startswith(f"error: {project}: refusing to replace it: it is a project or git work tree (")
        assert len(err.strip().splitlines()) == 1
        assert listing(project) == before
    # The folder above the project holds it (and the current directory): refused, --force or not.
    code, _, err = cli(capsys, "fetch", "model@v0.1.0", "-o", "..", "--force")
    assert code == 1 and "refusing to replace it" in err and listing(project) == before


@pytest.mark.stage
def test_a_foreign_folder_needs_force_and_a_fetched_one_is_replaced(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ("--root", str(project))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me\n")
    code, out, err = cli(capsys, "fetch", "model@v0.1.0", "-o", str(foreign), *root)
    assert code == 1 and "fetched" not in out
    assert err == (
        f"error: {foreign}: refusing to replace a folder tunepipe did not write (it holds other files); "
        "choose a new or empty folder, or pass --force to replace it\n"
    )
    assert (foreign / "notes.txt").read_text() == "keep me\n" and model_files(foreign) == {"notes.txt"}
    # A file named by -o is not replaced either.
    single = tmp_path / "single.txt"
    single.write_text("a file\n")
    code, _, err = cli(capsys, "fetch", "model@v0.1.0", "-o", str(single), *root)
    assert code == 1 and "refusing to replace a file" in err and single.read_text() == "a file\n"

    # --force: replaced, and the folder is now one fetch wrote.
    assert cli(capsys, "fetch", "model@v0.1.0", "-o", str(foreign), "--force", *root)[0] == 0
    assert model_files(foreign) == {*FAKE_MODEL_FILES, io.OUTPUT_MARKER}

    # A new folder, then the same folder again: no --force needed for what fetch wrote.
    fetched = tmp_path / "fetched"
    assert cli(capsys, "fetch", "model@v0.1.0", "-o", str(fetched), *root)[0] == 0
    (fetched / "config.json").write_text("edited\n")
    code, out, _ = cli(capsys, "fetch", "model@v0.1.0", "-o", str(fetched), *root)
    assert code == 0 and f"fetched v0.1.0 -> {fetched}" in out
    assert (fetched / "config.json").read_text() == FAKE_MODEL_FILES["config.json"]
    # An empty folder is taken as it is.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "fetch", "model@v0.1.0", "-o", str(empty), *root)[0] == 0
    assert model_files(empty) == {*FAKE_MODEL_FILES, io.OUTPUT_MARKER}


@pytest.mark.stage
def test_the_marker_is_not_a_model_file_to_verification(project: Path, tmp_path: Path) -> None:
    fetched = registry.fetch_model(project, "model", "v0.1.0", tmp_path / "fetched")
    assert (fetched / io.OUTPUT_MARKER).is_file()
    registered = run(["git", "show", "model@v0.1.0:dvc.lock"], project).stdout
    got, _ = dvcstore.tree_md5(fetched, skip=(io.OUTPUT_MARKER,))
    assert f"md5: {got}" in registered  # the files are exactly the registered model's
    manifest = {name: dvcstore.md5_file(fetched / name) for name in FAKE_MODEL_FILES}
    checks = audit.compare_folder(fetched, manifest)
    assert all(c.ok for c in checks) and {Path(c.item).name for c in checks} == set(FAKE_MODEL_FILES)


@pytest.mark.stage
def test_a_git_work_tree_is_never_replaced(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ("--root", str(project))
    clone = tmp_path / "clone"
    run(["git", "init", "-q", str(clone)], tmp_path)
    (clone / "code.py").write_text("print('hi')\n")
    holder = tmp_path / "holder"  # a folder with a git work tree somewhere inside it
    (holder / "deep").mkdir(parents=True)
    run(["git", "init", "-q", str(holder / "deep" / "repo")], tmp_path)
    (project / ".dvc" / "cache").mkdir(exist_ok=True)
    for target, why in (
        (clone, "it is a project or git work tree (.git)"),
        (project / ".git" / "objects", "it is inside a .git folder (a repository's own data)"),
        (project / ".dvc" / "cache", "it is inside a .dvc folder (a repository's own data)"),
        (holder, f"it holds a project or git work tree ({holder / 'deep' / 'repo'}: .git)"),
    ):
        before = listing(target)
        code, _, err = cli(capsys, "fetch", "model@v0.1.0", "-o", str(target), "--force", *root)
        assert code == 1
        assert err == f"error: {target}: refusing to replace it: {why}; choose another output folder\n"
        assert listing(target) == before


@pytest.mark.unit
def test_home_cwd_and_root_are_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    (home / "notes.txt").write_text("x\n")
    (tmp_path / "here").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path / "here")
    for target, why in (
        (home, "it is or holds your home folder"),
        (home / "..", "it is or holds the current directory"),
        (tmp_path / "here", "it is or holds the current directory"),
        (Path(os.sep), "it is or holds the current directory"),
    ):
        with pytest.raises(PipelineError, match=f"refusing to replace it: {why}"):
            io.check_replaceable(target, force=True, owned=True)
    io.check_replaceable(home / "absent")  # a new folder is always fine


@pytest.mark.unit
def test_owned_outputs_get_no_marker(tmp_path: Path) -> None:
    """A pipeline output (owned) is replaced as DVC declares it, with no marker to change its hash;
    any other folder carries the marker from its first write on."""
    out = tmp_path / "models" / "model"
    out.mkdir(parents=True)
    (out / "old.bin").write_text("old\n")
    with io.atomic_dir(out, owned=True) as tmp:
        (tmp / "new.bin").write_text("new\n")
    assert model_files(out) == {"new.bin"}
    with pytest.raises(PipelineError, match="did not write"), io.atomic_dir(out) as tmp:
        (tmp / "x").write_text("x\n")
    assert model_files(out) == {"new.bin"}
    mine = tmp_path / "mine"
    with io.atomic_dir(mine) as tmp:
        (tmp / "a").write_text("a\n")
    with io.atomic_dir(mine) as tmp:
        (tmp / "b").write_text("b\n")
    assert model_files(mine) == {"b", io.OUTPUT_MARKER}


@pytest.mark.unit
@pytest.mark.parametrize(
    "name", ["../x", "..", "a/b", "/etc", ".hidden", "-rf", "a..b", "a b", "m*", "", "a\\b", "a@v1"]
)
def test_names_used_as_paths_cannot_climb_out(name: str) -> None:
    with pytest.raises(PipelineError, match="expected letters, digits"):
        io.check_path_name(name, "artifact name")
    with pytest.raises(PipelineError, match="artifact name"):
        registry.lineage_path(name, "v0.1.0")
    with pytest.raises(PipelineError, match="params.yaml: register.name: expected a name of letters"):
        params.parse({"register": {"name": name}}, "params.yaml")


@pytest.mark.unit
def test_good_names_pass() -> None:
    for name in ("model", "sentiment-v2", "bert_base.cased", "a+b", "M1"):
        assert io.check_path_name(name, "artifact name") == name
    assert registry.lineage_path("model", "v0.1.0") == Path("lineage/model@v0.1.0.json")
    with pytest.raises(PipelineError, match=r"version '\.\./\.\./x'"):
        registry.report_path("model", "../../x")


@pytest.mark.stage
def test_traversal_names_are_refused_by_the_cli(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ("--root", str(project))
    out = tmp_path / "out"
    for args, what in (
        (("../../model@v0.1.0",), "artifact name '../../model'"),
        (("v0.1.0", "--name", "../model"), "--name '../model'"),
        (("v0.1.0", "--name", "m*"), "--name 'm*'"),
    ):
        code, _, err = cli(capsys, "fetch", *args, "-o", str(out), *root)
        assert code == 1 and err.startswith(f"error: {what}: expected letters, digits"), err
        assert not out.exists()
    code, _, err = cli(capsys, "lineage", "v0.1.0", "--name", "../../etc", *root)
    assert code == 1 and "--name '../../etc': expected letters" in err
