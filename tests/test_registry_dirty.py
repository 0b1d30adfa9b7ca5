"""What a registration records as uncommitted changes: only real ones, with their full names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import copy_project, dvc, run, set_params, tunepipe
from tunepipe import lineage, registry
from tunepipe.gitrepo import changed_paths, git

pytestmark = pytest.mark.stage


def test_porcelain_names_keep_their_first_letter(tmp_path: Path) -> None:
    """An unstaged change is listed as ` M name`: the leading space must not eat a letter."""
    run(["git", "init", "-q"], tmp_path)
    for name in ("dvc.lock", "a file.txt", "été.csv", "old.txt"):
        (tmp_path / name).write_text("one\n")
    run(["git", "add", "-A"], tmp_path)
    run(["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "-m", "x"], tmp_path)
    assert changed_paths(tmp_path) == []
    (tmp_path / "dvc.lock").write_text("two\n")  # unstaged: " M dvc.lock"
    (tmp_path / "a file.txt").write_text("two\n")
    (tmp_path / "été.csv").write_text("two\n")
    run(["git", "mv", "old.txt", "new.txt"], tmp_path)  # staged rename: "R  new.txt\0old.txt"
    assert sorted(changed_paths(tmp_path)) == ["a file.txt", "dvc.lock", "new.txt", "été.csv"]
    # git() keeps leading spaces too: the first porcelain line starts with one.
    assert git(tmp_path, "status", "--porcelain", "--untracked-files=no").startswith(" M ")


def test_reregistration_after_a_param_change_records_a_clean_tree(
    reproduced: tuple[Path, str], tmp_path: Path
) -> None:
    project = copy_project(reproduced[0], tmp_path / "p")
    first = registry.register(project, "model")
    assert registry.read_lineage(project, "model", first["version"])["uncommitted_changes"] == []
    # Registration renders no HTML: without a page (the register commands give one), none is committed.
    first_page = registry.report_path("model", first["version"]).as_posix()
    assert git(project, "ls-tree", "--name-only", first["tag"], "--", first_page) == ""

    set_params(project, **{"train.seed": 7})
    dvc(project, "repro")
    asked = []

    def page(root: Path, record: dict, tag: str) -> str:
        asked.append((Path(root), record["version"], tag))
        return "<html>the page</html>\n"

    second = registry.register(project, "model", page=page)
    assert second["new"] and second["version"] == "v0.1.1"
    assert asked == [(project.resolve(), "v0.1.1", "model@v0.1.1")]
    committed = git(project, "show", f"model@v0.1.1:{registry.report_path('model', 'v0.1.1').as_posix()}")
    assert committed == "<html>the page</html>"
    assert registry.read_lineage(project, "model", "v0.1.1")["uncommitted_changes"] == []

    # A tracked file really left dirty is recorded, by its full name.
    (project / "notes.txt").write_text("one\n")
    run(["git", "add", "notes.txt"], project)
    run(["git", "commit", "-q", "-m", "notes"], project)
    (project / "notes.txt").write_text("edited after the run\n")
    record = lineage.build_lineage(project, "model", "v0.1.2", None)
    assert record["uncommitted_changes"] == ["notes.txt"]


def test_a_registration_names_data_kept_in_neither_git_nor_dvc(
    reproduced: tuple[Path, str], tmp_path: Path
) -> None:
    """A source file nobody versioned: dvc.lock pins its hash, yet no remote can give it back, so
    `tunepipe replay` of the version fails long after it shipped. The registration says so."""
    project = copy_project(reproduced[0], tmp_path / "p")
    run(["git", "rm", "-q", "--cached", "data/raw/reviews.csv"], project)  # the file stays, untracked
    run(["git", "commit", "-q", "-m", "reviews.csv out of git"], project)
    # register.require_versioned makes it a refusal: no commit, no tag.
    set_params(project, **{"register.require_versioned": True})
    head = git(project, "rev-parse", "HEAD")
    refused = tunepipe(project, "register", check=False)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: register.require_versioned: the training data has 1 file(s) in neither git nor DVC: "
        "data/raw/reviews.csv; `dvc add` each file and commit its .dvc file (then `dvc push`), or set "
        "register.require_versioned: false to register with a warning"
    )
    assert git(project, "rev-parse", "HEAD") == head and git(project, "tag", "--list") == ""
    set_params(project, **{"register.require_versioned": False})
    out = tunepipe(project, "register")
    assert "registered model@v0.1.0" in out.stdout
    assert (
        "WARNING: model@v0.1.0 was trained on 1 file(s) in neither git nor DVC: data/raw/reviews.csv. "
        "Its lineage pins them by hash only, so `tunepipe replay` cannot rebuild it"
    ) in out.stderr
    assert registry.read_lineage(project, "model", "v0.1.0")["unversioned_inputs"] == ["data/raw/reviews.csv"]
    shown = tunepipe(project, "lineage", "v0.1.0").stdout
    assert "  unversioned data    data/raw/reviews.csv (in neither git nor DVC)" in shown


def test_versioned_inputs_are_those_in_the_head_commit_or_a_committed_dvc_file(tmp_path: Path) -> None:
    from tunepipe.dvcrepo import unversioned_inputs

    run(["git", "init", "-q"], tmp_path)
    raw = tmp_path / "data" / "raw"
    names = ("README.md", "in_git.csv", "added/a.csv", "added/b.csv", "one.csv", "loose.csv", "staged.csv")
    for name in names:
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).write_text("text,label\n")
    (raw / ".gitignore").write_text("/added\n/one.csv\n")
    # What `dvc add` writes: a .dvc file beside the data, its outs relative to that folder.
    (raw / "added.dvc").write_text("outs:\n- md5: 0123.dir\n  path: added\n")
    (raw / "one.csv.dvc").write_text("outs:\n- md5: 4567\n  path: one.csv\n")
    run(["git", "add", "data/raw/README.md", "data/raw/in_git.csv", "data/raw/.gitignore"], tmp_path)
    run(["git", "add", "data/raw/added.dvc", "data/raw/one.csv.dvc"], tmp_path)
    run(["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "-m", "x"], tmp_path)
    run(["git", "add", "data/raw/staged.csv"], tmp_path)  # staged, not in the commit a registration makes
    lock = {
        "stages": {
            "load": {"deps": [{"path": "tasks/load.py", "md5": "1"}, {"path": "data/raw", "md5": "2.dir"}]},
            "train": {"deps": [{"path": "data/splits", "md5": "3.dir"}], "outs": [{"path": "data/splits"}]},
        }
    }
    sources = ["data/raw/in_git.csv", "/elsewhere/rows.csv", "../sibling.csv"]
    assert unversioned_inputs(tmp_path, lock, sources) == [
        "data/raw/loose.csv",
        "data/raw/staged.csv",
        "/elsewhere/rows.csv",  # outside every pinned input: dvc.lock pins it by no hash at all
        "../sibling.csv",
    ]


def test_a_run_that_could_not_register_is_refused_before_its_first_stage(tmp_path: Path) -> None:
    """register.require_versioned is checked when the flow starts (dvc.yaml names data/raw before
    dvc.lock pins it), not after a train of many minutes."""
    import flows.pipeline
    from tests.helpers import REPO
    from tunepipe.dvcrepo import declared_inputs, unversioned_before_run

    for name in ("dvc.yaml", "params.yaml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    raw = tmp_path / "data/raw"
    raw.mkdir(parents=True)
    (raw / "README.md").write_text("sources\n")
    (raw / "mine.csv").write_text("text,label\ngood,pos\n")
    run(["git", "init", "-q"], tmp_path)
    run(["git", "add", "dvc.yaml", "params.yaml", "data/raw/README.md"], tmp_path)
    run(["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "-m", "x"], tmp_path)
    assert declared_inputs(tmp_path) == ["data/raw"]
    assert unversioned_before_run(tmp_path, ["data/raw/mine.csv", "/elsewhere/rows.csv"]) == [
        "data/raw/mine.csv",
        "/elsewhere/rows.csv",
    ]
    set_params(tmp_path, **{"register.require_versioned": True, "load.source": "data/raw/mine.csv"})
    state = flows.pipeline.pipeline.fn(root=str(tmp_path))
    assert state.is_failed()
    assert state.message.startswith(
        "register.require_versioned: the training data has 1 file(s) in neither git nor DVC: "
        "data/raw/mine.csv;"
    )
    assert not (tmp_path / "data/pretrained.json").exists() and not (tmp_path / "data/splits").exists()
