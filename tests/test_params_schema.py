"""params.schema.json and the params reference page come from the params models: the committed
copies are current, every shipped params file validates against the schema (as an editor reads
it, YAML 1.2), and the schema refuses what the parser refuses where a schema can say it."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
from ruamel.yaml import YAML

from tunepipe import cli, params, params_schema
from tunepipe.errors import PipelineError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
SHIPPED = [REPO / "params.yaml", *sorted((REPO / "examples").glob("*.yaml"))]


def editor_yaml(path: Path) -> Any:
    """The file as the YAML language server reads it: YAML 1.2 (5e-5 is a number there)."""
    return YAML(typ="safe", pure=True).load(path.read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = params_schema.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_current() -> None:
    assert (REPO / params_schema.SCHEMA_FILE).read_text() == params_schema.schema_text(), (
        "params.schema.json is stale: run `tunepipe params schema`"
    )


def test_committed_reference_page_is_current() -> None:
    assert (REPO / params_schema.REFERENCE_FILE).read_text() == params_schema.reference(), (
        "docs/reference/params.md is stale: run `tunepipe params docs`"
    )


def test_params_yaml_points_editors_at_the_schema() -> None:
    first = (REPO / "params.yaml").read_text().splitlines()[0]
    assert first == f"# yaml-language-server: $schema={params_schema.SCHEMA_FILE}"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_params_files_validate_against_the_schema(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    validator.validate(editor_yaml(path))


@pytest.mark.parametrize(
    ("section", "key", "value", "says"),
    [
        ("train", "learnin_rate", 1e-4, "Additional properties are not allowed ('learnin_rate'"),
        ("load", "colums", {"text": "t"}, "Additional properties are not allowed ('colums'"),
        (None, "trian", {}, "Additional properties are not allowed ('trian'"),
        ("train", "device", "gpu", "'gpu' is not one of ['auto', 'cpu', 'cuda']"),
        ("train", "warmup_ratio", 1.0, "1.0 is greater than or equal to the maximum of 1"),
        ("train", "batch_size", 8.5, "8.5 is not of type 'integer'"),
        ("promote", "resamples", 10, "10 is less than the minimum of 1000"),
        ("register", "name", "../x", "'../x' does not match"),
        ("register", "license", "Apache 2.0", "'Apache 2.0' does not match"),
        ("evaluate", "thresholds", {"rmse": {"below": 1}}, "is not valid under any of the given schemas"),
        ("search", "space", {"learnin_rate": [1e-4]}, "'learnin_rate' is not one of ['epochs'"),
        ("search", "space", {"epochs": {"low": 1}}, "is not valid under any of the given schemas"),
    ],
)
def test_schema_refuses_a_misspelt_key_or_a_bad_value(
    validator: jsonschema.Draft202012Validator, section: str | None, key: str, value: Any, says: str
) -> None:
    data = copy.deepcopy(editor_yaml(REPO / "params.yaml"))
    (data if section is None else data[section])[key] = value
    errors = [e.message for e in validator.iter_errors(data)]
    assert any(says in e for e in errors), errors
    with pytest.raises(PipelineError):  # and the parser refuses it too
        params.parse(data)


def test_schema_describes_every_key_with_its_default() -> None:
    doc = params_schema.schema()
    for name, section in [("Params", doc), *doc["$defs"].items()]:
        for key, spec in section.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{key}: no description"
            assert "default" in spec or "$ref" in spec, f"{name}.{key}: no default"


def test_reference_page_has_a_table_row_per_key() -> None:
    page = params_schema.reference()
    for at, section in params.sections().items():
        if at:
            assert f"\n## {at}\n" in page
        for key in section.model_fields:
            assert f"| `{key}` |" in page, f"{at}.{key}"
    assert "| `learning_rate` | number > 0 | `5e-05` | Peak learning rate. |" in page


@pytest.mark.parametrize(("command", "name"), [("schema", "params.schema.json"), ("docs", "params.md")])
def test_cli_writes_the_file_and_says_when_it_is_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, name: str
) -> None:
    out = tmp_path / "sub" / name
    cli.main(["params", command, "-o", str(out)])
    assert capsys.readouterr().out == f"wrote {out}\n"
    expected = params_schema.schema_text() if command == "schema" else params_schema.reference()
    assert out.read_text() == expected
    cli.main(["params", command, "-o", str(out)])
    assert capsys.readouterr().out == f"{out} is up to date\n"
    assert [p.name for p in out.parent.iterdir()] == [name]  # no temporary file left behind


def test_cli_writes_into_the_project_root(tmp_path: Path) -> None:
    cli.main(["params", "schema", "--root", str(tmp_path)])
    cli.main(["--root", str(tmp_path), "params", "docs"])
    assert (tmp_path / "params.schema.json").read_text() == params_schema.schema_text()
    assert (tmp_path / "docs/reference/params.md").read_text() == params_schema.reference()


def test_params_commands_have_help() -> None:
    group = typer.main.get_command(cli.app).commands["params"]
    for name, command in group.commands.items():
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"params {name} {param.name}: no help"


def test_yaml_1_2_and_pyyaml_read_the_shipped_file_alike() -> None:
    """The schema checks what an editor reads; the pipeline reads with PyYAML (YAML 1.1)."""
    import yaml

    text = (REPO / "params.yaml").read_text()
    assert yaml.safe_load(io.StringIO(text)) == editor_yaml(REPO / "params.yaml")
