"""The `tunepipe` command: version, help, --root on either side of the subcommand, user errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

import tunepipe
from tests.helpers import REPO, deploy_project
from tunepipe import cli, staleness
from tunepipe.errors import PipelineError
from tunepipe.staleness import StageState

pytestmark = pytest.mark.unit

COMMANDS = (
    "init",
    "run",
    "status",
    "search",
    "register",
    "promote",
    "predict",
    "evaluate",
    "lineage",
    "report",
    "versions",
    "fetch",
    "verify",
    "compare",
    "deploy",
    "ingest",
    "replay",
    "doctor",
)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--version"])  # returns: no SystemExit on success
    assert capsys.readouterr().out == f"tunepipe {tunepipe.__version__}\n"


def test_version_as_a_module_without_heavy_imports() -> None:
    code = (
        "import sys; from tunepipe.cli import main; main(['--version']); "
        "print(sorted(m for m in ('torch', 'transformers', 'dvc', 'prefect') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"tunepipe {tunepipe.__version__}", "[]"]


def test_help_lists_every_subcommand_with_its_description(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no summary wraps
    cli.main(["--help"])
    out = capsys.readouterr().out
    commands = {c.name or c.callback.__name__: c.callback for c in cli.app.registered_commands}
    assert set(commands) == set(COMMANDS)
    for name, callback in commands.items():
        # The docstring's first paragraph, on one line of the table (wide enough not to wrap).
        summary = " ".join(callback.__doc__.split("\n\n")[0].split())
        assert any(name in line and summary in line for line in out.splitlines()), (name, summary)


def test_every_option_and_argument_has_help() -> None:
    group = typer.main.get_command(cli.app)
    assert {p.name for p in group.params} >= {"root", "version"}
    for name, command in [("tunepipe", group), *group.commands.items()]:
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name}: no help"


def test_root_before_or_after_the_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Path] = []
    monkeypatch.setattr(staleness, "check", lambda root: asked.append(root) or [])
    cli.main(["status", "--root", "/after", "--json"])
    cli.main(["--root", "/before", "status"])
    cli.main(["--root", "/before", "status", "--root", "/after"])
    cli.main(["status"])
    assert asked == [Path("/after"), Path("/before"), Path("/after"), Path(".")]


def test_status_prints_each_stage_and_its_reasons(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Path] = []
    states = [
        StageState("load", staleness.UP_TO_DATE),
        StageState("train", staleness.STALE, ("params.yaml: train.seed modified (42 -> 7)",)),
        StageState("evaluate", staleness.UPSTREAM_STALE, ("train stale",)),
    ]
    monkeypatch.setattr(staleness, "check", lambda root: asked.append(root) or states)
    cli.main(["status", "--root", "/somewhere"])
    assert asked == [Path("/somewhere")]
    assert capsys.readouterr().out.splitlines() == [
        "load      up to date",
        "train     stale",
        "            params.yaml: train.seed modified (42 -> 7)",
        "evaluate  up to date (upstream stale: may re-run)",
        "            train stale",
        "stale: train; `dvc repro` or `tunepipe run` re-runs them",
    ]


def test_a_user_error_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["status", "--root", str(tmp_path)])
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err
        == f"error: {tmp_path / 'dvc.yaml'}: not found; run this in the project directory or pass --root\n"
    )


def test_a_pipeline_error_raised_in_a_command_shows_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(root: Path) -> None:
        raise PipelineError("dvc.yaml: no stage 'trian' (stages: load, train)")

    monkeypatch.setattr(staleness, "check", fail)
    with pytest.raises(SystemExit) as exited:
        cli.main(["status"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == "error: dvc.yaml: no stage 'trian' (stages: load, train)\n"


def test_a_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["lineage"])
    assert exited.value.code == 2
    assert "Missing argument" in capsys.readouterr().err


# --- tunepipe deploy: thin over `prefect deploy`; a real server and worker in test_deployments ---





def test_deploy_gives_prefect_the_remote_branch_and_pool(tmp_path: Path, prefect_calls: list) -> None:
    root = deploy_project(tmp_path)
    cli.main(["deploy", "--pool", "gpu-a100", "--root", str(root)])
    cli.main(["deploy", "retrain", "--branch", "release", "--root", str(root)])
    (all_cmd, all_kwargs), (one_cmd, one_kwargs) = prefect_calls
    assert all_cmd[3:] == ["--no-prompt", "deploy", "--all", "--prefect-file", "prefect.yaml"]
    assert all_kwargs["cwd"] == root.resolve()
    env = all_kwargs["env"]
    assert (env["TUNEPIPE_GIT_REMOTE"], env["TUNEPIPE_GIT_BRANCH"], env["TUNEPIPE_WORK_POOL"]) == (
        str(tmp_path / "origin.git"),
        "main",
        "gpu-a100",
    )
    assert one_cmd[3:6] == ["--no-prompt", "deploy", "--name"] and one_cmd[6] == "retrain"
    assert (one_kwargs["env"]["TUNEPIPE_GIT_BRANCH"], one_kwargs["env"]["TUNEPIPE_WORK_POOL"]) == (
        "release",
        "gpu",
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no prefect.yaml", "prefect.yaml: not found; the deployments are defined there"),
        ("no origin", "no git remote `origin`, so workers would have nothing to clone"),
        ("detached", "HEAD is detached; name the branch workers clone with --branch"),
        ("not pushed", "branch 'main' is not on "),
        ("no server", "no Prefect server configured: set PREFECT_API_URL"),
    ],
)
def test_deploy_refuses_what_would_leave_workers_without_code(
    tmp_path: Path,
    prefect_calls: list,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    import types

    import prefect.settings

    root = deploy_project(tmp_path, origin=case != "no origin", pushed=case != "not pushed")
    if case == "no prefect.yaml":
        (root / "prefect.yaml").unlink()
    if case == "detached":
        subprocess.run(["git", "checkout", "-q", "--detach"], cwd=root, check=True)
    if case == "no server":
        none = types.SimpleNamespace(api=types.SimpleNamespace(url=None))
        monkeypatch.setattr(prefect.settings, "get_current_settings", lambda: none)
    with pytest.raises(SystemExit) as exited:
        cli.main(["deploy", "--root", str(root)])
    assert exited.value.code == 1
    assert message in capsys.readouterr().err
    assert prefect_calls == []


STUB_FLOW = """import sys


