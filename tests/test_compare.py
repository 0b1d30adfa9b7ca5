"""`tunepipe compare a b`: params that differ, metrics side by side, data hashes same/different,
read through DVC's own diffs at the two tags."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import copy_project, dvc, set_params
from tunepipe import compare, registry
from tunepipe.cli import main
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.stage


def test_two_versions_side_by_side(
    reproduced: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(reproduced[0], tmp_path / "project")
    registry.register(project, "model")
    # no threshold for the second version: the tiny model at another seed may score anything
    set_params(project, **{"train.seed": 7, "train.learning_rate": 1e-3, "evaluate.thresholds": {}})
    dvc(project, "repro")
    registry.register(project, "model")
    registry.assign_stage(project, "model", "v0.1.0", "prod")

    result = compare.compare(project, "model", "prod", "model@v0.1.1")
    assert (result["a"], result["b"]) == ("model@v0.1.0", "model@v0.1.1")
    assert set(result["params"]["params.yaml"]) == {
        "train.seed",
        "train.learning_rate",
        "evaluate.thresholds.accuracy",
    }
    assert result["params"]["params.yaml"]["train.seed"].items() >= {"old": 42, "new": 7}.items()
    accuracy = result["metrics"]["reports/metrics.json"]["accuracy"]
    assert set(accuracy) >= {"old", "new"}  # every metric, changed or not
    assert result["outputs"]["data/splits"]["same"] and result["outputs"]["data/tokenized/train"]["same"]
    assert not result["outputs"]["models/model"]["same"]

    capsys.readouterr()
    main(["compare", "v0.1.0", "v0.1.1", "--root", str(project)])
    out = capsys.readouterr().out
    assert out.startswith("model@v0.1.0 vs model@v0.1.1\n")
    assert re.search(r"^  train\.seed +42 +7$", out, re.M)
    assert re.search(r"^  train\.learning_rate +0\.003 +0\.001$", out, re.M)  # as written, not rounded
    old, new = accuracy["old"], accuracy["new"]
    shown = r" +".join(re.escape(v) for v in (f"{old:.4f}", f"{new:.4f}", f"{new - old:+.4f}"))
    assert re.search(rf"^  accuracy +{shown}$", out, re.M)
    assert re.search(r"^  examples +\d+ +\d+ +\+0$", out, re.M)
    assert re.search(r"^  data/splits +same +[0-9a-f]{12}$", out, re.M)
    assert re.search(r"^  models/model +different +[0-9a-f]{12} +[0-9a-f]{12}$", out, re.M)

    main(["compare", "v0.1.0", "v0.1.1", "--json", "--root", str(project)])
    assert json.loads(capsys.readouterr().out)["outputs"]["models/model"]["same"] is False
    with pytest.raises(PipelineError, match=r"no registered version model@v9.9.9"):
        compare.compare(project, "model", "v0.1.0", "v9.9.9")
