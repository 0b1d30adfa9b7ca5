"""The registry against the team's git remote: what origin lacks is pushed, a moved branch is
merged and the push retried, a conflict or a taken version number is an error with the commands.

Real git repositories (a bare `origin`, worker and teammate clones) and a directory DVC remote; a
registration is made by hand (a commit and GTO-style annotated tags), and the retrain flow's body
runs without a Prefect server (`retrain.fn`, the pipeline replaced by its result).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import dvc, remote_tags, run, stored_files
from tunepipe import remote
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit


def git(root: Path, *args: str) -> str:
    return run(["git", *args], root).stdout.strip()


def clone(bare: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", f"file://{bare}", str(dest)], dest.parent)
    git(dest, "config", "user.email", "worker@example.com")
    git(dest, "config", "user.name", "worker")
    return dest


@pytest.fixture
def team(tmp_path: Path) -> tuple[Path, Path]:
    """(bare git remote with branch main, directory DVC remote): a project tracking model.txt."""
    author, bare, store = tmp_path / "author", tmp_path / "origin.git", tmp_path / "dvc-remote"
    author.mkdir()
    run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], tmp_path)
    git(author, "init", "-q", "-b", "main")
    git(author, "config", "user.email", "author@example.com")
    git(author, "config", "user.name", "author")
    dvc(author, "init", "-q")
    dvc(author, "config", "core.analytics", "false")
    dvc(author, "remote", "add", "-d", "shared", str(store))
    (author / "model.txt").write_text("weights 0\n")
    (author / "README.md").write_text("project\n")
    dvc(author, "add", "-q", "model.txt")
    git(author, "add", "-A")
    git(author, "commit", "-q", "-m", "project")
    dvc(author, "push", "-q")
    git(author, "remote", "add", "origin", str(bare))
    git(author, "push", "-q", "origin", "main")
    return bare, store


def register(root: Path, version: str, weights: str, stage: int = 1) -> str:
    """What `tunepipe register` leaves: a commit pinning new outputs, a version tag and a stage tag."""
    (root / "model.txt").write_text(weights)
    dvc(root, "add", "-q", "model.txt")
    git(root, "add", "model.txt.dvc")
    git(root, "commit", "-q", "-m", f"Register model@{version}")
    git(root, "tag", "-a", f"model@{version}", "-m", f"model@{version}")
    git(root, "tag", "-a", f"model#staging#{stage}", "-m", "staging")
    return git(root, "rev-parse", "HEAD")


def on_origin_main(bare: Path, commit: str) -> bool:
    return run(["git", "merge-base", "--is-ancestor", commit, "main"], bare, check=False).returncode == 0


def teammate_pushes(bare: Path, tmp_path: Path, path: str, text: str) -> str:
    mate = tmp_path / "teammate"
    if not mate.exists():
        clone(bare, mate)
    git(mate, "pull", "-q", "--no-rebase", "origin", "main")
    (mate / path).write_text(text)
    git(mate, "add", path)
    git(mate, "commit", "-q", "-m", f"teammate edits {path}")
    git(mate, "push", "-q", "origin", "HEAD:refs/heads/main")
    return git(mate, "rev-parse", "HEAD")


# --- the retrain flow: a version an earlier run failed to push ---------------------------------


def run_retrain(
    monkeypatch: pytest.MonkeyPatch, root: Path, registered: dict[str, Any], **kwargs: Any
) -> Any:
    """The retrain flow's body on `root`, the pipeline replaced by one that finds `registered`."""
    from prefect.states import Completed

    import flows.retrain

    stages = {s: "Cached" for s in ("pretrained", "load", "validate", "tokenize", "train", "evaluate")}
    result = {"stages": stages, "registered": registered, "promotion": None, "metrics": {}}
    monkeypatch.setattr(flows.retrain, "pipeline", lambda **kw: Completed(data=result))
    monkeypatch.setattr(flows.retrain, "get_run_logger", lambda: logging.getLogger("retrain-test"))
    return flows.retrain.retrain.fn(root=str(root), **kwargs)


