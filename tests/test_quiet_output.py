"""Normal output says what happened, not library noise: no DVC "'X' is empty." warning for a
dependency, no transformers LOAD REPORT table from `tunepipe predict` or training's fresh head;
a load that fails still shows the report its error points to."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import REPO, build_classifier, dvc
from tunepipe import assets, params, training
from tunepipe.errors import PipelineError
from tunepipe.prediction import predict_file

REPORT = "LOAD REPORT"


@pytest.fixture
def reports() -> Iterator[list[str]]:
    """transformers' load reports as they reach its own stderr handler (on the `transformers`
    logger, bound to the stderr of the moment it was set up: capfd does not see it)."""
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


@pytest.mark.unit
def test_no_stage_dependency_is_an_empty_file() -> None:
    """DVC warns "'tasks/__init__.py' is empty." each time it saves an empty dependency."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    code = {dep for body in stages.values() for dep in body.get("deps", []) if (REPO / dep).is_file()}
    assert "tasks/__init__.py" in code
    assert sorted(dep for dep in code if (REPO / dep).stat().st_size == 0) == []
    assert (REPO / "flows" / "__init__.py").stat().st_size > 0  # flows/ code, hashed by the flow's callers


@pytest.mark.stage
def test_a_repro_prints_no_empty_file_warning(project: Path) -> None:
    result = dvc(project, "repro", "--single-item", "load")
    assert "Running stage 'load'" in result.stdout
    assert "is empty" not in result.stdout + result.stderr


@pytest.mark.unit
def test_predict_with_a_bare_encoder_says_one_line_and_no_load_report(
    tmp_path: Path, tiny_bert: Path, reports: list[str]
) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a wonderful film"]}).to_csv(source, index=False)
    with pytest.raises(PipelineError, match="not a trained classifier"):
        predict_file(str(tiny_bert), source, tmp_path / "out.csv", "text")
    assert not [r for r in reports if REPORT in r]


@pytest.mark.unit
def test_a_fresh_head_on_the_encoder_is_built_without_a_load_report(
    project: Path, reports: list[str]
) -> None:
    model = training.build_model(params.read(project / "params.yaml"), ["neg", "pos"])
    assert model.config.num_labels == 2
    assert not [r for r in reports if REPORT in r]


@pytest.mark.unit
def test_a_failed_load_still_shows_the_report_its_error_points_to(
    tmp_path: Path, tiny_bert: Path, reports: list[str]
) -> None:
    from transformers import AutoModelForSequenceClassification

    two = build_classifier(tiny_bert, tmp_path / "two", ["a", "b"])
    reports.clear()
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"), assets.quiet_load_report():
        AutoModelForSequenceClassification.from_pretrained(two, num_labels=3)
    assert [r for r in reports if REPORT in r and "MISMATCH" in r]


@pytest.mark.unit
@pytest.mark.parametrize("flow", ["pipeline", "search"])
def test_a_prefect_api_that_does_not_answer_is_one_error_line(
    flow: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PREFECT_API_URL left pointing at a stopped server: Prefect raises before the flow run
    exists, with three chained tracebacks (some 140 lines)."""
    import importlib
    import socket

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    main = importlib.import_module(f"flows.{flow}").main
    url = f"http://127.0.0.1:{port}/api"
    with temporary_settings(updates={PREFECT_API_URL: url}), pytest.raises(SystemExit) as exit_:
        main(["--root", str(tmp_path)])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: Failed to reach API at {url}/ (PREFECT_API_URL): ")
    assert "start that server (`prefect server start`), or unset PREFECT_API_URL" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.unit
def test_the_flow_command_ends_with_the_unversioned_data_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The register task logs it mid-run, among Prefect's lines; the command's last lines repeat it."""
    import flows.pipeline

    registered = {"tag": "model@v0.1.0", "commit": "0123456789ab", "new": True}
    result = {"metrics": {"accuracy": 0.9}, "registered": registered, "promotion": None}
    monkeypatch.setattr(flows.pipeline, "run_from_command_line", lambda root, start: result)
    flows.pipeline.main([])
    assert "WARNING" not in capsys.readouterr().err
    registered["unversioned_inputs"] = ["data/raw/my.csv"]
    flows.pipeline.main([])
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "registered: model@v0.1.0 (commit 0123456789)"
    assert err.startswith(
        "WARNING: model@v0.1.0 was trained on 1 file(s) in neither git nor DVC: data/raw/my.csv."
    )
