"""Fixtures: a tiny BERT, throwaway projects, one Prefect test server. Helpers: tests/helpers.py."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Generator
from pathlib import Path

import pytest

from tests.helpers import OFFLINE, build_tiny_bert, dvc, make_project, make_reviews

pytest_plugins = ("pytester",)  # test_markers runs pytest on files it writes

os.environ.update(OFFLINE)
# Each test process measures its own CPU precision decision: never read or write the user's cache.
os.environ["TUNEPIPE_PRECISION_CACHE"] = "off"
# Stage commands say `python`: it must be this interpreter.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
# Prefect sets up logging (a console handler bound to sys.stderr) when prefect.main is first
# imported, e.g. by `from prefect import flow`. First imported inside a test under capsys, it would
# keep that test's capture stream, closed afterwards, and every later flow in the process would
# fail writing its logs (a flow test after test_bad_inputs' flow rows): import it here instead.
import prefect.main  # noqa: E402, F401

COSTS = ("unit", "stage", "e2e")  # registered in pyproject.toml; `make test-unit` runs the first


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Every test says what it costs, so `pytest -m unit` is a complete fast run: a test file with
    a test carrying none of the markers (or two) fails collection, whatever `-m` selects, also
    under xdist (a collection error reaches the controller; a raised exception would not)."""
    report = yield
    if report.passed:
        costs = {
            item.nodeid: [name for name in COSTS if item.get_closest_marker(name)]
            for item in report.result
            if isinstance(item, pytest.Item)
        }
        wrong = [
            f"  {node}: {', '.join(found) or 'no cost marker'}"
            for node, found in costs.items()
            if len(found) != 1
        ]
        if wrong:
            report.outcome, report.result = "failed", []
            report.longrepr = (
                "each test needs exactly one of the markers unit, stage, e2e (a `pytestmark = "
                "pytest.mark.<cost>` line at the top of its file, or a decorator):\n" + "\n".join(wrong)
            )
    return report


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [r["text"] for r in make_reviews(400, seed=1)]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts)


@pytest.fixture
def project(tmp_path: Path, tiny_bert: Path) -> Path:
    return make_project(tmp_path / "project", tiny_bert)


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, str]:
    """A project after its first `dvc repro` (every stage ran), and that run's output.

    Read-only: tests that go on from this state work in `copy_project` of it, which saves them a
    full repro (about 25 s of stage start-ups) each.
    """
    root = make_project(tmp_path_factory.mktemp("reproduced") / "project", tiny_bert)
    return root, dvc(root, "repro").stdout


@pytest.fixture(scope="session")
def prefect_backend():
    """One temporary Prefect server for every flow test (starting one costs about 15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def prefect_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict]]:
    """`prefect ...` commands recorded instead of run (git still runs); a server is configured."""
    import prefect.settings

    calls: list[tuple[list[str], dict]] = []
    real = subprocess.run

    def fake(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        if cmd[:3] == [sys.executable, "-m", "prefect"]:
            calls.append((cmd, kwargs))
            return subprocess.CompletedProcess(cmd, 0)
        return real(cmd, **kwargs)

    monkeypatch.setattr(subprocess, "run", fake)
    # No server answers here: the automations step (tunepipe/automations.py) is tested against the
    # real server in tests/test_automations.py.
    import tunepipe.deploy

    monkeypatch.setattr(tunepipe.deploy, "guard_deployments", lambda *args, **kwargs: None)
    settings = types.SimpleNamespace(api=types.SimpleNamespace(url="http://127.0.0.1:4200/api"))
    monkeypatch.setattr(prefect.settings, "get_current_settings", lambda: settings)
    return calls
