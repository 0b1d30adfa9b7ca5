"""SIGKILL at seeded random points of load, tokenize, train (also while the final model is being
written) and evaluate: the next run of the stage ends with byte-identical outputs to an
uninterrupted run, and nothing is left behind that an uninterrupted run does not leave."""

from __future__ import annotations

import importlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import make_project, run, set_params

pytestmark = pytest.mark.e2e

STAGES = ("load", "tokenize", "train", "evaluate")  # pretrained and validate write one small file
POINTS = 2  # random kill points per stage
Killer = Callable[[Path, float], bool]  # (project, seconds since start) -> kill now


def outputs(root: Path) -> dict[str, bytes]:
    """Every file the stages write, by path; train_run.json holds timings, so it differs by design."""
    found = {}
    for top in ("data/splits", "data/tokenized", "data/pretrained.json", "models/model", "reports"):
        path = root / top
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file() and f.name != "train_run.json":
                found[f.relative_to(root).as_posix()] = f.read_bytes()
    return found


def untracked(root: Path) -> set[str]:
    """What git sees besides the committed project, temporary siblings and checkpoints included."""
    return set(
        run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], root).stdout.splitlines()
    )


def in_process(root: Path, stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage as `python -m tasks.<stage>` runs it (stale temporary siblings removed first)."""
    from tunepipe.stage import run as run_stage

    monkeypatch.chdir(root)
    run_stage(importlib.import_module(f"tasks.{stage}").main)


def killed(root: Path, stage: str, kill_now: Killer) -> tuple[int, float]:
    """Run the stage in a subprocess until `kill_now` says so (polled every 5 ms), then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", f"tasks.{stage}"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    start = time.monotonic()
    while proc.poll() is None:
        if kill_now(root, time.monotonic() - start):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    return proc.wait(), time.monotonic() - start


def after(seconds: float) -> Killer:
    return lambda _root, elapsed: elapsed >= seconds


def writing(root: Path) -> Killer:
    """Kill on the first sign of the stage writing: a temporary sibling of an output (for train
    after its checkpoints: the final save of models/model), or a report replaced (evaluate's
    files are written too fast to see their temporary siblings: it dies between two of them)."""

    def stamps() -> dict[Path, int]:
        return {f: f.stat().st_mtime_ns for f in (root / "reports").iterdir() if f.is_file()}

    before = stamps()

    def kill_now(_root: Path, _elapsed: float) -> bool:
        try:
            temp = (
                any(root.glob(".*.tmp-*")) or any(root.glob("*/.*.tmp-*")) or any(root.glob("*/*/.*.tmp-*"))
            )
            return temp or stamps() != before
        except FileNotFoundError:  # a temporary file or folder went between listing and reading it
            return True

    return kill_now


def kill_and_rerun(
    root: Path, stage: str, point: str, seconds: float, monkeypatch: pytest.MonkeyPatch
) -> str:
    """SIGKILL the stage at `point` (a share of its run time, or `writing`), then run it normally.

    A stage that finished before a timed kill (a machine faster this time, or a late point of a
    stage whose run time varies) is run again with a share 0.85 times smaller of the time it just
    took; a write too short to be seen at 5 ms polls is tried 5 times.
    """
    share = 0.0 if point == "writing" else float(point)
    for _ in range(5):
        kill_now = writing(root) if point == "writing" else after(share * seconds)
        code, elapsed = killed(root, stage, kill_now)
        if code == -signal.SIGKILL:
            in_process(root, stage, monkeypatch)
            return f"{stage} killed at {point} (share {share:.3f}: {elapsed:.2f} s of {seconds:.1f} s)"
        assert code == 0, f"{stage} failed ({code})"
        seconds, share = elapsed, share * 0.85
    raise AssertionError(f"{stage} always finished before the kill at {point}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, dict[str, float]]:
    """A project after one run of every stage (each killable one in a subprocess, timed)."""
    root = make_project(tmp_path_factory.mktemp("kills") / "p", tiny_bert)
    set_params(root, **{"train.epochs": 4})
    seconds = {}
    with pytest.MonkeyPatch.context() as mp:
        for stage in ("pretrained", "load", "validate", "tokenize", "train", "evaluate"):
            if stage in STAGES:
                code, seconds[stage] = killed(root, stage, lambda _root, _elapsed: False)
                assert code == 0, f"{stage} failed"
            else:
                in_process(root, stage, mp)
    return root, seconds


@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_then_a_normal_run_gives_the_same_outputs(
    uninterrupted: tuple[Path, dict[str, float]], stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, seconds = uninterrupted
    expected, expected_files = outputs(root), untracked(root)
    rng = random.Random(f"kill {stage}")
    points = [f"{rng.uniform(0.3, 0.95):.3f}" for _ in range(POINTS)] + ["writing"]
    for point in points:
        where = kill_and_rerun(root, stage, point, seconds[stage], monkeypatch)
        got = outputs(root)
        assert sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k)) == [], where
        assert untracked(root) == expected_files, where
