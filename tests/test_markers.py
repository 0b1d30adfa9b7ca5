"""Every test carries one cost marker (unit, stage, e2e): tests/conftest.py refuses a test without
one, or with two, at collection (before `-m` selects), so `pytest -m unit` never silently skips a test."""

from __future__ import annotations

import tomllib

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.unit

FILES = {
    "test_marked": """
import pytest

pytestmark = pytest.mark.unit

def test_fast():
    pass
""",
    "test_unmarked": """
import pytest

def test_none():
    pass

@pytest.mark.unit
@pytest.mark.stage
def test_two():
    pass
""",
}


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with this repository's marker registration and collection check."""
    markers = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    pytester.makeini("[pytest]\nmarkers =\n" + "".join(f"    {m}\n" for m in markers))
    pytester.makeconftest("from tests.conftest import pytest_make_collect_report  # noqa: F401\n")
    return pytester


def test_a_test_without_one_cost_marker_fails_collection(inner: pytest.Pytester) -> None:
    inner.makepyfile(**FILES)
    result = inner.runpytest("-p", "no:xdist", "--strict-markers", "-m", "unit")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting test_unmarked.py*",
            "*exactly one of the markers unit, stage, e2e*",
            "*test_unmarked.py::test_none: no cost marker",
            "*test_unmarked.py::test_two: unit, stage",
            "*1 error during collection*",
        ]
    )
    assert "test_marked.py::" not in result.stdout.str()


def test_marked_tests_select_by_cost(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_marked=FILES["test_marked"])
    inner.runpytest("-p", "no:xdist", "--strict-markers", "-m", "unit").assert_outcomes(passed=1)
    assert inner.runpytest("-p", "no:xdist", "--strict-markers", "-m", "stage").ret == (
        pytest.ExitCode.NO_TESTS_COLLECTED
    )
