"""`tunepipe evaluate --model <folder> FILE`: the evaluate stage's metrics on any labelled file, with
the project's outputs left as they were."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import cli, copy_project
from tunepipe import params

pytestmark = pytest.mark.stage

OUTPUTS = ("data", "models", "reports", "dvc.lock", "params.yaml")


def digest(root: Path) -> dict[str, str]:
    """Every file of the pipeline's outputs and inputs, by content."""
    found = {}
    for name in OUTPUTS:
        top = root / name
        for path in [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()):
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_evaluate_a_model_folder_on_the_test_file(
    reproduced: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    root = copy_project(reproduced[0], tmp_path / "project")
    monkeypatch.chdir(root)
    p = params.read(root / "params.yaml")
    # The test split, written back with the user's column names as a labelled file outside the project.
    test = pd.read_parquet(root / "data/splits/test.parquet")
    columns = {"text": p.load.columns.text, "label": p.load.columns.label}
    labelled = tmp_path / "labelled.csv"
    test[list(columns)].rename(columns=columns).to_csv(labelled, index=False)
    before = digest(root)

    code, out, err = cli(capsys, "evaluate", "--model", "models/model", str(labelled), "--json")
    assert code == 0, err
    evaluation = json.loads(out)
    stage = json.loads((root / "reports/evaluation.json").read_text())
    assert evaluation["metrics"] == stage["metrics"]
    assert evaluation["per_class"] == stage["per_class"]
    assert evaluation["confusion_matrix"] == stage["confusion_matrix"]
    assert evaluation["thresholds"] == [] and evaluation["source"] == str(labelled)

    # A blank line is skipped, as load skips it, and said (pandas alone skipped it silently).
    lines = labelled.read_text().splitlines(keepends=True)
    gappy = tmp_path / "gappy.csv"
    gappy.write_text("".join(lines[:3] + ["\n"] + lines[3:]))
    code, out, err = cli(capsys, "evaluate", "--model", "models/model", str(gappy), "--json")
    assert code == 0, err
    assert "skipped 1 blank row(s) (every cell empty): row 3" in err
    assert json.loads(out)["metrics"] == stage["metrics"]

    # Thresholds are optional; `params` checks the project's and a miss exits 1 with the metric named.
    code, out, err = cli(
        capsys, "evaluate", "--model", "models/model", str(labelled), "--thresholds", "params"
    )
    assert code == 0, err
    assert out.startswith("evaluate: accuracy ") and f"on {len(test)} examples" in out
    code, out, err = cli(
        capsys, "evaluate", "--model", "models/model", str(labelled), "--thresholds", "{accuracy: 1.0}"
    )
    accuracy = stage["metrics"]["accuracy"]
    if accuracy < 1.0:
        assert code == 1 and "accuracy = " in err and "(--thresholds)" in err.strip().splitlines()[-1]

    # --out writes only where it is told; the predictions match the stage's test_predictions.csv.
    written = tmp_path / "scored.csv"
    code, _, err = cli(capsys, "evaluate", "--model", "models/model", str(labelled), "--out", str(written))
    assert code == 0, err
    ours = pd.read_csv(written)
    theirs = pd.read_csv(root / "reports/test_predictions.csv")
    assert ours["predicted"].tolist() == theirs["predicted"].tolist()
    assert ours["actual"].tolist() == theirs["actual"].tolist()
    assert digest(root) == before  # the pipeline's outputs are untouched
