"""What a failed `dvc repro` under the flow turns into: a busy project that names the lock's
holder and is not retried, or the stage's own error line and exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import zc.lockfile
from prefect.states import Failed

from flows.pipeline import StageFailed, retry_unless_busy, stage_error
from tests.helpers import dvc
from tunepipe import dvcrepo

pytestmark = pytest.mark.unit

RWLOCK_ERROR = [
    "ERROR: '/p/models/model' is busy, it is being blocked by:",
    "  (PID {pid}): /venv/lib/python3.11/site-packages/dvc/__main__.py repro -s hold",
    "",
    "If there are no processes with such PIDs, you can manually remove '.dvc/tmp/rwlock' and try again.",
]


def test_dvc_lock_text_becomes_busy_with_the_holder(tmp_path: Path) -> None:
    holder = os.getppid()  # a live process that is not this one
    tail = [line.format(pid=holder) for line in RWLOCK_ERROR]
    exc = stage_error(tmp_path, "train", tail, 1)
    assert isinstance(exc, dvcrepo.ProjectBusy)
    assert str(exc).startswith(
        f"the project is busy: DVC's lock (.dvc/tmp/rwlock) is held by PID {holder} (dvc repro -s hold)"
    )


def test_stage_error_is_the_last_error_line_and_what_follows(tmp_path: Path) -> None:
    tail = [
        "validate: all good so far",
        "error: an earlier error",
        "error: validate: 1 expectation(s) failed (report: reports/validation.json)",
        "  expect_column_values_to_be_in_set failed on column 'label'",
        "ERROR: failed to reproduce 'validate': failed to run: python -m tasks.validate, exited with 1",
    ]
    exc = stage_error(tmp_path, "validate", tail, 255)
    assert isinstance(exc, StageFailed) and exc.exit_code == 1
    assert str(exc) == (
        "validate: 1 expectation(s) failed (report: reports/validation.json)\n"
        "  expect_column_values_to_be_in_set failed on column 'label'"
    )


def test_stage_error_without_an_error_line_shows_the_tail(tmp_path: Path) -> None:
    exc = stage_error(tmp_path, "train", ["step 3", "Killed"], -9)
    assert isinstance(exc, StageFailed) and exc.exit_code == 137
    assert str(exc) == "stage 'train' failed (exit 137):\nstep 3\nKilled"
    exc = stage_error(tmp_path, "train", [], 255)
    assert str(exc) == (
        "stage 'train' failed (exit 255) without output: `dvc repro train` shows DVC's own message"
    )


def test_only_a_busy_project_is_not_retried() -> None:
    assert retry_unless_busy(None, None, Failed(data=dvcrepo.ProjectBusy("busy"))) is False
    assert retry_unless_busy(None, None, Failed(data=StageFailed("stage 'train' failed", 137))) is True
    assert retry_unless_busy(None, None, Failed(data=RuntimeError("worker lost"))) is True


def test_repo_lock_holder_is_read_only_while_the_lock_is_held(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    assert dvcrepo.repo_lock_holder(path) is None
    lock = zc.lockfile.LockFile(str(path))
    try:
        assert dvcrepo.repo_lock_holder(path) == os.getpid()
    finally:
        lock.close()
    assert path.read_text().strip() == str(os.getpid())  # the file keeps its last holder's PID
    assert dvcrepo.repo_lock_holder(path) is None  # but nobody holds it


def test_dvc_api_on_a_locked_repo_is_busy(tmp_path: Path) -> None:
    """DVC's repository lock held by another process: the API call fails with its PID, once."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    dvc(tmp_path, "init", "--no-scm", "-q")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, zc.lockfile; l = zc.lockfile.LockFile('.dvc/tmp/lock');"
         "print('held', flush=True); time.sleep(60)"],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        held = rf"lock \(.dvc/tmp/lock\) is held by PID {holder.pid} \("
        with pytest.raises(dvcrepo.ProjectBusy, match=held):
            dvcrepo.stale(tmp_path)
    finally:
        holder.kill()
        holder.wait()
