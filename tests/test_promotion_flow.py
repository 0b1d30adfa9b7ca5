"""Promotion through the real flow: the first version takes prod, a challenger that does not clear
the policy is registered but stays in staging, and stage names work wherever a version does."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import artifacts, copy_project, run, set_params, tags, tunepipe
from tunepipe import catalog
from tunepipe.promotion import champion_predictions, read_predictions, rescore

pytestmark = pytest.mark.e2e
TASK = "sequence_classification"


def test_first_version_promoted_then_a_challenger_held_back(
    reproduced: tuple[Path, str], tmp_path: Path, prefect_backend: None
) -> None:
    from flows.pipeline import pipeline

    project = copy_project(reproduced[0], tmp_path / "project")
    state = pipeline(root=str(project), return_state=True)
    assert state.is_completed(), state.message
    first = state.result()
    decision = first["promotion"]
    assert decision["promote"] and decision["champion"] is None and decision["stage"] == "prod"
    assert decision["challenger"] == {"version": "v0.1.0", "score": first["metrics"]["accuracy"]}
    assert "promotion" in artifacts(state)
    assert {"model@v0.1.0", "model#staging#1", "model#prod#2"} <= set(tags(project))

    # Re-scoring a registered model on the test split (what a changed split triggers) gives
    # exactly what evaluate wrote.
    rescored = rescore(project, "model", "v0.1.0", TASK)
    evaluated = read_predictions(project / catalog.TEST_PREDICTIONS, TASK)
    pd.testing.assert_frame_equal(
        rescored, evaluated[["source_row", "actual", "predicted"]], check_dtype=False
    )
    # The champion's predictions are reused while the test split's hash is the same, re-scored
    # once it differs (dvc.lock edited here to stand for a changed split).
    assert champion_predictions(project, "model", "v0.1.0", TASK)[1].startswith("reused")
    lock = (project / "dvc.lock").read_text()
    outs = yaml.safe_load(lock)["stages"]["tokenize"]["outs"]
    test_md5 = next(o["md5"] for o in outs if o["path"] == str(catalog.tokenized_split("test")))
    (project / "dvc.lock").write_text(lock.replace(test_md5, "0" * 32 + ".dir"))
    frame, how = champion_predictions(project, "model", "v0.1.0", TASK)
    assert how.startswith("re-scored")
    pd.testing.assert_frame_equal(frame, rescored)
    (project / "dvc.lock").write_text(lock)

    # A new model (new learning rate) under a policy it cannot meet: registered, not promoted.
    set_params(project, **{"train.learning_rate": 5e-3})
    state = pipeline(root=str(project), promotion={"min_delta": 0.5}, return_state=True)
    assert state.is_completed(), state.message
    second = state.result()
    assert second["registered"]["tag"] == "model@v0.1.1"
    decision = second["promotion"]
    assert not decision["promote"] and decision["min_delta"] == 0.5
    assert decision["champion"]["version"] == "v0.1.0"
    assert decision["champion"]["scored"].startswith("reused")  # same test split: its own predictions
    assert decision["champion"]["score"] == pytest.approx(first["metrics"]["accuracy"])
    assert decision["challenger"]["score"] == pytest.approx(second["metrics"]["accuracy"])
    assert decision["low"] <= decision["improvement"] <= decision["high"] and decision["resamples"] == 1000
    lineage = json.loads(run(["git", "show", "model@v0.1.1:lineage/model@v0.1.1.json"], project).stdout)
    assert lineage["promotion"] == decision
    assert "model#staging#3" in tags(project) and not any(
        t.startswith("model#prod#") and t != "model#prod#2" for t in tags(project)
    )

    versions = tunepipe(project, "versions").stdout.splitlines()
    assert versions[0].split()[:2] == ["model@v0.1.0", "prod"]
    assert versions[1].split()[:2] == ["model@v0.1.1", "staging"]
    assert json.loads(tunepipe(project, "lineage", "prod", "--json").stdout)["version"] == "v0.1.0"

    texts = project / "texts.csv"
    pd.DataFrame({"text": ["a wonderful film", "dull and far too long"]}).to_csv(texts, index=False)
    tunepipe(project, "predict", str(texts), "--model", "prod", "-o", "prod.csv")
    tunepipe(project, "predict", str(texts), "--model", "v0.1.0", "-o", "v010.csv")
    assert (project / "prod.csv").read_text() == (project / "v010.csv").read_text()

    # By hand: the challenger into prod, and versions shows the move.
    out = tunepipe(project, "promote", "v0.1.1", "--stage", "prod").stdout
    assert "model@v0.1.1 -> prod (model#prod#4; was v0.1.0)" in out
    assert tunepipe(project, "versions").stdout.splitlines()[1].split()[1] == "prod,"
    missing = tunepipe(project, "predict", str(texts), "--model", "canary", check=False)
    assert missing.returncode == 1
    assert "'canary' is neither a version of model nor a stage holding one" in missing.stderr
