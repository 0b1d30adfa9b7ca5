"""The pieces behind surviving faults, without a server: quiet logs (one relative line per
failure, progress at a sane rate off a terminal, no bytecode), the checkpoint folder a re-run
finds, the sweep of clones a killed worker left, and the checks on `tunepipe deploy`'s options.
The automations themselves run against a real server in tests/test_faults_e2e.py."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import run
from tunepipe import automations, checkpoints, clones
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit


def test_failure_messages_name_paths_relative_to_the_checkout(tmp_path: Path) -> None:
    from flows.pipeline import failed

    clone = tmp_path / "tmpab12prefect" / "project"
    clone.mkdir(parents=True)
    exc = PipelineError(f"{clone}/params.yaml: train.epochs: expected an integer, got 'x' (in {clone})")
    assert failed(exc).message == str(exc)  # no root: as raised
    state = failed(exc, clone)
    assert state.message == "params.yaml: train.epochs: expected an integer, got 'x' (in .)"
    assert str(exc) == state.message  # what the engine logs and state.result() raises


def test_progress_bars_redraw_at_a_sane_rate_when_not_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.pipeline import PROGRESS_SECONDS, stage_env

    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a worker's pipe, not a terminal
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    env = stage_env()
    assert env["TQDM_MININTERVAL"] == str(PROGRESS_SECONDS) and "TTY_COMPATIBLE" not in env
    # tqdm itself (Trainer's and datasets' bars) reads it in the stage's process.
    code = "import io, tqdm; print(tqdm.tqdm(file=io.StringIO()).mininterval)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert float(out.stdout) == PROGRESS_SECONDS


def test_the_register_task_does_not_log_prints() -> None:
    """dill disassembles functions (dis.dis) into a captured stdout: a print logged by
    log_prints would put bytecode in the run's log."""
    from flows.pipeline import register_model

    assert register_model.log_prints is False


def test_checkpoints_outlive_the_clone_under_tunepipe_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "team.git"
    run(["git", "init", "-q", "--bare", str(bare)], tmp_path)
    folders = []
    for name in ("clone-1", "clone-2"):  # two runs' clones of the same remote
        run(["git", "clone", "-q", str(bare), name], tmp_path)
        monkeypatch.delenv(checkpoints.ENV, raising=False)
        assert checkpoints.folder(tmp_path / name) == tmp_path / name / "models/checkpoints"
        monkeypatch.setenv(checkpoints.ENV, str(tmp_path / "cache"))
        folders.append(checkpoints.folder(tmp_path / name))
    assert folders[0] == folders[1] and folders[0].parent == tmp_path / "cache"
    assert folders[0].name.startswith("team-")
    other = tmp_path / "other"
    run(["git", "init", "-q", str(other)], tmp_path)
    assert checkpoints.folder(other) != folders[0]  # another project, another folder


def make_run_folder(runs: Path, name: str, origin: Path, age_hours: float) -> Path:
    folder = runs / name
    folder.mkdir(parents=True)
    run(["git", "clone", "-q", str(origin), "project"], folder)
    old = time.time() - age_hours * 3600
    for dirpath, _, _ in os.walk(folder):
        os.utime(dirpath, (old, old))
    return folder / "project"


def test_a_killed_runs_clone_is_swept_by_the_next_run_only_when_stale_and_ours(tmp_path: Path) -> None:
    team, theirs = tmp_path / "team.git", tmp_path / "theirs.git"
    for bare in (team, theirs):
        run(["git", "init", "-q", "--bare", str(bare)], tmp_path)
    runs = tmp_path / "runs"
    current = make_run_folder(runs, "tmpcurrentprefect", team, 0)
    dead = make_run_folder(runs, "tmpdeadprefect", team, 10).parent
    recent = make_run_folder(runs, "tmprecentprefect", team, 1).parent
    foreign = make_run_folder(runs, "tmpforeignprefect", theirs, 10).parent
    busy = make_run_folder(runs, "tmpbusyprefect", team, 10)
    mine = tmp_path / "runs" / "not-a-run-folder"
    mine.mkdir()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=busy) as sleeper:
        try:
            swept = clones.sweep(current, str(team), max_age=6)
        finally:
            sleeper.kill()
    assert swept.folders == (dead,) and swept.size > 0
    assert "removed 1 stale clone" in swept.describe()
    assert not dead.exists()
    assert recent.exists() and foreign.exists() and busy.exists() and mine.exists() and current.exists()
    # Outside a worker's run folder (a user's checkout) nothing is looked at.
    assert clones.sweep(tmp_path / "checkout", str(team), max_age=0).folders == ()


def test_deploy_options_are_checked_before_anything_runs() -> None:
    assert automations.crash_after(30, None) == 90
    assert automations.crash_after(30, 65) == 65
    with pytest.raises(PipelineError, match="--heartbeat 10"):
        automations.crash_after(10, None)
    with pytest.raises(PipelineError, match="two heartbeat periods"):
        automations.crash_after(60, 90)
    assert automations.check_url("https://hooks.example.com/x") == "https://hooks.example.com/x"
    for bad in ("ftp://x", "hooks.example.com", "http://", "http://a b"):
        with pytest.raises(PipelineError, match="--notify"):
            automations.check_url(bad)
    names = automations.Names("My Project")
    assert names.block == "my-project-failures"
    assert names.zombies.startswith("My Project: ")


def test_a_failed_run_logs_its_cause_once_and_the_engine_trace_only_at_debug() -> None:
    import logging

    from flows.pipeline import QUIET_FAILURES

    logger = logging.getLogger("tunepipe-test.quiet")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.addFilter(QUIET_FAILURES)
    logger.propagate = False

    def engine_log(exc: Exception) -> None:
        try:
            raise exc
        except Exception:
            logger.error("Engine execution exited with unexpected exception", exc_info=True)

    try:
        logger.setLevel(logging.INFO)
        engine_log(PipelineError("params.yaml: train: unknown field(s) epoch"))
        assert [(r.levelname, r.getMessage(), r.exc_info) for r in records] == [
            ("ERROR", "run failed: params.yaml: train: unknown field(s) epoch", None)
        ]
        engine_log(PipelineError("stage 'train' failed (exit 1):\nline 1\nline 2"))
        assert records[-1].getMessage() == (
            "run failed: stage 'train' failed (exit 1): (and 2 more lines in the run's state message)"
        )
        logger.setLevel(logging.DEBUG)  # a debug run gets the trace too, at DEBUG
        engine_log(PipelineError("params.yaml: train: unknown field(s) epoch"))
        trace, line = records[-2:]
        assert trace.levelname == "DEBUG" and trace.exc_info and "Engine execution" in trace.getMessage()
        assert line.levelname == "ERROR" and not line.exc_info
        engine_log(ValueError("a bug"))  # not a user-facing error: its traceback stays at ERROR
        assert records[-1].levelname == "ERROR" and records[-1].exc_info
        logger.error("task failed", exc_info=(None, None, None))  # Prefect's empty exc_info
        assert records[-1].exc_info is None
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(QUIET_FAILURES)
