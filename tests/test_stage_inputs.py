"""Stages re-run for what they read, by content: the model's tokenizer files (not its path), and
the splits train uses (not the test split)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import (
    ALWAYS_RUN,
    copy_project,
    dvc,
    make_project,
    make_reviews,
    ran,
    run_stages_in_process,
    set_params,
)
from tunepipe import dvcrepo, staleness

pytestmark = pytest.mark.stage


def test_tokenizer_files_not_the_model_path_decide_what_reruns(
    reproduced: tuple[Path, str], tmp_path: Path, tiny_bert: Path
) -> None:
    project = copy_project(reproduced[0], tmp_path / "project")
    pretrained = (project / "data/pretrained.json").read_text()
    assert str(tiny_bert) not in pretrained and "tokenizer.json" in json.loads(pretrained)["tokenizer"]

    # The same files at another path: pretrained runs (it always does) and nothing after it.
    moved = Path(shutil.copytree(tiny_bert, tmp_path / "elsewhere" / "model"))
    set_params(project, **{"model.name": str(moved)})
    assert ran(dvc(project, "repro").stdout) == ALWAYS_RUN
    assert (project / "data/pretrained.json").read_text() == pretrained
    assert dvcrepo.stale(project) == {}

    # A token added to the tokenizer: the pretrained stage's output is out of date before it runs.
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(moved / "tokenizer.json"))
    tok.add_tokens(["zzqx"])
    tok.save(str(moved / "tokenizer.json"))
    assert dvcrepo.stale(project) == {"pretrained": [{"changed outs": {"data/pretrained.json": "modified"}}]}
    states = {s.stage: s for s in staleness.check(project)}
    assert states["pretrained"].state == staleness.STALE
    assert states["pretrained"].reasons == ("output data/pretrained.json modified",)
    assert {states[s].state for s in ("validate", "tokenize", "train")} == {staleness.UPSTREAM_STALE}
    dvc(project, "repro", "pretrained")
    status = json.loads(dvc(project, "status", "--json").stdout)
    changed = [{"changed deps": {"data/pretrained.json": "modified"}}]
    loading_the_model = {s: changed for s in ("validate", "tokenize", "train")}
    assert status == {"pretrained": ["always changed"], **loading_the_model}
    assert dvcrepo.stale(project) == loading_the_model
    assert ran(dvc(project, "repro").stdout) == [*ALWAYS_RUN, "validate", "tokenize", "train", "evaluate"]
    assert dvcrepo.stale(project) == {}


def test_a_test_split_change_reruns_evaluate_not_train(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = make_reviews(300)
    project = make_project(tmp_path / "project", tiny_bert, rows)
    pd.DataFrame(rows[:240]).to_csv(project / "data/raw/a.csv", index=False)
    pd.DataFrame(rows[240:]).to_csv(project / "data/raw/b.csv", index=False)
    (project / "data/raw/reviews.csv").unlink()
    set_params(
        project,
        **{
            "load.source": {"train": "data/raw/a.csv", "test": "data/raw/b.csv"},
            "train.epochs": 2,  # what is trained does not matter here, only that train is done
            "evaluate.thresholds": {"accuracy": 0.0},
        },
    )
    # The first run in this process (six stage start-ups saved), recorded in dvc.lock by DVC.
    run_stages_in_process(project, monkeypatch)
    dvc(project, "commit", "--force", "--quiet")
    assert dvcrepo.stale(project) == {}
    before = (project / "dvc.lock").read_text()

    edited = pd.read_csv(project / "data/raw/b.csv")
    edited.loc[0, "text"] = "superb charming cast 123"
    edited.to_csv(project / "data/raw/b.csv", index=False)
    out = dvc(project, "repro").stdout
    assert ran(out) == [*ALWAYS_RUN, "load", "validate", "tokenize", "evaluate"]
    assert "Stage 'train' didn't change, skipping" in out

    def tokenized(lock: str) -> dict[str, str]:
        import yaml

        return {o["path"]: o["md5"] for o in yaml.safe_load(lock)["stages"]["tokenize"]["outs"]}

    old, new = tokenized(before), tokenized((project / "dvc.lock").read_text())
    assert [path for path in old if old[path] != new[path]] == ["data/tokenized/test"]
