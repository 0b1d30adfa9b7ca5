"""Values that reach git, dvc, torchrun or prefect as arguments, fed option-like strings at every
entry point: the retrain flow's `ref`, `tunepipe replay --git-remote/--dvc-remote`, `tunepipe
deploy`'s options and names, tunepipe.remote.checkout and params.yaml's rendezvous address.

Each ends in one `error:` line (or a PipelineError) and the command the string carries never runs:
the file it would `touch` is not there afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO
from tunepipe import argcheck, remote
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
ATTACKS = ("upload-pack", "ssh-option", "ext-transport", "traversal")


def attack(kind: str, marker: Path) -> str:
    """An option-like value whose command, if anything ran it, would create `marker`."""
    return {
        "upload-pack": f"--upload-pack=touch {marker}",  # git fetch/ls-remote/clone option
        "ssh-option": f"-oProxyCommand=touch {marker}",  # ssh option, via git or as a host
        "ext-transport": f"ext::sh -c touch% {marker}",  # git's ext:: transport runs a command
        "traversal": "../..",
    }[kind]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "F"


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def exit_code(main, argv: list[str]) -> int:  # type: ignore[no-untyped-def]
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def git_project(tmp_path: Path) -> tuple[Path, Path]:
    """(work tree on branch main with one commit, its bare `origin` holding main)."""
    root, bare = tmp_path / "project", tmp_path / "origin.git"
    root.mkdir()
    (root / "prefect.yaml").write_text("deployments: []\n")
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "project"]):
        subprocess.run([*GIT, *cmd], cwd=root, check=True)
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], cwd=tmp_path, check=True)
    subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=root, check=True)
    subprocess.run(["git", "push", "-q", "origin", "main"], cwd=root, check=True)
    return root, bare


# --- the retrain flow's `ref` parameter -------------------------------------------------------


@pytest.mark.parametrize("kind", ATTACKS)
def test_retrain_checks_ref_before_any_git_runs(kind: str, marker: Path) -> None:
    from flows.retrain import check_parameters

    with pytest.raises(PipelineError, match=r"^retrain parameter ref '.*': "):
        check_parameters(attack(kind, marker))
    assert not marker.exists()


@pytest.mark.parametrize("kind", ATTACKS)
def test_retrain_command_line_refuses_ref_before_prefect_starts(
    kind: str,
    marker: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flows import retrain

    root, _ = git_project(tmp_path)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    monkeypatch.chdir(root)

    def no_flow(**kwargs: object) -> None:
        raise AssertionError("the flow started")

    monkeypatch.setattr(retrain, "retrain", no_flow)
    assert exit_code(retrain.main, [f"--ref={attack(kind, marker)}"]) == 1
    assert "retrain parameter ref" in one_error_line(capsys)
    assert not marker.exists()


def test_retrain_accepts_branches_tags_and_commits() -> None:
    from flows.retrain import check_parameters

    for ref in (None, "", "main", "release/2024-06", "refs/heads/main", "model@v0.1.0", "0" * 40):
        check_parameters(ref)


# --- tunepipe.remote.checkout (the flow's git fetch of `ref`) ---------------------------------


@pytest.mark.parametrize("kind", ATTACKS)
def test_checkout_refuses_option_like_refs(kind: str, marker: Path, tmp_path: Path) -> None:
    root, _ = git_project(tmp_path)
    head = ["git", "rev-parse", "HEAD"]
    before = subprocess.run(head, cwd=root, capture_output=True, text=True).stdout
    with pytest.raises(PipelineError, match=r"^ref '.*': "):
        remote.checkout(root, attack(kind, marker))
    assert not marker.exists()
    assert subprocess.run(head, cwd=root, capture_output=True, text=True).stdout == before


def test_checkout_still_checks_out_a_branch_and_a_tag(tmp_path: Path) -> None:
    root, _ = git_project(tmp_path)
    assert remote.checkout(root, "main") == "branch main"
    subprocess.run([*GIT, "tag", "-a", "-m", "v", "model@v0.1.0"], cwd=root, check=True)
    subprocess.run(["git", "push", "-q", "origin", "model@v0.1.0"], cwd=root, check=True)
    assert remote.checkout(root, "model@v0.1.0").startswith("model@v0.1.0 (detached at ")


# --- tunepipe replay --git-remote / --dvc-remote ----------------------------------------------


@pytest.mark.parametrize("kind", ATTACKS)
@pytest.mark.parametrize("option", ["--git-remote", "--dvc-remote"])
def test_replay_refuses_option_like_remotes(
    kind: str,
    option: str,
    marker: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tunepipe import cli

    root, bare = git_project(tmp_path)
    monkeypatch.chdir(root)
    other = {"--git-remote": f"--dvc-remote={tmp_path / 'store'}", "--dvc-remote": f"--git-remote={bare}"}
    argv = ["replay", "v0.1.0", "--name", "model", f"{option}={attack(kind, marker)}", other[option]]
    assert exit_code(cli.main, [*argv, "--workdir", str(tmp_path / "scratch")]) == 1
    line = one_error_line(capsys)
    if kind != "traversal":  # `../..` is a path: refused by git (not a repository), not by the check
        assert f"error: {option} '" in line
        assert not (tmp_path / "scratch").exists()  # refused before any clone
    assert not marker.exists()


# --- tunepipe deploy: --remote, --branch, --pool, deployment names ----------------------------





def test_the_checks_accept_ordinary_values() -> None:
    for url in (
        "https://github.com/team/project.git",
        "ssh://git@host:2222/team/project.git",
        "git@github.com:team/project.git",
        "file:///srv/git/project.git",
        "../project.git",
        "/srv/git/project.git",
    ):
        assert argcheck.check_remote(url, "--remote") == url
    assert argcheck.check_remote("s3://bucket/dvc", "--dvc-remote", schemes=None) == "s3://bucket/dvc"
    for host in ("node0", "gpu-1.cluster.local", "10.0.0.1", "::1", "[fe80::1]"):
        assert argcheck.is_host(host), host
    assert argcheck.check_prefect_name("retrain/retrain", "name", flow_prefix=True) == "retrain/retrain"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ssh://-oProxyCommand=touch%20F/x", "the host must not start with '-'"),
        ("git@-oProxyCommand=x:repo", "the host must not start with '-'"),
        ("fd::17", "the `<transport>::` form is refused"),
        ("ftp://host/x", "URL scheme 'ftp' is not one of"),
        ("origin\nurl", "control characters"),
    ],
)
def test_check_remote_refuses(value: str, message: str) -> None:
    with pytest.raises(PipelineError, match=rf"^--remote '.*': .*{message}"):
        argcheck.check_remote(value, "--remote")


# --- artifact names (--name, register.name) in `git tag --list` --------------------------------


def test_an_option_like_artifact_name_lists_no_tags(tmp_path: Path) -> None:
    """`git tag --list --format=x@v0.1.0` would print a line per tag, making the name look registered."""
    from tunepipe import registry

    root, _ = git_project(tmp_path)
    subprocess.run([*GIT, "tag", "-a", "-m", "v", "model@v0.1.0"], cwd=root, check=True)
    assert registry.versions(root, "model") == ["v0.1.0"]
    assert registry.versions(root, "--format=x") == []
    with pytest.raises(PipelineError, match=r"artifact name '--format=x': expected letters"):
        registry.registered_tag(root, "--format=x", "v0.1.0")


def test_a_recorded_code_commit_reaches_git_only_as_a_commit_hash(tmp_path: Path) -> None:
    """The audit asks git whether the lineage record's code_commit is an ancestor of the tag; the
    record is committed text, so an option or a range there is no ancestor, not a git argument."""
    from tunepipe import audit

    root, _ = git_project(tmp_path)
    rev_parse = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    head = rev_parse.stdout.strip()
    assert audit._is_ancestor(root, head, "HEAD") is True
    for code in ("--output=x", "HEAD", f"{head}..HEAD", head.upper()):
        assert audit._is_ancestor(root, code, "HEAD") is False, code
