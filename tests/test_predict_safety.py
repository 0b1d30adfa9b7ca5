"""`tunepipe predict` never destroys or misreads: predictions go into new columns and never onto
the input file, a model folder's files are its own (no link out of it), a bare encoder is not a
classifier, a killed run leaves no model copy for good, and a model folder is enough to predict."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import build_classifier, make_project
from tunepipe import assets, model_identity
from tunepipe.errors import PipelineError
from tunepipe.params import ModelParams
from tunepipe.prediction import predict_file


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    return build_classifier(tiny_bert, tmp_path_factory.mktemp("clf") / "model", ["rotten", "fresh"])


def labelled(path: Path) -> Path:
    pd.DataFrame({"text": ["a wonderful film", "dull"], "label": ["gold-a", "gold-b"]}).to_csv(
        path, index=False
    )
    return path


# --- case 6: new columns, never the input file ---------------------------------------------


@pytest.mark.unit
def test_predictions_go_into_new_columns(tmp_path: Path, classifier: Path) -> None:
    out = predict_file(str(classifier), labelled(tmp_path / "in.csv"), tmp_path / "out.csv", "text")
    written = pd.read_csv(tmp_path / "out.csv")
    assert written.columns.tolist() == ["text", "label", "predicted_label", "predicted_score"]
    assert written["label"].tolist() == ["gold-a", "gold-b"]  # the gold labels stay
    assert set(out["predicted_label"]) <= {"rotten", "fresh"}


@pytest.mark.unit
def test_a_column_predict_writes_is_refused(tmp_path: Path, classifier: Path) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["good"], "predicted_label": ["mine"]}).to_csv(source, index=False)
    with pytest.raises(PipelineError, match=r"in.csv: already has a column 'predicted_label', which predict"):
        predict_file(str(classifier), source, tmp_path / "out.csv", "text")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.unit
@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hardlink"])
def test_output_onto_the_input_is_refused(
    tmp_path: Path, classifier: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = labelled(tmp_path / "in.csv")
    before = source.read_bytes()
    output = {"same path": source, "relative path": Path("in.csv"), "symlink": tmp_path / "link.csv"}.get(
        how, tmp_path / "hard.csv"
    )
    monkeypatch.chdir(tmp_path)
    if how == "symlink":
        output.symlink_to(source)
    elif how == "hardlink":
        os.link(source, output)
    with pytest.raises(PipelineError, match=r"is the input file; predictions never overwrite their input"):
        predict_file(str(classifier), source, output, "text")
    assert source.read_bytes() == before


# --- case 7: a model folder's files are its own --------------------------------------------


def linked_out(classifier: Path, tmp_path: Path, name: str = "config.json") -> Path:
    """A copy of the classifier whose `name` is a link to a file outside it (other labels)."""
    folder = Path(shutil.copytree(classifier, tmp_path / "linked"))
    foreign = tmp_path / "elsewhere" / name
    foreign.parent.mkdir()
    shutil.copy(classifier / name, foreign)
    if name == "config.json":
        config = json.loads(foreign.read_text())
        config["id2label"] = {"0": "foreign-a", "1": "foreign-b"}
        foreign.write_text(json.dumps(config))
    (folder / name).unlink()
    (folder / name).symlink_to(foreign)
    return folder


@pytest.mark.unit
def test_predict_refuses_a_config_linked_out_of_the_folder(tmp_path: Path, classifier: Path) -> None:
    folder = linked_out(classifier, tmp_path)
    with pytest.raises(
        PipelineError, match=r"linked/config.json is a link to .*elsewhere/config.json, outside"
    ):
        predict_file(str(folder), labelled(tmp_path / "in.csv"), tmp_path / "out.csv", "text")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.unit
@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "model.safetensors"])
def test_model_name_and_the_pretrained_hash_refuse_links_out(
    tmp_path: Path, classifier: Path, name: str
) -> None:
    folder = linked_out(classifier, tmp_path, name)
    with pytest.raises(PipelineError, match=rf"{name} is a link to .*, outside the model folder"):
        assets.resolve_model(str(folder), trust_remote_code=False)
    with pytest.raises(PipelineError, match=rf"{name} is a link to .*, outside the model folder"):
        model_identity.describe(ModelParams(name=str(folder)))


@pytest.mark.unit
def test_links_into_a_cache_or_inside_the_folder_are_allowed(tmp_path: Path) -> None:
    # Hugging Face hub cache: snapshots/<revision>/file -> ../../blobs/<hash>
    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_text("{}")
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(Path("../../blobs/abc123"))
    assets.check_links(snapshot, "hub")
    # DVC's symlink link type: models/model/x -> <cache>/files/md5/<2>/<30>
    project = tmp_path / "project"
    cached = project / ".dvc/cache/files/md5/ab" / ("c" * 30)
    cached.parent.mkdir(parents=True)
    cached.write_text("{}")
    model = project / "models/model"
    model.mkdir(parents=True)
    (model / "config.json").symlink_to(cached)
    (model / "same.json").symlink_to(model / "config.json")  # a link inside the folder
    assets.check_links(model, "models/model")


# --- case 10: a bare encoder is not a classifier ------------------------------------------


@pytest.mark.unit
def test_predict_refuses_an_encoder_without_a_trained_head(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(
        PipelineError, match=r"not a trained classifier; its weights lack classifier.(bias|weight)"
    ):
        predict_file(str(tiny_bert), labelled(tmp_path / "in.csv"), tmp_path / "out.csv", "text")
    assert not (tmp_path / "out.csv").exists()


# --- case 12: a model folder is enough ------------------------------------------------------


@pytest.mark.unit
def test_predict_with_a_model_folder_outside_any_project(
    tmp_path: Path, classifier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunepipe.cli import main

    shipped = Path(shutil.copytree(classifier, tmp_path / "shipped"))
    config = json.loads((shipped / "config.json").read_text())
    (shipped / "config.json").write_text(json.dumps(config | {"text_columns": ["review"]}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pd.DataFrame({"review": ["a wonderful film", "dull"]}).to_csv(elsewhere / "new.csv", index=False)
    pd.DataFrame({"text": ["a wonderful film"]}).to_csv(elsewhere / "plain.csv", index=False)
    monkeypatch.chdir(elsewhere)
    for model, rows in ((shipped, "new.csv"), (classifier, "plain.csv")):  # saved columns, else `text`
        try:
            main(["predict", "--model", str(model), rows, "-o", "out.csv"])
        except SystemExit as exc:
            assert exc.code in (0, None)
        assert set(pd.read_csv("out.csv")["predicted_label"]) <= {"rotten", "fresh"}
    assert not (elsewhere / "params.yaml").exists()


# --- case 11: a killed run's model copy goes --------------------------------------------------


def scratch(project: Path) -> list[Path]:
    tmp = project / ".dvc/tmp"
    return sorted(tmp.glob(".tunepipe-predict.tmp-*")) if tmp.is_dir() else []


def system_copies() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("tunepipe-predict-*")}


@pytest.mark.e2e
def test_a_killed_predict_leaves_no_model_copy(tmp_path: Path, tiny_bert: Path, classifier: Path) -> None:
    from tests.test_bad_inputs import register_fake

    project = make_project(tmp_path / "project", tiny_bert)
    register_fake(project, classifier)
    labelled(project / "in.csv")
    before = system_copies()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunepipe.cli", "predict", "--model", "v0.1.0", "in.csv", "-o", "out.csv"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        # Killed once the version's weights are copied out of the DVC cache, before they are loaded.
        while not any(p.rglob("model.safetensors") for p in scratch(project)):
            assert proc.poll() is None, "predict ended before its model copy was seen"
            assert time.monotonic() < deadline, "no model copy under .dvc/tmp within 90 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert scratch(project), "the kill should leave the copy (it is swept next time)"
    assert system_copies() <= before  # nothing in the system temp folder

    predict_file("v0.1.0", project / "in.csv", project / "out.csv", "text", root=project)
    assert scratch(project) == []  # the killed run's copy swept, this run's deleted after loading
    assert pd.read_csv(project / "out.csv")["label"].tolist() == ["gold-a", "gold-b"]