def test_a_version_whose_push_failed_is_pushed_by_the_next_run(
    team: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare, store = team
    worker = clone(bare, tmp_path / "worker")
    commit = register(worker, "v0.1.0", "weights 1\n")  # its git push failed: origin never got it
    before = stored_files(store)
    assert not {t for t in remote_tags(bare) if "@" in t}

    registered = {"tag": "model@v0.1.0", "version": "v0.1.0", "commit": commit, "new": False}
    result = run_retrain(monkeypatch, worker, registered)

    assert isinstance(result, dict), result
    assert {"model@v0.1.0", "model#staging#1"} <= remote_tags(bare)
    assert on_origin_main(bare, commit)
    assert stored_files(store) > before  # DVC's remote got the bytes the tag names
    assert result["pushed"] == ["dvc:shared", "git:origin"]
    assert result["message"] == (
        "nothing changed: every stage Cached, no new version (model@v0.1.0 is current); "
        "pushed to origin what an earlier run left unpushed: model#staging#1, model@v0.1.0"
    )
    # The run after it finds origin complete and says only that nothing changed.
    again = run_retrain(monkeypatch, worker, registered)
    assert again["pushed"] == ["dvc:shared"]
    assert again["message"].endswith("(model@v0.1.0 is current)")


def test_checking_out_the_branch_keeps_a_registration_origin_lacks(
    team: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, _ = team
    worker = clone(bare, tmp_path / "worker")
    commit = register(worker, "v0.1.0", "weights 1\n")
    mate_commit = teammate_pushes(bare, tmp_path, "README.md", "teammate\n")
    remote.fetch_tags(worker)
    assert remote.checkout(worker, "main") == "branch main"
    head = git(worker, "rev-parse", "HEAD")
    for kept in (commit, mate_commit):  # origin's branch merged in, the registration still on it
        assert run(["git", "merge-base", "--is-ancestor", kept, head], worker, check=False).returncode == 0
    assert remote.publish(worker) is not None
    assert on_origin_main(bare, commit)


def test_a_pinned_run_in_a_fresh_clone_trains_the_pin_though_origin_registered_since(
    team: tuple[Path, Path], tmp_path: Path
) -> None:
    """A deployment pins commit P; a later run registered on top of it and pushed. A worker's
    fresh clone has origin's branch (with that registration) checked out: the pinned run trains P,
    not origin's head (the registration is on origin, nothing is stranded to keep)."""
    bare, _ = team
    pinned = git(bare, "rev-parse", "main")
    earlier = clone(bare, tmp_path / "earlier-run")
    registration = register(earlier, "v0.1.0", "weights 1\n")
    git(earlier, "push", "-q", "--follow-tags", "origin", "HEAD:refs/heads/main")
    worker = clone(bare, tmp_path / "worker")
    remote.fetch_tags(worker)

    described = remote.checkout(worker, pinned, "main")

    assert git(worker, "rev-parse", "HEAD") == pinned, described
    assert registration not in git(worker, "rev-list", "HEAD")


# --- a teammate pushed first ------------------------------------------------------------------


def test_a_push_rejected_because_a_teammate_pushed_first_merges_and_retries(
    team: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bare, _ = team
    worker = clone(bare, tmp_path / "worker")
    commit = register(worker, "v0.1.0", "weights 1\n")
    real_merge = remote._merge_origin
    raced: list[str] = []

    def teammate_pushes_meanwhile(root: Path, current: remote.Plan) -> None:
        real_merge(root, current)
        if not raced:  # between this run's look at origin and its push
            raced.append(teammate_pushes(bare, tmp_path, "README.md", "teammate\n"))

    monkeypatch.setattr(remote, "_merge_origin", teammate_pushes_meanwhile)
    warnings: list[str] = []
    pushed = remote.publish(worker, log=warnings.append)

    assert pushed is not None and pushed.tags == ("model#staging#1", "model@v0.1.0")
    assert warnings == ["git push to origin rejected (attempt 1 of 3): origin moved on; retrying"]
    assert on_origin_main(bare, commit) and on_origin_main(bare, raced[0])
    assert {"model@v0.1.0", "model#staging#1"} <= remote_tags(bare)
    # A merge, not a rebase: the tag still names the registration commit origin's main holds.
    assert git(worker, "rev-list", "-n", "1", "model@v0.1.0") == commit
    assert remote.plan(worker).needed is False


def test_a_push_still_rejected_after_three_attempts_is_an_error_not_a_success(
    team: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare, _ = team
    worker = clone(bare, tmp_path / "worker")
    register(worker, "v0.1.0", "weights 1\n")
    real_merge = remote._merge_origin
    pushes = iter(range(10))

    def teammates_keep_pushing(root: Path, current: remote.Plan) -> None:
        real_merge(root, current)
        teammate_pushes(bare, tmp_path, "README.md", f"teammate {next(pushes)}\n")

    monkeypatch.setattr(remote, "_merge_origin", teammates_keep_pushing)
    with pytest.raises(PipelineError, match=r"rejected 3 times .*git push --atomic origin") as raised:
        remote.publish(worker)
    assert "\n" not in str(raised.value)
    assert not {t for t in remote_tags(bare) if "@" in t}


def test_a_merge_conflict_is_an_error_with_the_commands_and_nothing_is_pushed(
    team: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, _ = team
    worker = clone(bare, tmp_path / "worker")
    commit = register(worker, "v0.1.0", "weights 1\n")
    # The teammate committed other outputs to the same .dvc file: only a person can choose.
    mate = clone(bare, tmp_path / "teammate")
    (mate / "model.txt").write_text("weights 2\n")
    dvc(mate, "add", "-q", "model.txt")
    git(mate, "commit", "-q", "-am", "teammate retrained")
    git(mate, "push", "-q", "origin", "main")

    with pytest.raises(PipelineError) as raised:
        remote.publish(worker)
    message = str(raised.value)
    assert "conflicts in model.txt.dvc" in message
    assert (
        "`git pull --no-rebase origin main`, resolve and commit, then `git push --atomic origin " in message
    )
    assert "HEAD:refs/heads/main 'refs/tags/model#staging#1' refs/tags/model@v0.1.0`" in message
    assert "\n" not in message
    # The merge was undone: the checkout is as the registration left it; origin got nothing.
    assert git(worker, "rev-parse", "HEAD") == commit
    assert run(["git", "rev-parse", "-q", "--verify", "MERGE_HEAD"], worker, check=False).returncode != 0
    assert git(worker, "status", "--porcelain", "--untracked-files=no") == ""
    assert not {t for t in remote_tags(bare) if "@" in t}


def test_a_version_number_taken_on_origin_is_an_error_before_anything_is_fetched_or_pushed(
    team: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare, _ = team
    worker = clone(bare, tmp_path / "worker")
    mine = register(worker, "v0.1.0", "weights 1\n")
    mate = clone(bare, tmp_path / "teammate")
    theirs = register(mate, "v0.1.0", "weights 2\n")
    git(mate, "push", "-q", "--atomic", "origin", "main", "model@v0.1.0", "model#staging#1")

    with pytest.raises(PipelineError) as raised:
        remote.publish(worker)
    message = str(raised.value)
    assert message.startswith("git remote origin already has model#staging#1 (origin: ")
    assert "as another registration (two runs took the same number); nothing was pushed to git" in message
    assert "git tag -d 'model#staging#1' model@v0.1.0 && git fetch --tags origin" in message
    # The next run stops before its tag fetch, which would overwrite this checkout's tags.
    state = run_retrain(monkeypatch, worker, {"tag": "model@v0.1.0", "commit": mine, "new": False})
    assert state.is_failed() and "already has model#staging#1" in state.message
    assert git(worker, "rev-list", "-n", "1", "model@v0.1.0") == mine
    assert run(["git", "rev-list", "-n", "1", "model@v0.1.0"], bare).stdout.strip() == theirs


# --- a pinned commit (a deployment's), a teammate pushing during the run (issue 25) ----------


def pinned_clone(bare: Path, dest: Path) -> Path:
    """What the deployment's pull step leaves: the deployed commit checked out, HEAD detached."""
    clone(bare, dest)
    git(dest, "checkout", "-q", "--detach", "HEAD")
    return dest


def test_a_pinned_run_registers_on_the_branch_though_a_teammate_pushed_during_it(
    team: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the run's checkout and its push a teammate pushes to main: the registration commit
    (dvc.lock, lineage record) and its tags still land on origin's main, in one push."""
    from prefect.states import Completed

    import flows.retrain

    bare, _ = team
    worker = pinned_clone(bare, tmp_path / "worker")
    deployed = git(worker, "rev-parse", "HEAD")
    made: dict[str, str] = {}

    def pipeline(**_: Any) -> Any:  # the run: a teammate pushes, then this run registers
        made["mate"] = teammate_pushes(bare, tmp_path, "README.md", "teammate\n")
        made["commit"] = register(worker, "v0.1.0", "weights 1\n")
        registered = {"tag": "model@v0.1.0", "version": "v0.1.0", "commit": made["commit"], "new": True}
        return Completed(data={"stages": {"train": "Completed"}, "registered": registered, "metrics": {}})

    monkeypatch.setattr(flows.retrain, "pipeline", pipeline)
    monkeypatch.setattr(flows.retrain, "get_run_logger", lambda: logging.getLogger("retrain-test"))
    result = flows.retrain.retrain.fn(root=str(worker), branch="main")

    assert isinstance(result, dict), result
    assert result["message"] == "registered model@v0.1.0"
    assert on_origin_main(bare, made["commit"]) and on_origin_main(bare, made["mate"])
    assert git(worker, "rev-parse", f"{made['commit']}^") == deployed  # trained the pinned commit
    assert {"model@v0.1.0", "model#staging#1"} <= remote_tags(bare)
    assert git(worker, "rev-list", "-n", "1", "model@v0.1.0") == made["commit"]
    assert remote.plan(worker).needed is False


def test_a_registration_on_a_detached_head_is_an_error_not_a_tags_only_push(
    team: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, _ = team
    worker = pinned_clone(bare, tmp_path / "worker")
    register(worker, "v0.1.0", "weights 1\n")

    with pytest.raises(PipelineError) as raised:
        remote.publish(worker)
    message = str(raised.value)
    assert message.startswith("HEAD is detached and registration commit(s) ")
    assert (
        "git checkout -B main && git pull --no-rebase origin main && dvc push --run-cache && "
        "git push --atomic origin HEAD:refs/heads/main 'refs/tags/model#staging#1' refs/tags/model@v0.1.0"
    ) in message
    assert "\n" not in message
    assert not {t for t in remote_tags(bare) if "@" in t}  # no tag names a commit off every branch


# --- tunepipe status ---------------------------------------------------------------------------


def test_status_lists_versions_origin_lacks_and_the_command_that_pushes_them(
    team: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tunepipe import cli, staleness

    bare, _ = team
    worker = clone(bare, tmp_path / "worker")
    monkeypatch.setattr(staleness, "check", lambda root: [])
    cli.main(["status", "--root", str(worker)])
    assert capsys.readouterr().out.splitlines() == ["everything up to date"]

    commit = register(worker, "v0.1.0", "weights 1\n")
    cli.main(["status", "--root", str(worker)])
    push = (
        "dvc push --run-cache && git push --atomic origin HEAD:refs/heads/main "
        "'refs/tags/model#staging#1' refs/tags/model@v0.1.0"
    )
    assert capsys.readouterr().out.splitlines() == [
        "everything up to date",
        "not on origin: model#staging#1, model@v0.1.0",
        f"registration commits not on origin's main: {commit[:10]}",
        f"  push them: {push}",
    ]
    cli.main(["status", "--json", "--root", str(worker)])
    unpushed = json.loads(capsys.readouterr().out)["unpushed"]
    assert unpushed == {
        "tags": ["model#staging#1", "model@v0.1.0"],
        "taken": [],
        "branch": "main",
        "commits": [commit],
        "command": push,
    }

    # Origin moved on meanwhile: the command merges its branch first.
    teammate_pushes(bare, tmp_path, "README.md", "teammate\n")
    cli.main(["status", "--json", "--root", str(worker)])
    command = json.loads(capsys.readouterr().out)["unpushed"]["command"]
    assert command == f"git pull --no-rebase origin main && {push}"

    # The printed command does it.
    run(["bash", "-c", command.replace("dvc push", f"{sys.executable} -m dvc push")], worker)
    cli.main(["status", "--json", "--root", str(worker)])
    assert json.loads(capsys.readouterr().out)["unpushed"]["command"] is None
    assert on_origin_main(bare, commit)
    # A new local branch holding only what origin has: nothing to push.
    git(worker, "checkout", "-q", "-b", "experiment")
    cli.main(["status", "--json", "--root", str(worker)])
    assert json.loads(capsys.readouterr().out)["unpushed"]["commits"] == []


def test_status_without_a_reachable_origin_says_so(
    team: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tunepipe import cli, staleness

    bare, _ = team
    worker = clone(bare, tmp_path / "worker")
    monkeypatch.setattr(staleness, "check", lambda root: [])
    bare.rename(tmp_path / "moved.git")
    cli.main(["status", "--root", str(worker)])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "everything up to date"
    assert out[1].startswith("origin: not checked for unpushed versions (cannot read git remote origin")


def test_register_says_what_origin_lacks_and_how_to_push_it(
    team: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tunepipe import cli, params, registry

    bare, _ = team
    worker = clone(bare, tmp_path / "worker")
    commit = register(worker, "v0.1.0", "weights 1\n")
    defaults = params.parse({})  # register.name model, bump patch
    monkeypatch.setattr(params, "read", lambda path: defaults)
    monkeypatch.setattr(
        registry, "register", lambda *a, **k: {"tag": "model@v0.1.0", "commit": commit, "new": True}
    )
    cli.main(["register", "--root", str(worker)])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"registered model@v0.1.0 (commit {commit[:10]})"
    assert out[1] == "not on origin: model#staging#1, model@v0.1.0"
    assert out[-1].startswith(
        "  push them: dvc push --run-cache && git push --atomic origin HEAD:refs/heads/main "
    )
