"""What a registration records as uncommitted changes: only real ones, with their full names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import copy_project, dvc, run, set_params
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
