"""The `tunepipe` command: version, help, --root on either side of the subcommand, user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

import tunepipe
from cli import main as cli
from tunepipe import staleness
from tunepipe.errors import PipelineError
from tunepipe.staleness import StageState

pytestmark = pytest.mark.unit

COMMANDS = ("run", "status", "search", "register", "promote", "predict", "lineage", "versions", "fetch")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--version"])  # returns: no SystemExit on success
    assert capsys.readouterr().out == f"tunepipe {tunepipe.__version__}\n"


def test_version_as_a_module_without_heavy_imports() -> None:
    code = (
        "import sys; from cli.main import main; main(['--version']); "
        "print(sorted(m for m in ('torch', 'transformers', 'dvc', 'prefect') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [f"tunepipe {tunepipe.__version__}", "[]"]


def test_help_lists_every_subcommand_with_its_description(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    cli.main(["--help"])
    out = capsys.readouterr().out
    commands = {c.name or c.callback.__name__: c.callback for c in cli.app.registered_commands}
    assert set(commands) == set(COMMANDS)
    for name, callback in commands.items():
        summary = callback.__doc__.splitlines()[0]
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
