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


def test_versions_compare_and_lineage_show_the_decision_on_the_same_rows(
    reproduced: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new split seed gives the challenger other test rows: each version's own metrics are on
    different rows, so compare says so and shows the promotion decision, which scored the champion
    on the challenger's rows; versions and lineage show that decision and its rows."""
    from tunepipe import catalog, drift, params, promotion, report
    from tunepipe.dvcrepo import lock_outputs, read_lock

    project = copy_project(reproduced[0], tmp_path / "project")

    def decide(version: str) -> dict:
        p = params.read(project / "params.yaml")
        return promotion.compare(project, "model", version, p.promote, p).to_json()

    first = registry.register(project, "model", decide=decide)
    assert first["promotion"]["promote"]
    set_params(project, **{"load.split.seed": 7, "evaluate.thresholds": {}})
    dvc(project, "repro")
    # The drift report: the same rows split anew (no drift), prod's model scored on the new test rows.
    found = drift.report(project, params.read(project / "params.yaml"))
    assert found["prod"]["tag"] == "model@v0.1.0" and found["rows"]["unseen"] == 0
    assert (found["labels"]["value"], found["length"]["ks"]) == (0, 0)
    # words of prod's validation and test rows that its train rows lack
    assert 0 < found["oov_rate"] < 0.2
    assert (
        found["score"]["recorded"] == registry.read_lineage(project, "model", "v0.1.0")["metrics"]["accuracy"]
    )
    assert found["score"]["scored"] == "re-scored on this run's test split"
    second = registry.register(
        project, "model", decide=decide, extra={"drift": found}, page=report.registration_page
    )
    decision = second["promotion"]
    assert found["score"]["on_new_rows"] == decision["champion"]["score"]  # the same rows
    assert registry.read_lineage(project, "model", "v0.1.1")["drift"]["headline"] == found["headline"]
    page = registry.version_report(project, "model", "v0.1.1")
    assert "<h2>Data drift</h2>" in page and 'class="drift"' in page
    assert decision["champion"]["version"] == "v0.1.0"
    assert decision["champion"]["scored"] == "re-scored on this run's test split"
    test_md5 = lock_outputs(read_lock(project))[str(catalog.tokenized_split("test"))]["md5"]
    rows = len(promotion.read_predictions(project / catalog.TEST_PREDICTIONS, "sequence_classification"))
    assert decision["test_split"] == {"path": "data/tokenized/test", "md5": test_md5, "rows": rows}
    assert decision["examples"] == rows

    result = compare.compare(project, "model", "v0.1.0", "v0.1.1")
    assert not result["test_split"]["same"] and result["test_split"]["b"] == test_md5
    same = result["same_rows"]
    assert (same["challenger"], same["champion"]) == ("v0.1.1", "v0.1.0")
    assert same["champion_score"] == decision["champion"]["score"]
    main(["compare", "v0.1.0", "v0.1.1", "--root", str(project)])
    out = capsys.readouterr().out
    assert "metrics (each on its own test split: data/tokenized/test" in out
    assert "the change is not on the same rows" in out
    assert f"v0.1.0 scored on v0.1.1's {rows} test rows (split md5 {test_md5[:12]})" in out
    assert re.search(
        rf"^  accuracy +{decision['champion']['score']:.4f} +{decision['challenger']['score']:.4f}", out, re.M
    )
    assert re.search(r"^  v0\.1\.0 +promoted to prod \(no version held it\)$", out, re.M)

    main(["versions", "--root", str(project)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("[promoted to prod (no version held it)]")
    assert f"vs v0.1.0 on {rows} test rows (split md5 {test_md5[:12]})" in lines[1]
    assert (
        "[promoted to prod: accuracy" if decision["promote"] else "[not promoted to prod: accuracy"
    ) in lines[1]

    main(["lineage", "v0.1.1", "--root", str(project)])
    out = capsys.readouterr().out
    assert f"  promotion           {promotion.outcome(decision)}: {decision['reason']}" in out
    assert f"  decided on          {rows} test rows (split md5 {test_md5[:12]}): accuracy" in out
    assert re.search(
        r"^  guard +recall_macro [0-9.]+ vs [0-9.]+, worse by -?[0-9.]+ \(limit 0\.01\)", out, re.M
    )