def main(argv):
    print("flow", argv)
    if "--no-register" in argv:
        print("error: stage train failed", file=sys.stderr)
        sys.exit(3)
"""


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Imports as the installed `tunepipe` command starts: no flows/ loaded yet, neither this
    checkout nor an editable install (whose finder maps an older tree's flows/) on the path."""
    loaded = [name for name in sys.modules if name.partition(".")[0] == "flows"]
    for name in loaded:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != REPO])
    monkeypatch.setattr(
        sys, "meta_path", [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
    )
    yield
    for name in [name for name in sys.modules if name.partition(".")[0] == "flows"]:
        del sys.modules[name]  # the stubs go; monkeypatch then puts the real ones back


def test_run_and_search_start_the_projects_own_flows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fresh_process: None
) -> None:
    """flows/ is project code, not installed: the CLI runs the one in --root, in process, and
    the flow's exit code and error line are the command's."""
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "__init__.py").write_text('"""Stub flows."""\n')
    for flow in ("pipeline", "search"):
        (tmp_path / "flows" / f"{flow}.py").write_text(STUB_FLOW)
    cli.main(["run", "--root", str(tmp_path)])
    cli.main(["search", "--trials", "2", "--root", str(tmp_path)])
    assert capsys.readouterr().out.splitlines() == [
        f"flow ['--root', '{tmp_path}']",
        f"flow ['--root', '{tmp_path}', '--trials', '2']",
    ]
    assert sys.modules["flows.pipeline"].__file__ == str(tmp_path / "flows" / "pipeline.py")
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--no-register", "--root", str(tmp_path)])
    assert exited.value.code == 3
    assert capsys.readouterr().err == "error: stage train failed\n"


def test_run_outside_a_project_names_the_flow_it_looked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fresh_process: None
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--root", str(tmp_path)])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path.resolve() / 'flows' / 'pipeline.py'}: not found; `tunepipe run` runs the "
        "project's flows/ (run it in a project root, or name one with --root)\n"
    )
