"""Atomic writes after a kill: no temporary folder stays for good or shows in git, and outputs
get the user's umask."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, run
from tunepipe.io import atomic_dir, clean_stale, write_text

pytestmark = pytest.mark.unit

KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from tunepipe.io import atomic_dir, write_text
target = Path(sys.argv[1])
if sys.argv[2] == "dir":
    with atomic_dir(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGKILL)
else:
    def die(*args):
        os.kill(os.getpid(), signal.SIGKILL)
    os.replace = die
    write_text(target, "half")
"""


def killed_writer(target: Path, kind: str) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target), kind], cwd=REPO)
    assert proc.returncode == -signal.SIGKILL


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_folder_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "models" / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    killed_writer(target, "dir")
    left = [p.name for p in target.parent.iterdir() if p.name != "model"]
    assert len(left) == 1 and left[0].startswith(".model.tmp-")
    assert (target / "a.txt").read_text() == "first"  # the old output is intact
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("second")
    assert [p.name for p in target.parent.iterdir()] == ["model"]
    assert (target / "a.txt").read_text() == "second"


def test_a_killed_file_writers_temp_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "metrics.json"
    killed_writer(target, "file")
    assert [p.name for p in target.parent.iterdir()][0].startswith(".metrics.json.tmp-")
    write_text(target, "{}")
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_only_siblings_of_dead_writers_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "splits"
    dead = tmp_path / f".splits.tmp-{dead_pid()}-abc"
    live = tmp_path / f".splits.tmp-{os.getppid()}-abc"  # a running process: still writing
    mine = tmp_path / f".splits.tmp-{os.getpid()}-abc"
    other = tmp_path / f".tokenized.tmp-{dead_pid()}-abc"  # another output's: not ours to judge
    old_form = tmp_path / ".splits.k3j2x9_a"  # before the pid was in the name
    swapped = tmp_path / ".splits.old"
    for d in (dead, live, mine, other, old_form, swapped):
        d.mkdir()
        (d / "x").write_text("x")
    long_ago = time.time() - 3600
    for d in (old_form, swapped):
        os.utime(d, (long_ago, long_ago))
    fresh_old_form = tmp_path / ".splits.zzzzzzzz"  # made after this process started
    fresh_old_form.mkdir()
    removed = clean_stale(target)
    assert sorted(p.name for p in removed) == sorted([dead.name, old_form.name, swapped.name])
    assert all(p.exists() for p in (live, mine, other, fresh_old_form))


def test_temporary_siblings_are_ignored_by_git(tmp_path: Path) -> None:
    for name in (".gitignore", "data/.gitignore", "models/.gitignore", "reports/.gitignore"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    run(["git", "init", "-q"], tmp_path)
    names = [
        "data/.splits.tmp-123-abcd",
        "data/.tokenized.tmp-123-abcd",
        "data/.splits.k3j2x9_a",
        "data/.tokenized.old",
        "data/.pretrained.json.tmp-5-x",
        "models/.model.tmp-9-abcd",
        "models/.model.k3j2x9_a",
        "reports/.metrics.json.tmp-1-x",
        "lineage/.model@v0.1.0.json.tmp-1-x",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "data/raw").mkdir()
    (tmp_path / "data/raw/new.csv").write_text("a\n")
    shown = run(["git", "status", "--porcelain", "--untracked-files=all"], tmp_path).stdout.split("\n")
    shown = sorted(line[3:] for line in shown if line)
    gitignores = [".gitignore", "data/.gitignore", "models/.gitignore", "reports/.gitignore"]
    assert shown == sorted([*gitignores, "data/raw/new.csv"])


def test_outputs_get_the_users_umask(tmp_path: Path) -> None:
    """transformers writes weights 0600 and mkdtemp makes folders 0700: the output must not stay so."""
    old = os.umask(0o027)
    try:
        target = tmp_path / "model"
        with atomic_dir(target) as tmp:
            weights = tmp / "model.safetensors"
            weights.write_bytes(b"w")
            weights.chmod(0o600)
            (tmp / "sub").mkdir(mode=0o700)
            script = tmp / "sub" / "run.sh"
            script.write_text("#!/bin/sh\n")
            script.chmod(0o700)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert stat.S_IMODE((target / "model.safetensors").stat().st_mode) == 0o640
    assert stat.S_IMODE((target / "sub").stat().st_mode) == 0o750
    assert stat.S_IMODE((target / "sub" / "run.sh").stat().st_mode) == 0o750


def test_saved_model_folder_is_readable_by_others(tmp_path: Path, tiny_bert: Path) -> None:
    """A real save_pretrained through atomic_dir, under the common umask 022."""
    from transformers import AutoModel

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            AutoModel.from_pretrained(tiny_bert).save_pretrained(tmp)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "model").iterdir()}
    assert modes["model.safetensors"] == 0o644 and modes["config.json"] == 0o644


def test_a_stage_removes_leftovers_at_its_start_even_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunepipe import stage
    from tunepipe.errors import PipelineError

    pid = dead_pid()
    left = [tmp_path / f"data/.splits.tmp-{pid}-a", tmp_path / f"models/.model.tmp-{pid}-b"]
    for folder in left:
        folder.mkdir(parents=True)
    (tmp_path / f"reports/.metrics.json.tmp-{pid}-c").parent.mkdir()
    (tmp_path / f"reports/.metrics.json.tmp-{pid}-c").write_text("{")
    left.append(tmp_path / f"reports/.metrics.json.tmp-{pid}-c")
    monkeypatch.chdir(tmp_path)

    def failing() -> None:
        raise PipelineError("bad input")

    with pytest.raises(SystemExit):
        stage.run(failing)
    assert "error: bad input" in capsys.readouterr().err
    assert not any(p.exists() for p in left)
